//! The one writer of Prometheus text exposition (format 0.0.4): `# HELP`/`# TYPE` lines and
//! samples with escaped label values. `GET /metrics` is written by two modules, the admin API
//! (control's gauges) and `metrics::render` (the recorders); both write through this.
//!
//! A leaf: it imports nothing from the crate, so neither of them depends on the other for it.

use std::borrow::Cow;
use std::fmt::{Display, Write};

/// The content type of the exposition.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4";

/// A metric family's type, as written on its `# TYPE` line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A value that only goes up.
    Counter,
    /// A value that goes up and down.
    Gauge,
    /// Cumulative `_bucket{le}`, `_sum` and `_count` series.
    Histogram,
}

impl Kind {
    /// The word on the `# TYPE` line.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        }
    }
}

/// Writes the `# HELP` and `# TYPE` lines that open family `name`.
pub fn header(out: &mut String, name: &str, kind: Kind, help: &str) {
    // Writing to a String cannot fail.
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {}", kind.as_str());
}

/// Writes one sample `name{labels} v`; `labels` is label text without braces (see [`labels`]),
/// empty for none.
pub fn sample(out: &mut String, name: &str, labels: &str, v: impl Display) {
    if labels.is_empty() {
        let _ = writeln!(out, "{name} {v}");
    } else {
        let _ = writeln!(out, "{name}{{{labels}}} {v}");
    }
}

/// Label text `k="v",...` (no braces) for one series, values escaped.
pub fn labels(pairs: &[(&str, &str)]) -> String {
    let mut s = String::new();
    for (i, (k, v)) in pairs.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        let _ = write!(s, "{k}=\"{}\"", escape(v));
    }
    s
}

/// A label value with `\`, `"` and newlines escaped.
pub fn escape(v: &str) -> Cow<'_, str> {
    if v.contains(['\\', '"', '\n']) {
        v.replace('\\', "\\\\")
            .replace('"', "\\\"")
            .replace('\n', "\\n")
            .into()
    } else {
        v.into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn family_with_and_without_labels() {
        let mut out = String::new();
        header(&mut out, "x_total", Kind::Counter, "Things.");
        sample(&mut out, "x_total", "", 3);
        sample(&mut out, "x_total", &labels(&[("a", "b"), ("c", "d")]), 1.5);
        assert_eq!(
            out,
            "# HELP x_total Things.\n# TYPE x_total counter\nx_total 3\nx_total{a=\"b\",c=\"d\"} 1.5\n"
        );
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(labels(&[("u", "a\"b\\c\nd")]), r#"u="a\"b\\c\nd""#);
        assert!(matches!(escape("plain"), Cow::Borrowed("plain")));
    }

    #[test]
    fn kinds_are_the_exposition_words() {
        let words: Vec<_> = [Kind::Counter, Kind::Gauge, Kind::Histogram]
            .iter()
            .map(|k| k.as_str())
            .collect();
        assert_eq!(words, ["counter", "gauge", "histogram"]);
    }
}
