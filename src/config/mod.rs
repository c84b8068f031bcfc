//! Configuration: the `slotgate.toml` file, tuning profiles and their validation (DESIGN.md §5).
//!
//! Unknown keys are refused (a typo must not silently do nothing), but not one at a time: the
//! file is walked as a TOML tree first (`schema`), which names every unknown key and every
//! wrongly typed value by its path, and validation then collects *every* semantic problem, so
//! `slotgate check` and `POST /admin/reload` list them all at once. Only a TOML syntax error, or
//! a value of the wrong type, stops before the semantic checks. A [`Config`] that exists has
//! passed validation.

mod file;
mod keys;
mod name;
mod schema;
mod validate;

pub use file::*;
pub use keys::{ct_eq, FrontAuth, FrontKeys};
pub use name::UpstreamName;
pub use validate::{ConfigError, Problem};

use std::path::{Path, PathBuf};

impl Config {
    /// Reads, parses and validates a config file; a `--tuning` file, when given, replaces `[tuning]`.
    /// The problems of both files are reported together.
    pub fn load(path: &Path, tuning_override: Option<&Path>) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            ConfigError::single("file", format!("cannot read {}: {e}", path.display()))
        })?;
        let base_dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
        let cfg = Config::from_toml_str(&text, Some(&base_dir));
        let tuning = tuning_override.map(|t| (t, Tuning::load(t)));
        match (cfg, tuning) {
            (Ok(mut cfg), tuning) => {
                cfg.source = Some(path.to_path_buf());
                if let Some((t, profile)) = tuning {
                    cfg.tuning = profile?;
                    cfg.tuning_source = Some(t.to_path_buf());
                }
                Ok(cfg)
            }
            (Err(mut e), Some((_, Err(t)))) => {
                e.problems.extend(t.problems);
                Err(e)
            }
            (Err(e), _) => Err(e),
        }
    }

    /// Parses and validates config text. `base_dir` resolves a relative `tuning = "..."` include.
    pub fn from_toml_str(text: &str, base_dir: Option<&Path>) -> Result<Config, ConfigError> {
        let (mut raw, mut problems) = schema::config_file(text)?;
        if let Some(dir) = base_dir {
            resolve_tls_paths(&mut raw, dir);
        }
        // A broken profile is reported with the rest; the defaults stand in while checking.
        let (tuning, tuning_source) =
            resolve_tuning(raw.tuning.clone(), base_dir).unwrap_or_else(|e| {
                problems.extend(e.problems);
                (Tuning::default(), None)
            });
        let mut cfg = match validate::validate(raw, tuning) {
            Ok(cfg) if problems.is_empty() => cfg,
            Ok(_) => return Err(ConfigError { problems }),
            Err(e) => {
                problems.extend(e.problems);
                return Err(ConfigError { problems });
            }
        };
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

/// The tuning a file's `tuning` key gives (a table, typed by the schema walk already, or a
/// profile file name) and the profile's path when it names one.
fn resolve_tuning(
    v: Option<toml::Value>,
    base_dir: Option<&Path>,
) -> Result<(Tuning, Option<PathBuf>), ConfigError> {
    match v {
        None => Ok((Tuning::default(), None)),
        Some(toml::Value::String(f)) => {
            let p: PathBuf = match base_dir {
                Some(d) if Path::new(&f).is_relative() => d.join(&f),
                _ => PathBuf::from(&f),
            };
            Ok((Tuning::load(&p)?, Some(p)))
        }
        Some(v @ toml::Value::Table(_)) => v
            .try_into::<Tuning>()
            .map(|t| (t, None))
            .map_err(|e| ConfigError::single("tuning", e.message().trim().to_string())),
        Some(_) => Err(ConfigError::single(
            "tuning",
            "must be a [tuning] table or a profile file name",
        )),
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
    /// `[tuning]` table. Unknown keys and range problems are reported together.
    pub fn load(path: &Path) -> Result<Tuning, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            ConfigError::single("tuning", format!("cannot read {}: {e}", path.display()))
        })?;
        let (t, mut problems) = schema::tuning_profile(&text)?;
        if let Err(e) = validate::validate_tuning(&t) {
            problems.extend(e.problems);
        }
        if problems.is_empty() {
            Ok(t)
        } else {
            Err(ConfigError { problems })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `key: message` for each problem of config text.
    fn problems(text: &str) -> Vec<(String, String)> {
        match Config::from_toml_str(text, None) {
            Ok(_) => Vec::new(),
            Err(e) => e.problems.into_iter().map(|p| (p.key, p.message)).collect(),
        }
    }

    fn keys(got: &[(String, String)]) -> Vec<&str> {
        got.iter().map(|(k, _)| k.as_str()).collect()
    }

    #[test]
    fn names_five_problems_in_one_run_unknown_key_included() {
        let got = problems(include_str!("../../tests/fixtures/five-problems.toml"));
        assert_eq!(
            keys(&got),
            [
                "upstream[4].bogus_key",
                "upstream[1].name",
                "upstream[2].url",
                "upstream[3].url",
                "registry.\"m\"",
            ],
            "{got:?}"
        );
        let msg = |i: usize| got[i].1.as_str();
        assert!(msg(0).starts_with("unknown field `bogus_key`; expected one of `name`, `kind`"));
        assert!(!msg(0).contains("did you mean"), "{}", msg(0));
        assert!(
            msg(1).contains("duplicate upstream name 'Chat'"),
            "{}",
            msg(1)
        );
        assert!(
            msg(2).contains("not an http:// or https:// URL"),
            "{}",
            msg(2)
        );
        assert!(msg(3).contains("takes no url"), "{}", msg(3));
        assert!(msg(4).contains("unknown upstream 'nowhere'"), "{}", msg(4));
    }

    #[test]
    fn a_typo_of_a_known_key_gets_a_hint_in_every_table() {
        let text = r#"
lisen = 1
[listen]
adr = "127.0.0.1:1"
[routing]
default_slott = "agent"
[[upstream]]
name = "u"
kind = "remote"
url = "http://127.0.0.1:1/v1"
max_inflght = 4
auth = { style = "bearer", env = "K", hedaer = "x" }
[registry]
"m" = { upstream = "u", upstream_modle = "x" }
[auth]
allow_unauthenticated = true
keys_fil = "k"
[tuning]
coers = 2
"#;
        let got = problems(text);
        assert_eq!(
            got,
            [
                ("lisen", "`listen`"),
                ("listen.adr", "`addr`"),
                ("routing.default_slott", "`default_slot`"),
                ("upstream[0].auth.hedaer", "`header`"),
                ("upstream[0].max_inflght", "`max_inflight`"),
                ("registry.\"m\".upstream_modle", "`upstream_model`"),
                ("auth.keys_fil", "`keys_file`"),
                ("tuning.coers", "`cores`"),
            ]
            .map(|(k, near)| {
                let field = k.rsplit('.').next().unwrap();
                (
                    k.to_string(),
                    format!("unknown field `{field}`; did you mean {near}?"),
                )
            }),
        );
    }

    #[test]
    fn known_keys_are_still_validated_beside_unknown_ones() {
        // Unknown keys alone refuse the file, but what is known is validated beside them.
        let text = "[listen]\nbogus = 1\naddr = \"nope\"\n";
        assert_eq!(keys(&problems(text)), ["listen.bogus", "listen.addr"]);
        // A `registry` table entry with a stray key was silently accepted before.
        let text = "[[upstream]]\nname = \"u\"\nkind = \"composite\"\n[registry]\n\"m\" = { upstream = \"u\", weight = 2 }\n";
        assert_eq!(keys(&problems(text)), ["registry.\"m\".weight"]);
    }

    #[test]
    fn a_wrong_type_stops_before_the_semantic_checks_and_says_so() {
        let text = r#"
[listen]
route_headers = "yes"
oops = 1
[[upstream]]
name = "u"
kind = "container"
url = "ftp://x"
connect_ms = "fast"
auth = { style = "sideways" }
[[upstream]]
name = "v"
kind = "warp"
[registry]
"m" = 5
[tuning]
cores = -1
"#;
        let got = problems(text);
        assert_eq!(
            keys(&got),
            [
                "listen.oops",
                "listen.route_headers",
                "upstream[0].auth.style",
                "upstream[1].kind",
                "registry.\"m\"",
                "tuning.cores",
            ],
            "{got:?}"
        );
        for (k, m) in &got[1..] {
            assert!(
                m.ends_with("once every value has the right type)"),
                "{k}: {m}"
            );
        }
        assert!(
            got[1].1.starts_with("invalid type: string \"yes\""),
            "{got:?}"
        );
        // The semantic problem (`ftp://`) waits for the types.
        assert!(!got.iter().any(|(k, _)| k == "upstream[0].url"));
        // Syntax errors stop at once, and say so.
        let got = problems("[listen\naddr = 1\n");
        assert_eq!(got.len(), 1, "{got:?}");
        assert!(got[0].0.starts_with("toml@"), "{got:?}");
        assert!(got[0].1.contains("nothing else was checked"), "{got:?}");
    }

    #[test]
    fn a_tuning_profile_names_its_unknown_keys_with_the_file_problems() {
        let dir = std::env::temp_dir().join(format!("slotgate-profile-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let profile = dir.join("p.toml");
        std::fs::write(&profile, "[tuning]\ncors = 1\nring_entries = 1\n").unwrap();
        let e = Config::from_toml_str("tuning = \"p.toml\"\n[listen]\naddr = \"x\"\n", Some(&dir))
            .unwrap_err();
        let got: Vec<_> = e.problems.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(
            got,
            ["tuning.cors", "tuning.ring_entries", "listen.addr"],
            "{e}"
        );
        std::fs::write(&profile, "cores = 1\n").unwrap();
        assert_eq!(Tuning::load(&profile).unwrap().cores, 1);
        std::fs::write(&profile, "[tuning]\ncores = 2\n").unwrap();
        assert_eq!(Tuning::load(&profile).unwrap().cores, 2);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
