//! An upstream as the control plane sees it (DESIGN.md §1): its lookup key, its identity across
//! reloads (§6 `POST /admin/reload`), whether its model list is fetched (§2 step 3), and its own
//! credential (§3 "Headers").

use crate::config::{AuthStyle, Config, UpstreamConfig, UpstreamKind, UpstreamName};

/// Identity of an upstream across reloads: same name (the map key), kind and URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Ident {
    kind: UpstreamKind,
    url: Option<String>,
}

impl Ident {
    /// The identity of `u`.
    pub(crate) fn of(u: &UpstreamConfig) -> Ident {
        Ident {
            kind: u.kind,
            url: u.url.clone(),
        }
    }
}

/// `name`'s config (names are case-insensitive).
pub(crate) fn upstream_cfg<'c>(
    config: &'c Config,
    name: &UpstreamName,
) -> Option<&'c UpstreamConfig> {
    config.upstreams.iter().find(|u| name.is(&u.name))
}

/// Whether `/v1/models` is fetched for this upstream (not composite, no static list, has a URL).
pub(crate) fn fetchable(u: &UpstreamConfig) -> bool {
    u.kind != UpstreamKind::Composite && u.models.is_empty() && u.parsed_url.is_some()
}

/// The upstream's own credential as request headers (value from the environment only).
pub(crate) fn auth_headers(u: &UpstreamConfig) -> Vec<(String, String)> {
    let Some(a) = &u.auth else { return Vec::new() };
    let Some(val) = a.env.as_deref().and_then(|e| std::env::var(e).ok()) else {
        return Vec::new();
    };
    match a.style {
        AuthStyle::Bearer => vec![("authorization".into(), format!("Bearer {val}"))],
        AuthStyle::Header => vec![(a.header.clone().unwrap_or_default(), val)],
        AuthStyle::Anthropic => vec![
            ("x-api-key".into(), val),
            ("anthropic-version".into(), a.anthropic_version.clone()),
        ],
        AuthStyle::None => Vec::new(),
    }
}
