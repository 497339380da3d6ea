//! C ABI used by the Cython connection protocol on the per-request path (declared in
//! `pyext/gateway_ffi.h`). Defined here, in the cdylib itself, so the linker always keeps them next
//! to the Cython objects that call them. One call per step: a whole head per parse.
use std::os::raw::c_char;
use std::panic::{catch_unwind, AssertUnwindSafe};

use gateway_http::{
    escape_query, parse_request, parse_response, request_from_fields, ChunkedScanner, HttpError,
    Limits, Parsed, RequestHead, ResponseHead,
};
use gateway_router::{Outcome, Params, Router};

static PANIC_REASON: &[u8] = b"internal parser error\0";

fn reason_ptr(reason: &'static str, scratch: &mut [u8; 128]) -> *const c_char {
    // Reasons are short static strings without a NUL; copy into the caller-provided static buffer.
    let n = reason.len().min(scratch.len() - 1);
    scratch[..n].copy_from_slice(&reason.as_bytes()[..n]);
    scratch[n] = 0;
    scratch.as_ptr() as *const c_char
}

thread_local! {
    static REASON: std::cell::RefCell<[u8; 128]> = const { std::cell::RefCell::new([0u8; 128]) };
}

fn encode(
    result: std::thread::Result<Result<Parsed, HttpError>>,
    reason: *mut *const c_char,
) -> i32 {
    match result {
        Ok(Ok(Parsed::Complete(n))) => n as i32,
        Ok(Ok(Parsed::Partial)) => 0,
        Ok(Err(e)) => {
            if !reason.is_null() {
                REASON.with(|r| unsafe { *reason = reason_ptr(e.reason, &mut r.borrow_mut()) });
            }
            -(e.status as i32)
        }
        Err(_) => {
            if !reason.is_null() {
                unsafe { *reason = PANIC_REASON.as_ptr() as *const c_char };
            }
            -400
        }
    }
}

/// A request-head call over the C ABI: `buf` as a slice, a panic as a 400, the result encoded.
///
/// # Safety
/// As for [`gw_parse_request`].
#[inline(always)]
unsafe fn request_head_call(
    buf: *const u8,
    len: usize,
    limits: *const Limits,
    out: *mut RequestHead,
    reason: *mut *const c_char,
    f: fn(&[u8], &Limits, &mut RequestHead) -> Result<Parsed, HttpError>,
) -> i32 {
    let data = if len == 0 { &[][..] } else { std::slice::from_raw_parts(buf, len) };
    let result = catch_unwind(AssertUnwindSafe(|| f(data, &*limits, &mut *out)));
    encode(result, reason)
}

/// Parses a request head. Returns the head length (> 0), 0 when more bytes are needed, or the
/// negated HTTP status to answer with; `reason` then points at a NUL-terminated explanation.
///
/// # Safety
/// `buf` must point at `len` readable bytes; `limits`, `out` must be valid.
#[no_mangle]
pub unsafe extern "C" fn gw_parse_request(
    buf: *const u8,
    len: usize,
    limits: *const Limits,
    out: *mut RequestHead,
    reason: *mut *const c_char,
) -> i32 {
    request_head_call(buf, len, limits, out, reason, parse_request)
}

/// Checks a request head the caller laid out in `buf` (an HTTP/2 stream's header list; the
/// caller set `out`'s head length, method and target spans and its header entries' name and
/// value spans) and fills in the rest of `out`, as [`gw_parse_request`] would from the same
/// bytes. Returns the head length, or the negated status as [`gw_parse_request`] does.
///
/// # Safety
/// As for [`gw_parse_request`]; a span of `out` outside `buf` is refused (400), not read.
#[no_mangle]
pub unsafe extern "C" fn gw_request_from_fields(
    buf: *const u8,
    len: usize,
    limits: *const Limits,
    out: *mut RequestHead,
    reason: *mut *const c_char,
) -> i32 {
    request_head_call(buf, len, limits, out, reason, request_from_fields)
}

/// Parses a response head; `request_was_head` makes the body empty whatever the headers say.
///
/// # Safety
/// As for [`gw_parse_request`].
#[no_mangle]
pub unsafe extern "C" fn gw_parse_response(
    buf: *const u8,
    len: usize,
    request_was_head: i32,
    limits: *const Limits,
    out: *mut ResponseHead,
    reason: *mut *const c_char,
) -> i32 {
    let data = if len == 0 { &[][..] } else { std::slice::from_raw_parts(buf, len) };
    let result = catch_unwind(AssertUnwindSafe(|| {
        parse_response(data, request_was_head != 0, &*limits, &mut *out)
    }));
    encode(result, reason)
}

#[no_mangle]
pub extern "C" fn gw_chunked_new() -> *mut ChunkedScanner {
    Box::into_raw(Box::new(ChunkedScanner::new()))
}

/// # Safety
/// `scanner` must come from [`gw_chunked_new`] and not be used afterwards.
#[no_mangle]
pub unsafe extern "C" fn gw_chunked_free(scanner: *mut ChunkedScanner) {
    if !scanner.is_null() {
        drop(Box::from_raw(scanner));
    }
}

/// # Safety
/// `scanner` must come from [`gw_chunked_new`].
#[no_mangle]
pub unsafe extern "C" fn gw_chunked_reset(scanner: *mut ChunkedScanner) {
    (*scanner).reset();
}

/// Scans chunked-body bytes. Returns 0 and sets `consumed` (bytes of this message in `buf`) and
/// `done` (the message ended), or the negated HTTP status when the framing is invalid.
///
/// # Safety
/// `scanner` from [`gw_chunked_new`]; `buf` has `len` readable bytes; out-pointers valid.
#[no_mangle]
pub unsafe extern "C" fn gw_chunked_feed(
    scanner: *mut ChunkedScanner,
    buf: *const u8,
    len: usize,
    consumed: *mut usize,
    done: *mut u8,
) -> i32 {
    let data = if len == 0 { &[][..] } else { std::slice::from_raw_parts(buf, len) };
    match catch_unwind(AssertUnwindSafe(|| (*scanner).feed(data))) {
        Ok(Ok((n, finished))) => {
            *consumed = n;
            *done = finished as u8;
            0
        }
        Ok(Err(e)) => -(e.status as i32),
        Err(_) => -400,
    }
}

/// Payload bytes seen so far by the scanner (for the body-size limit).
///
/// # Safety
/// `scanner` from [`gw_chunked_new`].
#[no_mangle]
pub unsafe extern "C" fn gw_chunked_body_bytes(scanner: *const ChunkedScanner) -> u64 {
    (*scanner).body_bytes()
}

/// Sizes of the shared structs, checked by the Cython module at import against its header.
#[no_mangle]
pub extern "C" fn gw_abi_sizes(request_head: *mut usize, response_head: *mut usize) {
    unsafe {
        *request_head = std::mem::size_of::<RequestHead>();
        *response_head = std::mem::size_of::<ResponseHead>();
    }
}

/// Writes a query the parser flagged (`query_escape`) percent-encoded where RFC 3986 asks (see
/// `gateway_http::escape_query`) to `out`, which has room for 3 * `len` bytes; returns the
/// number of bytes written.
///
/// # Safety
/// `query` points at `len` readable bytes, `out` at 3 * `len` writable ones.
#[no_mangle]
pub unsafe extern "C" fn gw_escape_query(query: *const u8, len: usize, out: *mut u8) -> usize {
    if len == 0 {
        return 0;
    }
    let mut escaped = Vec::with_capacity(len * 3);
    escape_query(std::slice::from_raw_parts(query, len), &mut escaped);
    let n = escaped.len().min(len * 3);
    std::ptr::copy_nonoverlapping(escaped.as_ptr(), out, n);
    n
}

/// Like [`gw_chunked_feed`] but also writes the decoded payload to `out` (at least `len` bytes of
/// room: a payload is never longer than its chunked encoding) and its length to `out_len`.
///
/// # Safety
/// As for [`gw_chunked_feed`]; `out` has room for `len` bytes.
#[no_mangle]
pub unsafe extern "C" fn gw_chunked_decode(
    scanner: *mut ChunkedScanner,
    buf: *const u8,
    len: usize,
    out: *mut u8,
    consumed: *mut usize,
    out_len: *mut usize,
    done: *mut u8,
) -> i32 {
    let data = if len == 0 { &[][..] } else { std::slice::from_raw_parts(buf, len) };
    let mut payload = Vec::with_capacity(len);
    match catch_unwind(AssertUnwindSafe(|| (*scanner).feed_decode(data, &mut payload))) {
        Ok(Ok((n, finished))) => {
            let copied = payload.len().min(len);
            std::ptr::copy_nonoverlapping(payload.as_ptr(), out, copied);
            *consumed = n;
            *out_len = copied;
            *done = finished as u8;
            0
        }
        Ok(Err(e)) => -(e.status as i32),
        Err(_) => -400,
    }
}

// ---- router ----------------------------------------------------------------------------------

/// Route-match codes of [`gw_router_find`] (as `Router.match` in Python).
const ROUTE_NOT_FOUND: i64 = -1;
const ROUTE_METHOD_NOT_ALLOWED: i64 = -2;
const ROUTE_BAD_PATH: i64 = -3;

unsafe fn bytes<'a>(ptr: *const u8, len: usize) -> &'a [u8] {
    if len == 0 || ptr.is_null() {
        &[]
    } else {
        std::slice::from_raw_parts(ptr, len)
    }
}

/// Scratch for [`gw_router_find`]: the normalised path and the captured parameters of the last
/// match. One per worker thread, reused by every request.
#[no_mangle]
pub extern "C" fn gw_params_new() -> *mut Params {
    Box::into_raw(Box::new(Params::new()))
}

/// # Safety
/// `params` must come from [`gw_params_new`] and not be used afterwards.
#[no_mangle]
pub unsafe extern "C" fn gw_params_free(params: *mut Params) {
    if !params.is_null() {
        drop(Box::from_raw(params));
    }
}

/// Matches a request: the route index (>= 0) or -1 not found, -2 method not allowed, -3 a path
/// that cannot be normalised. The normalised path and parameters are left in `params`.
///
/// # Safety
/// `router` is the `_handle` of a live `gateway._native.Router`; each buffer has its length of
/// readable bytes; `params` comes from [`gw_params_new`].
#[no_mangle]
pub unsafe extern "C" fn gw_router_find(
    router: *const Router,
    method: *const u8,
    method_len: usize,
    host: *const u8,
    host_len: usize,
    path: *const u8,
    path_len: usize,
    params: *mut Params,
) -> i64 {
    let (router, params) = (&*router, &mut *params);
    let (method, host, path) =
        (bytes(method, method_len), bytes(host, host_len), bytes(path, path_len));
    match catch_unwind(AssertUnwindSafe(|| router.find(method, host, path, params))) {
        Ok(Outcome::Found(index)) => index as i64,
        Ok(Outcome::NotFound) => ROUTE_NOT_FOUND,
        Ok(Outcome::MethodNotAllowed) => ROUTE_METHOD_NOT_ALLOWED,
        Ok(Outcome::BadPath) | Err(_) => ROUTE_BAD_PATH,
    }
}

/// The normalised path of the last match; `changed` says whether it differs from the raw path.
///
/// # Safety
/// `params` from [`gw_params_new`]; out-pointers valid.
#[no_mangle]
pub unsafe extern "C" fn gw_params_path(
    params: *const Params,
    len: *mut usize,
    changed: *mut u8,
) -> *const u8 {
    let params = &*params;
    *len = params.path().len();
    *changed = params.normalized_changed() as u8;
    params.path().as_ptr()
}

/// Number of parameters captured by the last match.
///
/// # Safety
/// `params` from [`gw_params_new`].
#[no_mangle]
pub unsafe extern "C" fn gw_params_count(params: *const Params) -> u32 {
    (*params).len() as u32
}

/// The `index`-th parameter of the last match; 0 on success, -1 when out of range.
///
/// # Safety
/// `params` from [`gw_params_new`]; out-pointers valid.
#[no_mangle]
pub unsafe extern "C" fn gw_params_item(
    params: *const Params,
    index: u32,
    name: *mut *const u8,
    name_len: *mut usize,
    value: *mut *const u8,
    value_len: *mut usize,
) -> i32 {
    match (*params).iter().nth(index as usize) {
        Some((n, v)) => {
            *name = n.as_ptr();
            *name_len = n.len();
            *value = v.as_ptr();
            *value_len = v.len();
            0
        }
        None => -1,
    }
}

// ---- shared-memory limiter and metrics, for the built-in plugins' native hooks ----
//
// The handles are the addresses of the `Limiter` / `MetricsStore` inside a live
// `SharedLimiter` / `SharedMetrics` Python object (their `_handle`); the Cython hook keeps that
// object referenced for as long as it keeps the address. Keys are hashed exactly as the Python
// methods hash a str key's UTF-8 bytes, so both paths count the same key together.

/// The slot key of `key`: its hash for a local limit (`sync_tag` < 0), else its synced key
/// under that tag (`synced_key`: a limit shared between nodes by the master's syncer), as the
/// Python methods take `hash_key(key)` or `synced_key(key, tag)`.
fn slot_key(key: &[u8], sync_tag: i64) -> u64 {
    match u32::try_from(sync_tag) {
        Ok(tag) => gateway_limiter::synced_key(key, tag),
        Err(_) => gateway_limiter::hash_key(key),
    }
}

/// Window counter decision (`SharedLimiter.count`): returns 1 admitted, 0 rejected; `remaining`
/// and `reset_ns` as in [`gateway_limiter::CountDecision`]. `sync_tag` >= 0: the synced key of
/// that tag (see [`slot_key`]).
///
/// # Safety
/// `limiter` must be a live `_handle` of a `SharedLimiter`; `key` must point at `key_len`
/// readable bytes; `remaining` and `reset_ns` must be valid for writes.
#[no_mangle]
pub unsafe extern "C" fn gw_limiter_count(
    limiter: *const gateway_limiter::Limiter,
    key: *const u8,
    key_len: usize,
    sync_tag: i64,
    limit: u64,
    window_ns: u64,
    cost: u64,
    sliding: u8,
    remaining: *mut u64,
    reset_ns: *mut u64,
) -> i32 {
    let limiter = &*limiter;
    let key = std::slice::from_raw_parts(key, key_len);
    let d = limiter.count(
        slot_key(key, sync_tag),
        limit,
        window_ns,
        cost,
        gateway_limiter::monotonic_ns(),
        sliding != 0,
    );
    *remaining = d.remaining;
    *reset_ns = d.reset_ns;
    i32::from(d.allowed)
}

/// Token-bucket decision (`SharedLimiter.acquire`): returns 1 admitted, 0 rejected; `delay_ns`
/// as in [`gateway_limiter::Decision`] (`u64::MAX`: never). A synced bucket (`sync_tag` >= 0)
/// also counts each admission in the fixed window of `counted_window_ns` of its key
/// (`count_add`): the syncer pushes those counts, as the bucket alone does not say how many
/// passed.
///
/// # Safety
/// As for [`gw_limiter_count`].
#[no_mangle]
pub unsafe extern "C" fn gw_limiter_acquire(
    limiter: *const gateway_limiter::Limiter,
    key: *const u8,
    key_len: usize,
    sync_tag: i64,
    counted_window_ns: u64,
    rate: f64,
    burst: f64,
    cost: f64,
    delay_ns: *mut u64,
) -> i32 {
    let limiter = &*limiter;
    let key = slot_key(std::slice::from_raw_parts(key, key_len), sync_tag);
    let now = gateway_limiter::monotonic_ns();
    let d = limiter.acquire(key, rate, burst, cost, now);
    if d.allowed && sync_tag >= 0 {
        limiter.count_add(key, counted_window_ns, 1, now);
    }
    *delay_ns = d.delay_ns;
    i32::from(d.allowed)
}

/// One request into the metrics store (`SharedMetrics.record`): slots < 0 count a dropped
/// observation; an upstream latency <= 0 means nothing was proxied.
///
/// # Safety
/// `store` must be a live `_handle` of a `SharedMetrics`.
#[no_mangle]
pub unsafe extern "C" fn gw_metrics_record(
    store: *const gateway_metrics::MetricsStore,
    series: i64,
    status: i64,
    request_seconds: f64,
    upstream_seconds: f64,
    bytes_in: u64,
    bytes_out: u64,
) {
    let store = &*store;
    let slot = |i: i64| usize::try_from(i).ok();
    let upstream =
        (upstream_seconds > 0.0).then(|| gateway_metrics::seconds_to_us(upstream_seconds));
    store.record(
        slot(series),
        slot(status),
        gateway_metrics::seconds_to_us(request_seconds),
        upstream,
        bytes_in,
        bytes_out,
    );
}

/// In-flight gauge (`SharedLimiter.gauge_acquire`, limit-conn): returns 1 admitted, 0
/// rejected; `count` is the count after the decision, `slot` the slot to release (-1: nothing
/// counted) and `key_hash` the hash to release it with.
///
/// # Safety
/// As for [`gw_limiter_count`]; `count`, `slot` and `key_hash` must be valid for writes.
#[no_mangle]
pub unsafe extern "C" fn gw_limiter_gauge_acquire(
    limiter: *const gateway_limiter::Limiter,
    key: *const u8,
    key_len: usize,
    max: u64,
    count: *mut u64,
    slot: *mut i64,
    key_hash: *mut u64,
) -> i32 {
    let limiter = &*limiter;
    let hash = gateway_limiter::hash_key(std::slice::from_raw_parts(key, key_len));
    let d = limiter.gauge_acquire(hash, max);
    *count = d.count;
    *slot = d.slot.map_or(-1, |s| s as i64);
    *key_hash = hash;
    i32::from(d.allowed)
}

/// Gives back one admission of [`gw_limiter_gauge_acquire`]; 0 when that slot held none.
///
/// # Safety
/// `limiter` must be a live `_handle` of a `SharedLimiter`.
#[no_mangle]
pub unsafe extern "C" fn gw_limiter_gauge_release(
    limiter: *const gateway_limiter::Limiter,
    key_hash: u64,
    slot: i64,
) -> i32 {
    let limiter = &*limiter;
    i32::from(slot >= 0 && limiter.gauge_release(key_hash, slot as usize))
}

// ---- upstream node health, for the passive checks of every worker ----

/// One outcome of a real request to a node (`SharedHealth.report` with source "passive"):
/// `outcome` 0 success, 1 HTTP failure, 2 TCP failure, 3 timeout; `thresholds` packed as
/// successes | http_failures << 8 | tcp_failures << 16 | timeouts << 24. Returns 1 when the node
/// went down, 2 when it came back, 0 otherwise (and for an unknown outcome).
///
/// # Safety
/// `table` must be a live `_handle` of a `SharedHealth`.
#[no_mangle]
pub unsafe extern "C" fn gw_health_report(
    table: *const gateway_health::HealthTable,
    slot: i64,
    outcome: u8,
    status: u16,
    thresholds: u32,
) -> i32 {
    let table = &*table;
    let (Ok(slot), Some(outcome)) =
        (usize::try_from(slot), gateway_health::Outcome::from_u8(outcome))
    else {
        return 0;
    };
    let th = gateway_health::Thresholds::unpack(thresholds);
    match table.report(slot, gateway_health::Source::Passive, outcome, status, th) {
        Some(gateway_health::Transition::Down) => 1,
        Some(gateway_health::Transition::Up) => 2,
        None => 0,
    }
}
