//! The worker port end to end (DESIGN.md §7): a worker that sees a refused connect tells the
//! control plane with a message, and the next snapshot shows the upstream failing at once, long
//! before its prober would have looked again.

use crate::support;

use slotgate::mock::{self, MockConfig};
use slotgate::routing::ProbeStatus;
use std::time::Duration;
use support::gate::{assert_error, start_gate};
use support::*;

#[test]
fn a_refused_connect_marks_the_upstream_failing_through_the_port() {
    let m = mock::spawn(MockConfig {
        models: vec!["m1".into()],
        ..MockConfig::default()
    })
    .expect("mock");
    // Probed once at start, then only every minute: a quick Failing can only come from the port.
    let gate = start_gate(
        &format!(
            "[[upstream]]\nname = \"chat\"\nkind = \"container\"\nurl = \"{}\"\nprobe_interval_ms = 60000\nprobe_backoff_ms = [60000]\n",
            m.base_url()
        ),
        "",
    );
    let probe = || {
        gate.control
            .snapshot()
            .by_name("chat")
            .map(|u| (u.live.probe, u.live.models.is_warm()))
    };
    assert!(
        wait_until(Duration::from_secs(10), || probe()
            == Some((ProbeStatus::Passing, true))),
        "chat never came up: {:?}",
        probe()
    );
    m.stop();
    let req = post_raw("/v1/chat/completions", r#"{"model":"m1"}"#, &[]);
    let r = http_request(gate.addr, req.as_bytes());
    assert_error(&r, 502, "dispatch.upstream_unavailable");
    assert!(
        wait_until(Duration::from_secs(5), || probe()
            .is_some_and(|p| p.0 == ProbeStatus::Failing)),
        "the refused connect did not mark chat down: {:?}",
        probe()
    );
}
