//! HTTP/1.1 framing over httparse, the writer of slotgate's own response heads, and the error
//! envelope (DESIGN.md §4).

#![deny(clippy::string_slice, clippy::indexing_slicing)]

pub mod chunked;
pub mod error;
pub mod headers;
pub mod request;
pub mod response;
pub mod target;
pub mod writer;

pub use chunked::{ChunkedDecoder, ChunkedError, Progress};
pub use error::{ErrorCode, ErrorReply};
pub use headers::{BodyFraming, HeaderSpan, Span};
pub use request::{Limits, Method, RequestError, RequestHead, Status, Version};
pub use response::{ResponseError, ResponseHead};
pub use writer::{reason_phrase, ResponseWriter};
