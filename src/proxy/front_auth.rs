//! The front-door key check (DESIGN.md §4 `auth.unauthorized`): every front-door path, the
//! model list included, before anything is routed or forwarded.

use super::client::ClientConn;
use super::context::Outcome;
use super::context::Worker;
use super::forward::RequestId;
use crate::http::{ErrorCode, ErrorReply};
use crate::routing::Snapshot;
use monoio::io::AsyncWriteRentExt;

/// Whether the request in `c` (its bytes in `buf`) may pass: no `[auth]` configured, or it
/// carries an accepted key. Uses the keys of the request's snapshot, so a reload applies to the
/// next request.
#[inline]
pub fn allowed(snap: &Snapshot, c: &ClientConn, buf: &[u8]) -> bool {
    super::front::key_accepted(snap, &c.head, buf)
}

/// Answers `401 auth.unauthorized` with `WWW-Authenticate: Bearer`. The request was framed
/// correctly, so the connection stays usable.
pub async fn refuse(w: &Worker, c: &mut ClientConn, buf: &[u8], keep_alive: bool) -> Outcome {
    let id = RequestId::of(&w.ids, c.head.request_id(buf));
    let reply = ErrorReply::new(
        ErrorCode::Unauthorized,
        "a valid API key is required (Authorization: Bearer <key> or X-Api-Key: <key>)",
    );
    let extra = format!(
        "www-authenticate: Bearer\r\nx-request-id: {}\r\n",
        id.as_str()
    );
    c.probe.request_id(&id);
    c.probe.responding();
    let (res, _) = c
        .stream
        .write_all(reply.to_response(&extra, !keep_alive))
        .await;
    if res.is_err() || !keep_alive {
        Outcome::Close
    } else {
        Outcome::KeepAlive
    }
}
