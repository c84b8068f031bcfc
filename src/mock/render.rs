//! Response bodies of the mock in the shapes llama-server and OpenAI use, written into reused
//! buffers (no per-request allocation beyond buffer growth).

use crate::http::ResponseWriter;
use std::io::Write;

/// Which completion endpoint is being answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// `/v1/chat/completions`: `choices[0].message.content` / `delta.content`.
    Chat,
    /// `/v1/completions`: `choices[0].text`.
    Text,
}

/// Fields every completion body carries.
pub(crate) struct Meta<'a> {
    pub kind: Kind,
    pub seq: u64,
    pub created: u64,
    pub model: &'a str,
}

/// The SSE terminator llama-server and OpenAI send.
pub(crate) const DONE_EVENT: &[u8] = b"data: [DONE]\n\n";

/// Appends token `i`'s text (`tok{i} `): deterministic so tests can compare bytes.
pub(crate) fn token(out: &mut Vec<u8>, i: usize) {
    let _ = write!(out, "tok{i} ");
}

/// Appends `s` as a JSON string literal (escaped).
pub(crate) fn json_str(out: &mut Vec<u8>, s: &str) {
    let _ = serde_json::to_writer(&mut *out, s);
}

fn id(out: &mut Vec<u8>, m: &Meta) {
    let prefix = match m.kind {
        Kind::Chat => "chatcmpl",
        Kind::Text => "cmpl",
    };
    let _ = write!(out, "\"id\":\"{prefix}-mock-{}\"", m.seq);
}

fn tail(out: &mut Vec<u8>, m: &Meta, object: &str) {
    let _ = write!(out, ",\"created\":{},", m.created);
    id(out, m);
    out.extend_from_slice(b",\"model\":");
    json_str(out, m.model);
    let _ = write!(
        out,
        ",\"system_fingerprint\":\"mock\",\"object\":\"{object}\""
    );
}

fn usage(out: &mut Vec<u8>, prompt: usize, completion: usize) {
    let _ = write!(
        out,
        "\"usage\":{{\"completion_tokens\":{completion},\"prompt_tokens\":{prompt},\"total_tokens\":{}}}",
        prompt + completion
    );
}

/// One SSE event (`data: {json}\n\n`) carrying token `i`; the first chat delta carries the role.
pub(crate) fn stream_token(out: &mut Vec<u8>, m: &Meta, i: usize) {
    out.extend_from_slice(b"data: {\"choices\":[{\"finish_reason\":null,\"index\":0,");
    match m.kind {
        Kind::Chat => {
            out.extend_from_slice(b"\"delta\":{");
            if i == 0 {
                out.extend_from_slice(b"\"role\":\"assistant\",");
            }
            out.extend_from_slice(b"\"content\":\"");
            token(out, i);
            out.extend_from_slice(b"\"}}]");
            tail(out, m, "chat.completion.chunk");
        }
        Kind::Text => {
            out.extend_from_slice(b"\"logprobs\":null,\"text\":\"");
            token(out, i);
            out.extend_from_slice(b"\"}]");
            tail(out, m, "text_completion");
        }
    }
    out.extend_from_slice(b"}\n\n");
}

/// The closing SSE event: empty delta/text, `finish_reason: "stop"`, usage.
pub(crate) fn stream_final(out: &mut Vec<u8>, m: &Meta, prompt: usize, completion: usize) {
    out.extend_from_slice(b"data: {\"choices\":[{\"finish_reason\":\"stop\",\"index\":0,");
    match m.kind {
        Kind::Chat => {
            out.extend_from_slice(b"\"delta\":{}}]");
            tail(out, m, "chat.completion.chunk");
        }
        Kind::Text => {
            out.extend_from_slice(b"\"logprobs\":null,\"text\":\"\"}]");
            tail(out, m, "text_completion");
        }
    }
    out.push(b',');
    usage(out, prompt, completion);
    out.extend_from_slice(b"}\n\n");
}

/// A whole non-stream completion; `content` must be JSON-safe text (the token stream is).
pub(crate) fn completion(
    out: &mut Vec<u8>,
    m: &Meta,
    content: &[u8],
    prompt: usize,
    completion: usize,
) {
    out.extend_from_slice(b"{\"choices\":[{\"finish_reason\":\"stop\",\"index\":0,");
    match m.kind {
        Kind::Chat => {
            out.extend_from_slice(b"\"message\":{\"role\":\"assistant\",\"content\":\"");
            out.extend_from_slice(content);
            out.extend_from_slice(b"\"}}]");
            tail(out, m, "chat.completion");
        }
        Kind::Text => {
            out.extend_from_slice(b"\"logprobs\":null,\"text\":\"");
            out.extend_from_slice(content);
            out.extend_from_slice(b"\"}]");
            tail(out, m, "text_completion");
        }
    }
    out.push(b',');
    usage(out, prompt, completion);
    out.push(b'}');
}

/// The OpenAI model list.
pub(crate) fn models<'a>(out: &mut Vec<u8>, ids: impl Iterator<Item = &'a str>, created: u64) {
    out.extend_from_slice(b"{\"object\":\"list\",\"data\":[");
    for (n, id) in ids.enumerate() {
        if n > 0 {
            out.push(b',');
        }
        out.extend_from_slice(b"{\"id\":");
        json_str(out, id);
        let _ = write!(
            out,
            ",\"object\":\"model\",\"created\":{created},\"owned_by\":\"mock\"}}"
        );
    }
    out.extend_from_slice(b"]}");
}

/// Deterministic embedding component `j` of input `i`, in [-1, 1).
pub(crate) fn embedding_value(i: usize, j: usize) -> f32 {
    ((i * 31 + j * 17 + 7) % 200) as f32 / 100.0 - 1.0
}

/// The OpenAI embeddings list for `n` inputs of `dims` components.
pub(crate) fn embeddings(out: &mut Vec<u8>, model: &str, n: usize, dims: usize, prompt: usize) {
    out.extend_from_slice(b"{\"object\":\"list\",\"data\":[");
    for i in 0..n {
        if i > 0 {
            out.push(b',');
        }
        let _ = write!(
            out,
            "{{\"object\":\"embedding\",\"index\":{i},\"embedding\":["
        );
        for j in 0..dims {
            if j > 0 {
                out.push(b',');
            }
            let _ = write!(out, "{}", embedding_value(i, j));
        }
        out.extend_from_slice(b"]}");
    }
    out.extend_from_slice(b"],\"model\":");
    json_str(out, model);
    let _ = write!(
        out,
        ",\"usage\":{{\"prompt_tokens\":{prompt},\"total_tokens\":{prompt}}}}}"
    );
}

/// An OpenAI/llama-server style error body (`{"error":{"code":<status>,...}}`); the mock plays
/// an upstream, so it does not use slotgate's own envelope for these.
pub(crate) fn openai_error(out: &mut Vec<u8>, status: u16, kind: &str, message: &str) {
    let _ = write!(out, "{{\"error\":{{\"code\":{status},\"message\":");
    json_str(out, message);
    out.extend_from_slice(b",\"type\":");
    json_str(out, kind);
    out.extend_from_slice(b"}}");
}

/// A response head. `length: None` means chunked (HTTP/1.1) or close-delimited.
pub(crate) fn head(
    out: &mut Vec<u8>,
    status: u16,
    content_type: &str,
    length: Option<usize>,
    chunked: bool,
    close: bool,
) {
    let mut w = ResponseWriter::start(out, status)
        .header("Server", "slotgate-mock")
        .header("Content-Type", content_type);
    if let Some(n) = length {
        w = w.header("Content-Length", n);
    }
    if chunked {
        w = w
            .header("Transfer-Encoding", "chunked")
            .header("Cache-Control", "no-cache");
    }
    if close {
        w = w.header("Connection", "close");
    }
    w.end();
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    fn meta(kind: Kind) -> Meta<'static> {
        Meta {
            kind,
            seq: 7,
            created: 1,
            model: "m\"x",
        }
    }

    fn event_json(ev: &[u8]) -> Value {
        let s = std::str::from_utf8(ev).unwrap();
        let body = s
            .strip_prefix("data: ")
            .unwrap()
            .strip_suffix("\n\n")
            .unwrap();
        serde_json::from_str(body).unwrap()
    }

    #[test]
    fn chat_events_parse() {
        let m = meta(Kind::Chat);
        let mut out = Vec::new();
        stream_token(&mut out, &m, 0);
        let v = event_json(&out);
        assert_eq!(v["object"], "chat.completion.chunk");
        assert_eq!(v["model"], "m\"x");
        assert_eq!(v["choices"][0]["delta"]["role"], "assistant");
        assert_eq!(v["choices"][0]["delta"]["content"], "tok0 ");
        out.clear();
        stream_token(&mut out, &m, 1);
        assert!(event_json(&out)["choices"][0]["delta"]
            .get("role")
            .is_none());
        out.clear();
        stream_final(&mut out, &m, 3, 2);
        let v = event_json(&out);
        assert_eq!(v["choices"][0]["finish_reason"], "stop");
        assert_eq!(v["usage"]["total_tokens"], 5);
    }

    /// The mock's head layout (it plays an upstream, so its casing is its own).
    #[test]
    fn head_bytes() {
        let mut out = Vec::new();
        head(&mut out, 200, "text/event-stream", None, true, true);
        assert_eq!(
            out,
            b"HTTP/1.1 200 OK\r\nServer: slotgate-mock\r\nContent-Type: text/event-stream\r\n\
              Transfer-Encoding: chunked\r\nCache-Control: no-cache\r\nConnection: close\r\n\r\n"
        );
        out.clear();
        head(&mut out, 429, "application/json", Some(7), false, false);
        assert_eq!(
            out,
            b"HTTP/1.1 429 Too Many Requests\r\nServer: slotgate-mock\r\n\
              Content-Type: application/json\r\nContent-Length: 7\r\n\r\n"
        );
    }

    #[test]
    fn bodies_parse() {
        let mut out = Vec::new();
        completion(&mut out, &meta(Kind::Text), b"tok0 ", 1, 1);
        let v: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["choices"][0]["text"], "tok0 ");
        out.clear();
        completion(&mut out, &meta(Kind::Chat), b"tok0 ", 1, 1);
        let v: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["choices"][0]["message"]["content"], "tok0 ");
        out.clear();
        models(&mut out, ["a", "b"].into_iter(), 5);
        let v: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["data"][1]["id"], "b");
        out.clear();
        embeddings(&mut out, "e", 2, 3, 4);
        let v: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["data"][1]["embedding"].as_array().unwrap().len(), 3);
        out.clear();
        openai_error(&mut out, 500, "server_error", "boom");
        let v: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["error"]["code"], 500);
    }
}
