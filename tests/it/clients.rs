//! Real clients against the real server: the official `openai` Python SDK lists
//! models, chats (plain and streamed), embeds, and sees `slot.loading` as an `APIStatusError`.

use crate::support;

use slotgate::mock::{self, MockConfig};
use std::process::Command;
use std::time::Duration;
use support::gate::start_gate;
use support::wait_until;

#[test]
fn openai_python_sdk() {
    let chat = mock::spawn(MockConfig {
        models: vec!["m1".into()],
        tokens: 3,
        ..MockConfig::default()
    })
    .unwrap();
    let embed = mock::spawn(MockConfig {
        models: vec!["e1".into()],
        ..MockConfig::default()
    })
    .unwrap();
    let loading = mock::spawn(MockConfig {
        models: vec!["big".into()],
        load_ms: 120_000,
        ..MockConfig::default()
    })
    .unwrap();
    let up = |name: &str, url: String| {
        format!("[[upstream]]\nname = \"{name}\"\nkind = \"container\"\nurl = \"{url}\"\nprobe_interval_ms = 100\n")
    };
    let cfg = format!(
        "{}{}{}",
        up("chat", chat.base_url()),
        up("embed", embed.base_url()),
        up("loader", loading.base_url()),
    );
    let gate = start_gate(&cfg, "");
    assert!(wait_until(Duration::from_secs(10), || {
        let s = gate.control.snapshot();
        ["chat", "embed"].iter().all(|n| {
            s.by_name(n)
                .is_some_and(|u| u.state().is_ready() && u.live.models.is_warm())
        })
    }));
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/py/openai_client.py");
    let out = Command::new(support::python())
        .arg(script)
        .arg(format!("http://{}/v1", gate.addr))
        // Addressing the loading slot by name (dispatch step 4) reaches its readiness gate.
        .arg("loader")
        .output()
        .expect("python3 runs (CI installs the openai package)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "openai SDK checks failed:\n{stdout}\n{stderr}"
    );
    assert!(stdout.contains("all ok"), "{stdout}");
}
