//! The chunked body decoder: no panic; the outcome (bytes consumed, done, decoded payload, the
//! error) is the same whether the body arrives at once or cut in pieces anywhere (the gateway
//! feeds it whatever recv returned); the decoded payload is as long as `body_bytes`; errors are
//! sticky; and the validator agrees with the decoder.
//!
//! Input: one control byte (a seed for where to cut), then the body bytes.
#![no_main]
use gateway_http::ChunkedScanner;
use libfuzzer_sys::fuzz_target;

#[derive(Debug, PartialEq)]
struct Outcome {
    consumed: usize,
    done: bool,
    payload: Vec<u8>,
    error: Option<&'static str>,
    body_bytes: u64,
}

/// Feeds `body` in pieces whose lengths come from `next_len`, as a connection would.
fn run(body: &[u8], decode: bool, mut next_len: impl FnMut() -> usize) -> Outcome {
    let mut s = ChunkedScanner::new();
    let mut payload = Vec::new();
    let mut pos = 0;
    let mut error = None;
    let mut done = false;
    while pos < body.len() {
        let end = (pos + next_len().max(1)).min(body.len());
        let piece = &body[pos..end];
        let r = if decode { s.feed_decode(piece, &mut payload) } else { s.feed(piece) };
        match r {
            Ok((used, complete)) => {
                assert!(used <= piece.len());
                pos += used;
                if complete {
                    assert!(s.is_done());
                    done = true;
                    break;
                }
                assert_eq!(used, piece.len(), "an incomplete message left bytes unread");
            }
            Err(e) => {
                // sticky: the scanner keeps refusing
                assert_eq!(s.feed(b"0\r\n\r\n").map_err(|e| e.reason), Err(e.reason));
                error = Some(e.reason);
                break;
            }
        }
    }
    // after an error how much was consumed depends on the cuts; the error itself must not
    let consumed = if error.is_some() { 0 } else { pos };
    Outcome { consumed, done, payload, error, body_bytes: s.body_bytes() }
}

fuzz_target!(|data: &[u8]| {
    let Some((&seed, body)) = data.split_first() else { return };
    let whole = run(body, true, || usize::MAX);
    if whole.done {
        // body_bytes counts a chunk when its size is read; once done every chunk has arrived
        assert_eq!(whole.payload.len() as u64, whole.body_bytes);
    }
    // A small xorshift drives the cuts, so one input tries one reproducible split.
    let mut x = u32::from(seed) | 0x100;
    let mut cuts = || {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        (x % 7) as usize + if x & 0x80 != 0 { 0 } else { 40 }
    };
    let pieces = run(body, true, &mut cuts);
    assert_eq!(whole, pieces, "split with seed {seed}");
    let bytewise = run(body, false, || 1);
    assert_eq!(
        (whole.consumed, whole.done, whole.error, whole.body_bytes),
        (bytewise.consumed, bytewise.done, bytewise.error, bytewise.body_bytes),
        "validating byte by byte"
    );
});
