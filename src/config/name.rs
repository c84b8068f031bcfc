//! An upstream's name (DESIGN.md §5 `[[upstream]] name`): names are case-insensitive, so
//! [`UpstreamName`] compares, orders and hashes without regard to ASCII case and displays the
//! spelling it was made from. Maps keyed by it replace hand-written `to_ascii_lowercase()` keys.

use std::cmp::Ordering;
use std::fmt;
use std::hash::{Hash, Hasher};

/// An upstream name whose `Eq`, `Ord` and `Hash` ignore ASCII case; `Display` keeps the spelling.
#[derive(Clone)]
pub struct UpstreamName(Box<str>);

impl UpstreamName {
    /// The name as written.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Compares with a plain `&str` as two names would compare (for lookups in a sorted list
    /// without building a name).
    pub fn cmp_str(&self, other: &str) -> Ordering {
        cmp_ci(&self.0, other)
    }

    /// Whether `other` names the same upstream (ASCII case ignored).
    pub fn is(&self, other: &str) -> bool {
        self.0.eq_ignore_ascii_case(other)
    }
}

/// Byte-wise comparison of the ASCII-lowercased strings, without allocating.
fn cmp_ci(a: &str, b: &str) -> Ordering {
    a.bytes()
        .map(|c| c.to_ascii_lowercase())
        .cmp(b.bytes().map(|c| c.to_ascii_lowercase()))
}

impl PartialEq for UpstreamName {
    fn eq(&self, other: &UpstreamName) -> bool {
        self.is(&other.0)
    }
}

impl Eq for UpstreamName {}

impl PartialEq<str> for UpstreamName {
    fn eq(&self, other: &str) -> bool {
        self.is(other)
    }
}

impl PartialEq<&str> for UpstreamName {
    fn eq(&self, other: &&str) -> bool {
        self.is(other)
    }
}

impl PartialOrd for UpstreamName {
    fn partial_cmp(&self, other: &UpstreamName) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for UpstreamName {
    fn cmp(&self, other: &UpstreamName) -> Ordering {
        cmp_ci(&self.0, &other.0)
    }
}

impl Hash for UpstreamName {
    fn hash<H: Hasher>(&self, state: &mut H) {
        // As `str` hashes: the bytes (folded here), then a terminator, so ("ab","c") and
        // ("a","bc") differ in a hashed tuple.
        for b in self.0.bytes() {
            state.write_u8(b.to_ascii_lowercase());
        }
        state.write_u8(0xff);
    }
}

impl fmt::Display for UpstreamName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for UpstreamName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl From<&str> for UpstreamName {
    fn from(s: &str) -> UpstreamName {
        UpstreamName(s.into())
    }
}

impl From<String> for UpstreamName {
    fn from(s: String) -> UpstreamName {
        UpstreamName(s.into_boxed_str())
    }
}

impl From<&String> for UpstreamName {
    fn from(s: &String) -> UpstreamName {
        UpstreamName(s.as_str().into())
    }
}

impl AsRef<str> for UpstreamName {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::hash_map::DefaultHasher;
    use std::collections::{BTreeSet, HashMap};

    fn hash_of(n: &UpstreamName) -> u64 {
        let mut h = DefaultHasher::new();
        n.hash(&mut h);
        h.finish()
    }

    #[test]
    fn equal_and_hashed_alike_across_case() {
        let (a, b) = (
            UpstreamName::from("OpenRouter"),
            UpstreamName::from("openROUTER"),
        );
        assert_eq!(a, b);
        assert_eq!(hash_of(&a), hash_of(&b));
        assert_ne!(a, UpstreamName::from("openrouter2"));
        assert!(a == "OPENROUTER" && a.is("openrouter"));
        let mut m = HashMap::new();
        m.insert(a, 1);
        assert_eq!(m.insert(b, 2), Some(1), "one key for both spellings");
        assert_eq!(m.get(&UpstreamName::from("OPENrouter")), Some(&2));
    }

    #[test]
    fn hash_keeps_the_terminator() {
        let pair = |x: &str, y: &str| {
            let mut h = DefaultHasher::new();
            (UpstreamName::from(x), UpstreamName::from(y)).hash(&mut h);
            h.finish()
        };
        assert_ne!(pair("ab", "c"), pair("a", "bc"));
    }

    #[test]
    fn ordered_as_the_lowercased_names() {
        let set: BTreeSet<UpstreamName> = ["beta", "Alpha", "alpha2", "GAMMA", "_x"]
            .into_iter()
            .map(UpstreamName::from)
            .collect();
        let got: Vec<&str> = set.iter().map(UpstreamName::as_str).collect();
        // Folded bytes decide: '_' (0x5f) sorts before every lower-case letter, where the
        // spelling's order would put "Alpha" and "GAMMA" first.
        assert_eq!(got, ["_x", "Alpha", "alpha2", "beta", "GAMMA"]);
        let n = UpstreamName::from("Beta");
        assert_eq!(n.cmp_str("BETA"), Ordering::Equal);
        assert_eq!(n.cmp_str("alpha"), Ordering::Greater);
        assert_eq!(n.cmp_str("c"), Ordering::Less);
    }

    #[test]
    fn display_keeps_the_spelling() {
        let n = UpstreamName::from("OpenRouter".to_string());
        assert_eq!(n.to_string(), "OpenRouter");
        assert_eq!(format!("{n:?}"), "\"OpenRouter\"");
        assert_eq!(n.as_str(), "OpenRouter");
    }
}
