//! Replays every committed fuzz corpus input (`fuzz/corpus/<target>/`, seeds and finds) through
//! the code its target runs, so CI proves in well under a minute that no input known to the
//! fuzzers panics, without cargo-fuzz or a nightly toolchain. `fuzz/run.sh` does the fuzzing.

use std::path::PathBuf;

fn corpus(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    let mut out: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_file())
        .map(|p| {
            let b = std::fs::read(&p).unwrap();
            (p, b)
        })
        .collect();
    out.sort();
    assert!(!out.is_empty(), "{} is empty", dir.display());
    out
}

fn status(out: &[u8]) -> Option<u16> {
    let s = std::str::from_utf8(out.get(9..12)?).ok()?;
    out.starts_with(b"HTTP/1.1 ").then(|| s.parse().ok())?
}

#[test]
fn front_door_corpus_replays_without_a_panic() {
    let mut n = 0;
    for (p, data) in corpus("front_door") {
        let out = slotgate::fuzzing::front_door(&data);
        n += 1;
        // Every prefix of an input is an input too (a request cut anywhere).
        for cut in (0..data.len()).step_by(7) {
            let _ = slotgate::fuzzing::front_door(&data[..cut]);
        }
        // An incomplete or refused head answers nothing here (the connection loop owns those).
        let _ = (p, out);
    }
    assert!(n >= 20);
}

#[test]
fn front_door_answers_what_the_contract_says() {
    let get = |target: &[u8]| {
        let mut raw = b"\x00GET ".to_vec();
        raw.extend_from_slice(target);
        raw.extend_from_slice(b" HTTP/1.1\r\nHost: x\r\n\r\n");
        slotgate::fuzzing::front_door(&raw)
    };
    // The input that once aborted the process: a clean 404 envelope.
    let out = get(b"/v1/models/%a\xc3\xa9");
    assert_eq!(status(&out), Some(404), "{}", String::from_utf8_lossy(&out));
    assert!(String::from_utf8_lossy(&out).contains("dispatch.no_route"));
    let out = get(b"/v1/models/m-chat");
    assert!(String::from_utf8_lossy(&out).contains("\"id\":\"m-chat\""));
    let post = |sel: u8, model: &str, extra: &str| {
        let body = format!(r#"{{"messages":[],"model":"{model}"}}"#);
        let raw = format!(
            "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n{extra}Content-Length: {}\r\n\r\n{body}",
            body.len()
        );
        let mut data = vec![sel];
        data.extend_from_slice(raw.as_bytes());
        String::from_utf8_lossy(&slotgate::fuzzing::front_door(&data)).into_owned()
    };
    let fwd = post(0, "m-chat", "");
    assert!(
        fwd.starts_with("POST /v1/chat/completions HTTP/1.1\r\n"),
        "{fwd}"
    );
    assert!(fwd.contains("x-request-id: "), "{fwd}");
    let remap = post(0, "remapped", "");
    assert!(
        remap.starts_with("POST /api/v1/chat/completions"),
        "{remap}"
    );
    assert!(remap.contains(r#""model":"vendor/big-model""#), "{remap}");
    assert!(
        remap.contains("authorization: Bearer sk-upstream"),
        "{remap}"
    );
    let loading = post(0, "e5", "");
    assert!(loading.contains("slot.loading"), "{loading}");
    assert!(post(1, "m-chat", "").starts_with("401"));
    assert!(post(1, "m-chat", "Authorization: Bearer k2\r\n").starts_with("POST "));
}

#[test]
fn admin_api_corpus_replays_without_a_panic() {
    let mut n = 0;
    for (p, data) in corpus("admin_api") {
        let out = slotgate::fuzzing::admin_api(&data);
        n += 1;
        assert!(status(&out).is_some(), "{}: {:?}", p.display(), out);
        for cut in (0..data.len()).step_by(11) {
            let _ = slotgate::fuzzing::admin_api(&data[..cut]);
        }
    }
    assert!(n >= 10);
    let out = slotgate::fuzzing::admin_api(
        b"GET /admin/route?model=%a\xc3\xa9&path=/v1/embeddings HTTP/1.1\r\nHost: x\r\n\r\n",
    );
    assert_eq!(status(&out), Some(200), "{}", String::from_utf8_lossy(&out));
}
