//! The byte classes of the HTTP and URI grammars, in one place: the parser's tables (tokens and
//! Host values here, request-targets for [`crate::target`]) and the router's path normaliser
//! are built from the same sets, so the places that must agree on a character cannot drift.
//!
//! The sets are `const fn`s so the tables are computed at compile time; a lookup at run time is
//! one indexed load, as it was when each table spelled its own list.

/// RFC 3986 section 2.3 `unreserved`: ALPHA / DIGIT / `-` / `.` / `_` / `~`.
#[inline]
pub const fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

/// RFC 3986 section 2.2 `sub-delims`.
#[inline]
pub const fn is_sub_delim(b: u8) -> bool {
    matches!(b, b'!' | b'$' | b'&' | b'\'' | b'(' | b')' | b'*' | b'+' | b',' | b';' | b'=')
}

/// RFC 3986 section 3.3 `pchar` less `pct-encoded` (a `%` is classified on its own):
/// unreserved / sub-delims / `:` / `@`.
#[inline]
pub const fn is_pchar(b: u8) -> bool {
    is_unreserved(b) || is_sub_delim(b) || matches!(b, b':' | b'@')
}

/// RFC 9110 section 5.6.2 `tchar`.
const fn is_token_char(b: u8) -> bool {
    b.is_ascii_alphanumeric()
        || matches!(
            b,
            b'!' | b'#'
                | b'$'
                | b'%'
                | b'&'
                | b'\''
                | b'*'
                | b'+'
                | b'-'
                | b'.'
                | b'^'
                | b'_'
                | b'`'
                | b'|'
                | b'~'
        )
}

/// What a Host value (RFC 9112 section 3.2: reg-name, IP literal, port) may hold: unreserved,
/// sub-delims, `:`, the IP literal's brackets and `%` (pct-encoded); the shape is checked apart.
const fn is_host_char(b: u8) -> bool {
    is_unreserved(b) || is_sub_delim(b) || matches!(b, b':' | b'[' | b']' | b'%')
}

/// The value of the hex digit `b`.
#[inline]
pub const fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Uppercase hex digits, the spelling of `%XX` the gateway writes (RFC 3986 section 2.1).
pub const HEX_UPPER: &[u8; 16] = b"0123456789ABCDEF";

/// Appends `b` percent-encoded (`%XX`, uppercase hex).
#[inline]
pub fn push_escaped(out: &mut Vec<u8>, b: u8) {
    out.extend_from_slice(&[b'%', HEX_UPPER[(b >> 4) as usize], HEX_UPPER[(b & 15) as usize]]);
}

// ---------------------------------------------------------------------------
// Header tokens and Host values
// ---------------------------------------------------------------------------

const C_TCHAR: u8 = 1; // RFC 9110 token character
const C_HOST: u8 = 2; // allowed in a Host value / authority (reg-name, IP literal, port)

static CLASS: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut i = 0;
    while i < 256 {
        let b = i as u8;
        let mut c = 0;
        if is_token_char(b) {
            c |= C_TCHAR;
        }
        if is_host_char(b) {
            c |= C_HOST;
        }
        t[i] = c;
        i += 1;
    }
    t
};

#[inline]
pub(crate) fn is_tchar(b: u8) -> bool {
    CLASS[b as usize] & C_TCHAR != 0
}

#[inline]
pub(crate) fn is_host_byte(b: u8) -> bool {
    CLASS[b as usize] & C_HOST != 0
}

// ---------------------------------------------------------------------------
// Request-targets (the `target` module says why each class is what it is)
// ---------------------------------------------------------------------------

/// A byte that is fine in a request-target.
pub(crate) const T_OK: u8 = 0;
/// A byte that is refused in any request-target (controls, SP, DEL, `#`).
pub(crate) const T_REJECT: u8 = 1;
/// `?`: the first one starts the query.
pub(crate) const T_QMARK: u8 = 2;
/// A byte outside the URI grammar that is forwarded percent-encoded.
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
        } else if is_pchar(b) || b == b'/' {
            // pchar and '/' (RFC 3986 section 3.3, 3.4)
            T_OK
        } else {
            T_ESCAPE
        };
        i += 1;
    }
    t
};

#[cfg(test)]
mod tests {
    use super::*;

    /// The sets as RFC 3986 and RFC 9110 list them, spelled out once more by hand: a change to
    /// a predicate above that moves a character shows here.
    #[test]
    fn sets_match_the_rfcs() {
        let spelled = |s: &[u8], b: u8| b.is_ascii_alphanumeric() || s.contains(&b);
        for b in 0..=255u8 {
            assert_eq!(is_unreserved(b), spelled(b"-._~", b), "{b}");
            assert_eq!(is_sub_delim(b), b"!$&'()*+,;=".contains(&b), "{b}");
            assert_eq!(is_pchar(b), spelled(b"-._~!$&'()*+,;=:@", b), "{b}");
            assert_eq!(is_tchar(b), spelled(b"!#$%&'*+-.^_`|~", b), "{b}");
            assert_eq!(is_host_byte(b), spelled(b"-._~!$&'()*+,;=:[]%", b), "{b}");
            assert_eq!(hex_value(b), (b as char).to_digit(16).map(|d| d as u8), "{b}");
        }
    }
}
