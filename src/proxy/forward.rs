//! Rewriting heads on the way through: the upstream request head and the client response head
//! (DESIGN.md §3 "Headers").

use super::attempt::Attempt;
use crate::config::AuthStyle;
use crate::http::headers::{is_hop_by_hop, name_eq, tokens};
use crate::http::response::ResponseHead;
use crate::http::{Method, RequestHead};
use crate::routing::UpstreamEntry;
use std::io::Write;

pub use super::request_id::RequestId;

fn connection_names(values: &[&[u8]], name: &[u8]) -> bool {
    values.iter().any(|v| tokens(v).any(|t| name_eq(t, name)))
}

/// Writes the upstream request head for `entry` into `out`.
pub fn request_head(
    out: &mut Vec<u8>,
    head: &RequestHead,
    buf: &[u8],
    path: &str,
    entry: &UpstreamEntry,
    body_len: usize,
    request_id: &RequestId,
) {
    let cfg = &entry.cfg;
    out.extend_from_slice(head.method_bytes(buf));
    out.push(b' ');
    out.extend_from_slice(path.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\nhost: ");
    if let Some(u) = &cfg.parsed_url {
        out.extend_from_slice(u.authority.as_bytes());
    }
    out.extend_from_slice(b"\r\n");
    let conn: Vec<&[u8]> = head.header_all(buf, b"connection").collect();
    let auth = cfg.auth.as_ref().filter(|a| a.style != AuthStyle::None);
    for h in head.headers() {
        let name = h.name(buf);
        if is_hop_by_hop(name)
            || (!conn.is_empty() && connection_names(&conn, name))
            || name_eq(name, b"host")
            || name_eq(name, b"content-length")
            || name_eq(name, b"expect")
            || name_eq(name, b"x-request-id")
        {
            continue;
        }
        let client_cred = name_eq(name, b"authorization") || name_eq(name, b"x-api-key");
        if client_cred && (!cfg.forward_client_auth || auth.is_some()) {
            continue;
        }
        if let Some(a) = auth {
            let injected = match a.style {
                AuthStyle::Header => a
                    .header
                    .as_deref()
                    .is_some_and(|hn| name_eq(name, hn.as_bytes())),
                AuthStyle::Anthropic => name_eq(name, b"anthropic-version"),
                _ => false,
            };
            if injected {
                continue;
            }
        }
        out.extend_from_slice(name);
        out.extend_from_slice(b": ");
        out.extend_from_slice(h.value(buf));
        out.extend_from_slice(b"\r\n");
    }
    let has_body_semantics = matches!(head.method(), Method::Post | Method::Put | Method::Patch);
    if body_len > 0 || has_body_semantics {
        let _ = write!(out, "content-length: {body_len}\r\n");
    }
    if cfg.send_request_id {
        out.extend_from_slice(b"x-request-id: ");
        out.extend_from_slice(request_id.as_str().as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    if let Some(a) = auth {
        inject_credential(out, a);
    }
    out.extend_from_slice(b"\r\n");
}

/// The upstream's own credential (DESIGN.md §3 "Headers"). The secret comes only from the
/// environment, read per request so a rotated key (and a restarted service manager's
/// environment) needs no reload.
fn inject_credential(out: &mut Vec<u8>, a: &crate::config::UpstreamAuth) {
    let Some(secret) = a.env.as_deref().and_then(|e| std::env::var(e).ok()) else {
        return;
    };
    match a.style {
        AuthStyle::Bearer => {
            let _ = write!(out, "authorization: Bearer {secret}\r\n");
        }
        AuthStyle::Header => {
            let _ = write!(
                out,
                "{}: {secret}\r\n",
                a.header.as_deref().unwrap_or("authorization")
            );
        }
        AuthStyle::Anthropic => {
            let _ = write!(
                out,
                "x-api-key: {secret}\r\nanthropic-version: {}\r\n",
                a.anthropic_version
            );
        }
        AuthStyle::None => {}
    }
}

/// Writes the client's response head: the upstream's status and end-to-end headers verbatim, our
/// framing and connection headers, the request id and the route breadcrumbs.
pub fn response_head(
    out: &mut Vec<u8>,
    head: &ResponseHead,
    buf: &[u8],
    ctx: &Attempt,
    close_client: bool,
    dechunk: bool,
) {
    let _ = write!(out, "HTTP/1.1 {} ", head.status());
    out.extend_from_slice(head.reason(buf));
    out.extend_from_slice(b"\r\n");
    let conn: Vec<&[u8]> = head
        .headers()
        .iter()
        .filter(|h| name_eq(h.name(buf), b"connection"))
        .map(|h| h.value(buf))
        .collect();
    let mut has_id = false;
    // RFC 9112 §6.3: with Transfer-Encoding present, Content-Length is void and must not be
    // passed on (a client trusting it would mis-frame: response splitting).
    let has_te = head.header(buf, b"transfer-encoding").is_some();
    for h in head.headers() {
        let name = h.name(buf);
        if is_hop_by_hop(name) || (!conn.is_empty() && connection_names(&conn, name)) {
            continue;
        }
        if (dechunk || has_te) && name_eq(name, b"content-length") {
            continue;
        }
        has_id |= name_eq(name, b"x-request-id");
        out.extend_from_slice(name);
        out.extend_from_slice(b": ");
        out.extend_from_slice(h.value(buf));
        out.extend_from_slice(b"\r\n");
    }
    if head.framing() == crate::http::BodyFraming::Chunked && !dechunk {
        out.extend_from_slice(b"transfer-encoding: chunked\r\n");
    }
    if !has_id {
        out.extend_from_slice(b"x-request-id: ");
        out.extend_from_slice(ctx.request_id.as_str().as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    if ctx.route_headers {
        out.extend_from_slice(b"x-slotgate-route: ");
        out.extend_from_slice(ctx.route().as_bytes());
        out.extend_from_slice(b"\r\nx-slotgate-upstream: ");
        out.extend_from_slice(ctx.upstream().as_bytes());
        out.extend_from_slice(b"\r\n");
        if let Some(from) = ctx.fallback_from() {
            out.extend_from_slice(b"x-slotgate-fallback-from: ");
            out.extend_from_slice(from.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
    }
    if close_client {
        out.extend_from_slice(b"connection: close\r\n");
    }
    out.extend_from_slice(b"\r\n");
}
