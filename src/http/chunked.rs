//! Incremental, allocation-free `Transfer-Encoding: chunked` state machine (RFC 9112 §7.1).
//!
//! One machine serves two uses: *decoding* request bodies ([`ChunkedDecoder::decode`] hands out
//! the payload bytes) and *tracking* relayed response bodies ([`ChunkedDecoder::track`] only
//! finds where the message ends, after the last chunk and trailers, and validates the framing
//! while the caller forwards the bytes verbatim). Input may be split anywhere.

/// Longest chunk-size in hex digits (leading zeros included): 16 digits fill a `u64`.
const MAX_SIZE_DIGITS: u8 = 16;
/// Chunk extensions we skip, summed over the whole message; beyond it a sender is abusing them.
const MAX_EXTENSION_BYTES: u32 = 16 * 1024;
/// Trailer section bytes, summed.
const MAX_TRAILER_BYTES: u32 = 16 * 1024;

/// Why chunked framing was refused (the proxy answers 400 `request.bad_http` on a request and
/// cuts the relay on a response).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChunkedError {
    /// A chunk-size line does not start with a hex digit, or has a stray byte after the size.
    InvalidSize,
    /// A chunk size does not fit 64 bits (more than 16 hex digits).
    SizeOverflow,
    /// Chunk extensions exceed the allowed total.
    ExtensionTooLong,
    /// A CR not followed by LF, a bare LF, or chunk data not followed by CRLF.
    BadLineEnding,
    /// A control byte inside a chunk extension or trailer line, or a trailer line without `:`.
    InvalidByte,
    /// The trailer section exceeds the allowed total.
    TrailerTooLarge,
}

impl std::fmt::Display for ChunkedError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ChunkedError::InvalidSize => "invalid chunk size",
            ChunkedError::SizeOverflow => "chunk size overflow",
            ChunkedError::ExtensionTooLong => "chunk extensions too long",
            ChunkedError::BadLineEnding => "bad line ending in chunked framing",
            ChunkedError::InvalidByte => "invalid byte in chunk extension or trailer",
            ChunkedError::TrailerTooLarge => "chunked trailer section too large",
        })
    }
}

impl std::error::Error for ChunkedError {}

/// What one feed accomplished.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    /// Bytes of the input that belong to this message. Less than the input only when `done`:
    /// the rest is the start of the next message (pipelining) or garbage.
    pub consumed: usize,
    /// The terminating last-chunk and trailer section have been seen.
    pub done: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Reading hex digits of a chunk size (`digits` seen so far).
    Size { digits: u8 },
    /// After the size: optional whitespace before `;` or CR.
    SizeWs,
    /// Inside chunk extensions, until CR.
    Ext,
    /// Saw the CR ending a size line; LF must follow.
    SizeLf,
    /// Inside chunk data.
    Data,
    /// After chunk data, CR must follow.
    DataCr,
    /// After chunk data and CR, LF must follow.
    DataLf,
    /// At the start of a trailer line or the final empty line.
    TrailerStart,
    /// Inside a trailer line.
    Trailer { colon: bool },
    /// Saw CR ending a trailer line.
    TrailerLf,
    /// Saw CR of the final empty line.
    EndLf,
    /// Message complete.
    Done,
    /// A previous feed failed; the error is sticky.
    Failed(ChunkedError),
}

/// The chunked-encoding state machine. Feed it input slices in order with [`decode`] or
/// [`track`] (do not mix modes on one message).
///
/// [`decode`]: ChunkedDecoder::decode
/// [`track`]: ChunkedDecoder::track
#[derive(Debug, Clone)]
pub struct ChunkedDecoder {
    state: State,
    /// Bytes left in the current chunk (or the size being accumulated).
    remaining: u64,
    /// Whether the size line being read is the last-chunk (`0`).
    last: bool,
    ext_bytes: u32,
    trailer_bytes: u32,
    payload: u64,
}

impl Default for ChunkedDecoder {
    fn default() -> Self {
        ChunkedDecoder::new()
    }
}

impl ChunkedDecoder {
    /// A machine at the start of a chunked body.
    pub fn new() -> ChunkedDecoder {
        ChunkedDecoder {
            state: State::Size { digits: 0 },
            remaining: 0,
            last: false,
            ext_bytes: 0,
            trailer_bytes: 0,
            payload: 0,
        }
    }

    /// Whether the whole message (last chunk and trailers) has been seen.
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Payload bytes seen so far (what a decoder has handed out); bound it by `max_body_bytes`.
    pub fn payload_len(&self) -> u64 {
        self.payload
    }

    /// Pass-through mode: validates `input` and reports where the message ends, without
    /// handing out payload. Forward `input[..consumed]` verbatim.
    pub fn track(&mut self, input: &[u8]) -> Result<Progress, ChunkedError> {
        self.decode(input, |_| {})
    }

    /// Decode mode: feeds `input`; `on_data` receives each run of payload bytes (sub-slices of
    /// `input`, in order). After an error every later call fails with the same error.
    pub fn decode<'a>(
        &mut self,
        input: &'a [u8],
        mut on_data: impl FnMut(&'a [u8]),
    ) -> Result<Progress, ChunkedError> {
        match self.run(input, &mut on_data) {
            Ok(p) => Ok(p),
            Err(e) => {
                self.state = State::Failed(e);
                Err(e)
            }
        }
    }

    fn run<'a>(
        &mut self,
        input: &'a [u8],
        on_data: &mut impl FnMut(&'a [u8]),
    ) -> Result<Progress, ChunkedError> {
        let mut i = 0;
        while let Some(&b) = input.get(i) {
            match self.state {
                State::Failed(e) => return Err(e),
                State::Done => {
                    return Ok(Progress {
                        consumed: i,
                        done: true,
                    })
                }
                State::Data => {
                    let take =
                        (input.len() - i).min(self.remaining.min(usize::MAX as u64) as usize);
                    on_data(input.get(i..i + take).unwrap_or_default());
                    self.payload += take as u64;
                    self.remaining -= take as u64;
                    i += take;
                    if self.remaining == 0 {
                        self.state = State::DataCr;
                    }
                    continue;
                }
                State::Size { digits } => {
                    if let Some(v) = hex_val(b) {
                        if digits >= MAX_SIZE_DIGITS {
                            return Err(ChunkedError::SizeOverflow);
                        }
                        self.remaining = (self.remaining << 4) | u64::from(v);
                        self.state = State::Size { digits: digits + 1 };
                    } else if digits == 0 {
                        return Err(ChunkedError::InvalidSize);
                    } else {
                        self.last = self.remaining == 0;
                        self.state = State::SizeWs;
                        // Re-examine this byte as the first one after the size.
                        continue;
                    }
                }
                State::SizeWs => match b {
                    b' ' | b'\t' => self.ext_byte()?,
                    b';' => {
                        self.ext_byte()?;
                        self.state = State::Ext;
                    }
                    b'\r' => self.state = State::SizeLf,
                    b'\n' => return Err(ChunkedError::BadLineEnding),
                    _ => return Err(ChunkedError::InvalidSize),
                },
                State::Ext => match b {
                    b'\r' => self.state = State::SizeLf,
                    b'\n' => return Err(ChunkedError::BadLineEnding),
                    b'\t' | 0x20..=0x7e | 0x80..=0xff => self.ext_byte()?,
                    _ => return Err(ChunkedError::InvalidByte),
                },
                State::SizeLf => {
                    if b != b'\n' {
                        return Err(ChunkedError::BadLineEnding);
                    }
                    self.state = if self.last {
                        State::TrailerStart
                    } else {
                        State::Data
                    };
                }
                State::DataCr => {
                    if b != b'\r' {
                        return Err(ChunkedError::BadLineEnding);
                    }
                    self.state = State::DataLf;
                }
                State::DataLf => {
                    if b != b'\n' {
                        return Err(ChunkedError::BadLineEnding);
                    }
                    self.remaining = 0;
                    self.state = State::Size { digits: 0 };
                }
                State::TrailerStart => match b {
                    b'\r' => self.state = State::EndLf,
                    b'\n' => return Err(ChunkedError::BadLineEnding),
                    // A trailer line may not start with whitespace (obs-fold) or a colon.
                    b' ' | b'\t' | b':' => return Err(ChunkedError::InvalidByte),
                    _ => {
                        self.trailer_byte()?;
                        self.state = State::Trailer { colon: false };
                        continue;
                    }
                },
                State::Trailer { colon } => match b {
                    b'\r' if colon => self.state = State::TrailerLf,
                    b'\r' => return Err(ChunkedError::InvalidByte),
                    b'\n' => return Err(ChunkedError::BadLineEnding),
                    b'\t' | 0x20..=0x7e | 0x80..=0xff => {
                        self.trailer_byte()?;
                        self.state = State::Trailer {
                            colon: colon || b == b':',
                        };
                    }
                    _ => return Err(ChunkedError::InvalidByte),
                },
                State::TrailerLf => {
                    if b != b'\n' {
                        return Err(ChunkedError::BadLineEnding);
                    }
                    self.state = State::TrailerStart;
                }
                State::EndLf => {
                    if b != b'\n' {
                        return Err(ChunkedError::BadLineEnding);
                    }
                    self.state = State::Done;
                    return Ok(Progress {
                        consumed: i + 1,
                        done: true,
                    });
                }
            }
            i += 1;
        }
        match self.state {
            State::Failed(e) => Err(e),
            s => Ok(Progress {
                consumed: input.len(),
                done: s == State::Done,
            }),
        }
    }

    fn ext_byte(&mut self) -> Result<(), ChunkedError> {
        self.ext_bytes += 1;
        if self.ext_bytes > MAX_EXTENSION_BYTES {
            return Err(ChunkedError::ExtensionTooLong);
        }
        Ok(())
    }

    fn trailer_byte(&mut self) -> Result<(), ChunkedError> {
        self.trailer_bytes += 1;
        if self.trailer_bytes > MAX_TRAILER_BYTES {
            return Err(ChunkedError::TrailerTooLarge);
        }
        Ok(())
    }
}

#[inline]
fn hex_val(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Appends one chunk (`{len:x}\r\n{data}\r\n`) to `out`; an empty `data` writes nothing (an
/// empty chunk would end the message). Used by writers of chunked bodies (mock, admin).
const HEX_DIGITS: &[u8; 16] = b"0123456789abcdef";

pub fn encode_chunk(out: &mut Vec<u8>, data: &[u8]) {
    if data.is_empty() {
        return;
    }
    let mut hex = [0u8; 16];
    let mut n = data.len();
    let mut i = hex.len();
    while n > 0 || i == hex.len() {
        i -= 1;
        if let Some(d) = hex.get_mut(i) {
            *d = HEX_DIGITS.get(n & 0xf).copied().unwrap_or(b'0');
        }
        n >>= 4;
    }
    out.extend_from_slice(hex.get(i..).unwrap_or_default());
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(data);
    out.extend_from_slice(b"\r\n");
}

/// The last-chunk and empty trailer section that end a chunked body.
pub const LAST_CHUNK: &[u8] = b"0\r\n\r\n";

#[cfg(test)]
#[allow(clippy::indexing_slicing, clippy::string_slice)] // tests: a panic is a failure
mod tests {
    use super::*;

    /// Feeds `input` split at `cut` (and as a whole when `cut` is 0), returning the decoded
    /// payload, the total consumed and whether it finished.
    fn feed_split(input: &[u8], cut: usize) -> Result<(Vec<u8>, usize, bool), ChunkedError> {
        let mut d = ChunkedDecoder::new();
        let mut out = Vec::new();
        let mut consumed = 0;
        let parts: [&[u8]; 2] = [&input[..cut], &input[cut..]];
        for p in parts {
            let r = d.decode(p, |s| out.extend_from_slice(s))?;
            consumed += r.consumed;
            if r.done {
                return Ok((out, consumed, true));
            }
        }
        Ok((out, consumed, false))
    }

    fn feed_bytewise(input: &[u8]) -> Result<(Vec<u8>, usize, bool), ChunkedError> {
        let mut d = ChunkedDecoder::new();
        let mut out = Vec::new();
        let mut consumed = 0;
        for b in input.chunks(1) {
            let r = d.decode(b, |s| out.extend_from_slice(s))?;
            consumed += r.consumed;
            if r.done {
                return Ok((out, consumed, true));
            }
        }
        Ok((out, consumed, false))
    }

    const VALID: &[(&[u8], &[u8])] = &[
        (b"5\r\nhello\r\n0\r\n\r\n", b"hello"),
        (b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n", b"hello world"),
        (b"0\r\n\r\n", b""),
        (b"000\r\n\r\n", b""),
        (b"A\r\n0123456789\r\n0\r\n\r\n", b"0123456789"),
        (b"a;name=val\r\n0123456789\r\n0;x\r\n\r\n", b"0123456789"),
        (b"3 ;q=\"a b\"\r\nabc\r\n0\r\n\r\n", b"abc"),
        (b"3\r\nabc\r\n0\r\nX-Trailer: 1\r\nY: 2\r\n\r\n", b"abc"),
        (b"0000000000000003\r\nabc\r\n0\r\n\r\n", b"abc"),
    ];

    #[test]
    fn valid_inputs_at_every_split() {
        for (input, want) in VALID {
            for cut in 0..=input.len() {
                let (out, consumed, done) = feed_split(input, cut).unwrap();
                assert!(done, "{:?} cut {cut}", String::from_utf8_lossy(input));
                assert_eq!(&out, want);
                assert_eq!(consumed, input.len());
            }
            let (out, consumed, done) = feed_bytewise(input).unwrap();
            assert!(done);
            assert_eq!(&out, want);
            assert_eq!(consumed, input.len());
        }
    }

    #[test]
    fn stops_at_message_end() {
        let input = b"3\r\nabc\r\n0\r\n\r\nGET / HTTP/1.1\r\n";
        for cut in 0..=input.len() {
            let (out, consumed, done) = feed_split(input, cut).unwrap();
            assert!(done);
            assert_eq!(out, b"abc");
            assert_eq!(consumed, 13);
        }
        // Further feeds after done consume nothing.
        let mut d = ChunkedDecoder::new();
        d.track(b"0\r\n\r\n").unwrap();
        assert!(d.is_done());
        assert_eq!(
            d.track(b"xyz"),
            Ok(Progress {
                consumed: 0,
                done: true
            })
        );
    }

    #[test]
    fn incomplete_is_not_done() {
        let input = b"5\r\nhello\r\n0\r\n\r\n";
        for end in 0..input.len() {
            let (_, consumed, done) = feed_split(&input[..end], 0).unwrap();
            assert!(!done, "prefix {end}");
            assert_eq!(consumed, end);
        }
    }

    #[test]
    fn invalid_inputs_at_every_split() {
        use ChunkedError::*;
        let cases: &[(&[u8], ChunkedError)] = &[
            (b"g\r\n", InvalidSize),
            (b"\r\n", InvalidSize),
            (b"-1\r\n", InvalidSize),
            (b"0x5\r\nhello\r\n", InvalidSize),
            (b"5 5\r\n", InvalidSize),
            (b"+5\r\n", InvalidSize),
            (b"10000000000000000\r\n", SizeOverflow),
            (b"ffffffffffffffff0\r\n", SizeOverflow),
            (b"5\nhello\r\n", BadLineEnding),
            (b"5\r\rhello\r\n", BadLineEnding),
            (b"5\r\nhelloX\r\n", BadLineEnding),
            (b"5\r\nhello\rX", BadLineEnding),
            (b"5\r\nhello\n0\r\n\r\n", BadLineEnding),
            (b"0\r\n\n", BadLineEnding),
            (b"0\r\n\rX", BadLineEnding),
            (b"0\r\nX: 1\n\r\n", BadLineEnding),
            (b"3;a\x00b\r\nabc\r\n", InvalidByte),
            (b"3;a\nb\r\n", BadLineEnding),
            (b"0\r\n folded\r\n\r\n", InvalidByte),
            (b"0\r\nNoColon\r\n\r\n", InvalidByte),
            (b"0\r\nX: a\x01\r\n\r\n", InvalidByte),
        ];
        for (input, want) in cases {
            for cut in 0..=input.len() {
                let got = feed_split(input, cut);
                assert_eq!(
                    got,
                    Err(*want),
                    "{:?} cut {cut}",
                    String::from_utf8_lossy(input)
                );
            }
            assert_eq!(feed_bytewise(input), Err(*want));
        }
    }

    #[test]
    fn extension_and_trailer_limits() {
        let mut long_ext = b"1;".to_vec();
        long_ext.extend(std::iter::repeat_n(b'a', MAX_EXTENSION_BYTES as usize));
        long_ext.extend_from_slice(b"\r\nx\r\n0\r\n\r\n");
        assert_eq!(
            feed_split(&long_ext, 0),
            Err(ChunkedError::ExtensionTooLong)
        );
        let mut long_trailer = b"0\r\nX: ".to_vec();
        long_trailer.extend(std::iter::repeat_n(b'a', MAX_TRAILER_BYTES as usize));
        long_trailer.extend_from_slice(b"\r\n\r\n");
        assert_eq!(
            feed_split(&long_trailer, 0),
            Err(ChunkedError::TrailerTooLarge)
        );
    }

    #[test]
    fn errors_are_sticky() {
        let mut d = ChunkedDecoder::new();
        assert_eq!(d.track(b"z"), Err(ChunkedError::InvalidSize));
        assert_eq!(d.track(b"0\r\n\r\n"), Err(ChunkedError::InvalidSize));
    }

    #[test]
    fn track_matches_decode_and_counts_payload() {
        let input = b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n";
        for cut in 0..=input.len() {
            let mut d = ChunkedDecoder::new();
            let a = d.track(&input[..cut]).unwrap();
            let b = d.track(&input[cut..]).unwrap();
            assert_eq!(a.consumed + b.consumed, input.len());
            assert!(b.done || (a.done && cut == input.len()));
            assert_eq!(d.payload_len(), 11);
        }
    }

    #[test]
    fn encode_round_trip() {
        let mut out = Vec::new();
        encode_chunk(&mut out, b"hello");
        encode_chunk(&mut out, b"");
        encode_chunk(&mut out, &[b'x'; 300]);
        out.extend_from_slice(LAST_CHUNK);
        assert!(out.starts_with(b"5\r\nhello\r\n12c\r\n"));
        let (payload, consumed, done) = feed_split(&out, 0).unwrap();
        assert!(done);
        assert_eq!(consumed, out.len());
        assert_eq!(payload.len(), 305);
    }
}
