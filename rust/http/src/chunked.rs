//! Resumable validator / decoder for `Transfer-Encoding: chunked` bodies
//! (RFC 9112 §7.1), strict: CRLF only, no whitespace around the size, bounded
//! size lines and trailer section.

use crate::chars::hex_value;
use crate::{is_tchar, HttpError};

/// Longest accepted chunk-size line (size + extensions, without CRLF).
pub const MAX_SIZE_LINE: u32 = 4096;
/// Largest accepted trailer section (all trailer lines incl. CRLFs).
pub const MAX_TRAILER: u32 = 16384;
/// Chunk sizes must stay below 2^63.
const MAX_CHUNK: u64 = 1 << 63;

// States. 0 must be the initial state (an all-zero scanner is a fresh one).
const S_SIZE_START: u8 = 0; // first hex digit of a chunk size
const S_SIZE: u8 = 1; // further hex digits
const S_SIZE_LF: u8 = 2; // CR seen after the size line
const S_EXT_NAME_START: u8 = 3; // after ';'
const S_EXT_NAME: u8 = 4;
const S_EXT_VAL_START: u8 = 5; // after '='
const S_EXT_VAL_TOKEN: u8 = 6;
const S_EXT_QUOTED: u8 = 7;
const S_EXT_QUOTED_ESC: u8 = 8;
const S_EXT_QUOTED_END: u8 = 9;
const S_DATA: u8 = 10;
const S_DATA_CR: u8 = 11;
const S_DATA_LF: u8 = 12;
const S_TRAILER_START: u8 = 13; // start of a trailer line or the final CRLF
const S_TRAILER_NAME: u8 = 14;
const S_TRAILER_VALUE: u8 = 15;
const S_TRAILER_LF: u8 = 16;
const S_FINAL_LF: u8 = 17;
const S_DONE: u8 = 18;
const S_ERROR: u8 = 19;

static ERRORS: [&str; 9] = [
    "",
    "invalid chunk size",
    "chunk size too large",
    "invalid chunk extension",
    "chunk size line too long",
    "missing CRLF after chunk data",
    "invalid trailer field",
    "trailer section too large",
    "bare CR or LF in chunked body",
];
const E_SIZE: u8 = 1;
const E_SIZE_OVERFLOW: u8 = 2;
const E_EXT: u8 = 3;
const E_LINE_LONG: u8 = 4;
const E_DATA_CRLF: u8 = 5;
const E_TRAILER: u8 = 6;
const E_TRAILER_LONG: u8 = 7;
const E_CRLF: u8 = 8;

/// Validates (and optionally decodes) a chunked message body fed in
/// arbitrary pieces. `#[repr(C)]` so C can embed it; all-zero is the
/// initial state.
#[repr(C)]
#[derive(Clone, Copy, Default, Debug, PartialEq, Eq)]
pub struct ChunkedScanner {
    /// Size being accumulated (size states) or data bytes left (data state).
    remaining: u64,
    body_bytes: u64,
    /// Bytes in the current size line, or in the trailer section so far.
    counter: u32,
    state: u8,
    error: u8,
    _pad: [u8; 2],
}

#[inline]
fn hex_val(b: u8) -> Option<u64> {
    hex_value(b).map(u64::from)
}

#[inline]
fn is_qdtext(b: u8) -> bool {
    matches!(b, b'\t' | b' ' | 0x21 | 0x23..=0x5b | 0x5d..=0x7e | 0x80..=0xff)
}

#[inline]
fn is_field_vchar_or_ws(b: u8) -> bool {
    matches!(b, b'\t' | b' '..=0x7e | 0x80..=0xff)
}

/// Where decoded payload goes; `()` discards it.
trait Sink {
    fn put(&mut self, data: &[u8]);
}
impl Sink for () {
    #[inline(always)]
    fn put(&mut self, _: &[u8]) {}
}
impl Sink for Vec<u8> {
    #[inline]
    fn put(&mut self, data: &[u8]) {
        self.extend_from_slice(data);
    }
}

impl ChunkedScanner {
    pub fn new() -> Self {
        Self::default()
    }

    /// Back to the initial state (for the next message on the connection).
    pub fn reset(&mut self) {
        *self = Self::default();
    }

    /// Payload bytes seen so far (sum of chunk sizes announced and entered).
    pub fn body_bytes(&self) -> u64 {
        self.body_bytes
    }

    /// True once the final CRLF of the message has been consumed.
    pub fn is_done(&self) -> bool {
        self.state == S_DONE
    }

    /// Consumes bytes of a chunked body. Returns how many bytes of `buf`
    /// belong to this message (less than `buf.len()` only when the message
    /// ended inside `buf`) and whether the message is complete. Errors are
    /// sticky: once an error is returned, every later call returns it again.
    /// Errors carry status 400; a caller reading an upstream response maps
    /// them to 502.
    pub fn feed(&mut self, buf: &[u8]) -> Result<(usize, bool), HttpError> {
        self.run(buf, &mut ())
    }

    /// Like [`feed`](Self::feed), and appends the payload bytes to `out`.
    pub fn feed_decode(
        &mut self,
        buf: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(usize, bool), HttpError> {
        self.run(buf, out)
    }

    #[inline]
    fn fail(&mut self, code: u8) -> Result<(usize, bool), HttpError> {
        self.state = S_ERROR;
        self.error = code;
        Err(self.err())
    }

    #[inline]
    fn err(&self) -> HttpError {
        HttpError { status: 400, reason: ERRORS[self.error as usize] }
    }

    fn run<S: Sink>(&mut self, buf: &[u8], sink: &mut S) -> Result<(usize, bool), HttpError> {
        let mut i = 0;
        let n = buf.len();
        while i < n {
            let st = self.state;
            if st == S_DATA {
                let take = (n - i).min(usize::try_from(self.remaining).unwrap_or(usize::MAX));
                sink.put(&buf[i..i + take]);
                i += take;
                self.remaining -= take as u64;
                if self.remaining == 0 {
                    self.state = S_DATA_CR;
                }
                continue;
            }
            let b = buf[i];
            i += 1;
            // Size line and trailer length bounds.
            if st <= S_EXT_QUOTED_END && st != S_SIZE_LF {
                self.counter += 1;
                if self.counter > MAX_SIZE_LINE {
                    return self.fail(E_LINE_LONG);
                }
            } else if (S_TRAILER_START..=S_FINAL_LF).contains(&st) {
                self.counter += 1;
                if self.counter > MAX_TRAILER {
                    return self.fail(E_TRAILER_LONG);
                }
            }
            match st {
                S_SIZE_START => match hex_val(b) {
                    Some(v) => {
                        self.remaining = v;
                        self.state = S_SIZE;
                    }
                    None => return self.fail(E_SIZE),
                },
                S_SIZE => {
                    if let Some(v) = hex_val(b) {
                        let nv = (self.remaining << 4) | v;
                        if self.remaining >= MAX_CHUNK >> 4 || nv >= MAX_CHUNK {
                            return self.fail(E_SIZE_OVERFLOW);
                        }
                        self.remaining = nv;
                    } else {
                        match b {
                            b';' => self.state = S_EXT_NAME_START,
                            b'\r' => self.state = S_SIZE_LF,
                            b'\n' => return self.fail(E_CRLF),
                            _ => return self.fail(E_SIZE),
                        }
                    }
                }
                S_SIZE_LF => {
                    if b != b'\n' {
                        return self.fail(E_CRLF);
                    }
                    self.counter = 0;
                    if self.remaining == 0 {
                        self.state = S_TRAILER_START;
                    } else {
                        self.body_bytes = self.body_bytes.saturating_add(self.remaining);
                        self.state = S_DATA;
                    }
                }
                S_EXT_NAME_START => {
                    if is_tchar(b) {
                        self.state = S_EXT_NAME;
                    } else {
                        return self.fail(E_EXT);
                    }
                }
                S_EXT_NAME => {
                    if !is_tchar(b) {
                        match b {
                            b'=' => self.state = S_EXT_VAL_START,
                            b';' => self.state = S_EXT_NAME_START,
                            b'\r' => self.state = S_SIZE_LF,
                            _ => return self.fail(E_EXT),
                        }
                    }
                }
                S_EXT_VAL_START => {
                    if b == b'"' {
                        self.state = S_EXT_QUOTED;
                    } else if is_tchar(b) {
                        self.state = S_EXT_VAL_TOKEN;
                    } else {
                        return self.fail(E_EXT);
                    }
                }
                S_EXT_VAL_TOKEN => {
                    if !is_tchar(b) {
                        match b {
                            b';' => self.state = S_EXT_NAME_START,
                            b'\r' => self.state = S_SIZE_LF,
                            _ => return self.fail(E_EXT),
                        }
                    }
                }
                S_EXT_QUOTED => {
                    if b == b'"' {
                        self.state = S_EXT_QUOTED_END;
                    } else if b == b'\\' {
                        self.state = S_EXT_QUOTED_ESC;
                    } else if !is_qdtext(b) {
                        return self.fail(E_EXT);
                    }
                }
                S_EXT_QUOTED_ESC => {
                    if is_field_vchar_or_ws(b) {
                        self.state = S_EXT_QUOTED;
                    } else {
                        return self.fail(E_EXT);
                    }
                }
                S_EXT_QUOTED_END => match b {
                    b';' => self.state = S_EXT_NAME_START,
                    b'\r' => self.state = S_SIZE_LF,
                    _ => return self.fail(E_EXT),
                },
                S_DATA_CR => {
                    if b != b'\r' {
                        return self.fail(E_DATA_CRLF);
                    }
                    self.state = S_DATA_LF;
                }
                S_DATA_LF => {
                    if b != b'\n' {
                        return self.fail(E_DATA_CRLF);
                    }
                    self.state = S_SIZE_START;
                }
                S_TRAILER_START => {
                    if b == b'\r' {
                        self.state = S_FINAL_LF;
                    } else if is_tchar(b) {
                        self.state = S_TRAILER_NAME;
                    } else {
                        // includes SP/HTAB (obs-fold) and bare LF
                        return self.fail(E_TRAILER);
                    }
                }
                S_TRAILER_NAME => {
                    if b == b':' {
                        self.state = S_TRAILER_VALUE;
                    } else if !is_tchar(b) {
                        return self.fail(E_TRAILER);
                    }
                }
                S_TRAILER_VALUE => {
                    if b == b'\r' {
                        self.state = S_TRAILER_LF;
                    } else if !is_field_vchar_or_ws(b) {
                        return self.fail(E_TRAILER);
                    }
                }
                S_TRAILER_LF => {
                    if b != b'\n' {
                        return self.fail(E_CRLF);
                    }
                    self.state = S_TRAILER_START;
                }
                S_FINAL_LF => {
                    if b != b'\n' {
                        return self.fail(E_CRLF);
                    }
                    self.state = S_DONE;
                    return Ok((i, true));
                }
                S_DONE => return Ok((i - 1, true)),
                _ => return Err(self.err()),
            }
        }
        match self.state {
            S_ERROR => Err(self.err()),
            S_DONE => Ok((0, true)),
            _ => Ok((n, false)),
        }
    }
}
