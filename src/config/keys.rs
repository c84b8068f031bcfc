//! Front-door API keys (`[auth]`, DESIGN.md §4 `auth.unauthorized`): loaded with the config (so
//! a reload re-reads the file and the environment) and checked in constant time.

use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// `[auth]` of `slotgate.toml` (beside the keys it names; the rest of the schema is in `file.rs`):
/// optional front-door keys.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FrontAuth {
    /// One key per line; re-read on reload.
    pub keys_file: Option<PathBuf>,
    /// Environment variable with one or more comma-separated keys.
    pub keys_env: Option<String>,
    /// Serve a non-loopback front door without keys (refused otherwise).
    #[serde(default)]
    pub allow_unauthenticated: bool,
}

/// The accepted keys. `Debug` never prints them.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct FrontKeys {
    keys: Vec<Box<[u8]>>,
}

impl std::fmt::Debug for FrontKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "FrontKeys({} keys)", self.keys.len())
    }
}

impl FrontKeys {
    /// Reads the keys `auth` names: `keys_file` (one per line; blank lines and `#` comments
    /// skipped; relative to `base_dir`) and `keys_env` (comma-separated). Both may be given.
    /// An empty set is an error: an `[auth]` that accepts nothing is a typo, not a policy.
    pub fn load(auth: &FrontAuth, base_dir: Option<&Path>) -> Result<FrontKeys, (String, String)> {
        let mut keys: Vec<Box<[u8]>> = Vec::new();
        if let Some(f) = &auth.keys_file {
            let p = match base_dir {
                Some(d) if f.is_relative() => d.join(f),
                _ => f.clone(),
            };
            let text = std::fs::read_to_string(&p).map_err(|e| {
                (
                    "auth.keys_file".to_string(),
                    format!("cannot read {}: {e}", p.display()),
                )
            })?;
            keys.extend(
                text.lines()
                    .map(str::trim)
                    .filter(|l| !l.is_empty() && !l.starts_with('#'))
                    .map(|l| l.as_bytes().into()),
            );
        }
        if let Some(var) = &auth.keys_env {
            let v = std::env::var(var).map_err(|_| {
                (
                    "auth.keys_env".to_string(),
                    format!("environment variable {var} is not set"),
                )
            })?;
            keys.extend(
                v.split(',')
                    .map(str::trim)
                    .filter(|k| !k.is_empty())
                    .map(|k| k.as_bytes().into()),
            );
        }
        if keys.is_empty() {
            return Err(("auth".into(), "no front-door keys found".into()));
        }
        Ok(FrontKeys { keys })
    }

    /// A key set from literal keys (tests, embedding).
    pub fn from_keys<I: IntoIterator<Item = S>, S: AsRef<[u8]>>(keys: I) -> FrontKeys {
        FrontKeys {
            keys: keys.into_iter().map(|k| k.as_ref().into()).collect(),
        }
    }

    /// How many keys are accepted.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether no key is accepted.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Whether `presented` is one of the keys. Every key is compared in full, without early
    /// exit, so the time taken does not say which key (or how much of one) matched.
    pub fn accepts(&self, presented: &[u8]) -> bool {
        let mut ok = 0u8;
        for k in &self.keys {
            ok |= u8::from(ct_eq(k, presented));
        }
        ok == 1
    }

    /// Whether the request carries an accepted key in `Authorization: Bearer <k>` or
    /// `X-Api-Key: <k>`.
    pub fn accepts_request(&self, authorization: Option<&[u8]>, x_api_key: Option<&[u8]>) -> bool {
        let bearer = authorization.and_then(|v| {
            let v = v.trim_ascii();
            (v.len() > 7 && v[..7].eq_ignore_ascii_case(b"bearer ")).then(|| v[7..].trim_ascii())
        });
        let a = bearer.is_some_and(|k| self.accepts(k));
        let b = x_api_key.is_some_and(|k| self.accepts(k.trim_ascii()));
        a | b
    }
}

/// Constant-time equality for equal lengths; unequal lengths differ at once (lengths of API
/// keys are not secret enough to matter, and hiding them would need hashing). Used for the
/// front-door keys and the admin token.
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let mut d = 0u8;
    for (x, y) in a.iter().zip(b) {
        d |= x ^ y;
    }
    // Keep the optimiser from turning the loop into an early-exit compare.
    std::hint::black_box(d) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_bearer_and_x_api_key() {
        let k = FrontKeys::from_keys(["alpha", "beta-key"]);
        assert!(k.accepts_request(Some(b"Bearer alpha"), None));
        assert!(k.accepts_request(Some(b"bearer  beta-key "), None));
        assert!(k.accepts_request(None, Some(b"beta-key")));
        assert!(k.accepts_request(Some(b"Bearer wrong"), Some(b"alpha")));
        assert!(!k.accepts_request(Some(b"Basic alpha"), None));
        assert!(!k.accepts_request(Some(b"Bearer alph"), None));
        assert!(!k.accepts_request(Some(b"Bearer alphaa"), None));
        assert!(!k.accepts_request(Some(b"Bearer "), None));
        assert!(!k.accepts_request(None, None));
        assert!(!k.accepts_request(None, Some(b"")));
        assert!(!FrontKeys::default().accepts(b""));
    }

    #[test]
    fn loads_file_and_env() {
        let dir = std::env::temp_dir();
        let f = dir.join(format!("slotgate-keys-{}", std::process::id()));
        std::fs::write(&f, "# comment\n\n one \ntwo\n").unwrap();
        std::env::set_var("SLOTGATE_TEST_KEYS_ENV", "three, four,,");
        let auth = FrontAuth {
            keys_file: Some(f.clone()),
            keys_env: Some("SLOTGATE_TEST_KEYS_ENV".into()),
            allow_unauthenticated: false,
        };
        let k = FrontKeys::load(&auth, None).unwrap();
        assert_eq!(k.len(), 4);
        for key in ["one", "two", "three", "four"] {
            assert!(k.accepts(key.as_bytes()), "{key}");
        }
        assert_eq!(format!("{k:?}"), "FrontKeys(4 keys)");
        std::fs::write(&f, "# nothing\n").unwrap();
        let only_file = FrontAuth {
            keys_file: Some(f.clone()),
            keys_env: None,
            allow_unauthenticated: false,
        };
        assert!(FrontKeys::load(&only_file, None).is_err());
        std::fs::remove_file(&f).unwrap();
        assert_eq!(
            FrontKeys::load(&only_file, None).unwrap_err().0,
            "auth.keys_file"
        );
        let missing = FrontAuth {
            keys_file: None,
            keys_env: Some("SLOTGATE_TEST_KEYS_UNSET_VAR".into()),
            allow_unauthenticated: false,
        };
        assert_eq!(
            FrontKeys::load(&missing, None).unwrap_err().0,
            "auth.keys_env"
        );
    }
}
