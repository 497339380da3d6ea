//! The path normaliser against a reference written the slow, obvious way (split on '/', decode
//! each segment, a stack for dot segments), plus its own promises: the result is normal
//! (normalising it again changes nothing), within RFC 3986's path grammar (pchar, '/' and
//! uppercase escapes only: what the gateway forwards), and unchanged input is borrowed, not copied.
//!
//! Input: the raw request path.
#![no_main]
use gateway_router::{normalize_path, PathError};
use libfuzzer_sys::fuzz_target;
use std::borrow::Cow;

fn unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

fn hex(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|d| d as u8)
}

/// A byte a path segment may hold raw (RFC 3986 pchar without pct-encoded).
fn pchar(b: u8) -> bool {
    unreserved(b) || b"!$&'()*+,;=:@".contains(&b)
}

/// One segment with its escapes decoded (unreserved) or uppercased (the rest), and the bytes a
/// segment may not hold raw encoded.
fn decode_segment(seg: &[u8]) -> Result<Vec<u8>, PathError> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < seg.len() {
        if seg[i] == 0 {
            return Err(PathError::NulByte);
        }
        if seg[i] != b'%' {
            if pchar(seg[i]) {
                out.push(seg[i]);
            } else {
                out.extend_from_slice(format!("%{:02X}", seg[i]).as_bytes());
            }
            i += 1;
            continue;
        }
        let (Some(hi), Some(lo)) =
            (seg.get(i + 1).and_then(|&b| hex(b)), seg.get(i + 2).and_then(|&b| hex(b)))
        else {
            return Err(PathError::InvalidEscape);
        };
        let v = hi * 16 + lo;
        if v == 0 {
            return Err(PathError::NulByte);
        }
        if unreserved(v) {
            out.push(v);
        } else {
            out.extend_from_slice(format!("%{v:02X}").as_bytes());
        }
        i += 3;
    }
    Ok(out)
}

fn reference(raw: &[u8]) -> Result<Vec<u8>, PathError> {
    let Some(rest) = raw.strip_prefix(b"/") else { return Err(PathError::NotAbsolute) };
    let parts: Vec<&[u8]> = rest.split(|&b| b == b'/').collect();
    let mut segs: Vec<Vec<u8>> = Vec::new();
    let mut trailing_slash = false;
    for (k, part) in parts.iter().enumerate() {
        let last = k + 1 == parts.len();
        let seg = decode_segment(part)?;
        match seg.as_slice() {
            b"." | b"" => trailing_slash = last,
            b".." => {
                if segs.pop().is_none() {
                    return Err(PathError::AboveRoot);
                }
                trailing_slash = last;
            }
            _ => {
                segs.push(seg);
                trailing_slash = false;
            }
        }
    }
    let mut out = b"/".to_vec();
    out.extend_from_slice(&segs.join(&b'/'));
    if trailing_slash && !segs.is_empty() {
        out.push(b'/');
    }
    Ok(out)
}

fuzz_target!(|raw: &[u8]| {
    let got = normalize_path(raw);
    let want = reference(raw);
    assert_eq!(
        got.as_deref().map(<[u8]>::to_vec).map_err(|e| *e),
        want,
        "path {:?}",
        String::from_utf8_lossy(raw)
    );
    if let Ok(norm) = got {
        if let Cow::Owned(ref v) = norm {
            assert_ne!(v.as_slice(), raw, "an unchanged path was copied");
        }
        let mut k = 0;
        while k < norm.len() {
            if norm[k] == b'%' {
                let esc = &norm[k + 1..k + 3];
                assert!(esc.iter().all(|b| b.is_ascii_digit() || (b'A'..=b'F').contains(b)), "{norm:?}");
                k += 3;
            } else {
                assert!(norm[k] == b'/' || pchar(norm[k]), "{norm:?} holds {:?} raw", norm[k]);
                k += 1;
            }
        }
        let again = normalize_path(&norm).expect("a normalised path is valid");
        assert!(matches!(again, Cow::Borrowed(_)), "normalising twice changed {norm:?}");
    }
});
