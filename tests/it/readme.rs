//! The README and `docs/` stay true: the configuration reference (`docs/configuration.md`) lists
//! every key the code accepts, with the code's defaults; every TOML example of README.md and
//! docs/*.md loads, as do the files of `deploy/` and `tuning/`; the README's error table is the
//! code's; its command table is the binary's; its quickstart `curl` lines work against the real
//! `slotgate demo`; and `.ci/run` runs the README's test command.

use slotgate::config::{
    BindingTable, Config, FrontAuth, Listen, Routing, Tuning, UpstreamAuth, UpstreamConfig,
    UpstreamKind,
};
use slotgate::error::ErrorCode;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const README: &str = include_str!("../../README.md");
const CONFIGURATION: &str = include_str!("../../docs/configuration.md");

fn repo_path(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

/// The section of `doc` under the heading line `heading` (a `## ` or `### ` line, or its start),
/// up to the next `## ` or `### ` heading.
fn section<'a>(doc: &'a str, name: &str, heading: &str) -> &'a str {
    let start = doc
        .find(&format!("\n{heading}"))
        .unwrap_or_else(|| panic!("{name} has no section {heading}"));
    let rest = &doc[start + 1 + heading.len()..];
    let end = [rest.find("\n### "), rest.find("\n## ")]
        .into_iter()
        .flatten()
        .min()
        .unwrap_or(rest.len());
    &rest[..end]
}

/// The table rows of `text` whose first cell is one backticked word: that word -> the second cell.
fn rows(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter_map(|l| {
            let cells: Vec<&str> = l.split(" | ").collect();
            let key = cells.first()?.strip_prefix("| `")?.strip_suffix('`')?;
            Some((key.to_string(), cells.get(1)?.trim().to_string()))
        })
        .collect()
}

/// The rows (`key` -> default cell) of the reference table under `heading` in
/// docs/configuration.md.
fn table(heading: &str) -> BTreeMap<String, String> {
    rows(section(CONFIGURATION, "docs/configuration.md", heading))
}

/// Every key a table type accepts, from serde's own "unknown field" message.
fn accepted_keys<T: serde::de::DeserializeOwned>(prefix: &str) -> Vec<String> {
    let err = toml::from_str::<T>(&format!("{prefix}zz_not_a_key = 1\n"))
        .err()
        .expect("unknown keys are refused")
        .to_string();
    // "expected one of `a`, `b`", or "expected `a` or `b`" for two fields.
    let list = err
        .split("`zz_not_a_key`, expected")
        .nth(1)
        .unwrap_or_else(|| panic!("serde lists no fields: {err}"));
    list.split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_string)
        .collect()
}

/// The TOML rendering of a scalar default, as the README writes it.
fn rendered(v: &toml::Value) -> Option<String> {
    match v {
        toml::Value::String(s) => Some(format!("`\"{s}\"`")),
        toml::Value::Integer(i) => Some(format!("`{i}`")),
        toml::Value::Boolean(b) => Some(format!("`{b}`")),
        toml::Value::Array(a) if a.iter().all(|x| x.is_integer()) => Some(format!(
            "`[{}]`",
            a.iter()
                .map(|x| x.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        )),
        _ => None,
    }
}

fn check_table<T: serde::de::DeserializeOwned + serde::Serialize>(
    heading: &str,
    prefix: &str,
    defaults: Option<&T>,
) {
    let rows = table(heading);
    let keys = accepted_keys::<T>(prefix);
    assert!(!keys.is_empty());
    for k in &keys {
        assert!(
            rows.contains_key(k),
            "docs/configuration.md {heading} lacks key `{k}`"
        );
    }
    for k in rows.keys() {
        assert!(
            keys.contains(k),
            "docs/configuration.md {heading} documents `{k}`, which the code does not accept"
        );
    }
    if let Some(d) = defaults {
        let v = toml::Value::try_from(d).unwrap();
        for (k, val) in v.as_table().unwrap() {
            if rows[k] == "required" {
                continue;
            }
            if let Some(r) = rendered(val) {
                assert_eq!(
                    &rows[k], &r,
                    "docs/configuration.md default of `{k}` in {heading}"
                );
            }
        }
    }
}

#[test]
fn configuration_reference_matches_the_code() {
    check_table::<Listen>("## `[listen]`", "", Some(&Listen::default()));
    check_table::<Routing>("## `[routing]`", "", Some(&Routing::default()));
    check_table::<Tuning>("## `[tuning]`", "", Some(&Tuning::default()));
    check_table::<FrontAuth>("## `[auth]`", "", None::<&FrontAuth>);
    let mut up = UpstreamConfig::new("x", UpstreamKind::Container, Some("http://127.0.0.1:1/v1"));
    up.url = None;
    check_table::<UpstreamConfig>(
        "## `[[upstream]]`",
        "name = \"x\"\nkind = \"container\"\n",
        Some(&up),
    );
    let auth: UpstreamAuth = toml::from_str("").expect("an empty auth table has defaults");
    check_table::<UpstreamAuth>("### An upstream's credential: `auth`", "", Some(&auth));
    check_table::<BindingTable>(
        "## `[registry]`",
        "upstream = \"x\"\n",
        None::<&BindingTable>,
    );
}

/// Every error code slotgate produces. The match fails to compile when a code is added, so the
/// README's table cannot miss one.
fn every_error_code() -> Vec<ErrorCode> {
    use ErrorCode::*;
    let all = [
        BadHttp,
        InvalidJson,
        UriTooLong,
        HeadersTooLarge,
        BodyTooLarge,
        RequestTimeout,
        Unauthorized,
        NoRoute,
        UpstreamUnavailable,
        UpstreamTimeout,
        SlotLoading,
        Busy,
        Overloaded,
        Internal,
        MethodNotAllowed,
        NotFound,
        InvalidRequest,
    ];
    for c in all {
        match c {
            BadHttp | InvalidJson | UriTooLong | HeadersTooLarge | BodyTooLarge
            | RequestTimeout | Unauthorized | NoRoute | UpstreamUnavailable | UpstreamTimeout
            | SlotLoading | Busy | Overloaded | Internal | MethodNotAllowed | NotFound
            | InvalidRequest => {}
        }
    }
    all.to_vec()
}

/// The README's error table lists every code with its status, and nothing else.
#[test]
fn error_table_matches_the_code() {
    let table = rows(section(README, "README.md", "## Errors"));
    let codes = every_error_code();
    for c in &codes {
        let status = table
            .get(c.code())
            .unwrap_or_else(|| panic!("README's error table lacks `{}`", c.code()));
        assert_eq!(status, &c.status().to_string(), "status of `{}`", c.code());
    }
    for k in table.keys() {
        assert!(
            codes.iter().any(|c| c.code() == k),
            "README's error table lists `{k}`, which the code never produces"
        );
    }
}

/// A problem that only says a file key of a deployed host (`ca_file`, `wake_ca_file`,
/// `tls_cert`, `tls_key`, the front-door `keys_file`) names a file absent on this machine.
fn names_absent_host_file(p: &slotgate::config::Problem) -> bool {
    let key = p.key.rsplit('.').next().unwrap_or("");
    [
        "ca_file",
        "wake_ca_file",
        "tls_cert",
        "tls_key",
        "keys_file",
    ]
    .contains(&key)
        && (p.message.contains("No such file or directory") || p.message.contains("cannot read"))
}

/// README.md and every docs/*.md, with their names.
fn documents() -> Vec<(String, String)> {
    let mut docs = vec![("README.md".to_string(), README.to_string())];
    let mut files: Vec<PathBuf> = std::fs::read_dir(repo_path("docs"))
        .expect("docs/ exists")
        .flatten()
        .map(|f| f.path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .collect();
    files.sort();
    for p in files {
        let text = std::fs::read_to_string(&p).unwrap();
        docs.push((
            format!("docs/{}", p.file_name().unwrap().to_string_lossy()),
            text,
        ));
    }
    assert!(docs.iter().any(|(n, _)| n == "docs/configuration.md"));
    docs
}

/// Every ```toml block of README.md and docs/*.md loads as a config (or a tuning profile), and
/// so do the files of `deploy/` and `tuning/`.
#[test]
fn readme_toml_examples_load() {
    for (name, doc) in documents() {
        for (n, block) in doc.split("```toml\n").skip(1).enumerate() {
            let text = &block[..block.find("```").unwrap()];
            match Config::from_toml_str(text, None) {
                Ok(_) => {}
                // The TLS examples name PEM files of a deployed host; validation reads them, so
                // their absence here is the one refusal allowed.
                Err(e) if e.problems.iter().all(names_absent_host_file) => {}
                Err(e) => panic!("{name}: TOML example {} is refused:\n{text}\n{e}", n + 1),
            }
        }
    }
    assert!(README.contains("```toml\n"), "the README shows a config");
    assert!(CONFIGURATION.matches("```toml\n").count() >= 3);
    for dir in ["deploy", "tuning"] {
        let Ok(rd) = std::fs::read_dir(repo_path(dir)) else {
            continue;
        };
        for f in rd.flatten() {
            let p = f.path();
            if p.extension().is_some_and(|e| e == "toml") {
                let ok = if dir == "tuning" {
                    Tuning::load(&p).map(|_| ())
                } else {
                    Config::load(&p, None).map(|_| ())
                };
                match ok {
                    Ok(()) => {}
                    Err(e) if e.problems.iter().all(names_absent_host_file) => {}
                    Err(e) => panic!("{} is refused: {e}", p.display()),
                }
            }
        }
    }
}

/// `slotgate <command> --help`'s text.
fn help(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_slotgate"))
        .args(args)
        .arg("--help")
        .output()
        .expect("run slotgate --help");
    assert!(out.status.success(), "slotgate {args:?} --help failed");
    String::from_utf8_lossy(&out.stdout).to_string()
}

/// The README's command table names every command of the binary, and every flag it shows exists.
#[test]
fn command_table_matches_the_binary() {
    let text = section(README, "README.md", "## Commands");
    let mut listed = Vec::new();
    for line in text.lines().filter(|l| l.starts_with("| `slotgate ")) {
        let cmd = line["| `slotgate ".len()..]
            .split([' ', '`'])
            .next()
            .unwrap()
            .to_string();
        let sub_help = help(&[&cmd]);
        let flags = line
            .split(|c: char| !(c.is_ascii_alphanumeric() || c == '-'))
            .filter(|w| w.starts_with("--") && w.len() > 2);
        for flag in flags {
            assert!(
                sub_help.contains(&format!("{flag} ")),
                "README shows `slotgate {cmd} ... {flag}`, which the binary does not take"
            );
        }
        listed.push(cmd);
    }
    let top = help(&[]);
    let commands = top
        .split("Commands:")
        .nth(1)
        .and_then(|s| s.split("\n\n").next())
        .expect("slotgate --help lists commands");
    for c in commands.lines().filter_map(|l| l.split_whitespace().next()) {
        if c != "help" {
            assert!(
                listed.iter().any(|l| l == c),
                "README's command table lacks `slotgate {c}`"
            );
        }
    }
    let globals = text
        .lines()
        .find(|l| l.starts_with("Global flags:"))
        .expect("the global flags line");
    for flag in globals
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '-'))
        .filter(|w| w.starts_with("--"))
    {
        assert!(top.contains(&format!("{flag} ")), "no global flag {flag}");
    }
}

/// The quickstart's second command is the test command, and `.ci/run` runs exactly it.
#[test]
fn ci_runs_the_readme_test_command() {
    let quick = section(README, "README.md", "## Quickstart");
    let block = quick
        .split("```sh\n")
        .nth(1)
        .expect("the two-command block");
    let block = &block[..block.find("```").unwrap()];
    let commands: Vec<&str> = block
        .lines()
        .map(|l| l.split('#').next().unwrap_or("").trim())
        .filter(|l| !l.is_empty())
        .collect();
    assert_eq!(commands.len(), 2, "two commands: {commands:?}");
    assert!(
        commands[0].ends_with(" demo"),
        "the first runs the demo: {commands:?}"
    );
    let test = commands[1];
    let ci = std::fs::read_to_string(repo_path(".ci/run")).unwrap();
    assert!(
        ci.lines()
            .any(|l| l.trim_start().starts_with(&format!("{test} ")) || l.trim() == test),
        ".ci/run does not run the README's test command `{test}`"
    );
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct Demo(Child);

impl Drop for Demo {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The quickstart's `curl` lines, run against the real `slotgate demo`.
#[test]
fn quickstart_curl_examples_work() {
    let (front, admin) = (free_port(), free_port());
    let _demo = Demo(
        Command::new(env!("CARGO_BIN_EXE_slotgate"))
            .args(["demo", "--addr", &format!("127.0.0.1:{front}")])
            .args(["--admin", &format!("127.0.0.1:{admin}")])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("run slotgate demo"),
    );
    let ready = Instant::now() + Duration::from_secs(20);
    loop {
        let ok = Command::new("curl")
            .args(["-sf", &format!("http://127.0.0.1:{admin}/readyz")])
            .output()
            .is_ok_and(|o| o.status.success());
        if ok {
            break;
        }
        assert!(Instant::now() < ready, "demo never became ready");
        std::thread::sleep(Duration::from_millis(50));
    }
    let section = section(README, "README.md", "## Quickstart");
    let block = section.split("```sh\n").nth(2).expect("the curl block");
    let block = &block[..block.find("```").unwrap()];
    let commands: Vec<String> = block
        .replace("\\\n", " ")
        .lines()
        .filter(|l| l.trim_start().starts_with("curl "))
        .map(|l| {
            l.replace("127.0.0.1:8080", &format!("127.0.0.1:{front}"))
                .replace("127.0.0.1:9090", &format!("127.0.0.1:{admin}"))
        })
        .collect();
    assert!(commands.len() >= 3, "{commands:?}");
    // The demo's chat container needs a moment to be probed and list its models.
    let warm = Instant::now() + Duration::from_secs(20);
    for cmd in &commands {
        loop {
            let out = Command::new("sh")
                .args(["-c", &format!("{cmd} -sS --fail-with-body")])
                .output()
                .unwrap();
            let text = String::from_utf8_lossy(&out.stdout).to_string();
            let good = out.status.success()
                && (!cmd.contains("\"stream\":true") || text.contains("data: [DONE]"))
                && (!cmd.contains("/admin/route") || text.contains("container:chat"));
            if good {
                break;
            }
            assert!(
                Instant::now() < warm,
                "README example failed: {cmd}\n{text}\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}
