//! Validation of a parsed config: every problem is collected with the key it concerns. The TLS
//! files a config names (`ca_file`, `wake_ca_file`, `[listen] tls_cert`/`tls_key`) are read here
//! with the loaders of `crate::tls`, so `check`, start and reload refuse what a handshake would.

use super::file::*;
use super::name::UpstreamName;
use std::collections::{BTreeMap, HashSet};
use std::fmt;

/// An RFC 9110 `tchar`: what a header name is made of.
fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// The `fallback` chain of upstream `u` (at `key`): known, forwardable, not itself, no repeats.
fn fallback_problems(
    c: &mut Collector,
    key: &str,
    u: &UpstreamConfig,
    names: &BTreeMap<UpstreamName, UpstreamKind>,
) {
    let mut seen = HashSet::new();
    for f in &u.fallback {
        let lf = UpstreamName::from(f);
        match names.get(&lf) {
            None => c.push(format!("{key}.fallback"), format!("unknown upstream '{f}'")),
            Some(UpstreamKind::Composite) => c.push(
                format!("{key}.fallback"),
                format!("'{f}' is a composite, never forwarded to"),
            ),
            Some(_) if lf.is(&u.name) => c.push(
                format!("{key}.fallback"),
                "an upstream cannot fall back to itself",
            ),
            Some(_) => {}
        }
        if !seen.insert(lf) {
            c.push(format!("{key}.fallback"), format!("'{f}' is listed twice"));
        }
    }
    if u.fallback_model
        .as_deref()
        .is_some_and(|m| m.trim().is_empty())
    {
        c.push(format!("{key}.fallback_model"), "must not be empty");
    }
    if u.retry_budget_percent > 100 {
        c.push(format!("{key}.retry_budget_percent"), "must be 0..=100");
    }
}

/// One problem in a config file, keyed by its TOML path (`upstream[2].url`, `registry."x"`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Problem {
    pub key: String,
    pub message: String,
}

/// A refused config: every problem found. The file's shape comes first (unknown keys and
/// wrongly typed values, table by table in the order of DESIGN.md §5's sketch), then the
/// semantic problems in file order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub problems: Vec<Problem>,
}

impl ConfigError {
    /// An error with one problem.
    pub fn single(key: impl Into<String>, message: impl Into<String>) -> ConfigError {
        ConfigError {
            problems: vec![Problem {
                key: key.into(),
                message: message.into(),
            }],
        }
    }

    /// "1 problem" or "5 problems", for the first line of a refusal.
    pub fn count(&self) -> String {
        match self.problems.len() {
            1 => "1 problem".to_string(),
            n => format!("{n} problems"),
        }
    }

    /// A TOML syntax error, keyed by its byte span: nothing else can be checked.
    pub fn from_toml(e: toml::de::Error) -> ConfigError {
        let msg = format!(
            "{} (a TOML syntax error: nothing else was checked)",
            e.message().trim()
        );
        let key = match e.span() {
            Some(span) => format!("toml@{}..{}", span.start, span.end),
            None => "toml".to_string(),
        };
        ConfigError::single(key, msg)
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.problems.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{}: {}", p.key, p.message)?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

struct Collector(Vec<Problem>);

impl Collector {
    fn push(&mut self, key: impl Into<String>, message: impl Into<String>) {
        self.0.push(Problem {
            key: key.into(),
            message: message.into(),
        });
    }
}

fn check_addr(c: &mut Collector, key: &str, addr: &str) {
    if addr.parse::<std::net::SocketAddr>().is_err() {
        c.push(key, format!("'{addr}' is not an ip:port socket address"));
    }
}

/// A CA bundle is usable when the TLS client config that would use it builds: the data plane's
/// own loader (`tls::client_config`), so validation and the first handshake apply one rule. It is
/// read even beside `insecure_skip_verify` or an `http://` URL: a set key must not be broken.
fn check_ca_file(path: &std::path::Path) -> Result<(), String> {
    crate::tls::client_config(Some(path), false).map(drop)
}

/// Checks the tuning keys' ranges.
pub fn validate_tuning(t: &Tuning) -> Result<(), ConfigError> {
    let mut c = Collector(Vec::new());
    tuning_problems(&mut c, t);
    if c.0.is_empty() {
        Ok(())
    } else {
        Err(ConfigError { problems: c.0 })
    }
}

fn tuning_problems(c: &mut Collector, t: &Tuning) {
    if t.read_buffer_bytes < 1024 {
        c.push("tuning.read_buffer_bytes", "must be at least 1024");
    }
    if t.max_header_bytes < 1024 {
        c.push("tuning.max_header_bytes", "must be at least 1024");
    }
    if t.max_headers == 0 || t.max_headers > 1024 {
        c.push("tuning.max_headers", "must be between 1 and 1024");
    }
    if t.max_uri_bytes < 64 || t.max_uri_bytes > t.max_header_bytes {
        c.push(
            "tuning.max_uri_bytes",
            "must be at least 64 and at most max_header_bytes",
        );
    }
    if t.ring_entries < 256 {
        c.push("tuning.ring_entries", "must be at least 256");
    }
    if let Some(why) = uring_flags_problem(&t.uring_flags) {
        c.push("tuning.uring_flags", why);
    }
    if t.uring_sqpoll_idle_ms == 0 || t.uring_sqpoll_idle_ms > 10_000 {
        c.push("tuning.uring_sqpoll_idle_ms", "must be between 1 and 10000");
    }
    if t.max_connections == 0 {
        c.push("tuning.max_connections", "must be at least 1");
    }
}

/// Why the kernel would refuse this set of io_uring setup flags (io_uring_setup(2)), if it would.
fn uring_flags_problem(flags: &[UringFlag]) -> Option<&'static str> {
    let has = |f| flags.contains(&f);
    let mut seen = Vec::with_capacity(flags.len());
    for f in flags {
        if seen.contains(f) {
            return Some("lists a flag twice");
        }
        seen.push(*f);
    }
    if has(UringFlag::DeferTaskrun) && !has(UringFlag::SingleIssuer) {
        return Some("\"defer_taskrun\" needs \"single_issuer\"");
    }
    if has(UringFlag::Sqpoll) && (has(UringFlag::CoopTaskrun) || has(UringFlag::DeferTaskrun)) {
        return Some("\"sqpoll\" excludes \"coop_taskrun\" and \"defer_taskrun\"");
    }
    None
}

/// Validates a parsed file with its resolved tuning; on success the [`Config`] is usable.
/// Whether a listen address is reachable beyond this host (not `127.0.0.0/8` or `::1`). An
/// address that does not parse is reported by `check_addr` instead.
fn is_exposed_addr(addr: &str) -> bool {
    addr.parse::<std::net::SocketAddr>()
        .is_ok_and(|a| !a.ip().is_loopback())
}

pub fn validate(raw: ConfigFile, tuning: Tuning) -> Result<Config, ConfigError> {
    let mut c = Collector(Vec::new());
    check_addr(&mut c, "listen.addr", &raw.listen.addr);
    if !raw.listen.admin.is_empty() {
        check_addr(&mut c, "listen.admin", &raw.listen.admin);
        if let Ok(a) = raw.listen.admin.parse::<std::net::SocketAddr>() {
            if !a.ip().is_loopback() && !raw.listen.admin_allow_remote {
                c.push(
                    "listen.admin",
                    "the admin listener must be on loopback unless admin_allow_remote = true",
                );
            }
        }
    }
    match (&raw.listen.tls_cert, &raw.listen.tls_key) {
        (Some(cert), Some(key)) => {
            // The front door's own loader, so `check` refuses exactly what `serve` would.
            if let Err((k, m)) = crate::tls::server_config(cert, key) {
                c.push(k, m);
            }
        }
        (None, None) => {}
        _ => c.push("listen.tls_cert", "tls_cert and tls_key go together"),
    }
    tuning_problems(&mut c, &tuning);

    let mut upstreams = raw.upstreams;
    let mut names: BTreeMap<UpstreamName, UpstreamKind> = BTreeMap::new();
    for (i, u) in upstreams.iter_mut().enumerate() {
        let key = format!("upstream[{i}]");
        let lname = UpstreamName::from(&u.name);
        if u.name.trim().is_empty()
            || !u
                .name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        {
            c.push(
                format!("{key}.name"),
                format!(
                    "'{}' must be non-empty ASCII letters, digits, '-', '_' or '.'",
                    u.name
                ),
            );
        }
        if names.insert(lname, u.kind).is_some() {
            c.push(
                format!("{key}.name"),
                format!("duplicate upstream name '{}'", u.name),
            );
        }
        match (u.kind, &u.url) {
            (UpstreamKind::Composite, Some(_)) => c.push(
                format!("{key}.url"),
                "a composite upstream is never forwarded to and takes no url",
            ),
            (UpstreamKind::Composite, None) => {}
            (_, None) => c.push(format!("{key}.url"), "required for this kind"),
            (_, Some(url)) => match UpstreamUrl::parse(url) {
                Ok(p) => u.parsed_url = Some(p),
                Err(e) => c.push(format!("{key}.url"), e),
            },
        }
        if !u.health_path.starts_with('/') {
            c.push(format!("{key}.health_path"), "must be an absolute path");
        }
        if u.probe_interval_ms == 0 || u.models_refresh_ms == 0 {
            c.push(
                format!("{key}.probe_interval_ms"),
                "probe and refresh periods must be > 0",
            );
        }
        if u.probe_backoff_ms.is_empty() || u.probe_backoff_ms.contains(&0) {
            c.push(
                format!("{key}.probe_backoff_ms"),
                "needs at least one period, all > 0",
            );
        }
        if u.connect_ms == 0 || u.first_byte_ms == 0 || u.idle_ms == 0 {
            c.push(
                format!("{key}.connect_ms"),
                "connect_ms, first_byte_ms and idle_ms must be > 0",
            );
        }
        if let Some(w) = &u.wake_url {
            if let Err(e) = UpstreamUrl::parse(w) {
                c.push(format!("{key}.wake_url"), e);
            }
        }
        for (name, file) in [("ca_file", &u.ca_file), ("wake_ca_file", &u.wake_ca_file)] {
            if let Some(p) = file {
                if let Err(e) = check_ca_file(p) {
                    c.push(format!("{key}.{name}"), e);
                }
            }
        }
        if let Some(a) = &u.auth {
            match a.style {
                AuthStyle::None => {}
                _ if a.env.as_deref().unwrap_or("").is_empty() => c.push(
                    format!("{key}.auth.env"),
                    "names the environment variable holding the secret; required",
                ),
                AuthStyle::Header if a.header.as_deref().unwrap_or("").is_empty() => c.push(
                    format!("{key}.auth.header"),
                    "style = \"header\" needs a header name",
                ),
                _ => {}
            }
        }
        let mut seen = HashSet::new();
        for m in &u.models {
            if m.trim().is_empty() || !seen.insert(m) {
                c.push(
                    format!("{key}.models"),
                    format!("empty or duplicate model id '{m}'"),
                );
            }
        }
    }

    let r = &raw.routing;
    for (alias, target) in &r.aliases {
        match names.get(&UpstreamName::from(target)) {
            Some(k) if k.is_local() => {}
            Some(_) => c.push(
                format!("routing.aliases.\"{alias}\""),
                format!("'{target}' is not a local (container or slot) upstream"),
            ),
            None => c.push(
                format!("routing.aliases.\"{alias}\""),
                format!("unknown upstream '{target}'"),
            ),
        }
    }
    for (from, to) in &r.path_rewrites {
        if !from.starts_with("/v1/") || !to.starts_with("/v1/") {
            c.push(
                format!("routing.path_rewrites.\"{from}\""),
                "both paths must start with /v1/",
            );
        }
    }
    if r.priority_header.is_empty() {
        c.push("routing.priority_header", "must not be empty");
    }
    if r.affinity_header.is_empty() || !r.affinity_header.bytes().all(is_token_byte) {
        c.push("routing.affinity_header", "must be a header name");
    }
    if r.affinity_prefix_bytes == 0 {
        c.push("routing.affinity_prefix_bytes", "must be > 0");
    }
    for (i, u) in upstreams.iter().enumerate() {
        fallback_problems(&mut c, &format!("upstream[{i}]"), u, &names);
    }

    let mut registry = BTreeMap::new();
    for (id, spec) in raw.registry {
        let key = format!("registry.\"{id}\"");
        let (upstreams, upstream_model, fallback_model) = match spec {
            BindingSpec::Name(n) => (vec![n], None, None),
            BindingSpec::Full(BindingTable {
                upstream,
                upstreams,
                upstream_model,
                fallback_model,
            }) => match (upstream, upstreams.is_empty()) {
                (Some(u), true) => (vec![u], upstream_model, fallback_model),
                (None, false) => (upstreams, upstream_model, fallback_model),
                (Some(_), false) => {
                    c.push(&key, "give upstream or upstreams, not both");
                    (upstreams, upstream_model, fallback_model)
                }
                (None, true) => {
                    c.push(&key, "needs upstream (or upstreams, a replica pool)");
                    (Vec::new(), upstream_model, fallback_model)
                }
            },
        };
        if id.trim().is_empty() || id.trim() != id {
            c.push(&key, "model ids must be non-empty with no outer whitespace");
        }
        let mut seen = HashSet::new();
        for upstream in &upstreams {
            let name = UpstreamName::from(upstream);
            match names.get(&name) {
                None => c.push(&key, format!("binds to unknown upstream '{upstream}'")),
                Some(UpstreamKind::Composite) if upstreams.len() > 1 => c.push(
                    &key,
                    format!("a replica pool cannot hold composite '{upstream}'"),
                ),
                Some(_) => {}
            }
            if !seen.insert(name) {
                c.push(&key, format!("'{upstream}' is listed twice"));
            }
        }
        for (name, m) in [
            ("upstream_model", &upstream_model),
            ("fallback_model", &fallback_model),
        ] {
            if m.as_deref().is_some_and(|m| m.trim().is_empty()) {
                c.push(format!("{key}.{name}"), "must not be empty");
            }
        }
        registry.insert(
            id,
            Binding {
                upstreams,
                upstream_model,
                fallback_model,
            },
        );
    }

    let open_door = match &raw.auth {
        Some(a) if a.keys_file.is_none() && a.keys_env.is_none() => {
            if !a.allow_unauthenticated {
                c.push("auth", "give keys_file or keys_env (or remove [auth])");
            }
            true
        }
        Some(_) => false,
        None => true,
    };
    let unauthenticated_ok = raw.auth.as_ref().is_some_and(|a| a.allow_unauthenticated);
    if open_door && !unauthenticated_ok && is_exposed_addr(&raw.listen.addr) {
        c.push(
            "listen.addr",
            format!(
                "{} is not a loopback address and the front door has no keys: anyone who can \
                 reach it could use every model behind it; set [auth] keys_file or keys_env, \
                 or [auth] allow_unauthenticated = true to serve it open on purpose",
                raw.listen.addr
            ),
        );
    }

    if !c.0.is_empty() {
        return Err(ConfigError { problems: c.0 });
    }
    Ok(Config {
        listen: raw.listen,
        routing: raw.routing,
        upstreams,
        registry,
        auth: raw.auth,
        front_keys: None,
        tuning,
        source: None,
        tuning_source: None,
    })
}

#[cfg(test)]
mod tests {
    use super::super::Config;

    #[test]
    fn an_open_front_door_beyond_loopback_needs_keys_or_a_decision() {
        let up = "[[upstream]]\nname = \"u\"\nkind = \"remote\"\nurl = \"http://127.0.0.1:1/v1\"\nmodels = [\"m\"]\n";
        let with = |addr: &str, auth: &str| {
            Config::from_toml_str(&format!("[listen]\naddr = \"{addr}\"\n{auth}\n{up}"), None)
        };
        for addr in ["0.0.0.0:8080", "[::]:8080", "192.168.1.5:8080"] {
            let e = with(addr, "").unwrap_err();
            assert_eq!(e.problems.len(), 1, "{addr}: {e}");
            assert_eq!(e.problems[0].key, "listen.addr");
            assert!(
                e.problems[0].message.contains("allow_unauthenticated"),
                "{e}"
            );
            with(addr, "[auth]\nallow_unauthenticated = true\n").expect(addr);
            std::env::set_var("SLOTGATE_TEST_OPEN_DOOR_KEYS", "k1");
            with(
                addr,
                "[auth]\nkeys_env = \"SLOTGATE_TEST_OPEN_DOOR_KEYS\"\n",
            )
            .expect(addr);
        }
        for addr in ["127.0.0.1:8080", "127.0.0.2:0", "[::1]:8080"] {
            with(addr, "").expect(addr);
        }
        let e = with("0.0.0.0:1", "[auth]\n").unwrap_err();
        assert!(e.to_string().contains("keys_file"), "{e}");
    }

    #[test]
    fn uring_flags_take_known_names_in_sets_the_kernel_accepts() {
        let with = |tuning: &str| {
            let text = format!("[listen]\naddr = \"127.0.0.1:1\"\n[tuning]\n{tuning}\n");
            Config::from_toml_str(&text, None)
        };
        let default = with("").unwrap();
        assert_eq!(
            default.tuning.uring_flags,
            [super::UringFlag::CoopTaskrun],
            "the default ring is unchanged"
        );
        for ok in [
            "uring_flags = []",
            "uring_flags = [\"coop_taskrun\", \"single_issuer\"]",
            "uring_flags = [\"coop_taskrun\", \"single_issuer\", \"defer_taskrun\"]",
            "uring_flags = [\"sqpoll\", \"single_issuer\"]\nuring_sqpoll_idle_ms = 2",
        ] {
            with(ok).unwrap_or_else(|e| panic!("{ok}: {e}"));
        }
        for (bad, says) in [
            ("uring_flags = [\"busy_poll\"]", "busy_poll"),
            ("uring_flags = [\"defer_taskrun\"]", "needs"),
            ("uring_flags = [\"sqpoll\", \"coop_taskrun\"]", "excludes"),
            (
                "uring_flags = [\"single_issuer\", \"single_issuer\"]",
                "twice",
            ),
            ("uring_sqpoll_idle_ms = 0", "between"),
        ] {
            let e = with(bad).unwrap_err();
            assert_eq!(e.problems.len(), 1, "{bad}: {e}");
            assert!(e.problems[0].key.starts_with("tuning.uring_"), "{bad}: {e}");
            assert!(e.to_string().contains(says), "{bad}: {e}");
        }
    }

    #[test]
    fn refuses_every_problem_at_once() {
        let text = r#"
[[upstream]]
name = "chat"
kind = "container"
url = "ftp://x"

[[upstream]]
name = "Chat"
kind = "composite"
url = "http://127.0.0.1:1/v1"

[registry]
"m" = "nope"
"#;
        let e = Config::from_toml_str(text, None).unwrap_err();
        let keys: Vec<_> = e.problems.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(
            keys,
            vec![
                "upstream[0].url",
                "upstream[1].name",
                "upstream[1].url",
                "registry.\"m\""
            ]
        );
    }

    /// A scratch directory with a self-signed certificate (`cert.pem`, usable as a CA) and its
    /// key (`key.pem`); removed on drop.
    struct Files(std::path::PathBuf);

    impl Files {
        fn new(tag: &str) -> Files {
            let dir = std::env::temp_dir()
                .join(format!("slotgate-validate-{tag}-{}", std::process::id()));
            std::fs::create_dir_all(&dir).unwrap();
            let key = rcgen::KeyPair::generate().unwrap();
            let cert = rcgen::CertificateParams::new(vec!["localhost".into()])
                .unwrap()
                .self_signed(&key)
                .unwrap();
            let other = rcgen::KeyPair::generate().unwrap();
            let garbage = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
            for (name, text) in [
                ("cert.pem", cert.pem()),
                ("key.pem", key.serialize_pem()),
                ("other-key.pem", other.serialize_pem()),
                ("not-pem.txt", "not a certificate\n".to_string()),
                ("garbage.pem", garbage.to_string()),
            ] {
                std::fs::write(dir.join(name), text).unwrap();
            }
            Files(dir)
        }

        fn path(&self, name: &str) -> String {
            self.0.join(name).display().to_string()
        }
    }

    impl Drop for Files {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    /// The problems of a config, `key: message` each.
    fn problems(text: &str) -> Vec<(String, String)> {
        match Config::from_toml_str(text, None) {
            Ok(_) => Vec::new(),
            Err(e) => e.problems.into_iter().map(|p| (p.key, p.message)).collect(),
        }
    }

    #[test]
    fn broken_ca_files_refused_by_key() {
        let f = Files::new("ca");
        let up = |name: &str, extra: &str| {
            format!("[[upstream]]\nname = \"{name}\"\nkind = \"remote\"\nurl = \"https://127.0.0.1:1/v1\"\n{extra}\n")
        };
        let text = [
            up("good", &format!("ca_file = {:?}", f.path("cert.pem"))),
            up("missing", &format!("ca_file = {:?}", f.path("absent.pem"))),
            up("text", &format!("ca_file = {:?}", f.path("not-pem.txt"))),
            up("garbage", &format!("ca_file = {:?}", f.path("garbage.pem"))),
            up("dir", &format!("ca_file = {:?}", f.path(""))),
            up(
                "insecure",
                &format!(
                    "insecure_skip_verify = true\nca_file = {:?}",
                    f.path("absent.pem")
                ),
            ),
            up(
                "wake",
                &format!(
                    "wake_url = \"https://127.0.0.1:1/wake\"\nwake_ca_file = {:?}",
                    f.path("not-pem.txt")
                ),
            ),
        ]
        .concat();
        let got = problems(&text);
        let keys: Vec<_> = got.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            keys,
            [
                "upstream[1].ca_file",
                "upstream[2].ca_file",
                "upstream[3].ca_file",
                "upstream[4].ca_file",
                "upstream[5].ca_file",
                "upstream[6].wake_ca_file",
            ],
            "{got:?}"
        );
        let msg = |i: usize| got[i].1.as_str();
        assert!(
            msg(0).contains("absent.pem") && msg(0).contains("No such file"),
            "{}",
            msg(0)
        );
        assert!(msg(1).ends_with("no PEM certificate"), "{}", msg(1));
        assert!(msg(2).ends_with("no usable CA certificate"), "{}", msg(2));
        assert!(msg(5).ends_with("no PEM certificate"), "{}", msg(5));
        // The same rule as the data plane's: the loader the workers use refuses each one.
        let good = f.path("cert.pem");
        assert!(crate::tls::client_config(Some(good.as_ref()), false).is_ok());
        for bad in ["absent.pem", "not-pem.txt", "garbage.pem"] {
            let p = f.path(bad);
            assert!(
                crate::tls::client_config(Some(p.as_ref()), false).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn broken_front_door_tls_files_refused_by_key() {
        let f = Files::new("listen");
        let listen = |cert: &str, key: &str| {
            format!(
                "[listen]\ntls_cert = {:?}\ntls_key = {:?}\n",
                f.path(cert),
                f.path(key)
            )
        };
        assert_eq!(problems(&listen("cert.pem", "key.pem")), []);
        let cases = [
            (
                listen("absent.pem", "key.pem"),
                "listen.tls_cert",
                "absent.pem",
            ),
            (
                listen("not-pem.txt", "key.pem"),
                "listen.tls_cert",
                "no PEM certificate",
            ),
            (
                listen("cert.pem", "absent.pem"),
                "listen.tls_key",
                "absent.pem",
            ),
            (
                listen("cert.pem", "cert.pem"),
                "listen.tls_key",
                "no PEM private key",
            ),
            (
                listen("cert.pem", "other-key.pem"),
                "listen.tls_key",
                "does not fit tls_cert",
            ),
        ];
        for (text, key, reason) in cases {
            let got = problems(&text);
            assert_eq!(got.len(), 1, "{got:?}");
            assert_eq!(got[0].0, key, "{got:?}");
            assert!(got[0].1.contains(reason), "{got:?}");
        }
    }

    #[test]
    fn unknown_key_refused() {
        let e = Config::from_toml_str("[listen]\nadr = \"127.0.0.1:1\"\n", None).unwrap_err();
        assert!(e.to_string().contains("unknown field `adr`"), "{e}");
    }

    #[test]
    fn parses_design_sketch() {
        let text = r#"
[listen]
addr = "127.0.0.1:8080"
admin = "127.0.0.1:9090"
[routing]
default_slot = "agent"
aliases = { "agent-hermes" = "agent" }
[[upstream]]
name = "agent"
kind = "slot"
url = "http://127.0.0.1:8101/v1"
[[upstream]]
name = "openrouter"
kind = "remote"
url = "https://openrouter.ai/api/v1"
auth = { style = "bearer", env = "OPENROUTER_API_KEY" }
[[upstream]]
name = "local"
kind = "composite"
[registry]
"qwopus3.6-27b-v2" = "local"
"gpt-4o-mini" = { upstream = "openrouter", upstream_model = "openai/gpt-4o-mini" }
[tuning]
cores = 1
"#;
        let cfg = Config::from_toml_str(text, None).unwrap();
        assert_eq!(cfg.upstreams.len(), 3);
        let or = cfg.upstreams[1].parsed_url.as_ref().unwrap();
        assert_eq!(or.port, 443);
        assert_eq!(or.base_path, "/api/v1");
        assert_eq!(or.authority, "openrouter.ai");
        assert_eq!(
            cfg.registry["gpt-4o-mini"].upstream_model.as_deref(),
            Some("openai/gpt-4o-mini")
        );
        assert_eq!(cfg.tuning.cores, 1);
    }
}
