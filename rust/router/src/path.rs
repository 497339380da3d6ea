//! Request-path normalisation, applied before matching so that a route cannot be bypassed
//! through an alternative spelling of the same path (`/public/../admin`, `/%61dmin`, `//admin`).
//!
//! Rules (RFC 3986 section 6.2.2 syntax-based normalisation plus dot-segment removal):
//! - `%XX` of an unreserved character (ALPHA / DIGIT / `-` / `.` / `_` / `~`) is decoded; every
//!   other escape is kept encoded with its hex digits uppercased (`%2f` -> `%2F`, which therefore
//!   never acts as a separator). A malformed escape (`%zz`, a truncated `%2`), `%00` and a raw
//!   NUL are errors.
//! - runs of `/` collapse to one `/`;
//! - `.` segments are removed and `..` segments remove the previous segment; a `..` that would
//!   climb above the root is an error (the gateway answers 400) rather than being clamped;
//! - the path must start with `/` (origin-form); anything else is an error;
//! - a trailing slash is preserved (`/a/b/` stays `/a/b/`, `/a/b/.` becomes `/a/b/`);
//! - a byte a path may not hold raw (RFC 3986 section 3.3: anything but pchar and `/`) is
//!   percent-encoded with uppercase hex: raw UTF-8 (`/café` -> `/caf%C3%A9`, what browsers send)
//!   and the excluded ASCII characters (`/a{b}` -> `/a%7Bb%7D`, `\` -> `%5C`). The normal form
//!   is then the one spelling of the path the grammar allows, the router matches it and the
//!   gateway forwards it, so an upstream's parser cannot read another path than the one routed
//!   (a server taking `\` for `/` would see `/public\..\admin` as `/admin`).
//!
//! The query string is not part of the input: the caller passes the path only. Unreserved
//! characters, sub-delims, `:` and `@` are copied unchanged. The character sets are the HTTP
//! parser's ([`gateway_http::chars`]), so the router and the parser agree on every byte.
use std::borrow::Cow;
use std::fmt;

use gateway_http::chars::{hex_value, is_pchar, is_unreserved, push_escaped, HEX_UPPER};

/// Why a request path cannot be normalised. Every variant maps to a 400 answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathError {
    /// The path is empty or does not start with `/`.
    NotAbsolute,
    /// A `%` not followed by two hex digits.
    InvalidEscape,
    /// `%00`, or a raw NUL byte.
    NulByte,
    /// A `..` segment above the root.
    AboveRoot,
}

impl fmt::Display for PathError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PathError::NotAbsolute => "path must start with '/'",
            PathError::InvalidEscape => "invalid percent-escape in path",
            PathError::NulByte => "'%00' is not allowed in a path",
            PathError::AboveRoot => "'..' goes above the root of the path",
        })
    }
}

impl std::error::Error for PathError {}

/// Normalises a request path (see the module documentation for the rules).
///
/// Returns `Cow::Borrowed(raw)` without copying when the path needs no change and contains no
/// `%`, no `//` and no `/.` (a single scan; the common case).
pub fn normalize_path(raw: &[u8]) -> Result<Cow<'_, [u8]>, PathError> {
    if is_clean(raw) {
        return Ok(Cow::Borrowed(raw));
    }
    let mut out = Vec::with_capacity(raw.len());
    normalize_slow(raw, &mut out)?;
    if out == raw {
        Ok(Cow::Borrowed(raw))
    } else {
        Ok(Cow::Owned(out))
    }
}

/// Normalises `raw` into `out` (cleared first, its capacity reused). Returns whether the result
/// differs from `raw`. On error `out` is left empty.
pub(crate) fn normalize_into(raw: &[u8], out: &mut Vec<u8>) -> Result<bool, PathError> {
    out.clear();
    if is_clean(raw) {
        out.extend_from_slice(raw);
        return Ok(false);
    }
    match normalize_slow(raw, out) {
        Ok(()) => Ok(out.as_slice() != raw),
        Err(e) => {
            out.clear();
            Err(e)
        }
    }
}

/// A byte copied as it is (pchar other than `%` and `.`).
const P_PLAIN: u8 = 0;
const P_SLASH: u8 = 1;
const P_DOT: u8 = 2;
const P_PERCENT: u8 = 3;
/// A byte a path may not hold raw: percent-encoded.
const P_ESCAPE: u8 = 4;

static PATH_CLASS: [u8; 256] = {
    let mut t = [P_ESCAPE; 256];
    let mut i = 0;
    while i < 256 {
        let b = i as u8;
        t[i] = match b {
            b'/' => P_SLASH,
            b'.' => P_DOT,
            b'%' => P_PERCENT,
            _ if is_pchar(b) => P_PLAIN,
            _ => P_ESCAPE,
        };
        i += 1;
    }
    t
};

/// True when `raw` starts with `/` and has no `%`, no `//`, no `/.` and no byte to encode: then
/// it is already normal.
#[inline]
fn is_clean(raw: &[u8]) -> bool {
    if raw.first() != Some(&b'/') {
        return false;
    }
    let mut after_slash = false;
    for &b in raw {
        match PATH_CLASS[b as usize] {
            P_PLAIN => after_slash = false,
            P_SLASH => {
                if after_slash {
                    return false;
                }
                after_slash = true;
            }
            P_DOT if !after_slash => {}
            _ => return false,
        }
    }
    true
}

fn normalize_slow(raw: &[u8], out: &mut Vec<u8>) -> Result<(), PathError> {
    if raw.first() != Some(&b'/') {
        return Err(PathError::NotAbsolute);
    }
    out.clear();
    out.reserve(raw.len());
    out.push(b'/');
    // Index in `out` where the segment being written starts; out[seg_start - 1] is always '/'.
    let mut seg_start = 1;
    let n = raw.len();
    let mut i = 1;
    while i < n {
        let b = raw[i];
        if b == b'/' {
            close_segment(out, seg_start)?;
            if out.last() != Some(&b'/') {
                out.push(b'/');
            }
            seg_start = out.len();
            i += 1;
        } else if b == b'%' {
            if i + 2 >= n {
                return Err(PathError::InvalidEscape);
            }
            let (hi, lo) = match (hex_value(raw[i + 1]), hex_value(raw[i + 2])) {
                (Some(hi), Some(lo)) => (hi, lo),
                _ => return Err(PathError::InvalidEscape),
            };
            let v = (hi << 4) | lo;
            if v == 0 {
                return Err(PathError::NulByte);
            }
            if is_unreserved(v) {
                out.push(v);
            } else {
                out.extend_from_slice(&[b'%', HEX_UPPER[hi as usize], HEX_UPPER[lo as usize]]);
            }
            i += 3;
        } else if PATH_CLASS[b as usize] == P_ESCAPE {
            if b == 0 {
                // as `%00` is: encoded, it would be a path that no longer normalises
                return Err(PathError::NulByte);
            }
            push_escaped(out, b);
            i += 1;
        } else {
            out.push(b);
            i += 1;
        }
    }
    close_segment(out, seg_start)
}

/// Applies dot-segment removal to the segment `out[seg_start..]` that has just been completed.
/// A removed segment leaves `out` ending with '/', so a trailing `.`/`..` yields a trailing slash.
#[inline]
fn close_segment(out: &mut Vec<u8>, seg_start: usize) -> Result<(), PathError> {
    let seg = &out[seg_start..];
    if seg == b"." {
        out.truncate(seg_start);
    } else if seg == b".." {
        if seg_start <= 1 {
            return Err(PathError::AboveRoot);
        }
        // out[seg_start - 1] is the '/' ending the previous segment; drop that segment.
        let prev = out[..seg_start - 1].iter().rposition(|&c| c == b'/').unwrap_or(0);
        out.truncate(prev + 1);
    }
    Ok(())
}
