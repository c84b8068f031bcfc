//! Configuration: the `slotgate.toml` file, tuning profiles and their validation (DESIGN.md §5).
//!
//! Parsing is strict (`deny_unknown_fields`: a typo must not silently do nothing) and validation
//! collects *every* problem, keyed by its TOML path, so `slotgate check` and `POST /admin/reload`
//! can list them all at once. A [`Config`] that exists has passed validation.

mod file;
mod keys;
mod validate;

pub use file::*;
pub use keys::{ct_eq, FrontKeys};
pub use validate::{ConfigError, Problem};

use std::path::{Path, PathBuf};

impl Config {
    /// Reads, parses and validates a config file; a `--tuning` file, when given, replaces `[tuning]`.
    pub fn load(path: &Path, tuning_override: Option<&Path>) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            ConfigError::single("file", format!("cannot read {}: {e}", path.display()))
        })?;
        let base_dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
        let mut cfg = Config::from_toml_str(&text, Some(&base_dir))?;
        cfg.source = Some(path.to_path_buf());
        if let Some(t) = tuning_override {
            cfg.tuning = Tuning::load(t)?;
            cfg.tuning_source = Some(t.to_path_buf());
        }
        Ok(cfg)
    }

    /// Parses and validates config text. `base_dir` resolves a relative `tuning = "..."` include.
    pub fn from_toml_str(text: &str, base_dir: Option<&Path>) -> Result<Config, ConfigError> {
        let mut raw: ConfigFile = toml::from_str(text).map_err(ConfigError::from_toml)?;
        if let Some(dir) = base_dir {
            resolve_tls_paths(&mut raw, dir);
        }
        let mut tuning_source = None;
        let tuning = match raw.tuning.clone() {
            None => Tuning::default(),
            Some(toml::Value::String(f)) => {
                let p: PathBuf = match base_dir {
                    Some(d) if Path::new(&f).is_relative() => d.join(&f),
                    _ => PathBuf::from(&f),
                };
                let t = Tuning::load(&p)?;
                tuning_source = Some(p);
                t
            }
            Some(v @ toml::Value::Table(_)) => v
                .try_into::<Tuning>()
                .map_err(|e| ConfigError::single("tuning", e.message().trim().to_string()))?,
            Some(_) => {
                return Err(ConfigError::single(
                    "tuning",
                    "must be a [tuning] table or a profile file name",
                ))
            }
        };
        let mut cfg = validate::validate(raw, tuning)?;
        cfg.tuning_source = tuning_source;
        // `[auth] allow_unauthenticated = true` alone names no keys: the door is open.
        if let Some(a) = cfg
            .auth
            .as_ref()
            .filter(|a| a.keys_file.is_some() || a.keys_env.is_some())
        {
            let keys = FrontKeys::load(a, base_dir).map_err(|(k, m)| ConfigError::single(k, m))?;
            cfg.front_keys = Some(std::sync::Arc::new(keys));
        }
        Ok(cfg)
    }
}

/// Makes the TLS file paths of a config file (`tls_cert`, `tls_key`, `ca_file`, `wake_ca_file`)
/// relative to the file's directory, as `keys_file` and a `tuning` include are: a config that
/// travels with its certificates works from any working directory.
fn resolve_tls_paths(raw: &mut ConfigFile, dir: &Path) {
    let resolve = |p: &mut Option<PathBuf>| {
        if let Some(path) = p.as_mut().filter(|p| p.is_relative()) {
            *path = dir.join(&*path);
        }
    };
    resolve(&mut raw.listen.tls_cert);
    resolve(&mut raw.listen.tls_key);
    for u in &mut raw.upstreams {
        resolve(&mut u.ca_file);
        resolve(&mut u.wake_ca_file);
    }
}

impl Tuning {
    /// Reads a tuning profile (`tuning/*.toml`): either a bare table of tuning keys or a file with a
    /// `[tuning]` table.
    pub fn load(path: &Path) -> Result<Tuning, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            ConfigError::single("tuning", format!("cannot read {}: {e}", path.display()))
        })?;
        #[derive(serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Wrapped {
            tuning: Tuning,
        }
        let t = match toml::from_str::<Wrapped>(&text) {
            Ok(w) => w.tuning,
            Err(_) => toml::from_str::<Tuning>(&text).map_err(ConfigError::from_toml)?,
        };
        validate::validate_tuning(&t).map(|_| t)
    }
}
