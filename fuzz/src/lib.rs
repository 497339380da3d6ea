//! Checks shared by the fuzz targets: invariants every successfully parsed head must satisfy.
use gateway_http::{HeaderEntry, Span, HF_CONTENT_LENGTH, HF_HOST, HF_TRANSFER_ENCODING};

/// Every span lies inside the head (`head_len` bytes), or the caller would read past it.
pub fn span_in(span: Span, head_len: u32) {
    assert!(
        u64::from(span.off) + u64::from(span.len) <= u64::from(head_len),
        "span {span:?} outside the head of {head_len} bytes"
    );
}

pub fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// What the header section of an accepted head must look like, and its Content-Length value.
/// Returns (content-length value if the field is present, whether Transfer-Encoding is present).
pub fn check_headers(buf: &[u8], head_len: u32, headers: &[HeaderEntry]) -> (Option<u64>, bool) {
    let mut cl = None;
    let mut te = false;
    let mut hosts = 0;
    for h in headers {
        span_in(h.name, head_len);
        span_in(h.value, head_len);
        let name = h.name.get(buf);
        let value = h.value.get(buf);
        assert!(!name.is_empty() && name.iter().all(|&b| is_tchar(b)), "bad name {name:?}");
        assert!(
            !value.iter().any(|&b| b == b'\r' || b == b'\n' || b == 0),
            "CR, LF or NUL in an accepted field value {value:?}"
        );
        assert!(
            !matches!(value.first(), Some(b' ' | b'\t'))
                && !matches!(value.last(), Some(b' ' | b'\t')),
            "value not trimmed: {value:?}"
        );
        if h.flags & HF_CONTENT_LENGTH != 0 {
            assert!(cl.is_none(), "two Content-Length fields accepted");
            assert!(!value.is_empty() && value.iter().all(u8::is_ascii_digit), "CL {value:?}");
            cl = std::str::from_utf8(value).unwrap().parse::<u64>().ok();
            assert!(cl.is_some(), "Content-Length {value:?} accepted but does not fit u64");
        }
        if h.flags & HF_TRANSFER_ENCODING != 0 {
            te = true;
        }
        if h.flags & HF_HOST != 0 {
            hosts += 1;
        }
    }
    assert!(!(cl.is_some() && te), "Content-Length and Transfer-Encoding both accepted");
    assert!(hosts <= 1, "{hosts} Host fields accepted");
    (cl, te)
}
