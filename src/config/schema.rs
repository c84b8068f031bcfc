//! The shape of `slotgate.toml` (DESIGN.md §5): the file is read into a TOML tree and walked
//! table by table before serde sees it, so one run names every unknown key (with a "did you mean"
//! for a typo) and every wrongly typed value, each by its key path, beside the semantic problems
//! of `validate`.
//!
//! The keys a table accepts are read from its serde derive ([`fields`]), so the structs of
//! `file.rs` stay the one schema; they keep `deny_unknown_fields` for anything deserialized
//! without this walk.

use super::file::*;
use super::keys::FrontAuth;
use super::validate::Problem;
use super::ConfigError;
use serde::de::DeserializeOwned;
use std::fmt;
use toml::{Table, Value};

/// Appended to a wrongly typed value's message: the semantic checks need the whole file typed.
const STOPPED: &str = "(the remaining checks run once every value has the right type)";

/// Reads config text: the parsed file and its unknown-key problems (the unknown keys are left
/// out of the file), or every shape problem when a value has the wrong type. A syntax error
/// stops at once.
pub(super) fn config_file(text: &str) -> Result<(ConfigFile, Vec<Problem>), ConfigError> {
    let mut doc: Table = text.parse().map_err(ConfigError::from_toml)?;
    let mut w = Walk::default();
    w.config_file(&mut doc);
    w.finish(doc)
}

/// Reads a tuning profile: a bare table of tuning keys or a file with a `[tuning]` table. Keys
/// are named `tuning.<key>` either way.
pub(super) fn tuning_profile(text: &str) -> Result<(Tuning, Vec<Problem>), ConfigError> {
    let mut doc: Table = text.parse().map_err(ConfigError::from_toml)?;
    let mut v = match doc.remove("tuning") {
        Some(t @ Value::Table(_)) if doc.is_empty() => t,
        Some(other) => {
            doc.insert("tuning".into(), other);
            Value::Table(doc)
        }
        None => Value::Table(doc),
    };
    let mut w = Walk::default();
    w.node::<Tuning>("tuning", &mut v);
    w.finish(v)
}

/// The problems found so far; `typed` turns false at the first value of the wrong type.
struct Walk {
    problems: Vec<Problem>,
    typed: bool,
}

impl Default for Walk {
    fn default() -> Self {
        Walk {
            problems: Vec::new(),
            typed: true,
        }
    }
}

impl Walk {
    /// The whole file, in the order of DESIGN.md §5's sketch.
    fn config_file(&mut self, doc: &mut Table) {
        self.unknown_keys("", doc, fields::<ConfigFile>());
        if let Some(v) = doc.get_mut("listen") {
            self.node::<Listen>("listen", v);
        }
        if let Some(v) = doc.get_mut("routing") {
            self.node::<Routing>("routing", v);
        }
        match doc.get_mut("upstream") {
            Some(Value::Array(items)) => {
                for (i, u) in items.iter_mut().enumerate() {
                    let path = format!("upstream[{i}]");
                    // Its values are typed with the upstream's, so only the keys here.
                    if let Some(Value::Table(a)) = u.get_mut("auth") {
                        self.unknown_keys(&format!("{path}.auth"), a, fields::<UpstreamAuth>());
                    }
                    self.node::<UpstreamConfig>(&path, u);
                }
            }
            Some(v) => self.typed_as::<Vec<UpstreamConfig>>("upstream", v),
            None => {}
        }
        match doc.get_mut("registry") {
            Some(Value::Table(t)) => {
                for (id, b) in t.iter_mut() {
                    let path = format!("registry.\"{id}\"");
                    match b {
                        Value::String(_) => {}
                        Value::Table(_) => self.node::<BindingTable>(&path, b),
                        _ => self.wrong_type(
                            path,
                            "must be an upstream name or { upstream = \"...\", upstream_model = \"...\" }",
                        ),
                    }
                }
            }
            Some(v) => self.typed_as::<Registry>("registry", v),
            None => {}
        }
        if let Some(v) = doc.get_mut("auth") {
            self.node::<FrontAuth>("auth", v);
        }
        // `tuning` is a table or a profile file name; a file is read after this walk.
        if let Some(v @ Value::Table(_)) = doc.get_mut("tuning") {
            self.node::<Tuning>("tuning", v);
        }
    }

    /// A table of type `T` at `path`: its unknown keys, then its values' types. Tables inside it
    /// are walked by the caller first.
    fn node<T: DeserializeOwned>(&mut self, path: &str, v: &mut Value) {
        if let Value::Table(t) = v {
            self.unknown_keys(path, t, fields::<T>());
        }
        self.typed_as::<T>(path, v);
    }

    /// Names and removes the keys of `table` that are not in `known`.
    fn unknown_keys(&mut self, path: &str, table: &mut Table, known: &[&str]) {
        let unknown: Vec<String> = table
            .keys()
            .filter(|k| !known.contains(&k.as_str()))
            .cloned()
            .collect();
        for key in unknown {
            table.remove(&key);
            let message = match nearest(&key, known) {
                Some(near) => format!("unknown field `{key}`; did you mean `{near}`?"),
                None => format!("unknown field `{key}`; expected one of {}", Listing(known)),
            };
            self.problems.push(Problem {
                key: join(path, &key),
                message,
            });
        }
    }

    /// Whether `v` deserializes as `T`; if not, the problem names the innermost key serde gives.
    fn typed_as<T: DeserializeOwned>(&mut self, path: &str, v: &Value) {
        if let Err(e) = v.clone().try_into::<T>() {
            let key = match inner_key(&e) {
                Some(inner) => inner.split('.').fold(path.to_string(), |p, k| join(&p, k)),
                None => path.to_string(),
            };
            self.wrong_type(key, e.message().trim());
        }
    }

    fn wrong_type(&mut self, key: String, message: &str) {
        self.typed = false;
        self.problems.push(Problem {
            key,
            message: format!("{message} {STOPPED}"),
        });
    }

    /// The typed value and the unknown-key problems, or every problem when a type was wrong.
    fn finish<T: DeserializeOwned>(
        self,
        doc: impl Into<Value>,
    ) -> Result<(T, Vec<Problem>), ConfigError> {
        if !self.typed {
            return Err(ConfigError {
                problems: self.problems,
            });
        }
        match doc.into().try_into::<T>() {
            Ok(t) => Ok((t, self.problems)),
            // Every table was typed on its own above; this is a shape the walk does not know.
            Err(e) => {
                let mut problems = self.problems;
                problems.push(Problem {
                    key: inner_key(&e).unwrap_or_else(|| "toml".into()),
                    message: format!("{} {STOPPED}", e.message().trim()),
                });
                Err(ConfigError { problems })
            }
        }
    }
}

/// `[registry]` as serde reads it, for a `registry` that is not a table.
type Registry = std::collections::BTreeMap<String, BindingSpec>;

/// `path.key`, the key quoted when it is not a bare TOML key.
fn join(path: &str, key: &str) -> String {
    let bare = !key.is_empty()
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    let key = if bare {
        key.to_string()
    } else {
        format!("{key:?}")
    };
    if path.is_empty() {
        key
    } else {
        format!("{path}.{key}")
    }
}

/// The dotted keys toml's value deserializer records while an error unwinds (its `Display` ends
/// with "in `a.b`"; there is no accessor).
fn inner_key(e: &toml::de::Error) -> Option<String> {
    e.to_string().lines().rev().find_map(|l| {
        l.strip_prefix("in `")?
            .strip_suffix('`')
            .map(str::to_string)
    })
}

/// The known key a typo most likely meant: the closest within a distance that grows with the
/// key's length (1 up to 4 characters, 2 up to 8, then 3).
fn nearest<'a>(key: &str, known: &[&'a str]) -> Option<&'a str> {
    let limit = match key.chars().count() {
        0..=4 => 1,
        5..=8 => 2,
        _ => 3,
    };
    let key = key.to_ascii_lowercase();
    known
        .iter()
        .map(|k| (edit_distance(&key, k), *k))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k)
}

/// Optimal-string-alignment distance: insertions, deletions, substitutions and adjacent swaps.
fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    // d[i][j]: distance between a[..i] and b[..j].
    let mut d = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in d[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut best = (d[i - 1][j] + 1)
                .min(d[i][j - 1] + 1)
                .min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                best = best.min(d[i - 2][j - 2] + 1);
            }
            d[i][j] = best;
        }
    }
    d[a.len()][b.len()]
}

/// "`a`, `b`, `c`".
struct Listing<'a>(&'a [&'a str]);

impl fmt::Display for Listing<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, k) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "`{k}`")?;
        }
        Ok(())
    }
}

/// The keys a struct accepts, as its serde derive passes them to `deserialize_struct`.
pub(super) fn fields<T: DeserializeOwned>() -> &'static [&'static str] {
    let mut fields: &'static [&'static str] = &[];
    let _ = T::deserialize(FieldNames(&mut fields));
    fields
}

/// A deserializer that records the field list of the struct asked of it and then fails.
struct FieldNames<'a>(&'a mut &'static [&'static str]);

/// The only error [`FieldNames`] returns.
#[derive(Debug)]
struct Recorded;

impl fmt::Display for Recorded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("field names recorded")
    }
}

impl std::error::Error for Recorded {}

impl serde::de::Error for Recorded {
    fn custom<T: fmt::Display>(_: T) -> Self {
        Recorded
    }
}

impl<'de> serde::Deserializer<'de> for FieldNames<'_> {
    type Error = Recorded;

    fn deserialize_any<V: serde::de::Visitor<'de>>(self, _: V) -> Result<V::Value, Recorded> {
        Err(Recorded)
    }

    fn deserialize_struct<V: serde::de::Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        _: V,
    ) -> Result<V::Value, Recorded> {
        *self.0 = fields;
        Err(Recorded)
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        option unit unit_struct newtype_struct seq tuple tuple_struct map enum identifier
        ignored_any
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_names_come_from_the_derives() {
        assert_eq!(
            fields::<ConfigFile>(),
            ["listen", "routing", "upstream", "registry", "auth", "tuning"]
        );
        assert_eq!(
            fields::<BindingTable>(),
            ["upstream", "upstreams", "upstream_model", "fallback_model"]
        );
        assert!(fields::<UpstreamConfig>().contains(&"max_inflight"));
        assert!(!fields::<UpstreamConfig>().contains(&"parsed_url"));
    }

    #[test]
    fn typos_are_matched_and_strangers_are_not() {
        let up = fields::<UpstreamConfig>();
        assert_eq!(nearest("max_inflght", up), Some("max_inflight"));
        assert_eq!(nearest("helath_path", up), Some("health_path"));
        assert_eq!(nearest("URL", up), Some("url"));
        assert_eq!(nearest("bogus_key", up), None);
        assert_eq!(nearest("adr", fields::<Listen>()), Some("addr"));
        assert_eq!(edit_distance("ab", "ba"), 1);
        assert_eq!(edit_distance("", "abc"), 3);
    }

    #[test]
    fn odd_keys_are_quoted_in_paths() {
        assert_eq!(join("", "x"), "x");
        assert_eq!(join("upstream[1]", "a b"), "upstream[1].\"a b\"");
        assert_eq!(join("listen", "a.b"), "listen.\"a.b\"");
    }
}
