//! Request heads whose fields arrive already split: an HTTP/2 stream's header list, which
//! nghttp2 has decoded into (name, value) pairs. The gateway lays such a request out as the
//! HTTP/1.1 head the rest of the proxy reads (`:method`, `:path`, then one `name: value` line
//! per field, in one buffer the head's spans point into), knowing where every part went, so
//! tokenizing those bytes again would only find what the caller already knows. The bytes of
//! each field were checked by nghttp2 against the rules httparse applies; the request line,
//! limits, header section and framing rules are [`crate::parse_request`]'s own code, shared.

use crate::{
    analyze_headers, bad, check_target, finish_request, is_token, method_id, HttpError, Limits,
    Parsed, RequestHead, Span, MAX_HEADERS,
};

/// Checks the request head the caller laid out in `buf` and fills in the rest of `out` as
/// [`crate::parse_request`] would from the same bytes. The caller sets `out.head_len`,
/// `out.method`, `out.target`, `out.n_headers` and each entry's name and value spans (each
/// value followed by CRLF in `buf`, as on the wire), from fields whose names are tokens and
/// whose values hold only HTAB, SP, VCHAR and obs-text (nghttp2 drops any other). The head is
/// read as HTTP/1.1 (a request without Host is refused); the caller marks its own version.
pub fn request_from_fields(
    buf: &[u8],
    limits: &Limits,
    out: &mut RequestHead,
) -> Result<Parsed, HttpError> {
    let n = out.n_headers as usize;
    if n > (limits.max_headers as usize).min(MAX_HEADERS) {
        return Err(HttpError { status: 431, reason: "too many headers" });
    }
    let part = |s: Span| {
        buf.get(s.off as usize..s.off as usize + s.len as usize)
            .ok_or(bad("malformed request head"))
    };
    let method = part(out.method)?;
    let target = part(out.target)?;
    if !is_token(method) || target.is_empty() {
        return Err(bad("invalid request line"));
    }
    // "method SP target SP HTTP/1.1 CRLF", as parse_request counts it
    if method.len() + target.len() + 12 > limits.max_request_line as usize {
        return Err(HttpError { status: 414, reason: "URI Too Long" });
    }
    if out.head_len as usize > limits.max_head_size as usize || out.head_len as usize > buf.len() {
        return Err(HttpError { status: 431, reason: "Request Header Fields Too Large" });
    }
    // The fields' names and values are not scanned again: nghttp2 drops every field whose
    // name is not a lowercase token or whose value has a byte outside HTAB, SP, VCHAR and
    // obs-text (nghttp2_http_on_header), which are httparse's rules; the lines the caller adds
    // (Host from :authority, the joined cookie, chunked framing) are made of checked values.
    let mid = method_id(method);
    out.method_id = mid;
    out.version_minor = 1;
    check_target(target, out.target.off, mid, out)?;
    let info = analyze_headers(
        buf,
        n,
        |i, entries| (entries[i].name.get(buf), entries[i].value.get(buf)),
        &mut out.headers,
    )?;
    finish_request(target, 1, &info, out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{parse_request, HeaderEntry};

    /// The head as the HTTP/2 side lays it out, with the spans it records on the way.
    fn lay_out(method: &[u8], target: &[u8], fields: &[(&[u8], &[u8])]) -> (Vec<u8>, RequestHead) {
        let mut buf = Vec::new();
        let mut h = RequestHead::new();
        h.method = Span::new(0, method.len() as u32);
        buf.extend_from_slice(method);
        buf.push(b' ');
        h.target = Span::new(buf.len() as u32, target.len() as u32);
        buf.extend_from_slice(target);
        buf.extend_from_slice(b" HTTP/1.1\r\n");
        for (i, (name, value)) in fields.iter().enumerate() {
            let at = buf.len() as u32;
            if i < MAX_HEADERS {
                h.headers[i] = HeaderEntry {
                    name: Span::new(at, name.len() as u32),
                    value: Span::new(at + name.len() as u32 + 2, value.len() as u32),
                    flags: 0,
                };
            }
            buf.extend_from_slice(name);
            buf.extend_from_slice(b": ");
            buf.extend_from_slice(value);
            buf.extend_from_slice(b"\r\n");
        }
        buf.extend_from_slice(b"\r\n");
        h.n_headers = fields.len() as u32;
        h.head_len = buf.len() as u32;
        (buf, h)
    }

    /// request_from_fields and parse_request agree on the same bytes: the same status, or
    /// the same head.
    fn same(method: &[u8], target: &[u8], fields: &[(&[u8], &[u8])]) -> u16 {
        let limits = Limits::default();
        let (buf, mut direct) = lay_out(method, target, fields);
        let mut parsed = RequestHead::new();
        let a = request_from_fields(&buf, &limits, &mut direct);
        let b = parse_request(&buf, &limits, &mut parsed);
        match (a, b) {
            (Err(x), Err(y)) => {
                assert_eq!(x.status, y.status, "{x} / {y}");
                x.status
            }
            (Ok(Parsed::Complete(x)), Ok(Parsed::Complete(y))) => {
                assert_eq!(x, y);
                let d = &direct;
                let p = &parsed;
                assert_eq!(
                    (d.method, d.method_id, d.version_minor, d.body_kind, d.keep_alive),
                    (p.method, p.method_id, p.version_minor, p.body_kind, p.keep_alive)
                );
                assert_eq!(
                    (d.expect_continue, d.upgrade, d.has_host, d.query_escape, d.content_length),
                    (p.expect_continue, p.upgrade, p.has_host, p.query_escape, p.content_length)
                );
                assert_eq!(
                    (d.target, d.path, d.query, d.host),
                    (p.target, p.path, p.query, p.host)
                );
                assert_eq!(d.n_headers, p.n_headers);
                for (e, f) in d.headers().iter().zip(p.headers()) {
                    assert_eq!((e.name, e.value, e.flags), (f.name, f.value, f.flags));
                }
                0
            }
            (x, y) => panic!("disagree: {x:?} / {y:?}"),
        }
    }

    #[test]
    fn accepts_what_the_parser_accepts() {
        let host: (&[u8], &[u8]) = (b"host", b"example.com");
        assert_eq!(same(b"GET", b"/a/b?c=d", &[host, (b"accept", b"*/*")]), 0);
        assert_eq!(same(b"POST", b"/", &[host, (b"content-length", b"12")]), 0);
        assert_eq!(same(b"POST", b"/", &[host, (b"transfer-encoding", b"chunked")]), 0);
        assert_eq!(same(b"GET", b"/q?f={\"a\":[1]}", &[host]), 0);
        assert_eq!(same(b"GET", b"http://example.com/x", &[host]), 0);
        assert_eq!(same(b"OPTIONS", b"*", &[host]), 0);
        assert_eq!(same(b"GET", b"/", &[host, (b"connection", b"x-a"), (b"x-a", b"1")]), 0);
        assert_eq!(same(b"GET", b"/", &[host, (b"expect", b"100-continue")]), 0);
        assert_eq!(same(b"GET", b"/", &[host, (b"x-obs", b"caf\xc3\xa9\tok")]), 0);
    }

    #[test]
    fn refuses_what_the_parser_refuses() {
        let host: (&[u8], &[u8]) = (b"host", b"example.com");
        // (field names and values with bytes httparse refuses never get here: nghttp2 drops them)
        assert_eq!(same(b"GET", b"/", &[(b"host", b"exa[mple")]), 400);
        assert_eq!(same(b"GET", b"/", &[(b"accept", b"*/*")]), 400); // no Host
        assert_eq!(same(b"GET", b"/", &[host, host]), 400);
        assert_eq!(
            same(b"POST", b"/", &[host, (b"content-length", b"1"), (b"content-length", b"1")]),
            400
        );
        assert_eq!(same(b"POST", b"/", &[host, (b"content-length", b"+1")]), 400);
        assert_eq!(
            same(
                b"POST",
                b"/",
                &[host, (b"content-length", b"1"), (b"transfer-encoding", b"chunked")]
            ),
            400
        );
        assert_eq!(same(b"GET", b"/a#b", &[host]), 400);
        assert_eq!(same(b"GET", b"/a\x01", &[host]), 400);
        assert_eq!(same(b"G T", b"/", &[host]), 400);
        assert_eq!(same(b"GET", b"", &[host]), 400);
        assert_eq!(same(b"GET", b"example.com", &[host]), 400);
        assert_eq!(same(b"GET", b"*", &[host]), 400);
    }

    #[test]
    fn applies_the_parser_limits() {
        let host: (&[u8], &[u8]) = (b"host", b"example.com");
        let many: Vec<(&[u8], &[u8])> = std::iter::once(host)
            .chain(std::iter::repeat_n((&b"x-a"[..], &b"1"[..]), 130))
            .collect();
        assert_eq!(same(b"GET", b"/", &many), 431);
        let long_target = [b'a'; 9000];
        let mut target = b"/".to_vec();
        target.extend_from_slice(&long_target);
        assert_eq!(same(b"GET", &target, &[host]), 414);
        let big = vec![b'v'; 7000];
        let fields: Vec<(&[u8], &[u8])> =
            std::iter::once(host).chain(std::iter::repeat_n((&b"x-a"[..], &big[..]), 5)).collect();
        assert_eq!(same(b"GET", b"/", &fields), 431);
    }
}
