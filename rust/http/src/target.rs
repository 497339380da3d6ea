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
//! parser flagged it ([`crate::RequestHead::query_escape`]). The byte classes themselves are in
//! [`crate::chars`] (`TARGET_CLASS`), with the other tables built from the same RFC 3986 sets.

use crate::chars::{push_escaped, TARGET_CLASS, T_OK, T_PERCENT, T_QMARK};

/// Whether the `%` at `t[i]` starts a well-formed escape (`%` HEXDIG HEXDIG).
#[inline]
pub(crate) fn valid_escape_at(t: &[u8], i: usize) -> bool {
    i + 2 < t.len() && t[i + 1].is_ascii_hexdigit() && t[i + 2].is_ascii_hexdigit()
}

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
            push_escaped(out, b);
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
