//! CA files change with a reload, never between reloads (docs/operations.md "TLS"): the control plane's probes
//! keep the CA they had until `POST /admin/reload`, as the workers do. Its own test binary: the
//! control client's TLS config cache is process-wide, and another test's server start would
//! empty it mid-test.

mod support;

use slotgate::routing::SlotState;
use slotgate::server::Server;
use std::time::Duration;
use support::gate::{upstream, Piece, Scripted};
use support::pki::Pki;
use support::*;

#[test]
fn probes_read_a_replaced_ca_file_at_the_reload() {
    let pki = Pki::new("ca-reload");
    let cfg = slotgate::tls::server_config(&pki.path("cert.pem"), &pki.path("key.pem")).unwrap();
    let up = Scripted::start_on(
        move |c| rustls::StreamOwned::new(rustls::ServerConnection::new(cfg.clone()).unwrap(), c),
        |_| {
            vec![Piece::Bytes(
                b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok".to_vec(),
            )]
        },
    );
    let text = format!(
        "[listen]\naddr = \"127.0.0.1:0\"\nadmin = \"127.0.0.1:0\"\n\n{}\n[tuning]\ncores = 1\n",
        upstream(
            "box",
            "container",
            &format!("https://localhost:{}/v1", up.addr.port()),
            "models = [\"m1\"]\nprobe_interval_ms = 50\nprobe_backoff_ms = [50]\nca_file = \"ca.pem\"\n"
        )
    );
    let file = pki.path("slotgate.toml");
    std::fs::write(&file, text).unwrap();
    let gate = Server::start(slotgate::config::Config::load(&file, None).unwrap()).unwrap();
    let state = || gate.control.snapshot().by_name("box").map(|u| u.state());
    assert!(
        wait_until(Duration::from_secs(5), || state() == Some(SlotState::Ready)),
        "probed ready over TLS: {:?}",
        state()
    );

    // Another valid CA under the same name, one that did not sign the upstream's certificate.
    let other = Pki::new("ca-reload-other");
    std::fs::copy(other.ca(), pki.ca()).unwrap();
    // Without a reload, probes keep the CA they had: the slot stays ready through many probes.
    let seen_before = up.seen().len();
    assert!(wait_until(Duration::from_secs(5), || up.seen().len()
        >= seen_before + 5));
    assert_eq!(state(), Some(SlotState::Ready), "no reload, no new CA");

    // The reload reads the new CA: the upstream's certificate no longer verifies.
    let r = post_json(gate.admin_addr.unwrap(), "/admin/reload", "");
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(
        wait_until(Duration::from_secs(5), || state() != Some(SlotState::Ready)),
        "after the reload the probe fails verification: {:?}",
        state()
    );
}
