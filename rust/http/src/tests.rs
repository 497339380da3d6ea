use super::*;

fn parse(buf: &[u8]) -> Result<(Parsed, Box<RequestHead>), HttpError> {
    let mut h = Box::new(RequestHead::new());
    let p = parse_request(buf, &Limits::default(), &mut h)?;
    Ok((p, h))
}

/// Parses a complete request; panics if partial.
fn ok(buf: &[u8]) -> Box<RequestHead> {
    match parse(buf) {
        Ok((Parsed::Complete(n), h)) => {
            assert_eq!(n, h.head_len);
            h
        }
        Ok((Parsed::Partial, _)) => panic!("partial: {:?}", String::from_utf8_lossy(buf)),
        Err(e) => panic!("rejected {:?}: {e}", String::from_utf8_lossy(buf)),
    }
}

fn status(buf: &[u8]) -> u16 {
    match parse(buf) {
        Ok((Parsed::Complete(_), _)) => 0,
        Ok((Parsed::Partial, _)) => 1,
        Err(e) => e.status,
    }
}

fn s(buf: &[u8], sp: Span) -> &[u8] {
    sp.get(buf)
}

fn header<'a>(buf: &'a [u8], h: &RequestHead, name: &str) -> Option<(&'a [u8], u32)> {
    h.headers()
        .iter()
        .find(|e| s(buf, e.name).eq_ignore_ascii_case(name.as_bytes()))
        .map(|e| (s(buf, e.value), e.flags))
}

// ---------------------------------------------------------------- basics

#[test]
fn simple_get_spans() {
    let b = b"GET /a/b?x=1&y HTTP/1.1\r\nHost: example.com\r\nUser-Agent:  curl/8 \r\n\r\nBODY";
    let h = ok(b);
    assert_eq!(h.head_len as usize, b.len() - 4);
    assert_eq!(s(b, h.method), b"GET");
    assert_eq!(h.method_id, METHOD_GET);
    assert_eq!(h.version_minor, 1);
    assert_eq!(s(b, h.target), b"/a/b?x=1&y");
    assert_eq!(s(b, h.path), b"/a/b");
    assert_eq!(s(b, h.query), b"x=1&y");
    assert_eq!(s(b, h.host), b"example.com");
    assert_eq!(h.has_host, 1);
    assert_eq!(h.n_headers, 2);
    assert_eq!(s(b, h.headers[1].name), b"User-Agent");
    assert_eq!(s(b, h.headers[1].value), b"curl/8");
    assert_eq!(h.headers[0].flags, HF_HOST);
    assert_eq!(h.headers[1].flags, 0);
    assert_eq!(h.keep_alive, 1);
    assert_eq!(h.body_kind, BODY_NONE);
    assert_eq!(h.expect_continue, 0);
    assert_eq!(h.upgrade, 0);
}

#[test]
fn method_ids() {
    for (m, id) in [
        ("GET", METHOD_GET),
        ("HEAD", METHOD_HEAD),
        ("POST", METHOD_POST),
        ("PUT", METHOD_PUT),
        ("DELETE", METHOD_DELETE),
        ("OPTIONS", METHOD_OPTIONS),
        ("PATCH", METHOD_PATCH),
        ("TRACE", METHOD_TRACE),
        ("PROPFIND", METHOD_OTHER),
        ("get", METHOD_OTHER),
        ("M-SEARCH", METHOD_OTHER),
    ] {
        let b = format!("{m} / HTTP/1.1\r\nHost: a\r\n\r\n");
        assert_eq!(ok(b.as_bytes()).method_id, id, "{m}");
    }
    let h = ok(b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n");
    assert_eq!(h.method_id, METHOD_CONNECT);
}

#[test]
fn method_must_be_token() {
    assert_eq!(status(b"GE(T / HTTP/1.1\r\nHost: a\r\n\r\n"), 400);
    assert_eq!(status(b"G\x01T / HTTP/1.1\r\nHost: a\r\n\r\n"), 400);
    assert_eq!(status(b" GET / HTTP/1.1\r\nHost: a\r\n\r\n"), 400);
}

#[test]
fn partial_everywhere() {
    let b = b"POST /p?q HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nabc";
    let head = b.len() - 3;
    for i in 0..head {
        assert_eq!(status(&b[..i]), 1, "prefix {i}");
    }
    let h = ok(&b[..head]);
    assert_eq!(h.head_len as usize, head);
    assert_eq!(h.body_kind, BODY_LENGTH);
    assert_eq!(h.content_length, 3);
}

#[test]
fn reuse_out_param() {
    let mut h = RequestHead::new();
    let l = Limits::default();
    let a = b"POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nConnection: close\r\n\r\n";
    parse_request(a, &l, &mut h).unwrap();
    assert_eq!(h.body_kind, BODY_LENGTH);
    assert_eq!(h.keep_alive, 0);
    let b = b"GET /y HTTP/1.1\r\nHost: b\r\n\r\n";
    parse_request(b, &l, &mut h).unwrap();
    assert_eq!(h.body_kind, BODY_NONE);
    assert_eq!(h.content_length, 0);
    assert_eq!(h.keep_alive, 1);
    assert_eq!(h.n_headers, 1);
    assert_eq!(s(b, h.query), b"");
    assert_eq!(s(b, h.host), b"b");
}

#[test]
fn leading_empty_lines() {
    let b = b"\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n";
    let h = ok(b);
    assert_eq!(h.method.off, 4);
    assert_eq!(h.head_len as usize, b.len());
    assert_eq!(s(b, h.host), b"a");
    assert_eq!(status(b"\nGET / HTTP/1.1\r\nHost: a\r\n\r\n"), 400);
    assert_eq!(status(b"\r\n\nGET / HTTP/1.1\r\nHost: a\r\n\r\n"), 400);
    assert_eq!(status(b"\rGET / HTTP/1.1\r\nHost: a\r\n\r\n"), 400);
    assert_eq!(status(b"\r\n"), 1);
}

// ---------------------------------------------------------------- limits

#[test]
fn limit_request_line_414() {
    let l = Limits { max_request_line: 64, max_head_size: 1024, max_headers: 10 };
    let mut h = RequestHead::new();
    let long = format!("GET /{} HTTP/1.1\r\nHost: a\r\n\r\n", "a".repeat(100));
    assert_eq!(parse_request(long.as_bytes(), &l, &mut h).unwrap_err().status, 414);
    // partial: no line end within the limit
    assert_eq!(parse_request(&long.as_bytes()[..70], &l, &mut h).unwrap_err().status, 414);
    assert_eq!(parse_request(&long.as_bytes()[..60], &l, &mut h).unwrap(), Parsed::Partial);
    // exactly at the limit (incl. CRLF) is fine
    let path = "b".repeat(64 - "GET / HTTP/1.1\r\n".len());
    let exact = format!("GET /{path} HTTP/1.1\r\nHost: a\r\n\r\n");
    assert!(matches!(parse_request(exact.as_bytes(), &l, &mut h), Ok(Parsed::Complete(_))));
    let over = format!("GET /{path}x HTTP/1.1\r\nHost: a\r\n\r\n");
    assert_eq!(parse_request(over.as_bytes(), &l, &mut h).unwrap_err().status, 414);
}

#[test]
fn limit_head_size_431() {
    let l = Limits { max_request_line: 64, max_head_size: 200, max_headers: 100 };
    let mut h = RequestHead::new();
    let big = format!("GET / HTTP/1.1\r\nHost: a\r\nX: {}\r\n\r\n", "v".repeat(300));
    assert_eq!(parse_request(big.as_bytes(), &l, &mut h).unwrap_err().status, 431);
    assert_eq!(parse_request(&big.as_bytes()[..250], &l, &mut h).unwrap_err().status, 431);
    assert_eq!(parse_request(&big.as_bytes()[..150], &l, &mut h).unwrap(), Parsed::Partial);
}

#[test]
fn limit_header_count_431() {
    let l = Limits { max_headers: 3, ..Limits::default() };
    let mut h = RequestHead::new();
    let three = b"GET / HTTP/1.1\r\nHost: a\r\nA: 1\r\nB: 2\r\n\r\n";
    assert!(matches!(parse_request(three, &l, &mut h), Ok(Parsed::Complete(_))));
    let four = b"GET / HTTP/1.1\r\nHost: a\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n";
    assert_eq!(parse_request(four, &l, &mut h).unwrap_err().status, 431);
    // default limit 100, array capacity 128
    let mut many = String::from("GET / HTTP/1.1\r\nHost: a\r\n");
    for i in 0..100 {
        many.push_str(&format!("X-{i}: v\r\n"));
    }
    many.push_str("\r\n");
    assert_eq!(status(many.as_bytes()), 431);
    let l = Limits { max_headers: 1000, ..Limits::default() };
    let mut many = String::from("GET / HTTP/1.1\r\nHost: a\r\n");
    for i in 0..127 {
        many.push_str(&format!("X-{i}: v\r\n"));
    }
    assert!(matches!(
        parse_request(format!("{many}\r\n").as_bytes(), &l, &mut h),
        Ok(Parsed::Complete(_))
    ));
    assert_eq!(h.n_headers, 128);
    many.push_str("Y: 1\r\n\r\n");
    assert_eq!(parse_request(many.as_bytes(), &l, &mut h).unwrap_err().status, 431);
}

// ---------------------------------------------------------------- request-target

#[test]
fn target_forms() {
    let b = b"GET http://Example.com:8080/p/q?z=1 HTTP/1.1\r\nHost: other\r\n\r\n";
    let h = ok(b);
    assert_eq!(s(b, h.host), b"Example.com:8080");
    assert_eq!(s(b, h.path), b"/p/q");
    assert_eq!(s(b, h.query), b"z=1");
    let b = b"GET https://h?x HTTP/1.1\r\nHost: h\r\n\r\n";
    let h = ok(b);
    assert_eq!(s(b, h.host), b"h");
    assert_eq!(s(b, h.path), b"");
    assert_eq!(s(b, h.query), b"x");
    let b = b"OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n";
    let h = ok(b);
    assert_eq!(s(b, h.path), b"*");
    assert_eq!(s(b, h.host), b"h");
    let b = b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n";
    let h = ok(b);
    assert_eq!(s(b, h.host), b"example.com:443");
    assert_eq!(h.path.len, 0);
    let b = b"CONNECT [::1]:443 HTTP/1.1\r\nHost: [::1]:443\r\n\r\n";
    assert_eq!(s(b, ok(b).host), b"[::1]:443");
    let b = b"GET /?a?b HTTP/1.1\r\nHost: h\r\n\r\n";
    let h = ok(b);
    assert_eq!(s(b, h.path), b"/");
    assert_eq!(s(b, h.query), b"a?b");
}

/// RFC 9112 section 3.2 / RFC 3986: a query with bytes outside the URI grammar is accepted but
/// flagged, and `escape_query` gives its one grammatical spelling; a query within it is not.
#[test]
fn query_outside_the_uri_grammar_is_flagged_for_escaping() {
    let flagged = |t: &str| {
        let b = format!("GET {t} HTTP/1.1\r\nHost: h\r\n\r\n");
        ok(b.as_bytes()).query_escape
    };
    for t in [
        "/?a={1}",
        "/?a=\"b\"",
        "/?a[]=1",
        "/?x=<y>",
        "/?a|b",
        "/?a^b",
        "/?a`b",
        "/?a\\b",
        "/?50%",
        "/?a=%zz",
        "/?a=%4",
        "http://h/?a={b}",
        "/p?q=1?{",
    ] {
        assert_eq!(flagged(t), 1, "{t}");
    }
    for t in [
        "/",
        "/?",
        "/?a=1&b=%7B%C3%A9%20",
        "/?q=/a?b:c@d!$&'()*+,;=",
        "/{path}?a=1",
        "/a%zz?b",
        "http://h/{x}",
    ] {
        assert_eq!(flagged(t), 0, "{t}");
    }
    assert_eq!(ok(b"GET /?caf\xc3\xa9 HTTP/1.1\r\nHost: h\r\n\r\n").query_escape, 1);

    let esc = |q: &[u8]| {
        let mut out = b"?".to_vec();
        escape_query(q, &mut out);
        assert_eq!(query_needs_escape(q), out[1..] != *q, "{q:?}");
        String::from_utf8(out[1..].to_vec()).unwrap()
    };
    assert_eq!(esc(b"a={\"b\":[1]}&c"), "a=%7B%22b%22:%5B1%5D%7D&c");
    assert_eq!(esc(b"x=caf\xc3\xa9|<>\\^`"), "x=caf%C3%A9%7C%3C%3E%5C%5E%60");
    assert_eq!(esc(b"d=50%&e=%4&f=%zz&g=%2f"), "d=50%25&e=%254&f=%25zz&g=%2f");
    assert_eq!(esc(b"q=/a?b:c@d!$&'()*+,;=~-._"), "q=/a?b:c@d!$&'()*+,;=~-._");
    assert_eq!(esc(b"a b#\x00"), "a%20b%23%00");
}

#[test]
fn target_rejects() {
    for t in [
        "*",               // asterisk-form needs OPTIONS
        "example.com:443", // authority-form needs CONNECT
        "/a#frag",         // fragment
        "foo",             // not a form
        "ftp://h/x",       // only http(s) absolute-form
        "http:///x",       // empty authority
        "http://user@h/x", // userinfo
        "http://h h/",     // (space splits request line → bad version)
    ] {
        let b = format!("GET {t} HTTP/1.1\r\nHost: h\r\n\r\n");
        assert_eq!(status(b.as_bytes()), 400, "{t}");
    }
    // raw UTF-8 in the path is accepted (the router's normaliser encodes it before forwarding)
    assert_eq!(ok(b"GET /\xc3\xa9 HTTP/1.1\r\nHost: h\r\n\r\n").path.len, 3);
    assert_eq!(status(b"GET /\x7f HTTP/1.1\r\nHost: h\r\n\r\n"), 400);
    assert_eq!(status(b"GET /a\x00b HTTP/1.1\r\nHost: h\r\n\r\n"), 400);
    assert_eq!(status(b"GET /a\tb HTTP/1.1\r\nHost: h\r\n\r\n"), 400);
    assert_eq!(status(b"CONNECT /x HTTP/1.1\r\nHost: h\r\n\r\n"), 400);
    assert_eq!(status(b"CONNECT h HTTP/1.1\r\nHost: h\r\n\r\n"), 400);
    assert_eq!(status(b"CONNECT h:x HTTP/1.1\r\nHost: h\r\n\r\n"), 400);
    assert_eq!(status(b"OPTIONS ** HTTP/1.1\r\nHost: h\r\n\r\n"), 400);
    assert_eq!(status(b"GET  / HTTP/1.1\r\nHost: h\r\n\r\n"), 400);
    assert_eq!(status(b"GET /  HTTP/1.1\r\nHost: h\r\n\r\n"), 400);
    assert_eq!(status(b"GET / HTTP/1.1 \r\nHost: h\r\n\r\n"), 400);
}

// ---------------------------------------------------------------- version

#[test]
fn versions() {
    assert_eq!(ok(b"GET / HTTP/1.0\r\n\r\n").version_minor, 0);
    assert_eq!(status(b"GET / HTTP/2.0\r\nHost: a\r\n\r\n"), 505);
    // a higher minor version of HTTP/1 is served as HTTP/1.1 (RFC 9110 section 2.5)
    let higher = ok(b"GET /x HTTP/1.2\r\nHost: a\r\nConnection: close\r\n\r\n");
    assert_eq!((higher.version_minor, higher.keep_alive), (1, 0));
    assert_eq!(ok(b"GET / HTTP/1.9\r\nHost: a\r\n\r\n").version_minor, 1);
    assert_eq!(status(b"GET / HTTP/1.2\r\n\r\n"), 400, "an HTTP/1.1 request without Host");
    assert_eq!(status(b"GET / HTTP/0.9\r\n\r\n"), 505);
    assert_eq!(status(b"GET / HTTP/2.0"), 1);
    assert_eq!(status(b"GET / HTTP/1.10\r\n\r\n"), 400);
    assert_eq!(status(b"GET / http/1.1\r\nHost: a\r\n\r\n"), 400);
    assert_eq!(status(b"GET / HTTP/11\r\nHost: a\r\n\r\n"), 400);
    assert_eq!(status(b"GET / FOO/1.1\r\nHost: a\r\n\r\n"), 400);
    assert_eq!(status(b"GET /\r\n\r\n"), 400); // HTTP/0.9
    assert_eq!(status(b"GET / HTTP/2.0\n\n"), 400);
}

// ---------------------------------------------------------------- line endings and characters

#[test]
fn bare_lf_rejected() {
    for b in [
        &b"GET / HTTP/1.1\nHost: a\r\n\r\n"[..],
        b"GET / HTTP/1.1\r\nHost: a\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\n\n",
        b"GET / HTTP/1.1\r\nHost: a\r\nX: \n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\nX: v \t\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\nX:\n\r\n",
        b"GET / HTTP/1.1\nHost: a\n\n",
        b"GET / HTTP/1.0\n\n",
    ] {
        assert_eq!(status(b), 400, "{:?}", String::from_utf8_lossy(b));
    }
}

#[test]
fn bare_cr_rejected() {
    for b in [
        &b"GET / HTTP/1.1\rHost: a\r\n\r\n"[..],
        b"GET / HTTP/1.1\r\nHost: a\r\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\nX: a\rb\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\n\rX: 1\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\n\r\r",
        b"GET /a\rb HTTP/1.1\r\nHost: a\r\n\r\n",
    ] {
        assert_eq!(status(b), 400, "{:?}", String::from_utf8_lossy(b));
    }
}

#[test]
fn header_chars() {
    // control chars in values
    assert_eq!(status(b"GET / HTTP/1.1\r\nHost: a\r\nX: a\x00b\r\n\r\n"), 400);
    assert_eq!(status(b"GET / HTTP/1.1\r\nHost: a\r\nX: a\x01b\r\n\r\n"), 400);
    assert_eq!(status(b"GET / HTTP/1.1\r\nHost: a\r\nX: a\x7fb\r\n\r\n"), 400);
    assert_eq!(status(b"GET / HTTP/1.1\r\nHost: a\r\nX: a\x0bb\r\n\r\n"), 400);
    // HTAB and obs-text fine
    let b = b"GET / HTTP/1.1\r\nHost: a\r\nX: \ta\tb\xff\xe9 \t\r\n\r\n";
    let h = ok(b);
    assert_eq!(header(b, &h, "x").unwrap().0, b"a\tb\xff\xe9");
    // names: tokens, no space before colon, no empty name
    assert_eq!(status(b"GET / HTTP/1.1\r\nHost: a\r\nX Y: 1\r\n\r\n"), 400);
    assert_eq!(status(b"GET / HTTP/1.1\r\nHost: a\r\nX : 1\r\n\r\n"), 400);
    assert_eq!(status(b"GET / HTTP/1.1\r\nHost: a\r\nX\t: 1\r\n\r\n"), 400);
    assert_eq!(status(b"GET / HTTP/1.1\r\nHost: a\r\n: 1\r\n\r\n"), 400);
    assert_eq!(status(b"GET / HTTP/1.1\r\nHost: a\r\nX(: 1\r\n\r\n"), 400);
    assert_eq!(status(b"GET / HTTP/1.1\r\nHost: a\r\nX\x00: 1\r\n\r\n"), 400);
    assert_eq!(status(b"GET / HTTP/1.1\r\nHost: a\r\nX\xff: 1\r\n\r\n"), 400);
    assert_eq!(status(b"GET / HTTP/1.1\r\nHost: a\r\nNoColon\r\n\r\n"), 400);
    // empty value is fine
    let b = b"GET / HTTP/1.1\r\nHost: a\r\nX:\r\nY:   \r\n\r\n";
    let h = ok(b);
    assert_eq!(header(b, &h, "x").unwrap().0, b"");
    assert_eq!(header(b, &h, "y").unwrap().0, b"");
}

#[test]
fn obs_fold_rejected() {
    assert_eq!(status(b"GET / HTTP/1.1\r\nHost: a\r\nX: 1\r\n 2\r\n\r\n"), 400);
    assert_eq!(status(b"GET / HTTP/1.1\r\nHost: a\r\nX: 1\r\n\t2\r\n\r\n"), 400);
    assert_eq!(status(b"GET / HTTP/1.1\r\n Host: a\r\n\r\n"), 400);
    assert_eq!(status(b"GET / HTTP/1.1\r\nHost: a\r\nX:\r\n 2\r\n\r\n"), 400);
}

// ---------------------------------------------------------------- Content-Length

#[test]
fn content_length() {
    let h = ok(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 42\r\n\r\n");
    assert_eq!((h.body_kind, h.content_length), (BODY_LENGTH, 42));
    assert_eq!(h.headers[1].flags, HF_CONTENT_LENGTH);
    let h = ok(b"POST / HTTP/1.1\r\nHost: a\r\ncontent-length:  007 \r\n\r\n");
    assert_eq!((h.body_kind, h.content_length), (BODY_LENGTH, 7));
    let h = ok(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n");
    assert_eq!((h.body_kind, h.content_length), (BODY_NONE, 0));
    let h = ok(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 18446744073709551615\r\n\r\n");
    assert_eq!(h.content_length, u64::MAX);
    for v in [
        "18446744073709551616",
        "-1",
        "+1",
        "1 2",
        "5, 5",
        "5,5",
        "0x10",
        "",
        "1.0",
        "1\t2",
        "\u{663}", // non-ASCII digit
    ] {
        let b = format!("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: {v}\r\n\r\n");
        assert_eq!(status(b.as_bytes()), 400, "{v:?}");
    }
    assert_eq!(
        status(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n"),
        400
    );
    assert_eq!(
        status(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\ncontent-length: 6\r\n\r\n"),
        400
    );
}

// ---------------------------------------------------------------- Transfer-Encoding

#[test]
fn transfer_encoding() {
    let h = ok(b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n");
    assert_eq!(h.body_kind, BODY_CHUNKED);
    assert_eq!(h.headers[1].flags, HF_TRANSFER_ENCODING | HF_HOP_BY_HOP);
    let h = ok(b"POST / HTTP/1.1\r\nHost: a\r\ntransfer-encoding: \tChunKed \r\n\r\n");
    assert_eq!(h.body_kind, BODY_CHUNKED);
    for v in [
        "chunked, chunked",
        "chunked, gzip",
        "chunked;foo=bar",
        "xchunked",
        "chunkedx",
        "chunked,",
        ",chunked",
        "",
        "gzip,,chunked",
        "gzip;q=1, chunked",
        "chu nked",
        "\"chunked\"",
    ] {
        let b = format!("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: {v}\r\n\r\n");
        assert_eq!(status(b.as_bytes()), 400, "{v:?}");
    }
    // known codings before a final chunked: chunked framing, the codings are forwarded
    for v in ["gzip, chunked", "gzip , deflate , \tidentity\t, compress\t, chunked"] {
        let b = format!("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: {v}\r\n\r\n");
        assert_eq!(ok(b.as_bytes()).body_kind, BODY_CHUNKED, "{v:?}");
    }
    let h = ok(b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n");
    assert_eq!(h.body_kind, BODY_CHUNKED);
    for v in ["gzip", "deflate", "compress", "x-gzip", "GZIP", "identity", "gzip, deflate"] {
        let b = format!("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: {v}\r\n\r\n");
        // RFC 9112 section 6.3 (4): chunked not final in a request is a 400, then close
        assert_eq!(status(b.as_bytes()), 400, "{v:?}");
    }
    // multiple TE headers
    assert_eq!(
        status(b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n"),
        400
    );
    // CL + TE (either order, even with unsupported coding)
    assert_eq!(
        status(b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n"),
        400
    );
    assert_eq!(
        status(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n"),
        400
    );
    assert_eq!(
        status(
            b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nTransfer-Encoding: gzip\r\n\r\n"
        ),
        400
    );
    // HTTP/1.0 with TE
    assert_eq!(status(b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n"), 400);
}

// ---------------------------------------------------------------- Host

#[test]
fn host_rules() {
    assert_eq!(status(b"GET / HTTP/1.1\r\n\r\n"), 400);
    assert_eq!(status(b"GET / HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n"), 400);
    assert_eq!(status(b"GET / HTTP/1.1\r\nHost: a\r\nhost: b\r\n\r\n"), 400);
    for v in [
        "a b", "a/b", "u@h", "h?x", "h#x", "h\\x", "h\"", "h<", "\u{e9}", "h:80:80", "h:8a",
        "[::1", "[::1]x", "[]", "a]", "h[1]", "[g::1]",
    ] {
        let b = format!("GET / HTTP/1.1\r\nHost: {v}\r\n\r\n");
        assert_eq!(status(b.as_bytes()), 400, "{v:?}");
    }
    // empty Host is allowed (has_host = 1, empty span)
    let h = ok(b"GET / HTTP/1.1\r\nHost:\r\n\r\n");
    assert_eq!((h.has_host, h.host.len), (1, 0));
    // HTTP/1.0 without Host is fine
    let h = ok(b"GET / HTTP/1.0\r\n\r\n");
    assert_eq!((h.has_host, h.host.len), (0, 0));
    let b = b"GET / HTTP/1.1\r\nHost: [2001:db8::1]:8080\r\n\r\n";
    assert_eq!(s(b, ok(b).host), b"[2001:db8::1]:8080");
    for v in ["h:", "h:0", "[::1]", "[::1]:", "[v1.x]:1", "1.2.3.4:80"] {
        let b = format!("GET / HTTP/1.1\r\nHost: {v}\r\n\r\n");
        assert_eq!(ok(b.as_bytes()).has_host, 1, "{v:?}");
    }
    let b = b"GET / HTTP/1.1\r\nHost:  example.com:80  \r\n\r\n";
    assert_eq!(s(b, ok(b).host), b"example.com:80");
}

// ---------------------------------------------------------------- Connection, flags

#[test]
fn keep_alive_rules() {
    assert_eq!(ok(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n").keep_alive, 1);
    assert_eq!(ok(b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n").keep_alive, 0);
    assert_eq!(ok(b"GET / HTTP/1.1\r\nHost: a\r\nConnection: CLOSE\r\n\r\n").keep_alive, 0);
    assert_eq!(ok(b"GET / HTTP/1.1\r\nHost: a\r\nConnection: foo, close\r\n\r\n").keep_alive, 0);
    assert_eq!(ok(b"GET / HTTP/1.1\r\nHost: a\r\nConnection: closed\r\n\r\n").keep_alive, 1);
    assert_eq!(ok(b"GET / HTTP/1.0\r\n\r\n").keep_alive, 0);
    assert_eq!(ok(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n").keep_alive, 1);
    assert_eq!(ok(b"GET / HTTP/1.0\r\nConnection: Keep-Alive, close\r\n\r\n").keep_alive, 0);
    assert_eq!(
        ok(b"GET / HTTP/1.0\r\nConnection: x\r\nConnection: keep-alive\r\n\r\n").keep_alive,
        1
    );
    // invalid list element
    assert_eq!(status(b"GET / HTTP/1.1\r\nHost: a\r\nConnection: a b\r\n\r\n"), 400);
    assert_eq!(status(b"GET / HTTP/1.1\r\nHost: a\r\nConnection: \"close\"\r\n\r\n"), 400);
    // empty list elements are fine
    assert_eq!(ok(b"GET / HTTP/1.1\r\nHost: a\r\nConnection: ,, close ,\r\n\r\n").keep_alive, 0);
}

#[test]
fn hop_by_hop_flags() {
    let b = b"GET / HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, X-Secret, upgrade, host, content-length\r\n\
Keep-Alive: 5\r\nProxy-Connection: x\r\nTE: trailers\r\nTrailer: x\r\nUpgrade: websocket\r\n\
x-secret: s\r\nX-Other: o\r\nX-Forwarded-For: 1.2.3.4\r\nX-Forwarded-Proto: https\r\n\
X-Forwarded-Host: h\r\nX-Real-IP: 1.2.3.4\r\nExpect: 100-continue\r\nContent-Length: 0\r\n\
DATE: Sun, 06 Nov 1994 08:49:37 GMT\r\n\r\n";
    let h = ok(b);
    let f = |n: &str| header(b, &h, n).unwrap().1;
    assert_eq!(f("date"), HF_DATE, "the gateway adds Date to responses without one");
    assert_eq!(f("host"), HF_HOST, "Host is never dropped via Connection");
    assert_eq!(f("content-length"), HF_CONTENT_LENGTH);
    assert_eq!(f("connection"), HF_CONNECTION | HF_HOP_BY_HOP);
    assert_eq!(f("keep-alive"), HF_HOP_BY_HOP);
    assert_eq!(f("proxy-connection"), HF_HOP_BY_HOP);
    assert_eq!(f("te"), HF_HOP_BY_HOP);
    assert_eq!(f("trailer"), HF_HOP_BY_HOP);
    assert_eq!(f("upgrade"), HF_UPGRADE | HF_HOP_BY_HOP);
    assert_eq!(f("x-secret"), HF_HOP_BY_HOP);
    assert_eq!(f("x-other"), 0);
    assert_eq!(f("x-forwarded-for"), HF_X_FORWARDED_FOR);
    assert_eq!(f("x-forwarded-proto"), HF_X_FORWARDED_PROTO);
    assert_eq!(f("x-forwarded-host"), HF_X_FORWARDED_HOST);
    assert_eq!(f("x-real-ip"), HF_X_REAL_IP);
    assert_eq!(f("expect"), HF_EXPECT);
    assert_eq!(h.upgrade, 1);
    assert_eq!(h.expect_continue, 1);
    assert_eq!(h.keep_alive, 1);
}

#[test]
fn upgrade_and_expect() {
    let up =
        ok(b"GET /ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n");
    assert_eq!(up.upgrade, 1);
    assert_eq!(ok(b"GET / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\n\r\n").upgrade, 0);
    assert_eq!(ok(b"GET / HTTP/1.1\r\nHost: a\r\nConnection: upgrade\r\n\r\n").upgrade, 0);
    assert_eq!(
        ok(b"GET / HTTP/1.0\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n").upgrade,
        0
    );
    let e = ok(b"PUT / HTTP/1.1\r\nHost: a\r\nExpect: 100-Continue\r\nContent-Length: 1\r\n\r\n");
    assert_eq!(e.expect_continue, 1);
    assert_eq!(ok(b"PUT / HTTP/1.1\r\nHost: a\r\nExpect: foo\r\n\r\n").expect_continue, 0);
}

// ---------------------------------------------------------------- responses

fn resp(buf: &[u8], head: bool) -> Result<Box<ResponseHead>, HttpError> {
    let mut h = Box::new(ResponseHead::new());
    match parse_response(buf, head, &Limits::default(), &mut h)? {
        Parsed::Complete(n) => {
            assert_eq!(n, h.head_len);
            Ok(h)
        }
        Parsed::Partial => Err(HttpError { status: 1, reason: "partial" }),
    }
}

#[test]
fn response_basics() {
    let b = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nServer: x\r\n\r\nhello";
    let h = resp(b, false).unwrap();
    assert_eq!(h.status, 200);
    assert_eq!(s(b, h.reason), b"OK");
    assert_eq!(h.head_len as usize, b.len() - 5);
    assert_eq!((h.body_kind, h.content_length, h.keep_alive), (BODY_LENGTH, 5, 1));
    assert_eq!(h.n_headers, 2);
    let b = b"HTTP/1.1 404 Not \xe9 Found\r\nTransfer-Encoding: chunked\r\n\r\n";
    let h = resp(b, false).unwrap();
    assert_eq!(s(b, h.reason), b"Not \xe9 Found");
    assert_eq!(h.body_kind, BODY_CHUNKED);
    let b = b"HTTP/1.1 204\r\n\r\n";
    let h = resp(b, false).unwrap();
    assert_eq!((h.status, h.reason.len, h.body_kind), (204, 0, BODY_NONE));
    let b = b"HTTP/1.1 200 \r\n\r\n";
    let h = resp(b, false).unwrap();
    assert_eq!((h.reason.len, h.body_kind, h.keep_alive), (0, BODY_UNTIL_CLOSE, 0));
    let h = resp(b"HTTP/1.0 200 OK\r\nContent-Length: 3\r\n\r\n", false).unwrap();
    assert_eq!(h.keep_alive, 0);
    let h = resp(b"HTTP/1.0 200 OK\r\nContent-Length: 3\r\nConnection: keep-alive\r\n\r\n", false)
        .unwrap();
    assert_eq!(h.keep_alive, 1);
    let h =
        resp(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nConnection: close\r\n\r\n", false).unwrap();
    assert_eq!(h.keep_alive, 0);
    let h = resp(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", false).unwrap();
    assert_eq!(h.body_kind, BODY_NONE);
}

#[test]
fn response_leading_empty_lines_are_skipped_and_spans_point_past_them() {
    // llhttp skips CRLFs before a response's start line too; the spans must say where the
    // status line really is, because the head writer copies nothing else.
    let b = b"\r\n\r\nHTTP/1.1 201 Made It\r\nContent-Length: 5\r\nX: y\r\n\r\nhello";
    let h = resp(b, false).unwrap();
    assert_eq!(h.status, 201);
    assert_eq!(s(b, h.reason), b"Made It");
    assert_eq!(h.head_len as usize, b.len() - 5);
    assert_eq!(s(b, h.headers[0].name), b"Content-Length");
    assert_eq!(s(b, h.headers[1].value), b"y");
    for e in h.headers() {
        assert!(e.name.off as usize + e.name.len as usize <= h.head_len as usize);
        assert!(e.value.off as usize + e.value.len as usize <= h.head_len as usize);
    }
    assert!(h.reason.off as usize + h.reason.len as usize <= h.head_len as usize);
}

#[test]
fn response_status_range() {
    assert_eq!(resp(b"HTTP/1.1 100 Continue\r\n\r\n", false).unwrap().status, 100);
    assert_eq!(resp(b"HTTP/1.1 599 Edge\r\nContent-Length: 0\r\n\r\n", false).unwrap().status, 599);
    assert_eq!(
        resp(b"HTTP/1.1 600 Past\r\nContent-Length: 0\r\n\r\n", false).unwrap_err().reason,
        "invalid status code"
    );
}

#[test]
fn response_no_body_statuses() {
    for (st, head) in
        [(100, false), (101, false), (204, false), (304, false), (200, true), (404, true)]
    {
        let b = format!("HTTP/1.1 {st} X\r\nContent-Length: 10\r\n\r\n");
        let h = resp(b.as_bytes(), head).unwrap();
        assert_eq!(h.body_kind, BODY_NONE, "{st} head={head}");
        assert_eq!(h.content_length, 10);
        assert_eq!(h.keep_alive, 1);
        let b = format!("HTTP/1.1 {st} X\r\nTransfer-Encoding: chunked\r\n\r\n");
        assert_eq!(resp(b.as_bytes(), head).unwrap().body_kind, BODY_NONE);
    }
}

#[test]
fn response_with_final_coding_not_chunked_is_read_until_close() {
    // RFC 9112 §6.3 point 4; its Transfer-Encoding stays with the body it describes
    for b in [
        &b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\nX: y\r\n\r\n"[..],
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\nTransfer-Encoding: deflate\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nConnection: keep-alive\r\nTransfer-Encoding: identity\r\n\r\n",
    ] {
        let h = resp(b, false).unwrap();
        assert_eq!((h.body_kind, h.keep_alive), (BODY_UNTIL_CLOSE, 0));
        let te: Vec<u32> = h
            .headers()
            .iter()
            .filter(|e| s(b, e.name).eq_ignore_ascii_case(b"transfer-encoding"))
            .map(|e| e.flags)
            .collect();
        assert!(!te.is_empty() && te.iter().all(|&f| f == HF_TRANSFER_ENCODING), "{te:?}");
    }
    let h = resp(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n", true).unwrap();
    assert_eq!((h.body_kind, h.keep_alive), (BODY_NONE, 1));
}

#[test]
fn response_with_codings_under_final_chunked_is_chunked_and_keeps_them() {
    // RFC 9112 §6.3 point 4: chunked final, so chunked framing; the codings before it stay with
    // the body, which the gateway does not decode
    for b in [
        &b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"[..],
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n",
    ] {
        let h = resp(b, false).unwrap();
        assert_eq!((h.body_kind, h.keep_alive), (BODY_CHUNKED, 1));
        assert!(h
            .headers()
            .iter()
            .filter(|e| s(b, e.name).eq_ignore_ascii_case(b"transfer-encoding"))
            .all(|e| e.flags == HF_TRANSFER_ENCODING));
    }
    // a plain chunked is the gateway's to re-frame: still hop-by-hop
    let b = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n";
    let h = resp(b, false).unwrap();
    assert_eq!(h.headers()[0].flags, HF_TRANSFER_ENCODING | HF_HOP_BY_HOP);
}

#[test]
fn response_errors_are_502() {
    for b in [
        &b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\n"[..],
        b"HTTP/1.1 200 OK\r\nContent-Length: 1, 1\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\n\r\n",
        b"HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
        b"HTTP/1.1 200 OK\nContent-Length: 1\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 1\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\n",
        b"HTTP/1.1 200\n\r\n",
        b"HTTP/1.1 200 OK\r\nX : 1\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nX: 1\r\n 2\r\n\r\n",
        b"HTTP/1.1 200 O\x01K\r\n\r\n",
        b"HTTP/1.1 20 OK\r\n\r\n",
        b"HTTP/1.1 099 OK\r\n\r\n",
        b"HTTP/1.1 600 OK\r\n\r\n",
        b"HTTP/1.1 999 OK\r\n\r\n",
        b"\nHTTP/1.1 200 OK\r\n\r\n",
        b"HTTP/2.0 200 OK\r\n\r\n",
        b"HTTP/1.1  200 OK\r\n\r\n",
        b"ICY 200 OK\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nX: a\rb\r\n\r\n",
    ] {
        let e = resp(b, false).unwrap_err();
        assert_eq!(e.status, 502, "{:?}", String::from_utf8_lossy(b));
    }
    let mut h = ResponseHead::new();
    let l = Limits { max_head_size: 64, ..Limits::default() };
    let big = format!("HTTP/1.1 200 OK\r\nX: {}\r\n", "a".repeat(100));
    assert_eq!(parse_response(big.as_bytes(), false, &l, &mut h).unwrap_err().status, 502);
    assert_eq!(parse_response(b"HTTP/1.1 200 OK\r\n", false, &l, &mut h).unwrap(), Parsed::Partial);
}

/// Found by the response_head fuzz target: a status line longer than `max_request_line` was
/// refused while it arrived in pieces (the request-line check of a partial head) but accepted
/// when the whole head came in one read, so the outcome depended on how the bytes were cut.
/// Responses are bounded by `max_head_size` only, however they arrive.
#[test]
fn response_limits_do_not_depend_on_the_reads() {
    let l = Limits { max_request_line: 64, max_head_size: 256, max_headers: 10 };
    let long_line = format!("HTTP/1.1 200 {}\r\nContent-Length: 0\r\n\r\n", "r".repeat(100));
    let too_big = format!("HTTP/1.1 200 OK\r\nX: {}\r\n\r\n", "v".repeat(300));
    let mut h = ResponseHead::new();
    for cut in [80, long_line.len()] {
        let r = parse_response(&long_line.as_bytes()[..cut], false, &l, &mut h);
        assert!(r.is_ok(), "status line of 115 bytes cut at {cut}: {r:?}");
    }
    for cut in [257, too_big.len()] {
        let r = parse_response(&too_big.as_bytes()[..cut], false, &l, &mut h);
        assert_eq!(r.unwrap_err().status, 502, "head over max_head_size cut at {cut}");
    }
}

#[test]
fn response_connection_hop_by_hop() {
    let b =
        b"HTTP/1.1 200 OK\r\nConnection: X-Internal\r\nX-Internal: 1\r\nContent-Length: 0\r\n\r\n";
    let h = resp(b, false).unwrap();
    assert_eq!(h.headers[1].flags, HF_HOP_BY_HOP);
    assert_eq!(h.headers[0].flags, HF_CONNECTION | HF_HOP_BY_HOP);
}

// ---------------------------------------------------------------- chunked scanner

/// Feeds `data` in pieces of `step` bytes (0 = all at once); returns
/// (consumed, done, decoded payload) or the error.
fn scan(data: &[u8], step: usize) -> Result<(usize, bool, Vec<u8>), HttpError> {
    let mut sc = ChunkedScanner::new();
    let mut out = Vec::new();
    let step = if step == 0 { data.len().max(1) } else { step };
    let mut pos = 0;
    while pos < data.len() {
        let end = (pos + step).min(data.len());
        let (n, done) = sc.feed_decode(&data[pos..end], &mut out)?;
        if done {
            assert_eq!(sc.body_bytes(), out.len() as u64);
            return Ok((pos + n, true, out));
        }
        assert_eq!(n, end - pos, "consumes everything when not done");
        pos += n;
    }
    Ok((pos, false, out))
}

/// Every vector, every split: 1-byte pieces and all two-piece splits agree with one-shot.
fn scan_all_splits(data: &[u8]) -> Result<(usize, bool, Vec<u8>), HttpError> {
    let whole = scan(data, 0);
    assert_eq!(scan(data, 1), whole, "1-byte split of {:?}", String::from_utf8_lossy(data));
    for cut in 1..data.len() {
        let mut sc = ChunkedScanner::new();
        let mut out = Vec::new();
        let r = (|| {
            let (n1, d1) = sc.feed_decode(&data[..cut], &mut out)?;
            if d1 {
                return Ok((n1, true, out.clone()));
            }
            assert_eq!(n1, cut);
            let (n2, d2) = sc.feed_decode(&data[cut..], &mut out)?;
            Ok((n1 + n2, d2, out.clone()))
        })();
        assert_eq!(r, whole, "cut {cut} of {:?}", String::from_utf8_lossy(data));
    }
    whole
}

#[test]
fn chunked_valid() {
    let cases: &[(&[u8], &[u8])] = &[
        (b"0\r\n\r\n", b""),
        (b"5\r\nhello\r\n0\r\n\r\n", b"hello"),
        (b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n", b"hello world"),
        (b"A\r\n0123456789\r\na\r\nabcdefghij\r\n000\r\n\r\n", b"0123456789abcdefghij"),
        (b"3;foo=bar\r\nabc\r\n0;last\r\n\r\n", b"abc"),
        (b"3;a;b=c;d=\"q \\\" ;x\"\r\nabc\r\n0\r\n\r\n", b"abc"),
        (b"3\r\nabc\r\n0\r\nTrailer-A: 1\r\nB:\r\nC: x \t y\xff\r\n\r\n", b"abc"),
        (b"0001\r\nZ\r\n0\r\n\r\n", b"Z"),
        (b"2\r\n\r\n\r\n0\r\n\r\n", b"\r\n"),
    ];
    for (data, payload) in cases {
        let (n, done, out) = scan_all_splits(data).unwrap();
        assert_eq!((n, done), (data.len(), true));
        assert_eq!(&out[..], *payload);
    }
}

#[test]
fn chunked_invalid() {
    let cases: &[&[u8]] = &[
        b"\r\n",                      // empty size
        b"x\r\n",                     // not hex
        b"0x5\r\nhello\r\n0\r\n\r\n", // 0x prefix
        b" 5\r\nhello\r\n0\r\n\r\n",  // leading space
        b"5 \r\nhello\r\n0\r\n\r\n",  // trailing space
        b"5\t\r\nhello\r\n0\r\n\r\n",
        b"-5\r\n",
        b"+5\r\n",
        b"5\nhello\r\n0\r\n\r\n",    // bare LF after size
        b"5\rhello\r\n0\r\n\r\n",    // bare CR
        b"5\r\nhello\n0\r\n\r\n",    // bare LF after data
        b"5\r\nhelloX\r\n0\r\n\r\n", // data longer than size
        b"5\r\nhello\r\r\n",
        b"0\r\n\n", // bare LF at end
        b"0\r\n\r\r",
        b"0\r\n \r\n\r\n",        // obs-fold / SP-started trailer
        b"0\r\nX : 1\r\n\r\n",    // space before colon
        b"0\r\nX: a\x01\r\n\r\n", // control in trailer value
        b"0\r\nX: a\n\r\n",
        b"0\r\nX\r\n\r\n",             // no colon
        b"3;\r\nabc\r\n0\r\n\r\n",     // empty extension name
        b"3; a=b\r\nabc\r\n0\r\n\r\n", // BWS before ext name
        b"3;a =b\r\nabc\r\n0\r\n\r\n",
        b"3;a= b\r\nabc\r\n0\r\n\r\n",
        b"3;a=\r\nabc\r\n0\r\n\r\n",
        b"3;a=\"unterminated\r\nabc\r\n0\r\n\r\n",
        b"3;a=\"x\"y\r\nabc\r\n0\r\n\r\n",
        b"3;a=b\nabc\r\n0\r\n\r\n",
        b"3;a=\"\x01\"\r\nabc\r\n0\r\n\r\n",
        b"8000000000000000\r\n",  // 2^63
        b"FFFFFFFFFFFFFFFFF\r\n", // > u64
    ];
    for data in cases {
        let r = scan_all_splits(data);
        assert_eq!(
            r.clone().map(|_| ()).unwrap_err().status,
            400,
            "{:?}",
            String::from_utf8_lossy(data)
        );
    }
    // just below 2^63 is a valid size (the body simply is not there yet)
    let (n, done, _) = scan(b"7FFFFFFFFFFFFFFF\r\nab", 0).unwrap();
    assert_eq!((n, done), (20, false));
}

#[test]
fn chunked_pipelined_and_sticky() {
    let data = b"3\r\nabc\r\n0\r\n\r\nGET / HTTP/1.1\r\n";
    let mut sc = ChunkedScanner::new();
    assert_eq!(sc.feed(data).unwrap(), (13, true));
    assert_eq!(sc.body_bytes(), 3);
    assert!(sc.is_done());
    assert_eq!(sc.feed(b"more").unwrap(), (0, true));
    sc.reset();
    assert_eq!(sc.body_bytes(), 0);
    assert_eq!(sc.feed(b"0\r\n").unwrap(), (3, false));
    let e = sc.feed(b" ").unwrap_err();
    assert_eq!(sc.feed(b"\r\n").unwrap_err(), e);
    // all-zero == initial state
    let z: ChunkedScanner = unsafe { std::mem::zeroed() };
    assert_eq!(z, ChunkedScanner::new());
}

#[test]
fn chunked_limits() {
    let mut long_ext = b"1;".to_vec();
    long_ext.extend(std::iter::repeat_n(b'a', 5000));
    long_ext.extend_from_slice(b"\r\nx\r\n0\r\n\r\n");
    assert_eq!(scan(&long_ext, 0).unwrap_err().reason, "chunk size line too long");
    let mut ok_ext = b"1;".to_vec();
    ok_ext.extend(std::iter::repeat_n(b'a', 4000));
    ok_ext.extend_from_slice(b"\r\nx\r\n0\r\n\r\n");
    assert!(scan(&ok_ext, 7).unwrap().1);
    let mut trailer = b"0\r\n".to_vec();
    for i in 0..2000 {
        trailer.extend_from_slice(format!("T{i}: v\r\n").as_bytes());
    }
    trailer.extend_from_slice(b"\r\n");
    assert_eq!(scan(&trailer, 0).unwrap_err().reason, "trailer section too large");
    // large body in big pieces: the data state is bulk
    let mut big = b"100000\r\n".to_vec();
    big.extend(std::iter::repeat_n(b'z', 0x100000));
    big.extend_from_slice(b"\r\n0\r\n\r\n");
    let (n, done, out) = scan(&big, 4096).unwrap();
    assert_eq!((n, done, out.len()), (big.len(), true, 0x100000));
    let mut sc = ChunkedScanner::new();
    assert_eq!(sc.feed(&big).unwrap(), (big.len(), true));
    assert_eq!(sc.body_bytes(), 0x100000);
}

// ---------------------------------------------------------------- request head splits

#[test]
fn request_head_every_split() {
    // Parsing after any prefix is Partial; the full head parses to the same spans.
    let b = b"\r\nPUT http://h.example/up?x=1 HTTP/1.1\r\nHost: h.example\r\nTransfer-Encoding: chunked\r\n\
Connection: keep-alive, X-A\r\nX-A: 1\r\nExpect: 100-continue\r\n\r\n";
    let full = ok(b);
    for i in 0..b.len() {
        assert_eq!(status(&b[..i]), 1, "prefix {i}");
    }
    assert_eq!(full.body_kind, BODY_CHUNKED);
    assert_eq!(full.expect_continue, 1);
    assert_eq!(s(b, full.host), b"h.example");
    assert_eq!(s(b, full.path), b"/up");
    assert_eq!(header(b, &full, "x-a").unwrap().1, HF_HOP_BY_HOP);
}
