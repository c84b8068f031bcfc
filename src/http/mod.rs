//! HTTP/1.1 framing over httparse, and the error envelope (DESIGN.md §4).

pub mod error;

pub use error::{ErrorCode, ErrorReply};
