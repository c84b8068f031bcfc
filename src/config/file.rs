//! The TOML schema of `slotgate.toml` (DESIGN.md §5): every key, its default and its meaning.
//!
//! The configuration reference (docs/configuration.md) is checked against these structs by a test, so a key
//! added here without documentation fails CI.

use super::keys::{FrontAuth, FrontKeys};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::PathBuf;

/// The file as parsed, before validation. `tuning` may be a table or a file name.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    #[serde(default)]
    pub listen: Listen,
    #[serde(default)]
    pub routing: Routing,
    #[serde(default, rename = "upstream")]
    pub upstreams: Vec<UpstreamConfig>,
    #[serde(default)]
    pub registry: BTreeMap<String, BindingSpec>,
    #[serde(default)]
    pub auth: Option<FrontAuth>,
    /// Either a `[tuning]` table or `tuning = "tuning/gpu-host.toml"`.
    #[serde(default)]
    pub tuning: Option<toml::Value>,
}

/// A validated configuration: every binding names a known upstream, every URL parsed.
#[derive(Debug, Clone)]
pub struct Config {
    pub listen: Listen,
    pub routing: Routing,
    /// Upstreams in file order (the routing snapshot sorts them by priority).
    pub upstreams: Vec<UpstreamConfig>,
    pub registry: BTreeMap<String, Binding>,
    pub auth: Option<FrontAuth>,
    /// The keys `[auth]` names, read at load (and so at every reload); `None` = no front-door auth.
    pub front_keys: Option<std::sync::Arc<FrontKeys>>,
    pub tuning: Tuning,
    /// The file this came from, for reload.
    pub source: Option<PathBuf>,
    /// The tuning profile in force, when it came from a file.
    pub tuning_source: Option<PathBuf>,
}

/// `[listen]`: the front door and the admin listener.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Listen {
    /// Front-door address.
    pub addr: String,
    /// Admin API and `/metrics` address; loopback by default. Empty string disables it.
    pub admin: String,
    /// Send `X-Slotgate-Route` / `X-Slotgate-Upstream` on responses.
    pub route_headers: bool,
    /// Environment variable holding a bearer token the admin API requires (optional).
    pub admin_token_env: Option<String>,
    /// Allow the admin listener on a non-loopback address.
    pub admin_allow_remote: bool,
    /// PEM certificate chain for TLS on the front door (optional).
    pub tls_cert: Option<PathBuf>,
    /// PEM private key for TLS on the front door (optional).
    pub tls_key: Option<PathBuf>,
}

impl Default for Listen {
    fn default() -> Self {
        Listen {
            addr: "127.0.0.1:8080".into(),
            admin: "127.0.0.1:9090".into(),
            route_headers: true,
            admin_token_env: None,
            admin_allow_remote: false,
            tls_cert: None,
            tls_key: None,
        }
    }
}

/// `[routing]`: names and knobs of the five-step dispatch (DESIGN.md §2).
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Routing {
    /// The default anchor: where a request with no better match goes.
    pub default_slot: String,
    /// Alternative names for local upstreams (`agent-hermes` -> `agent`).
    pub aliases: BTreeMap<String, String>,
    /// Bound on step 3's concurrent `/v1/models` prefetch.
    pub prefetch_timeout_ms: u64,
    /// `Retry-After` seconds on `503 slot.loading` unless the upstream overrides it.
    pub retry_after_s: u32,
    /// Capability name for embeddings.
    pub embed_slot: String,
    /// Capability name for rerank.
    pub rerank_slot: String,
    /// Capability name for text to speech.
    pub tts_slot: String,
    /// Capability name for images.
    pub img_slot: String,
    /// Capability name for `name:tag` models.
    pub npu_slot: String,
    /// Outgoing path rewrites, applied before the upstream's base path is prefixed.
    pub path_rewrites: BTreeMap<String, String>,
    /// Request header that carries a queue priority (`high`, `normal`, `low`).
    pub priority_header: String,
    /// Session affinity inside replica pools: which request parts make the affinity key.
    pub affinity: AffinityMode,
    /// Request header whose value is the affinity key (before the body's `user`).
    pub affinity_header: String,
    /// With `affinity = "prefix"`: how many leading bytes of the body's `messages` are hashed.
    pub affinity_prefix_bytes: usize,
    /// A keyed request stays on its member while that member's load is at most the least-loaded
    /// member's plus this.
    pub affinity_slack: u64,
}

/// What makes a request's affinity key inside a replica pool.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum AffinityMode {
    /// The affinity header, else the body's top-level `user` string.
    #[default]
    Session,
    /// As `session`, and without either a hash of the first `affinity_prefix_bytes` of the
    /// body's `messages` (requests sharing a prompt prefix share a prompt cache).
    Prefix,
    /// No affinity: always the least-loaded member.
    Off,
}

impl Default for Routing {
    fn default() -> Self {
        let mut path_rewrites = BTreeMap::new();
        path_rewrites.insert("/v1/rerankings".to_string(), "/v1/rerank".to_string());
        Routing {
            default_slot: "agent".into(),
            aliases: BTreeMap::new(),
            prefetch_timeout_ms: 8000,
            retry_after_s: 15,
            embed_slot: "embed".into(),
            rerank_slot: "rerank".into(),
            tts_slot: "tts".into(),
            img_slot: "img".into(),
            npu_slot: "npu".into(),
            path_rewrites,
            priority_header: "x-priority".into(),
            affinity: AffinityMode::Session,
            affinity_header: "x-session-id".into(),
            affinity_prefix_bytes: 2048,
            affinity_slack: 4,
        }
    }
}

/// The kind of an upstream (DESIGN.md §1).
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "lowercase")]
pub enum UpstreamKind {
    /// A model server in a container on this host; authoritative for what it advertises.
    Container,
    /// A model server whose lifecycle a control plane owns and pushes.
    Slot,
    /// An external provider.
    Remote,
    /// A synthetic name registry bindings may point at; never forwarded to.
    Composite,
}

impl UpstreamKind {
    /// `container` and `slot` are local.
    pub fn is_local(self) -> bool {
        matches!(self, UpstreamKind::Container | UpstreamKind::Slot)
    }
    /// Priority rank: local first, then remote; composites last (never routed to).
    pub fn rank(self) -> u8 {
        match self {
            UpstreamKind::Container | UpstreamKind::Slot => 0,
            UpstreamKind::Remote => 1,
            UpstreamKind::Composite => 2,
        }
    }
    /// The lowercase name used in the file and the admin API.
    pub fn as_str(self) -> &'static str {
        match self {
            UpstreamKind::Container => "container",
            UpstreamKind::Slot => "slot",
            UpstreamKind::Remote => "remote",
            UpstreamKind::Composite => "composite",
        }
    }
}

/// What to do with a request whose upstream is loading (DESIGN.md §3a).
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum OnLoading {
    /// Answer `503 slot.loading` at once.
    #[default]
    Reject,
    /// Hold the request until ready or `hold_timeout_ms`.
    Hold,
}

/// What to do with the upstream exchange when the client goes away (DESIGN.md §3).
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum OnClientAbort {
    /// Close the upstream connection at once so the model stops generating.
    #[default]
    Cancel,
    /// Let the upstream finish into a discard buffer, then pool the connection.
    Drain,
}

/// How the upstream's own credential is sent.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum AuthStyle {
    /// `Authorization: Bearer <value>`.
    #[default]
    Bearer,
    /// `<header>: <value>`.
    Header,
    /// `x-api-key: <value>` plus `anthropic-version`.
    Anthropic,
    /// Nothing is injected.
    None,
}

/// An upstream's credential: the value comes only from the environment.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct UpstreamAuth {
    #[serde(default)]
    pub style: AuthStyle,
    /// Environment variable holding the secret.
    pub env: Option<String>,
    /// Header name for `style = "header"`.
    pub header: Option<String>,
    /// `anthropic-version` sent with `style = "anthropic"`.
    #[serde(default = "default_anthropic_version")]
    pub anthropic_version: String,
}

fn default_anthropic_version() -> String {
    "2023-06-01".into()
}

/// One `[[upstream]]` table.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct UpstreamConfig {
    /// Unique name (case-insensitive).
    pub name: String,
    pub kind: UpstreamKind,
    /// Base URL ending in `/v1` (none for `composite`).
    #[serde(default)]
    pub url: Option<String>,
    /// Absolute health path on the upstream's host.
    #[serde(default = "d_health_path")]
    pub health_path: String,
    /// Whether `health_path` is probed (remote upstreams are probed only when set explicitly).
    #[serde(default)]
    pub probe: Option<bool>,
    /// Probe period while healthy.
    #[serde(default = "d_1000")]
    pub probe_interval_ms: u64,
    /// Probe request timeout.
    #[serde(default = "d_2000")]
    pub probe_timeout_ms: u64,
    /// Probe periods while failing, used in turn (with ±10% jitter), the last repeating.
    #[serde(default = "d_backoff")]
    pub probe_backoff_ms: Vec<u64>,
    /// `/v1/models` refresh period.
    #[serde(default = "d_10000")]
    pub models_refresh_ms: u64,
    /// Static model list; when non-empty `/v1/models` is not fetched.
    #[serde(default)]
    pub models: Vec<String>,
    /// List this upstream's models on the front door's `/v1/models`.
    #[serde(default = "d_true")]
    pub advertise_models: bool,
    #[serde(default)]
    pub auth: Option<UpstreamAuth>,
    /// Forward the client's `Authorization` / `X-Api-Key`.
    #[serde(default)]
    pub forward_client_auth: bool,
    /// Send the request's `X-Request-Id` to this upstream (it still goes back to the client and
    /// into the logs when off).
    #[serde(default = "d_true")]
    pub send_request_id: bool,
    /// TCP connect timeout.
    #[serde(default = "d_3000")]
    pub connect_ms: u64,
    /// Time allowed until the response head.
    #[serde(default = "d_120000")]
    pub first_byte_ms: u64,
    /// Longest gap between response body bytes.
    #[serde(default = "d_60000")]
    pub idle_ms: u64,
    /// Whole exchange limit; 0 = none.
    #[serde(default)]
    pub total_ms: u64,
    #[serde(default)]
    pub on_client_abort: OnClientAbort,
    #[serde(default)]
    pub on_loading: OnLoading,
    /// How long `on_loading = "hold"` waits.
    #[serde(default = "d_60000")]
    pub hold_timeout_ms: u64,
    /// URL slotgate POSTs to when a request finds the upstream offline.
    #[serde(default)]
    pub wake_url: Option<String>,
    /// Extra CA bundle (PEM) trusted for an `https://` `wake_url`, beside the bundled roots.
    #[serde(default)]
    pub wake_ca_file: Option<PathBuf>,
    /// Concurrent requests allowed across all workers; 0 = unlimited.
    #[serde(default)]
    pub max_inflight: u32,
    /// Requests allowed to wait for a concurrency slot.
    #[serde(default = "d_128")]
    pub max_queue: u32,
    /// Longest wait in that queue.
    #[serde(default = "d_30000")]
    pub queue_timeout_ms: u64,
    /// `Retry-After` for this upstream; defaults to `[routing] retry_after_s`.
    #[serde(default)]
    pub retry_after_s: Option<u32>,
    /// Idle pooled connections kept per worker.
    #[serde(default = "d_32")]
    pub pool_max_idle: u32,
    /// Idle pooled connections older than this are closed.
    #[serde(default = "d_60000")]
    pub pool_idle_timeout_ms: u64,
    /// Extra CA bundle (PEM) for an `https://` upstream.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// Skip certificate verification (logged loudly).
    #[serde(default)]
    pub insecure_skip_verify: bool,
    /// Parsed `url`, filled by validation.
    /// Upstreams tried in order when this one would answer `503 slot.loading` or
    /// `429 dispatch.busy`, or fails before its first response byte.
    #[serde(default)]
    pub fallback: Vec<String>,
    /// The model id sent to a fallback (a registry binding's own `fallback_model` wins).
    #[serde(default)]
    pub fallback_model: Option<String>,
    /// Consecutive connect failures or 5xx-before-first-byte that start a cooldown; 0 = never.
    #[serde(default = "d_3")]
    pub cooldown_after: u32,
    /// How long a cooling upstream is skipped (an upstream's `Retry-After` counts too).
    #[serde(default = "d_10000")]
    pub cooldown_ms: u64,
    /// Fallbacks and retries away from this upstream may be at most this share of its requests
    /// (per 10 s) ...
    #[serde(default = "d_20")]
    pub retry_budget_percent: u32,
    /// ... or this many per 10 s, whichever is more.
    #[serde(default = "d_3")]
    pub retry_budget_min: u32,
    #[serde(skip)]
    pub parsed_url: Option<UpstreamUrl>,
}

fn d_health_path() -> String {
    "/health".into()
}
fn d_true() -> bool {
    true
}
fn d_3() -> u32 {
    3
}
fn d_20() -> u32 {
    20
}
fn d_32() -> u32 {
    32
}
fn d_128() -> u32 {
    128
}
fn d_1000() -> u64 {
    1000
}
fn d_2000() -> u64 {
    2000
}
fn d_3000() -> u64 {
    3000
}
fn d_10000() -> u64 {
    10000
}
fn d_30000() -> u64 {
    30000
}
fn d_60000() -> u64 {
    60000
}
fn d_120000() -> u64 {
    120000
}
fn d_backoff() -> Vec<u64> {
    vec![500, 1000, 2000, 5000, 10000]
}

impl UpstreamConfig {
    /// A config with every default, for tests and the demo.
    pub fn new(name: &str, kind: UpstreamKind, url: Option<&str>) -> UpstreamConfig {
        let mut t = toml::map::Map::new();
        t.insert("name".into(), toml::Value::String(name.into()));
        t.insert("kind".into(), toml::Value::String(kind.as_str().into()));
        if let Some(u) = url {
            t.insert("url".into(), toml::Value::String(u.into()));
        }
        let mut c: UpstreamConfig = toml::Value::Table(t).try_into().expect("defaults parse");
        c.parsed_url = url.and_then(|u| UpstreamUrl::parse(u).ok());
        c
    }

    /// `Retry-After` seconds for this upstream.
    pub fn retry_after(&self, routing: &Routing) -> u32 {
        self.retry_after_s.unwrap_or(routing.retry_after_s)
    }

    /// Whether the health probe runs for this upstream.
    pub fn probed(&self) -> bool {
        match self.kind {
            UpstreamKind::Composite => false,
            UpstreamKind::Remote => self.probe.unwrap_or(false),
            _ => self.probe.unwrap_or(true),
        }
    }
}

/// URL scheme of an upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scheme {
    Http,
    Https,
}

/// A parsed upstream base URL: `scheme://host[:port]/base/path`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct UpstreamUrl {
    pub scheme: Scheme,
    /// Host name or IP literal (no brackets).
    pub host: String,
    pub port: u16,
    /// Path prefix without a trailing slash, e.g. `/v1` or `/api/v1`.
    pub base_path: String,
    /// The `Host` header value to send.
    pub authority: String,
}

impl UpstreamUrl {
    /// Parses `http://127.0.0.1:8102/v1` style URLs. No userinfo, query or fragment.
    pub fn parse(s: &str) -> Result<UpstreamUrl, String> {
        let (scheme, rest) = if let Some(r) = s.strip_prefix("http://") {
            (Scheme::Http, r)
        } else if let Some(r) = s.strip_prefix("https://") {
            (Scheme::Https, r)
        } else {
            return Err(format!("'{s}' is not an http:// or https:// URL"));
        };
        let (auth, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        };
        if auth.is_empty() {
            return Err(format!("'{s}' has no host"));
        }
        if auth.contains('@') || path.contains('?') || path.contains('#') {
            return Err(format!(
                "'{s}': userinfo, query and fragment are not allowed"
            ));
        }
        let default_port = if scheme == Scheme::Http { 80 } else { 443 };
        let (host, port) = if let Some(r) = auth.strip_prefix('[') {
            let end = r.find(']').ok_or_else(|| format!("'{s}': unclosed '['"))?;
            let host = &r[..end];
            let after = &r[end + 1..];
            let port = match after.strip_prefix(':') {
                Some(p) => p.parse().map_err(|_| format!("'{s}': bad port"))?,
                None if after.is_empty() => default_port,
                None => return Err(format!("'{s}': junk after ']'")),
            };
            (host.to_string(), port)
        } else {
            match auth.rsplit_once(':') {
                Some((h, p)) => (
                    h.to_string(),
                    p.parse().map_err(|_| format!("'{s}': bad port '{p}'"))?,
                ),
                None => (auth.to_string(), default_port),
            }
        };
        if host.is_empty()
            || !host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-._:".contains(&b))
        {
            return Err(format!("'{s}': bad host '{host}'"));
        }
        let base_path = path.trim_end_matches('/').to_string();
        let bracketed = if host.contains(':') {
            format!("[{host}]")
        } else {
            host.clone()
        };
        Ok(UpstreamUrl {
            scheme,
            authority: if port == default_port {
                bracketed
            } else {
                format!("{bracketed}:{port}")
            },
            host,
            port,
            base_path,
        })
    }

    /// The socket address when the host is an IP literal or `localhost` (no DNS needed).
    pub fn literal_addr(&self) -> Option<std::net::SocketAddr> {
        if self.host.eq_ignore_ascii_case("localhost") {
            return Some(std::net::SocketAddr::from(([127, 0, 0, 1], self.port)));
        }
        self.host
            .parse::<std::net::IpAddr>()
            .ok()
            .map(|ip| std::net::SocketAddr::new(ip, self.port))
    }
}

/// A registry entry as written: `"id" = "upstream"` or `{ upstream | upstreams, upstream_model,
/// fallback_model }`.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(untagged)]
pub enum BindingSpec {
    Name(String),
    Full(BindingTable),
}

/// The table form of a registry entry.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct BindingTable {
    /// The upstream that serves the id.
    #[serde(default)]
    pub upstream: Option<String>,
    /// A replica pool serving the id (instead of `upstream`).
    #[serde(default)]
    pub upstreams: Vec<String>,
    /// The id forwarded instead of the requested one.
    #[serde(default)]
    pub upstream_model: Option<String>,
    /// The id sent to a fallback upstream.
    #[serde(default)]
    pub fallback_model: Option<String>,
}

/// A validated registry binding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Binding {
    /// The upstreams that serve the id: one, or a replica pool (never empty).
    pub upstreams: Vec<String>,
    /// The id forwarded instead of the requested one.
    pub upstream_model: Option<String>,
    /// The id sent to a fallback upstream (beats the upstream's own `fallback_model`).
    pub fallback_model: Option<String>,
}

impl Binding {
    /// The first bound upstream (the only one unless the binding is a pool).
    pub fn upstream(&self) -> &str {
        self.upstreams.first().map_or("", String::as_str)
    }
}

/// IO driver choice.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum DriverChoice {
    /// io_uring when the kernel allows, else epoll.
    #[default]
    Auto,
    IoUring,
    Epoll,
}

/// An io_uring setup flag of the workers' rings (`[tuning] uring_flags`). Unknown names are
/// refused when the file is read.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum UringFlag {
    /// `IORING_SETUP_COOP_TASKRUN`: completions are handed over at the thread's next ring entry
    /// instead of by an interrupt (5.19+).
    CoopTaskrun,
    /// `IORING_SETUP_SINGLE_ISSUER`: only the worker thread submits, so the kernel skips
    /// submission locking (6.0+).
    SingleIssuer,
    /// `IORING_SETUP_DEFER_TASKRUN`: completion work runs only when the worker waits on the ring,
    /// in one batch (6.1+; needs `single_issuer`).
    DeferTaskrun,
    /// `IORING_SETUP_SQPOLL`: a kernel thread polls the submission queue, spinning
    /// `uring_sqpoll_idle_ms` before it sleeps (excludes `coop_taskrun` and `defer_taskrun`).
    Sqpoll,
}

impl UringFlag {
    /// The name as written in the file.
    pub fn as_str(self) -> &'static str {
        match self {
            UringFlag::CoopTaskrun => "coop_taskrun",
            UringFlag::SingleIssuer => "single_issuer",
            UringFlag::DeferTaskrun => "defer_taskrun",
            UringFlag::Sqpoll => "sqpoll",
        }
    }
}

/// `[tuning]`: per-host performance and limit knobs.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Tuning {
    /// Worker threads (one per core, pinned); 0 = every available core.
    pub cores: usize,
    pub driver: DriverChoice,
    /// io_uring submission queue entries per worker.
    pub ring_entries: u32,
    /// io_uring setup flags of each worker's ring (io_uring driver only).
    pub uring_flags: Vec<UringFlag>,
    /// With `sqpoll`: how long the kernel polling thread spins idle before it sleeps, ms.
    pub uring_sqpoll_idle_ms: u32,
    /// Per-connection read buffer, also the relay buffer per stream.
    pub read_buffer_bytes: usize,
    /// Request head limit -> 431.
    pub max_header_bytes: usize,
    /// Header count limit -> 431.
    pub max_headers: usize,
    /// Request-target length limit -> 414.
    pub max_uri_bytes: usize,
    /// Request body limit -> 413.
    pub max_body_bytes: usize,
    /// Time to receive a whole request head -> 408.
    pub header_timeout_ms: u64,
    /// Longest gap while receiving a request body -> 408.
    pub body_timeout_ms: u64,
    /// Idle keep-alive connections are closed after this.
    pub keepalive_timeout_ms: u64,
    /// Open client connections per worker; beyond it new ones get `503 server.overloaded`.
    pub max_connections: usize,
    /// How long SIGTERM waits for in-flight requests.
    pub drain_timeout_ms: u64,
    /// Listen backlog.
    pub backlog: u32,
    /// TCP_NODELAY on client and upstream sockets.
    pub tcp_nodelay: bool,
}

impl Default for Tuning {
    fn default() -> Self {
        Tuning {
            cores: 0,
            driver: DriverChoice::Auto,
            ring_entries: 1024,
            uring_flags: vec![UringFlag::CoopTaskrun],
            uring_sqpoll_idle_ms: 10,
            read_buffer_bytes: 16384,
            max_header_bytes: 32768,
            max_headers: 100,
            max_uri_bytes: 8192,
            max_body_bytes: 64 * 1024 * 1024,
            header_timeout_ms: 10000,
            body_timeout_ms: 30000,
            keepalive_timeout_ms: 75000,
            max_connections: 10000,
            drain_timeout_ms: 30000,
            backlog: 1024,
            tcp_nodelay: true,
        }
    }
}
