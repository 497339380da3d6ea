//! The request head parser: no panic, every accepted head is sound (spans inside the head,
//! one framing, no CR/LF/NUL in values), and the result does not depend on how the bytes
//! arrived: a prefix of an accepted head is "need more", and the head alone parses the same. A
//! query is flagged for escaping exactly when it holds bytes outside RFC 3986's grammar, and its
//! escaped form is within it.
//!
//! Input: one control byte (bit 0: tight limits; the rest: where to cut the prefix), then the
//! bytes the client sent.
#![no_main]
use gateway_fuzz::{check_headers, is_tchar, span_in};
use gateway_http::{
    escape_query, parse_request, query_needs_escape, Limits, Parsed, RequestHead, BODY_CHUNKED,
    BODY_LENGTH, BODY_NONE,
};
use libfuzzer_sys::fuzz_target;

const TIGHT: Limits = Limits { max_request_line: 64, max_head_size: 256, max_headers: 8 };

fn summary(buf: &[u8], h: &RequestHead) -> impl PartialEq + std::fmt::Debug {
    let hs: Vec<_> = h.headers().iter().map(|e| (e.name, e.value, e.flags)).collect();
    (
        (h.head_len, h.method, h.method_id, h.version_minor, h.body_kind, h.keep_alive),
        (h.expect_continue, h.upgrade, h.has_host, h.query_escape, h.content_length),
        (h.target, h.path, h.query, h.host.get(buf).to_vec()),
        hs,
    )
}

fuzz_target!(|data: &[u8]| {
    let Some((&ctl, buf)) = data.split_first() else { return };
    let limits = if ctl & 1 == 1 { TIGHT } else { Limits::default() };
    let mut head = RequestHead::new();
    let n = match parse_request(buf, &limits, &mut head) {
        Ok(Parsed::Complete(n)) => n,
        Ok(Parsed::Partial) => {
            assert!(buf.len() <= limits.max_head_size as usize, "partial beyond max_head_size");
            return;
        }
        Err(e) => {
            assert!(matches!(e.status, 400 | 414 | 431 | 501 | 505), "status {e}");
            return;
        }
    };
    assert!(n as usize <= buf.len() && n == head.head_len);
    assert!(n <= limits.max_head_size, "head of {n} bytes accepted");
    assert!(head.n_headers <= limits.max_headers);
    for s in [head.method, head.target, head.path, head.query] {
        span_in(s, n);
    }
    // host is a target's authority or the Host value: both inside the head
    span_in(head.host, n);
    let method = head.method.get(buf);
    assert!(!method.is_empty() && method.iter().all(|&b| is_tchar(b)), "method {method:?}");
    let target = head.target.get(buf);
    assert!(!target.is_empty(), "empty target");
    assert!(!target.iter().any(|&b| b <= b' ' || b == 0x7f), "control or space in {target:?}");
    assert!(head.version_minor <= 1);
    let query = head.query.get(buf);
    assert_eq!(head.query_escape != 0, query_needs_escape(query), "query {query:?}");
    if head.query_escape != 0 {
        let mut escaped = Vec::new();
        escape_query(query, &mut escaped);
        assert!(!query_needs_escape(&escaped), "{escaped:?} escaped from {query:?}");
    }
    let (cl, te) = check_headers(buf, n, head.headers());
    match (cl, te) {
        (Some(v), false) => {
            assert_eq!(head.content_length, v);
            assert!(head.body_kind == BODY_LENGTH || (v == 0 && head.body_kind == BODY_NONE));
        }
        (None, true) => assert_eq!(head.body_kind, BODY_CHUNKED, "TE accepted without chunked"),
        _ => assert_eq!(head.body_kind, BODY_NONE),
    }

    // The same head, cut where the control byte says: "need more bytes", never an error.
    let cut = ((ctl >> 1) as usize * n as usize) / 128;
    let mut other = RequestHead::new();
    let r = parse_request(&buf[..cut], &limits, &mut other);
    assert_eq!(r, Ok(Parsed::Partial), "prefix of {cut} bytes of an accepted head of {n}");
    // The head alone parses to the same result as with whatever follows it.
    let r = parse_request(&buf[..n as usize], &limits, &mut other);
    assert_eq!(r, Ok(Parsed::Complete(n)));
    assert_eq!(summary(buf, &head), summary(buf, &other));
});
