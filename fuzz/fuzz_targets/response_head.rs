//! The upstream response head parser: no panic, every failure is a 502, every accepted head is
//! sound (spans inside the head, one framing, no CR/LF/NUL in values), a prefix of an accepted
//! head is "need more", and the head alone parses the same as with the body after it.
//!
//! Input: one control byte (bit 0: tight limits; bit 1: the request was HEAD; the rest: where
//! to cut the prefix), then the bytes the upstream sent.
#![no_main]
use gateway_fuzz::{check_headers, span_in};
use gateway_http::{
    parse_response, Limits, Parsed, ResponseHead, BODY_CHUNKED, BODY_LENGTH, BODY_NONE,
    BODY_UNTIL_CLOSE,
};
use libfuzzer_sys::fuzz_target;

const TIGHT: Limits = Limits { max_request_line: 64, max_head_size: 256, max_headers: 8 };

fn summary(h: &ResponseHead) -> impl PartialEq + std::fmt::Debug {
    let hs: Vec<_> = h.headers().iter().map(|e| (e.name, e.value, e.flags)).collect();
    (
        h.head_len,
        h.status,
        h.version_minor,
        h.body_kind,
        h.keep_alive,
        h.content_length,
        h.reason,
        hs,
    )
}

fuzz_target!(|data: &[u8]| {
    let Some((&ctl, buf)) = data.split_first() else { return };
    let limits = if ctl & 1 == 1 { TIGHT } else { Limits::default() };
    let was_head = ctl & 2 != 0;
    let mut head = ResponseHead::new();
    let n = match parse_response(buf, was_head, &limits, &mut head) {
        Ok(Parsed::Complete(n)) => n,
        Ok(Parsed::Partial) => {
            assert!(buf.len() <= limits.max_head_size as usize, "partial beyond max_head_size");
            return;
        }
        Err(e) => {
            assert_eq!(e.status, 502, "{e}");
            return;
        }
    };
    assert!(n as usize <= buf.len() && n == head.head_len);
    assert!(n <= limits.max_head_size, "head of {n} bytes accepted");
    assert!(head.n_headers <= limits.max_headers);
    assert!((100..=999).contains(&head.status), "status {}", head.status);
    span_in(head.reason, n);
    assert!(!head.reason.get(buf).iter().any(|&b| b == b'\r' || b == b'\n' || b == 0));
    let (cl, te) = check_headers(buf, n, head.headers());
    let bodiless = was_head || head.status < 200 || head.status == 204 || head.status == 304;
    if bodiless {
        assert_eq!(head.body_kind, BODY_NONE, "a body after HEAD, 1xx, 204 or 304");
    } else {
        match (cl, te) {
            (Some(v), false) => {
                assert_eq!(head.content_length, v);
                assert!(head.body_kind == BODY_LENGTH || (v == 0 && head.body_kind == BODY_NONE));
            }
            (None, true) => assert!(matches!(head.body_kind, BODY_CHUNKED | BODY_UNTIL_CLOSE)),
            _ => assert_eq!(head.body_kind, BODY_UNTIL_CLOSE),
        }
    }

    let cut = ((ctl >> 2) as usize * n as usize) / 64;
    let mut other = ResponseHead::new();
    let r = parse_response(&buf[..cut], was_head, &limits, &mut other);
    assert_eq!(r, Ok(Parsed::Partial), "prefix of {cut} bytes of an accepted head of {n}");
    let r = parse_response(&buf[..n as usize], was_head, &limits, &mut other);
    assert_eq!(r, Ok(Parsed::Complete(n)));
    assert_eq!(summary(&head), summary(&other));
});
