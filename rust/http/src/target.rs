//! Request-target characters: which bytes the parser refuses, and which it accepts but the
//! gateway must not forward as they are.
//!
//! RFC 9112 section 3.2 makes the request-target follow the URI grammar (RFC 3986), and
//! RFC 9110 section 2.2 says a sender MUST NOT generate protocol elements outside the grammar.
//! Clients do send bytes outside it: raw UTF-8, and the visible ASCII characters RFC 3986
//! excludes (`"` `<` `>` `\` `^` `` ` `` `{` `|` `}`, and `[` `]` outside an IP literal), which
//! browsers leave unescaped in a query (`?filter={"a":[1]}` is sent with raw `{`, `[`, `]`).
//! Refusing them (HAProxy's choice for raw non-ASCII) breaks such clients; forwarding them as
//! received (nginx's choice) hands the upstream a target its own parser may refuse or read
//! differently (h11 and llhttp refuse raw non-ASCII; servers that take `\` for `/` see
//! `/public\..\admin` as `/admin`). The gateway percent-encodes them instead: `%XX` is the only
//! spelling of those bytes the grammar allows and it decodes to the same bytes, so applications
//! see the same value and every parser reads the same target.
//!
//! What is refused outright (400): controls, space, DEL and `#` (a fragment is never sent): they
//! end or break the request line. The path's characters are escaped by the router's normaliser
//! (so the route matched is the path forwarded); the query's by [`escape_query`], when the
//! parser flagged it ([`crate::RequestHead::query_escape`]).

/// A byte that is fine in a request-target.
pub(crate) const T_OK: u8 = 0;
/// A byte that is refused in any request-target (controls, SP, DEL, `#`).
pub(crate) const T_REJECT: u8 = 1;
/// `?`: the first one starts the query.
pub(crate) const T_QMARK: u8 = 2;
/// A byte outside the URI grammar that is forwarded percent-encoded (see the module docs).
pub(crate) const T_ESCAPE: u8 = 3;
/// `%`: part of the grammar only as the start of `%` HEXDIG HEXDIG.
pub(crate) const T_PERCENT: u8 = 4;

/// The class of each byte in a request-target.
pub(crate) static TARGET_CLASS: [u8; 256] = {
    let mut t = [T_ESCAPE; 256];
    let mut i = 0;
    while i < 256 {
        let b = i as u8;
        t[i] = if b <= 0x20 || b == 0x7f || b == b'#' {
            T_REJECT
        } else if b == b'?' {
            T_QMARK
        } else if b == b'%' {
            T_PERCENT
        } else if b.is_ascii_alphanumeric()
            || matches!(
                b,
                // unreserved, sub-delims, ':' '@' (pchar) and '/' (RFC 3986 section 3.3, 3.4)
                b'-' | b'.'
                    | b'_'
                    | b'~'
                    | b'!'
                    | b'$'
                    | b'&'
                    | b'\''
                    | b'('
                    | b')'
                    | b'*'
                    | b'+'
                    | b','
                    | b';'
                    | b'='
                    | b':'
                    | b'@'
                    | b'/'
            )
        {
            T_OK
        } else {
            T_ESCAPE
        };
        i += 1;
    }
    t
};

#[inline]
pub(crate) fn is_hex(b: u8) -> bool {
    b.is_ascii_hexdigit()
}

/// Whether the `%` at `t[i]` starts a well-formed escape (`%` HEXDIG HEXDIG).
#[inline]
pub(crate) fn valid_escape_at(t: &[u8], i: usize) -> bool {
    i + 2 < t.len() && is_hex(t[i + 1]) && is_hex(t[i + 2])
}

const HEX_UPPER: &[u8; 16] = b"0123456789ABCDEF";

/// Appends `query` to `out` with every byte outside RFC 3986's query grammar percent-encoded
/// (uppercase hex): the excluded ASCII characters, bytes >= 0x80, and a `%` that does not start
/// `%` HEXDIG HEXDIG (as `%25`, so a lenient decoder that kept it literally reads the same).
/// Bytes the parser refuses (controls, SP, `#`) are encoded too, so the result is always within
/// the grammar. A query needing no change is appended as it is.
pub fn escape_query(query: &[u8], out: &mut Vec<u8>) {
    out.reserve(query.len());
    for (i, &b) in query.iter().enumerate() {
        let keep = match TARGET_CLASS[b as usize] {
            T_OK | T_QMARK => true,
            T_PERCENT => valid_escape_at(query, i),
            _ => false,
        };
        if keep {
            out.push(b);
        } else {
            out.extend_from_slice(&[
                b'%',
                HEX_UPPER[(b >> 4) as usize],
                HEX_UPPER[(b & 15) as usize],
            ]);
        }
    }
}

/// Whether [`escape_query`] would change `query`.
pub fn query_needs_escape(query: &[u8]) -> bool {
    query.iter().enumerate().any(|(i, &b)| match TARGET_CLASS[b as usize] {
        T_OK | T_QMARK => false,
        T_PERCENT => !valid_escape_at(query, i),
        _ => true,
    })
}
