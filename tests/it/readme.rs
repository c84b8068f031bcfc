//! The README stays true (issue 8): its configuration reference lists every key the code accepts,
//! with the code's defaults; its TOML examples load; its quickstart `curl` lines work against
//! the real `slotgate demo`.

use slotgate::config::{Config, FrontAuth, Listen, Routing, Tuning, UpstreamConfig, UpstreamKind};
use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const README: &str = include_str!("../../README.md");

/// The rows (`key` -> default cell) of the reference table under `heading`.
fn table(heading: &str) -> BTreeMap<String, String> {
    let start = README
        .find(heading)
        .unwrap_or_else(|| panic!("README has no section {heading}"));
    let rest = &README[start + heading.len()..];
    let end = [rest.find("\n### "), rest.find("\n## ")]
        .into_iter()
        .flatten()
        .min()
        .unwrap_or(rest.len());
    rest[..end]
        .lines()
        .filter_map(|l| {
            let cells: Vec<&str> = l.split(" | ").collect();
            let key = cells.first()?.strip_prefix("| `")?.strip_suffix('`')?;
            Some((key.to_string(), cells.get(1)?.trim().to_string()))
        })
        .collect()
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
        assert!(rows.contains_key(k), "README {heading} lacks key `{k}`");
    }
    for k in rows.keys() {
        assert!(
            keys.contains(k),
            "README {heading} documents `{k}`, which the code does not accept"
        );
    }
    if let Some(d) = defaults {
        let v = toml::Value::try_from(d).unwrap();
        for (k, val) in v.as_table().unwrap() {
            if rows[k] == "required" {
                continue;
            }
            if let Some(r) = rendered(val) {
                assert_eq!(&rows[k], &r, "README default of `{k}` in {heading}");
            }
        }
    }
}

#[test]
fn configuration_reference_matches_the_code() {
    check_table::<Listen>("### `[listen]`", "", Some(&Listen::default()));
    check_table::<Routing>("### `[routing]`", "", Some(&Routing::default()));
    check_table::<Tuning>("### `[tuning]`", "", Some(&Tuning::default()));
    check_table::<FrontAuth>("### `[auth]`", "", None::<&FrontAuth>);
    let mut up = UpstreamConfig::new("x", UpstreamKind::Container, Some("http://127.0.0.1:1/v1"));
    up.url = None;
    check_table::<UpstreamConfig>(
        "### `[[upstream]]`",
        "name = \"x\"\nkind = \"container\"\n",
        Some(&up),
    );
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

/// Every ```toml block of the README loads as a config (or a tuning profile).
#[test]
fn readme_toml_examples_load() {
    let mut n = 0;
    for block in README.split("```toml\n").skip(1) {
        let text = &block[..block.find("```").unwrap()];
        n += 1;
        match Config::from_toml_str(text, None) {
            Ok(_) => {}
            // The TLS examples name PEM files of a deployed host; validation reads them, so their
            // absence here is the one refusal allowed.
            Err(e) if e.problems.iter().all(names_absent_host_file) => {}
            Err(e) => panic!("README TOML example {n} is refused:\n{text}\n{e}"),
        }
    }
    assert!(n >= 1);
    for dir in ["deploy", "tuning"] {
        let Ok(rd) = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/").to_string() + dir)
        else {
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
    let start = README.find("## Quickstart").unwrap();
    let section = &README[start..];
    let section = &section[..section[3..].find("\n## ").unwrap()];
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
