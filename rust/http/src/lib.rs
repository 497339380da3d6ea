//! HTTP/1.1 head parsing and message framing for the gateway's proxy path.
//!
//! One call parses a whole request (or response) head and fills a caller-owned,
//! reusable `#[repr(C)]` struct with spans (offset + length) into the caller's
//! buffer. Nothing is allocated per parse. Tokenizing is done by `httparse`;
//! this crate adds the checks a proxy needs against request smuggling
//! (RFC 9110 / RFC 9112), which `httparse` alone is too lenient for:
//! bare LF line endings, duplicate or malformed Content-Length, ambiguous
//! Transfer-Encoding, CL+TE, missing or repeated Host, invalid Connection lists.
//! Request-target bytes outside the URI grammar are flagged for escaping (the
//! `target` module says which and why).
//!
//! Chunked bodies are validated (and optionally decoded) by [`ChunkedScanner`],
//! a resumable byte-level state machine that can be fed arbitrary splits.

use std::mem::MaybeUninit;

mod chunked;
pub use chunked::ChunkedScanner;
pub mod chars;
pub(crate) use chars::is_tchar;
use chars::{is_host_byte, TARGET_CLASS, T_ESCAPE, T_OK, T_QMARK, T_REJECT};
mod fields;
pub use fields::request_from_fields;
mod target;
use target::valid_escape_at;
pub use target::{escape_query, query_needs_escape};

#[cfg(feature = "python")]
pub mod python;

#[cfg(test)]
mod tests;

// ---------------------------------------------------------------------------
// Public types
// ---------------------------------------------------------------------------

/// A byte range of the input buffer.
#[repr(C)]
#[derive(Clone, Copy, Default, Debug, PartialEq, Eq)]
pub struct Span {
    pub off: u32,
    pub len: u32,
}

impl Span {
    #[inline]
    pub const fn new(off: u32, len: u32) -> Self {
        Span { off, len }
    }

    /// The bytes of `buf` this span covers (the buffer the span was parsed from).
    #[inline]
    pub fn get<'a>(&self, buf: &'a [u8]) -> &'a [u8] {
        &buf[self.off as usize..(self.off + self.len) as usize]
    }

    #[inline]
    pub const fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// One header field: name and (OWS-trimmed) value spans plus `HF_*` flags.
#[repr(C)]
#[derive(Clone, Copy, Default, Debug)]
pub struct HeaderEntry {
    pub name: Span,
    pub value: Span,
    pub flags: u32,
}

/// Hop-by-hop: Connection, Keep-Alive, Proxy-Connection, TE, Trailer,
/// Transfer-Encoding, Upgrade and every header named in a Connection value
/// (except Host and Content-Length, see [`parse_request`]). A proxy drops these.
pub const HF_HOP_BY_HOP: u32 = 1;
pub const HF_HOST: u32 = 2;
pub const HF_CONTENT_LENGTH: u32 = 4;
pub const HF_TRANSFER_ENCODING: u32 = 8;
pub const HF_CONNECTION: u32 = 16;
pub const HF_EXPECT: u32 = 32;
pub const HF_X_FORWARDED_FOR: u32 = 64;
pub const HF_X_FORWARDED_PROTO: u32 = 128;
pub const HF_X_FORWARDED_HOST: u32 = 256;
pub const HF_X_REAL_IP: u32 = 512;
pub const HF_UPGRADE: u32 = 1024;
/// `Date`: a response without one gets the gateway's (RFC 9110 section 6.6.1).
pub const HF_DATE: u32 = 2048;

/// Capacity of the header arrays in [`RequestHead`] / [`ResponseHead`].
pub const MAX_HEADERS: usize = 128;

pub const BODY_NONE: u8 = 0;
pub const BODY_LENGTH: u8 = 1;
pub const BODY_CHUNKED: u8 = 2;
/// Responses only: the body runs until the upstream closes the connection.
pub const BODY_UNTIL_CLOSE: u8 = 3;

pub const METHOD_OTHER: u8 = 0;
pub const METHOD_GET: u8 = 1;
pub const METHOD_HEAD: u8 = 2;
pub const METHOD_POST: u8 = 3;
pub const METHOD_PUT: u8 = 4;
pub const METHOD_DELETE: u8 = 5;
pub const METHOD_OPTIONS: u8 = 6;
pub const METHOD_PATCH: u8 = 7;
pub const METHOD_CONNECT: u8 = 8;
pub const METHOD_TRACE: u8 = 9;

/// Size limits applied by [`parse_request`] / [`parse_response`].
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Longest request line accepted, including its CRLF (else 414).
    pub max_request_line: u32,
    /// Longest head accepted, including the final CRLFCRLF (else 431).
    pub max_head_size: u32,
    /// Most header fields accepted (else 431); capped at [`MAX_HEADERS`].
    pub max_headers: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { max_request_line: 8192, max_head_size: 32768, max_headers: 100 }
    }
}

/// A parsed request head. All spans point into the buffer given to [`parse_request`].
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct RequestHead {
    /// Bytes of the head including leading empty lines and the final CRLFCRLF.
    pub head_len: u32,
    pub method: Span,
    pub method_id: u8,
    /// 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub version_minor: u8,
    /// `BODY_NONE`, `BODY_LENGTH` or `BODY_CHUNKED`.
    pub body_kind: u8,
    pub keep_alive: u8,
    pub expect_continue: u8,
    /// HTTP/1.1, `Connection: upgrade` and an Upgrade header.
    pub upgrade: u8,
    /// A Host header field is present (possibly with an empty value).
    pub has_host: u8,
    /// The query holds bytes outside RFC 3986's grammar: it is forwarded through
    /// [`escape_query`] (see the `target` module).
    pub query_escape: u8,
    /// Value of the Content-Length header (0 when absent).
    pub content_length: u64,
    /// The raw request-target.
    pub target: Span,
    /// Origin-form: target up to '?'. Absolute-form: the path part of the URI
    /// (empty, at the end of the authority, when the URI has no path).
    /// Asterisk-form: "*". Authority-form (CONNECT): empty.
    pub path: Span,
    /// After '?', empty if none.
    pub query: Span,
    /// Absolute-form and authority-form: the authority from the target (it
    /// takes precedence over the Host header, RFC 9112 §3.2.2). Otherwise the
    /// Host header value. Empty if neither.
    pub host: Span,
    pub n_headers: u32,
    pub headers: [HeaderEntry; MAX_HEADERS],
}

impl RequestHead {
    /// A zeroed head, to be reused as the out-parameter of [`parse_request`].
    pub fn new() -> Self {
        RequestHead {
            head_len: 0,
            method: Span::default(),
            method_id: 0,
            version_minor: 0,
            body_kind: 0,
            keep_alive: 0,
            expect_continue: 0,
            upgrade: 0,
            has_host: 0,
            query_escape: 0,
            content_length: 0,
            target: Span::default(),
            path: Span::default(),
            query: Span::default(),
            host: Span::default(),
            n_headers: 0,
            headers: [HeaderEntry::default(); MAX_HEADERS],
        }
    }

    /// The parsed header entries.
    #[inline]
    pub fn headers(&self) -> &[HeaderEntry] {
        &self.headers[..self.n_headers as usize]
    }
}

impl Default for RequestHead {
    fn default() -> Self {
        Self::new()
    }
}

/// A parsed response head. All spans point into the buffer given to [`parse_response`].
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct ResponseHead {
    pub head_len: u32,
    pub status: u16,
    pub version_minor: u8,
    /// `BODY_NONE`, `BODY_LENGTH`, `BODY_CHUNKED` or `BODY_UNTIL_CLOSE`.
    pub body_kind: u8,
    pub keep_alive: u8,
    /// Value of the Content-Length header (0 when absent); framing is `body_kind`.
    pub content_length: u64,
    pub reason: Span,
    pub n_headers: u32,
    pub headers: [HeaderEntry; MAX_HEADERS],
}

impl ResponseHead {
    pub fn new() -> Self {
        ResponseHead {
            head_len: 0,
            status: 0,
            version_minor: 0,
            body_kind: 0,
            keep_alive: 0,
            content_length: 0,
            reason: Span::default(),
            n_headers: 0,
            headers: [HeaderEntry::default(); MAX_HEADERS],
        }
    }

    #[inline]
    pub fn headers(&self) -> &[HeaderEntry] {
        &self.headers[..self.n_headers as usize]
    }
}

impl Default for ResponseHead {
    fn default() -> Self {
        Self::new()
    }
}

/// A parse failure: `status` is what the gateway answers with
/// (400, 414, 431, 501, 505 for requests; always 502 for upstream responses).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpError {
    pub status: u16,
    pub reason: &'static str,
}

impl std::fmt::Display for HttpError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.status, self.reason)
    }
}

impl std::error::Error for HttpError {}

/// Outcome of a head parse that did not fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Parsed {
    /// The head is complete; the value is `head_len` (the body starts there).
    Complete(u32),
    /// More bytes are needed.
    Partial,
}

#[inline]
const fn bad(reason: &'static str) -> HttpError {
    HttpError { status: 400, reason }
}

// ---------------------------------------------------------------------------
// Byte classes
// ---------------------------------------------------------------------------

#[inline]
fn is_token(s: &[u8]) -> bool {
    !s.is_empty() && s.iter().all(|&b| is_tchar(b))
}

#[inline]
fn valid_host(s: &[u8]) -> bool {
    if !s.iter().all(|&b| is_host_byte(b)) {
        return false;
    }
    // Host = uri-host [ ":" port ] (RFC 9112 §3.2, RFC 3986 §3.2.2): an IP-literal in
    // brackets or a name without ':' or brackets, then at most one ':' and a port of digits.
    // Anything else is an invalid Host value, which a server MUST answer with 400.
    let port = if let Some(rest) = s.strip_prefix(b"[") {
        let Some(end) = rest.iter().position(|&b| b == b']') else {
            return false;
        };
        let inner = &rest[..end];
        let future = matches!(inner.first(), Some(b'v' | b'V'));
        if inner.is_empty()
            || !(future || inner.iter().all(|&b| b.is_ascii_hexdigit() || b == b':' || b == b'.'))
        {
            return false;
        }
        &rest[end + 1..]
    } else {
        let i = s.iter().position(|&b| b == b':').unwrap_or(s.len());
        if s[..i].iter().any(|&b| b == b'[' || b == b']') {
            return false;
        }
        &s[i..]
    };
    match port {
        [] => true,
        [b':', digits @ ..] => digits.iter().all(u8::is_ascii_digit),
        _ => false,
    }
}

#[inline]
fn trim_ows(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = s {
        s = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = s {
        s = rest;
    }
    s
}

#[inline]
fn offset_in(buf: &[u8], part: &[u8]) -> usize {
    part.as_ptr() as usize - buf.as_ptr() as usize
}

#[inline]
fn span_of(buf: &[u8], part: &[u8]) -> Span {
    Span { off: offset_in(buf, part) as u32, len: part.len() as u32 }
}

/// Header-name classification: flags implied by the name alone. Inlined into
/// analyze_headers' loop, where it is the hot part (two callers made LLVM stop inlining it).
#[inline(always)]
fn classify_name(n: &[u8]) -> u32 {
    let eq = |s: &str| n.eq_ignore_ascii_case(s.as_bytes());
    match n.len() {
        2 if eq("te") => HF_HOP_BY_HOP,
        4 if eq("host") => HF_HOST,
        4 if eq("date") => HF_DATE,
        6 if eq("expect") => HF_EXPECT,
        7 if eq("upgrade") => HF_UPGRADE | HF_HOP_BY_HOP,
        7 if eq("trailer") => HF_HOP_BY_HOP,
        9 if eq("x-real-ip") => HF_X_REAL_IP,
        10 if eq("connection") => HF_CONNECTION | HF_HOP_BY_HOP,
        10 if eq("keep-alive") => HF_HOP_BY_HOP,
        14 if eq("content-length") => HF_CONTENT_LENGTH,
        15 if eq("x-forwarded-for") => HF_X_FORWARDED_FOR,
        16 if eq("x-forwarded-host") => HF_X_FORWARDED_HOST,
        16 if eq("proxy-connection") => HF_HOP_BY_HOP,
        17 if eq("transfer-encoding") => HF_TRANSFER_ENCODING | HF_HOP_BY_HOP,
        17 if eq("x-forwarded-proto") => HF_X_FORWARDED_PROTO,
        _ => 0,
    }
}

#[inline]
fn method_id(m: &[u8]) -> u8 {
    // Methods are case-sensitive (RFC 9110 §9.1).
    match m {
        b"GET" => METHOD_GET,
        b"HEAD" => METHOD_HEAD,
        b"POST" => METHOD_POST,
        b"PUT" => METHOD_PUT,
        b"DELETE" => METHOD_DELETE,
        b"OPTIONS" => METHOD_OPTIONS,
        b"PATCH" => METHOD_PATCH,
        b"CONNECT" => METHOD_CONNECT,
        b"TRACE" => METHOD_TRACE,
        _ => METHOD_OTHER,
    }
}

/// Splits a comma-separated list value; calls `f` with each non-empty,
/// OWS-trimmed element. Empty elements are allowed by RFC 9110 §5.6.1.
#[inline]
fn for_each_list_item<E>(v: &[u8], mut f: impl FnMut(&[u8]) -> Result<(), E>) -> Result<(), E> {
    for item in v.split(|&b| b == b',') {
        let item = trim_ows(item);
        if !item.is_empty() {
            f(item)?;
        }
    }
    Ok(())
}

/// Index of the first byte that is not part of a leading CRLF/LF run.
#[inline]
fn skip_empty_lines(buf: &[u8]) -> usize {
    buf.iter().position(|&b| b != b'\r' && b != b'\n').unwrap_or(buf.len())
}

// ---------------------------------------------------------------------------
// Shared header-section analysis
// ---------------------------------------------------------------------------

const TE_NONE: u8 = 0;
const TE_CHUNKED: u8 = 1;
/// Known codings without a final chunked (gzip, ...): 400 for requests, a body read until
/// the close in responses (RFC 9112 §6.3).
const TE_UNSUPPORTED: u8 = 2;

/// What the header section says about framing and connection handling.
struct HeadInfo {
    content_length: u64,
    has_cl: bool,
    te: u8,
    /// TE lists codings besides a single `chunked` (in one header or several).
    te_other_codings: bool,
    host: Span,
    host_count: u32,
    conn_close: bool,
    conn_keep_alive: bool,
    conn_upgrade: bool,
    has_upgrade: bool,
    expect_continue: bool,
}

/// httparse's `i`th header (a fields source for [`analyze_headers`]).
#[inline(always)]
fn httparse_fields<'h>(
    hdrs: &'h [httparse::Header<'h>],
) -> impl Fn(usize, &[HeaderEntry]) -> (&'h [u8], &'h [u8]) + 'h {
    move |i, _| (hdrs[i].name.as_bytes(), hdrs[i].value)
}

/// Walks `n` header fields (`field(i, out)`: the name and value of the `i`th, slices of
/// `buf`, each value followed by optional whitespace and CRLF): checks line endings, writes
/// each field's entry (spans and flags) to `out` and collects framing information. Errors
/// carry request statuses; `parse_response` maps every error to 502.
#[inline]
fn analyze_headers<'b>(
    buf: &'b [u8],
    n: usize,
    field: impl Fn(usize, &[HeaderEntry]) -> (&'b [u8], &'b [u8]),
    out: &mut [HeaderEntry],
) -> Result<HeadInfo, HttpError> {
    let mut info = HeadInfo {
        content_length: 0,
        has_cl: false,
        te: TE_NONE,
        te_other_codings: false,
        host: Span::default(),
        host_count: 0,
        conn_close: false,
        conn_keep_alive: false,
        conn_upgrade: false,
        has_upgrade: false,
        expect_continue: false,
    };
    let mut te_count = 0u32;
    let mut conn_names_other = false;

    for i in 0..n {
        let (name, value) = field(i, out);
        let name_span = span_of(buf, name);
        let value_span = span_of(buf, value);

        // httparse accepts a bare LF as line terminator; we require CRLF.
        // After the (trimmed) value only SP/HTAB may precede the CR.
        let mut p = (value_span.off + value_span.len) as usize;
        while matches!(buf[p], b' ' | b'\t') {
            p += 1;
        }
        if buf[p] != b'\r' {
            return Err(bad("bare LF in header section"));
        }

        let flags = classify_name(name);
        if flags != 0 {
            if flags & HF_CONTENT_LENGTH != 0 {
                if info.has_cl {
                    return Err(bad("multiple Content-Length headers"));
                }
                info.has_cl = true;
                info.content_length = parse_content_length(value)?;
            } else if flags & HF_TRANSFER_ENCODING != 0 {
                te_count += 1;
                info.te = classify_te(value, info.te)?;
                info.te_other_codings |= te_count > 1 || !value.eq_ignore_ascii_case(b"chunked");
            } else if flags & HF_HOST != 0 {
                info.host_count += 1;
                if info.host_count > 1 {
                    return Err(bad("multiple Host headers"));
                }
                if !valid_host(value) {
                    return Err(bad("invalid Host header"));
                }
                info.host = value_span;
            } else if flags & HF_CONNECTION != 0 {
                for_each_list_item(value, |tok| {
                    if !is_token(tok) {
                        return Err(bad("invalid Connection header"));
                    }
                    if tok.eq_ignore_ascii_case(b"close") {
                        info.conn_close = true;
                    } else if tok.eq_ignore_ascii_case(b"keep-alive") {
                        info.conn_keep_alive = true;
                    } else if tok.eq_ignore_ascii_case(b"upgrade") {
                        info.conn_upgrade = true;
                    } else {
                        conn_names_other = true;
                    }
                    Ok(())
                })?;
            } else if flags & HF_UPGRADE != 0 {
                info.has_upgrade = true;
            } else if flags & HF_EXPECT != 0 && value.eq_ignore_ascii_case(b"100-continue") {
                info.expect_continue = true;
            }
        }
        out[i] = HeaderEntry { name: name_span, value: value_span, flags };
    }

    if info.has_cl && te_count > 0 {
        return Err(bad("both Content-Length and Transfer-Encoding"));
    }

    if conn_names_other {
        // Rare: Connection names extra headers; mark them hop-by-hop.
        // Choice: Host and Content-Length are never dropped on request of the
        // Connection header (dropping them would change routing or framing of
        // what we forward); Transfer-Encoding is hop-by-hop anyway.
        for i in 0..n {
            if out[i].flags & HF_CONNECTION == 0 {
                continue;
            }
            let _ = for_each_list_item::<()>(out[i].value.get(buf), |tok| {
                for e in out[..n].iter_mut() {
                    if e.flags & (HF_HOST | HF_CONTENT_LENGTH) == 0
                        && e.name.get(buf).eq_ignore_ascii_case(tok)
                    {
                        e.flags |= HF_HOP_BY_HOP;
                    }
                }
                Ok(())
            });
        }
    }
    Ok(info)
}

/// A response's Transfer-Encoding fields stop being hop-by-hop: they name codings the body is
/// relayed in, so the client is sent them as they came.
fn relay_transfer_encoding(headers: &mut [HeaderEntry]) {
    for e in headers.iter_mut() {
        if e.flags & HF_TRANSFER_ENCODING != 0 {
            e.flags &= !HF_HOP_BY_HOP;
        }
    }
}

/// Content-Length = 1*DIGIT, fitting u64. No sign, list, or inner whitespace.
#[inline]
fn parse_content_length(v: &[u8]) -> Result<u64, HttpError> {
    if v.is_empty() {
        return Err(bad("empty Content-Length"));
    }
    let mut n: u64 = 0;
    for &b in v {
        if !b.is_ascii_digit() {
            return Err(bad("invalid Content-Length"));
        }
        n = n
            .checked_mul(10)
            .and_then(|n| n.checked_add((b - b'0') as u64))
            .ok_or(bad("Content-Length overflow"))?;
    }
    Ok(n)
}

/// Transfer-Encoding, over every TE header in order (RFC 9112 §6.1, §6.3): a list of known
/// codings whose last (and only) `chunked` is final is accepted: the body is chunked, and the
/// proxy forwards the other codings untouched. A list of known codings without `chunked` → 400
/// (we cannot find the end of such a body). Anything else → 400: unknown tokens, parameters
/// (`chunked` defines none and the RFC says to treat them as an error), empty elements,
/// `chunked` twice or not last.
#[inline]
fn classify_te(v: &[u8], previous: u8) -> Result<u8, HttpError> {
    if previous == TE_NONE && v.eq_ignore_ascii_case(b"chunked") {
        return Ok(TE_CHUNKED);
    }
    const KNOWN: [&[u8]; 6] =
        [b"gzip", b"deflate", b"compress", b"x-gzip", b"x-compress", b"identity"];
    let mut state = previous;
    for item in v.split(|&b| b == b',') {
        let tok = trim_ows(item);
        if tok.is_empty() {
            return Err(bad("empty element in Transfer-Encoding"));
        }
        if state == TE_CHUNKED {
            return Err(bad("chunked must be the final transfer coding"));
        }
        if tok.eq_ignore_ascii_case(b"chunked") {
            state = TE_CHUNKED;
        } else if KNOWN.iter().any(|k| tok.eq_ignore_ascii_case(k)) {
            state = TE_UNSUPPORTED;
        } else {
            return Err(bad("invalid Transfer-Encoding"));
        }
    }
    Ok(state)
}

// ---------------------------------------------------------------------------
// Requests
// ---------------------------------------------------------------------------

/// Checks applied when httparse says "need more bytes".
#[inline]
fn partial_limits(buf: &[u8], limits: &Limits) -> Result<Parsed, HttpError> {
    let max_line = limits.max_request_line as usize;
    if buf.len() > max_line {
        let start = skip_empty_lines(buf);
        let end = start.saturating_add(max_line);
        if buf.len() > end && !buf[start..end].contains(&b'\n') {
            return Err(HttpError { status: 414, reason: "URI Too Long" });
        }
    }
    if buf.len() > limits.max_head_size as usize {
        return Err(HttpError { status: 431, reason: "Request Header Fields Too Large" });
    }
    Ok(Parsed::Partial)
}

/// httparse refused the version: tell a well-formed `HTTP/x.y` (505) from garbage (400), and
/// serve a higher minor version of HTTP/1 as HTTP/1.1 (RFC 9110 §2.5: a recipient handles a
/// message of a higher minor version as the highest minor version it implements).
fn version_error(buf: &[u8], limits: &Limits, out: &mut RequestHead) -> Result<Parsed, HttpError> {
    let start = skip_empty_lines(buf);
    let line = &buf[start..];
    // Method and target were accepted, so the first two spaces delimit them.
    let mut spaces = line.iter().enumerate().filter(|(_, &b)| b == b' ').map(|(i, _)| i);
    let _ = spaces.next();
    let v = match spaces.next() {
        Some(j) => &line[j + 1..],
        None => return Err(bad("invalid HTTP version")),
    };
    const PAT: &[u8; 9] = b"HTTP/9.9\r";
    for (k, &b) in v.iter().take(9).enumerate() {
        let ok = match k {
            5 | 7 => b.is_ascii_digit(),
            _ => b == PAT[k],
        };
        if !ok {
            return Err(bad("invalid HTTP version"));
        }
    }
    if v.len() < 9 {
        return partial_limits(buf, limits);
    }
    if v[5] == b'1' && v[7] > b'1' {
        // The same bytes with "HTTP/1.1": spans are offsets, so they hold for `buf` as well.
        let digit = buf.len() - v.len() + 7;
        let mut as_1_1 = buf.to_vec();
        as_1_1[digit] = b'1';
        return parse_request(&as_1_1, limits, out);
    }
    Err(HttpError { status: 505, reason: "HTTP Version Not Supported" })
}

/// Parses one request head from the start of `buf` into `out`.
///
/// On `Ok(Complete(n))` the head occupies `buf[..n]` (leading empty lines
/// included) and the body / next message starts at `n`. `out` is fully
/// rewritten on success and unspecified on error or partial.
pub fn parse_request(
    buf: &[u8],
    limits: &Limits,
    out: &mut RequestHead,
) -> Result<Parsed, HttpError> {
    let max_h = (limits.max_headers as usize).min(MAX_HEADERS);
    let mut raw: [MaybeUninit<httparse::Header<'_>>; MAX_HEADERS] =
        [const { MaybeUninit::uninit() }; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut []);
    let head_len = match req.parse_with_uninit_headers(buf, &mut raw[..max_h]) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return partial_limits(buf, limits),
        Err(httparse::Error::TooManyHeaders) => {
            return Err(HttpError { status: 431, reason: "too many headers" })
        }
        Err(httparse::Error::Version) => return version_error(buf, limits, out),
        Err(httparse::Error::Token) => return Err(bad("invalid request line")),
        Err(httparse::Error::HeaderName) => return Err(bad("invalid header name")),
        Err(httparse::Error::HeaderValue) => return Err(bad("invalid header value")),
        Err(_) => return Err(bad("malformed request head")),
    };
    let method = req.method.unwrap_or("").as_bytes();
    let target = req.path.unwrap_or("").as_bytes();
    let minor = req.version.unwrap_or(1);

    // Request line bounds and limits.
    let start = offset_in(buf, method);
    let t_off = offset_in(buf, target);
    let ver_end = t_off + target.len() + 1 + 8; // "SP HTTP/1.x"
    if ver_end + 2 - start > limits.max_request_line as usize {
        return Err(HttpError { status: 414, reason: "URI Too Long" });
    }
    if head_len > limits.max_head_size as usize {
        return Err(HttpError { status: 431, reason: "Request Header Fields Too Large" });
    }
    // CRLF everywhere: leading empty lines, request line, final empty line
    // (header lines are checked in analyze_headers). httparse already refuses
    // a CR that is not followed by LF.
    if start & 1 != 0 || !buf[..start].chunks_exact(2).all(|c| c == b"\r\n") {
        return Err(bad("bare LF before request line"));
    }
    if buf[ver_end] != b'\r' || buf[head_len - 2] != b'\r' {
        return Err(bad("bare LF line terminator"));
    }

    let mid = method_id(method);
    out.head_len = head_len as u32;
    out.method = Span::new(start as u32, method.len() as u32);
    out.method_id = mid;
    out.version_minor = minor;
    out.target = Span::new(t_off as u32, target.len() as u32);
    out.n_headers = 0;
    check_target(target, t_off as u32, mid, out)?;

    let hdrs = &*req.headers;
    let info = analyze_headers(buf, hdrs.len(), httparse_fields(hdrs), &mut out.headers)?;
    out.n_headers = hdrs.len() as u32;
    finish_request(target, minor, &info, out)
}

/// What the request line and the header section say together (Host, framing, keep-alive,
/// Expect, Upgrade), once both are checked: the rest of `out`.
#[inline]
fn finish_request(
    target: &[u8],
    minor: u8,
    info: &HeadInfo,
    out: &mut RequestHead,
) -> Result<Parsed, HttpError> {
    if info.host_count == 0 && minor == 1 {
        return Err(bad("missing Host header"));
    }
    out.has_host = (info.host_count != 0) as u8;
    if target[0] == b'/' || target == b"*" {
        // origin-form / asterisk-form: the Host header names the authority.
        out.host = info.host;
    }

    // Framing (RFC 9112 §6.3).
    out.content_length = info.content_length;
    out.body_kind = if info.te != TE_NONE {
        if minor == 0 {
            return Err(bad("Transfer-Encoding in HTTP/1.0 request"));
        }
        if info.te == TE_UNSUPPORTED {
            // RFC 9112 section 6.3 (4): chunked is not the final coding, so the body's length
            // cannot be determined: a server MUST answer 400 and close (6.1's 501 is a SHOULD
            // for codings it does not understand; this rule is the framing one and wins).
            return Err(bad("chunked must be the final transfer coding"));
        }
        BODY_CHUNKED
    } else if info.content_length > 0 {
        BODY_LENGTH
    } else {
        // No body, or Content-Length: 0 (content_length is 0 either way).
        BODY_NONE
    };

    out.keep_alive =
        if minor == 1 { !info.conn_close } else { info.conn_keep_alive && !info.conn_close } as u8;
    out.expect_continue = (info.expect_continue && minor == 1) as u8;
    // Upgrade is ignored in HTTP/1.0 requests (RFC 9110 §7.8).
    out.upgrade = (info.conn_upgrade && info.has_upgrade && minor == 1) as u8;
    Ok(Parsed::Complete(out.head_len))
}

/// Validates the request-target and sets path / query / host (authority forms).
#[inline]
fn check_target(t: &[u8], off: u32, mid: u8, out: &mut RequestHead) -> Result<(), HttpError> {
    // One pass: refuse what breaks the request line, find the first '?', and note whether the
    // query needs escaping before it is forwarded (the path's escapes are the normaliser's).
    let mut q = usize::MAX;
    let mut escape = false;
    for (i, &b) in t.iter().enumerate() {
        let class = TARGET_CLASS[b as usize];
        if class == T_OK {
            continue;
        }
        if class == T_REJECT {
            return Err(bad("invalid character in request-target"));
        }
        if class == T_QMARK {
            if q == usize::MAX {
                q = i;
            }
        } else if q != usize::MAX && (class == T_ESCAPE || !valid_escape_at(t, i)) {
            escape = true;
        }
    }
    out.query_escape = escape as u8;
    out.host = Span::default();
    out.query = Span::default();
    let set_pq = |out: &mut RequestHead, p0: usize| {
        let pend = q.min(t.len());
        out.path = Span::new(off + p0 as u32, (pend.max(p0) - p0) as u32);
        if q != usize::MAX {
            out.query = Span::new(off + q as u32 + 1, (t.len() - q - 1) as u32);
        }
    };
    if mid == METHOD_CONNECT {
        // authority-form: host ":" port
        let colon = t.iter().rposition(|&b| b == b':');
        let ok = match colon {
            Some(c) => {
                c > 0
                    && c + 1 < t.len()
                    && t[c + 1..].iter().all(u8::is_ascii_digit)
                    && valid_host(t)
            }
            None => false,
        };
        if !ok || q != usize::MAX {
            return Err(bad("CONNECT requires authority-form target"));
        }
        out.path = Span::new(off, 0);
        out.host = Span::new(off, t.len() as u32);
        return Ok(());
    }
    match t[0] {
        b'/' => set_pq(out, 0),
        b'*' if t.len() == 1 => {
            if mid != METHOD_OPTIONS {
                return Err(bad("asterisk-form only allowed for OPTIONS"));
            }
            out.path = Span::new(off, 1);
        }
        _ => {
            // absolute-form: http(s)://authority[/path][?query]
            let rest = if t.len() > 7 && t[..7].eq_ignore_ascii_case(b"http://") {
                7
            } else if t.len() > 8 && t[..8].eq_ignore_ascii_case(b"https://") {
                8
            } else {
                return Err(bad("invalid request-target"));
            };
            let a_end = t[rest..]
                .iter()
                .position(|&b| b == b'/' || b == b'?')
                .map_or(t.len(), |p| p + rest);
            let auth = &t[rest..a_end];
            if auth.is_empty() || !valid_host(auth) {
                return Err(bad("invalid authority in request-target"));
            }
            out.host = Span::new(off + rest as u32, auth.len() as u32);
            set_pq(out, a_end);
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Responses
// ---------------------------------------------------------------------------

#[inline]
const fn upstream(reason: &'static str) -> HttpError {
    HttpError { status: 502, reason }
}

/// Parses one response head from the start of `buf` into `out`.
/// Every failure is reported as status 502 (the upstream misbehaved).
/// `request_was_head`: the response answers a HEAD request (no body follows).
/// A 2xx answer to CONNECT is a tunnel; the caller handles that case.
pub fn parse_response(
    buf: &[u8],
    request_was_head: bool,
    limits: &Limits,
    out: &mut ResponseHead,
) -> Result<Parsed, HttpError> {
    let max_h = (limits.max_headers as usize).min(MAX_HEADERS);
    let mut raw: [MaybeUninit<httparse::Header<'_>>; MAX_HEADERS] =
        [const { MaybeUninit::uninit() }; MAX_HEADERS];
    let mut resp = httparse::Response::new(&mut []);
    let head_len = match httparse::ParserConfig::default().parse_response_with_uninit_headers(
        &mut resp,
        buf,
        &mut raw[..max_h],
    ) {
        Ok(httparse::Status::Complete(n)) => n,
        // Only the head size bounds a response: `max_request_line` is the clients' limit, and
        // applying it here only while a head is still arriving made the outcome depend on how
        // the upstream's bytes were cut (the complete path never applied it).
        Ok(httparse::Status::Partial) if buf.len() > limits.max_head_size as usize => {
            return Err(upstream("upstream response head too large"))
        }
        Ok(httparse::Status::Partial) => return Ok(Parsed::Partial),
        Err(httparse::Error::TooManyHeaders) => return Err(upstream("too many response headers")),
        Err(httparse::Error::Version) => return Err(upstream("invalid response version")),
        Err(httparse::Error::Status) => return Err(upstream("invalid status line")),
        Err(_) => return Err(upstream("malformed response head")),
    };
    if head_len > limits.max_head_size as usize {
        return Err(upstream("upstream response head too large"));
    }
    let status = resp.code.unwrap_or(0);
    let minor = resp.version.unwrap_or(1);
    // RFC 9110 section 15: status codes are 100..=599; anything else is not HTTP.
    if !(100..=599).contains(&status) {
        return Err(upstream("invalid status code"));
    }

    // Status line: "HTTP/1.x NNN[ reason]CRLF" starting after any empty lines.
    let start = skip_empty_lines(buf);
    if start & 1 != 0 || !buf[..start].chunks_exact(2).all(|c| c == b"\r\n") {
        return Err(upstream("bare LF before status line"));
    }
    let after_code = start + 12;
    let (reason, eol) = if buf[after_code] == b' ' {
        let r0 = after_code + 1;
        let rlen = buf[r0..].iter().position(|&b| b == b'\r' || b == b'\n').unwrap_or(0);
        (Span::new(r0 as u32, rlen as u32), r0 + rlen)
    } else {
        (Span::new(after_code as u32, 0), after_code)
    };
    if buf[eol] != b'\r' || buf[head_len - 2] != b'\r' {
        return Err(upstream("bare LF line terminator"));
    }

    let hdrs = &*resp.headers;
    let info = analyze_headers(buf, hdrs.len(), httparse_fields(hdrs), &mut out.headers)
        .map_err(|e| upstream(e.reason))?;
    out.head_len = head_len as u32;
    out.status = status;
    out.version_minor = minor;
    out.reason = reason;
    out.n_headers = hdrs.len() as u32;
    out.content_length = info.content_length;

    if info.te != TE_NONE && minor == 0 {
        return Err(upstream("Transfer-Encoding in HTTP/1.0 response"));
    }
    let mut keep_alive =
        if minor == 1 { !info.conn_close } else { info.conn_keep_alive && !info.conn_close };
    // RFC 9112 §6.3
    out.body_kind =
        if request_was_head || (100..200).contains(&status) || status == 204 || status == 304 {
            BODY_NONE
        } else if info.te == TE_CHUNKED {
            // Codings under the final chunked (`gzip, chunked`) are not decoded: the body is
            // relayed in them, so the whole list goes to the client with it.
            if info.te_other_codings {
                relay_transfer_encoding(&mut out.headers[..hdrs.len()]);
            }
            BODY_CHUNKED
        } else if info.te == TE_UNSUPPORTED {
            // Point 4: a final coding other than chunked, so the body ends when the upstream
            // closes. It is relayed as it came, so its Transfer-Encoding describes it to the
            // client too.
            keep_alive = false;
            relay_transfer_encoding(&mut out.headers[..hdrs.len()]);
            BODY_UNTIL_CLOSE
        } else if info.has_cl {
            if info.content_length > 0 {
                BODY_LENGTH
            } else {
                BODY_NONE
            }
        } else {
            keep_alive = false;
            BODY_UNTIL_CLOSE
        };
    out.keep_alive = keep_alive as u8;
    Ok(Parsed::Complete(head_len as u32))
}
