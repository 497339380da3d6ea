//! Cross-process rate-limiting state in shared memory.
//!
//! The master creates one [`Limiter`] (a memfd region holding a header and two slot tables)
//! before it starts the workers; each worker attaches to the inherited fd. Every decision is a
//! handful of atomic loads and one compare-and-swap on a word that lives in the shared pages,
//! so N workers enforce a limit *together*: a 100 r/s limit admits 100 r/s per node, not per
//! worker. There are no locks, cross-process or otherwise.
//!
//! * [`Limiter::acquire`]: token bucket / leaky bucket with excess (`limit-req` semantics of
//!   nginx and APISIX), implemented as GCRA with one `AtomicU64` of state per key.
//! * [`Limiter::count`]: fixed-window or sliding-window request counters (`limit-count`).
//! * [`Limiter::gauge_acquire`] / [`Limiter::gauge_release`]: in-flight gauges (`limit-conn`).
//! * [`Limiter::breaker_check`] / [`Limiter::breaker_report`]: circuit-breaker state
//!   (`api-breaker`). Gauges and breakers live in a third table, the *cells* (see `cells`).
//!
//! # Region layout (native-endian words, offsets in bytes)
//!
//! ```text
//! 0    stamp            32 bytes (gateway_shm::Stamp): magic "GWLIMIT1", version 4, header
//!                       size 128, fingerprint of the slot size and probe window, total length
//! 32   bucket_slots     u64  (power of two)
//! 40   counter_slots    u64  (power of two)
//! 48   cell_slots       u64  (power of two)
//! 56   bucket_offset    u64  = 128
//! 64   counter_offset   u64  = 128 + 16 * bucket_slots
//! 72   cell_offset      u64  = counter_offset + 16 * counter_slots
//! 80   overflow_buckets   AtomicU64 (decisions that failed open, bucket table)
//! 88   overflow_counters  AtomicU64 (decisions that failed open, counter table)
//! 96   overflow_cells     AtomicU64 (decisions that failed open, cell table)
//! 104.. reserved (zero) up to 128
//! 128  bucket slots:  { key: AtomicU64, state: AtomicU64 } x bucket_slots
//! ...  counter slots: { key: AtomicU64, state: AtomicU64 } x counter_slots
//! ...  cell slots:    { key: AtomicU64, state: AtomicU64 } x cell_slots
//! ```
//!
//! Bucket slot state: the GCRA theoretical arrival time (TAT), in ns of the caller's clock.
//! Counter slot state: `window_tag:31 | count:32` (see [`Limiter::count`]). The top bit of every
//! state word is the takeover tombstone (see the `table` module for the race analysis).
//!
//! # Keys
//!
//! Keys are 64-bit hashes. [`hash_key`] (from `gateway-shm`, re-exported) is FNV-1a 64 followed
//! by the murmur3 `fmix64` finaliser, with a fixed seed, so every process computes the same value
//! for the same bytes.
//! Hash 0 marks an empty slot and is therefore mapped to 1. Two different keys that collide on
//! all 64 bits share a bucket (probability ~2^-64 per pair).
//!
//! # Clocks
//!
//! Callers pass `now_ns`. Use [`monotonic_ns`] (`CLOCK_MONOTONIC`, one clock for the whole
//! machine, so it is consistent across processes) for buckets; counters may use monotonic or
//! wall-clock time, but every caller of one region must use the same clock for the same table,
//! because slot expiry is judged with the caller's `now_ns`.
//!
//! # When the table is full
//!
//! A key is looked up in a window of [`PROBE_WINDOW`] slots from its home slot. A slot whose
//! state is as good as fresh (bucket fully refilled, counter windows over) for at least
//! [`RECLAIM_GRACE_NS`] may be taken over by another key. If the window holds neither the key,
//! nor an empty slot, nor a reclaimable one, the request **fails open** (is allowed) and the
//! header's overflow counter is incremented; [`Limiter::overflow`] exposes it so that an
//! operator can size the tables (keep them a few times larger than the number of live keys).

use std::io;
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicU64, Ordering};

use gateway_shm::{
    fmix64, invalid_header, nonzero, slot_count, valid_slot_count, whole_pages, Layout, Stamp,
};

mod cells;
mod synced;
mod table;

#[cfg(feature = "python")]
pub mod python;

#[cfg(test)]
mod tests;

pub use cells::{BreakerOutcome, BreakerState, GaugeDecision};
pub use gateway_shm::ShmRegion;
pub use synced::{synced_key, synced_tag, SYNCED, SYNCED_TAG_BITS};
pub use table::PROBE_WINDOW;

use table::{Probe, Slot, Table, TOMB, VALUE_MASK};

/// Layout version; bumped on any incompatible change of the header or slot formats.
pub const VERSION: u32 = 4;
/// Bytes reserved for the header at the start of the region.
pub const HEADER_SIZE: usize = 128;
/// The stamp of a limiter region (written by [`Limiter::create`], checked by
/// [`Limiter::attach`]).
pub const LAYOUT: Layout = Layout::new(*b"GWLIMIT1", VERSION, HEADER_SIZE).with(&[
    std::mem::size_of::<Header>() as u64,
    std::mem::size_of::<Slot>() as u64,
    PROBE_WINDOW as u64,
]);
/// An idle slot may be taken over by another key only after its state has been "as good as
/// fresh" for this long. This keeps in-flight requests with slightly older `now_ns` readings
/// from seeing their bucket disappear, and avoids ping-pong between two keys.
pub const RECLAIM_GRACE_NS: u64 = 1_000_000_000;
/// Largest table accepted by [`Limiter::create`] (per table).
pub const MAX_SLOTS: usize = 1 << 28;
/// Cell slots of a region made by [`Limiter::create`] (gauges and breakers are few: one per
/// limited key in flight, one per breaker route).
pub const DEFAULT_CELL_SLOTS: usize = 4096;

/// Largest value a state word may hold (the top bit is the tombstone).
const MAX_STATE: u64 = VALUE_MASK - 1;
/// Restarts of a lookup (lost takeover races) before failing open.
const MAX_RESTARTS: u32 = 64;

#[repr(C)]
struct Header {
    stamp: Stamp,
    bucket_slots: u64,
    counter_slots: u64,
    cell_slots: u64,
    bucket_offset: u64,
    counter_offset: u64,
    cell_offset: u64,
    overflow_buckets: AtomicU64,
    overflow_counters: AtomicU64,
    overflow_cells: AtomicU64,
}

const _: () = assert!(std::mem::size_of::<Header>() <= HEADER_SIZE);
const _: () = assert!(std::mem::size_of::<Slot>() == 16);

/// The slot key of `key` for a node-local limit: [`gateway_shm::hash_key`] with the top bit
/// cleared, so that it never looks like a key synced between nodes (see [`synced_key`]).
pub fn hash_key(key: &[u8]) -> u64 {
    nonzero(gateway_shm::hash_key(key) & !SYNCED)
}

/// `CLOCK_MONOTONIC` in nanoseconds (system-wide, so comparable across processes).
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: valid out-pointer; CLOCK_MONOTONIC is always available on Linux.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    (ts.tv_sec as u64) * 1_000_000_000 + ts.tv_nsec as u64
}

/// Outcome of [`Limiter::acquire`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Decision {
    /// The request conforms (possibly after `delay_ns`) and its cost has been recorded.
    pub allowed: bool,
    /// Allowed: how long the caller should hold the request so that it conforms to the rate
    /// (0 when within the rate; ignore it for `nodelay`). Rejected: time until a request of the
    /// same cost would be admitted, `u64::MAX` if it never can be (cost larger than burst + 1,
    /// or a rate <= 0).
    pub delay_ns: u64,
    /// How many further cost-1 requests would be admitted right now (may be fractional).
    pub remaining: f64,
}

/// Outcome of [`Limiter::count`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CountDecision {
    /// Admitted (and counted). A rejected request is not counted.
    pub allowed: bool,
    /// Quota left in the current window after this decision.
    pub remaining: u64,
    /// Time until the current window ends (for sliding windows: until the current sub-window
    /// ends, when the previous window's weight drops out completely).
    pub reset_ns: u64,
}

/// The shared rate-limiting state: one region, a bucket table and a counter table.
pub struct Limiter {
    // Field order matters: the tables point into the region and must not outlive it (they hold
    // no references, only raw pointers, but keep the region last for clarity).
    buckets: Table,
    counters: Table,
    cells: Table,
    region: ShmRegion,
}

impl Limiter {
    /// Creates a region with room for `slots_buckets` token buckets and `slots_counters`
    /// counters (each rounded up to a power of two). Call it in the master before starting
    /// workers; pass [`Limiter::fd`] to them.
    pub fn create(slots_buckets: usize, slots_counters: usize) -> io::Result<Limiter> {
        Self::create_with_cells(slots_buckets, slots_counters, DEFAULT_CELL_SLOTS)
    }

    /// [`Limiter::create`] with an explicit size for the cell table (gauges, breakers).
    pub fn create_with_cells(
        slots_buckets: usize,
        slots_counters: usize,
        slots_cells: usize,
    ) -> io::Result<Limiter> {
        let nb = slot_count(slots_buckets, MAX_SLOTS)?;
        let nc = slot_count(slots_counters, MAX_SLOTS)?;
        let ncell = slot_count(slots_cells, MAX_SLOTS)?;
        let slot = std::mem::size_of::<Slot>();
        let bucket_offset = HEADER_SIZE;
        let counter_offset = bucket_offset + nb * slot;
        let cell_offset = counter_offset + nc * slot;
        let region = LAYOUT.create("gateway-limiter", whole_pages(cell_offset + ncell * slot))?;
        // SAFETY: the region is fresh, stamped, zero-filled after the stamp, at least HEADER_SIZE
        // bytes, page aligned, and no other process has it yet; writing the immutable header
        // fields here is race-free.
        unsafe {
            let h = &mut *(region.as_ptr() as *mut Header);
            h.bucket_slots = nb as u64;
            h.counter_slots = nc as u64;
            h.cell_slots = ncell as u64;
            h.bucket_offset = bucket_offset as u64;
            h.counter_offset = counter_offset as u64;
            h.cell_offset = cell_offset as u64;
        }
        Self::from_region(region)
    }

    /// Maps the region behind `fd` (created by [`Limiter::create`], possibly in another
    /// process) after validating its header. The fd is borrowed, not closed.
    pub fn attach(fd: RawFd) -> io::Result<Limiter> {
        Self::from_region(LAYOUT.attach(fd)?)
    }

    /// Validates the header fields after the stamp (which [`LAYOUT`] has written or checked, so
    /// at least HEADER_SIZE bytes are mapped and the region has the size it was created with).
    fn from_region(region: ShmRegion) -> io::Result<Limiter> {
        debug_assert_eq!(LAYOUT.check(&region), Ok(()));
        // SAFETY: at least HEADER_SIZE bytes are mapped; the immutable fields were written
        // before the region was shared.
        let h = unsafe { &*(region.as_ptr() as *const Header) };
        let slot = std::mem::size_of::<Slot>() as u64;
        let (nb, nc, ncell) = (h.bucket_slots, h.counter_slots, h.cell_slots);
        if ![nb, nc, ncell].iter().all(|&n| valid_slot_count(n, MAX_SLOTS)) {
            return Err(invalid_header("limiter region has invalid slot counts"));
        }
        if h.bucket_offset != HEADER_SIZE as u64
            || h.counter_offset != h.bucket_offset + nb * slot
            || h.cell_offset != h.counter_offset + nc * slot
            || h.cell_offset + ncell * slot > region.len() as u64
        {
            return Err(invalid_header("limiter region offsets do not match its size"));
        }
        let base = region.as_ptr();
        // SAFETY: offsets and counts validated against the mapping size above; the slots are
        // zero-initialised atomics (valid for any bit pattern) and live as long as `region`.
        let (buckets, counters, cells) = unsafe {
            (
                Table::new(base.add(h.bucket_offset as usize) as *const Slot, nb as usize),
                Table::new(base.add(h.counter_offset as usize) as *const Slot, nc as usize),
                Table::new(base.add(h.cell_offset as usize) as *const Slot, ncell as usize),
            )
        };
        Ok(Limiter { buckets, counters, cells, region })
    }

    fn header(&self) -> &Header {
        // SAFETY: validated in from_region; lives as long as the region.
        unsafe { &*(self.region.as_ptr() as *const Header) }
    }

    /// The memfd number (owned by this Limiter if created here, borrowed if attached).
    pub fn fd(&self) -> RawFd {
        self.region.fd()
    }

    /// The underlying region.
    pub fn region(&self) -> &ShmRegion {
        &self.region
    }

    /// Number of bucket slots.
    pub fn bucket_slots(&self) -> usize {
        self.buckets.len()
    }

    /// Number of counter slots.
    pub fn counter_slots(&self) -> usize {
        self.counters.len()
    }

    /// Number of cell slots (gauges and breakers).
    pub fn cell_slots(&self) -> usize {
        self.cells.len()
    }

    /// Decisions that failed open because a table window was full (all tables).
    pub fn overflow(&self) -> u64 {
        self.overflow_buckets() + self.overflow_counters() + self.overflow_cells()
    }

    /// Fail-open decisions of the cell table (gauges and breakers).
    pub fn overflow_cells(&self) -> u64 {
        self.header().overflow_cells.load(Ordering::Relaxed)
    }

    /// Fail-open decisions of the bucket table.
    pub fn overflow_buckets(&self) -> u64 {
        self.header().overflow_buckets.load(Ordering::Relaxed)
    }

    /// Fail-open decisions of the counter table.
    pub fn overflow_counters(&self) -> u64 {
        self.header().overflow_counters.load(Ordering::Relaxed)
    }

    /// Runs `step` on the state of `key`'s slot: `step(state) -> (result, new_state)`; a
    /// `Some(new)` is installed with a CAS (retrying `step` on contention), `None` writes nothing.
    /// Returns `None` when no slot could be found (the caller fails open).
    fn update<R>(
        table: &Table,
        key: u64,
        reclaimable: impl Fn(u64) -> bool,
        reset: impl Fn(u64) -> u64,
        step: impl FnMut(u64) -> (R, Option<u64>),
    ) -> Option<R> {
        Self::update_slot(table, key, true, reclaimable, reset, step).map(|(r, _)| r)
    }

    /// [`Limiter::update`] that also returns the index of the slot it used. With `claim ==
    /// false` an absent key is not given a slot (`None`, nothing written).
    fn update_slot<R>(
        table: &Table,
        key: u64,
        claim: bool,
        reclaimable: impl Fn(u64) -> bool,
        reset: impl Fn(u64) -> u64,
        mut step: impl FnMut(u64) -> (R, Option<u64>),
    ) -> Option<(R, usize)> {
        let mut restarts = 0u32;
        'probe: loop {
            let probe = if claim {
                table.find_or_claim(key, &reclaimable, &reset)
            } else {
                match table.find(key) {
                    Some(slot) => Probe::Found(slot),
                    None => return None,
                }
            };
            let slot = match probe {
                Probe::Found(slot) => slot,
                Probe::Full => return None,
                Probe::Retry => {
                    restarts += 1;
                    if restarts > MAX_RESTARTS {
                        return None;
                    }
                    continue 'probe;
                }
            };
            let mut cur = slot.state.load(Ordering::Acquire);
            loop {
                // Load order: state (Acquire) first, then key. See the table module docs.
                if cur & TOMB != 0 || slot.key.load(Ordering::Acquire) != key {
                    restarts += 1;
                    if restarts > MAX_RESTARTS {
                        return None;
                    }
                    continue 'probe;
                }
                let (result, new) = step(cur);
                let Some(new) = new else { return Some((result, table.index_of(slot))) };
                debug_assert!(new & TOMB == 0 && new != cur);
                match slot.state.compare_exchange_weak(
                    cur,
                    new,
                    Ordering::AcqRel,
                    Ordering::Acquire,
                ) {
                    Ok(_) => return Some((result, table.index_of(slot))),
                    Err(actual) => cur = actual,
                }
            }
        }
    }

    /// Token bucket decision for `key_hash` (nginx `limit_req rate=.. burst=..` semantics),
    /// recording `cost` when admitted.
    ///
    /// * `rate_per_sec`: sustained rate (requests per second); `<= 0`, NaN or infinite rejects
    ///   everything with `delay_ns == u64::MAX`.
    /// * `burst`: how many requests beyond the rate may be queued (nginx `burst`); the caller
    ///   either waits `delay_ns` (nginx default) or ignores it (`nodelay`).
    /// * `cost`: weight of this request (1.0 normally; 0 only inspects the bucket).
    /// * `now_ns`: [`monotonic_ns`] (or a simulated clock in tests).
    ///
    /// # GCRA and nginx's excess
    ///
    /// Let `T = 1/rate` (the emission interval) and `τ = burst·T` (the tolerance). GCRA keeps one
    /// number per key, the theoretical arrival time `TAT`: the instant at which the bucket would
    /// be empty again if no more requests came. A request at `now` is conforming iff
    /// `now >= TAT - τ`, and then `TAT := max(TAT, now) + T`.
    ///
    /// nginx keeps `excess` (requests, stored after each accepted request at time `last`) and,
    /// for a new request, computes `e = excess - rate·(now - last) + 1`, clamped at 0, rejects if
    /// `e > burst`, else stores `excess := e` and delays the request by `e/rate`.
    /// Set `TAT = last + (excess + 1)·T`. Then `e = (TAT - now)/T` before the clamp, i.e.
    /// `e = max(TAT - now, 0)/T`, so `e <= burst` ⇔ `TAT - now <= τ` ⇔ `now >= TAT - τ`: the
    /// same admission test. After admission nginx's new state is `last' = now, excess' = e`,
    /// i.e. `TAT' = now + (e + 1)·T = now + max(TAT - now, 0) + T = max(TAT, now) + T`: the GCRA
    /// update. And nginx's delay `e/rate = e·T = max(TAT - now, 0)`.
    ///
    /// So with `burst = 0`, one request passes immediately and afterwards exactly one per `T`;
    /// in steady state exactly `rate` requests per second pass, whatever the number of
    /// processes, because the single TAT word is advanced by a CAS.
    ///
    /// Generalised to a `cost` `c`: the increment is `c·T`, and the request is admitted iff
    /// `max(TAT, now) + c·T - now <= (burst + 1)·T` (the same test for `c = 1`). The delay
    /// stays `max(TAT - now, 0)` (when the queue in front of the request has drained). A
    /// rejected request's `delay_ns` is `max(TAT, now) + c·T - (burst + 1)·T - now`.
    /// `remaining` is `((burst + 1)·T - (TAT' - now)) / T` with `TAT'` the TAT after the decision.
    /// Durations are rounded to whole nanoseconds (`c·T` is at least 1 ns).
    pub fn acquire(
        &self,
        key_hash: u64,
        rate_per_sec: f64,
        burst: f64,
        cost: f64,
        now_ns: u64,
    ) -> Decision {
        if !(rate_per_sec > 0.0 && rate_per_sec.is_finite()) {
            return Decision { allowed: false, delay_ns: u64::MAX, remaining: 0.0 };
        }
        let interval = 1e9 / rate_per_sec;
        let burst = if burst > 0.0 { burst } else { 0.0 };
        let cost = if cost > 0.0 { cost } else { 0.0 };
        let max = MAX_STATE as f64;
        let inc = if cost > 0.0 { (cost * interval).round().clamp(1.0, max) as u64 } else { 0 };
        let limit = ((burst + 1.0) * interval).round().clamp(0.0, max) as u64;
        let now = now_ns.min(MAX_STATE);
        let key = nonzero(key_hash);
        let remaining = |level: u64| snap(limit.saturating_sub(level) as f64 / interval);
        let decision = Self::update(
            &self.buckets,
            key,
            |tat| tat.saturating_add(RECLAIM_GRACE_NS) <= now,
            |tat| tat + 1,
            |tat| {
                let base = tat.max(now);
                let backlog = base - now;
                let new_tat = base.saturating_add(inc).min(MAX_STATE);
                let level = new_tat - now;
                if level <= limit {
                    let d =
                        Decision { allowed: true, delay_ns: backlog, remaining: remaining(level) };
                    (d, if new_tat != tat { Some(new_tat) } else { None })
                } else {
                    let delay = if inc > limit { u64::MAX } else { level - limit };
                    let d =
                        Decision { allowed: false, delay_ns: delay, remaining: remaining(backlog) };
                    (d, None)
                }
            },
        );
        decision.unwrap_or_else(|| {
            self.header().overflow_buckets.fetch_add(1, Ordering::Relaxed);
            Decision { allowed: true, delay_ns: 0, remaining: burst }
        })
    }

    /// Counter decision (APISIX `limit-count`: at most `limit` requests per `window_ns` per
    /// key), adding `cost` when admitted. A rejected request is not counted.
    ///
    /// * fixed window (`sliding == false`): windows are `[k·W, (k+1)·W)` of `now_ns`; the count
    ///   restarts at 0 at each boundary.
    /// * sliding window: the estimate is `prev·(1 - elapsed/W) + current` (the previous
    ///   window's count weighted by the part of it still inside the sliding window, rounded up),
    ///   and a request is admitted iff `estimate + cost <= limit`.
    ///
    /// State: fixed windows use one slot per (key, W); sliding windows use two, one for even and
    /// one for odd window numbers, so the current window's slot is updated by CAS while the
    /// previous window's slot is only read. A slot's state is `tag:31 | count:32` where
    /// `tag = ((k + 2)·W >> 22) mod 2^31` identifies window `k` and is also the time (in
    /// 4.19 ms units) after which the slot is of no use to anybody (window `k` is over and is no
    /// longer anyone's previous window), which is how other keys recognise a reclaimable slot
    /// without knowing `W`. Consequences: windows shorter than 4.19 ms may merge with their
    /// neighbour (stricter), counts are capped at 2^32 - 1, and tags wrap after ~104 days
    /// (handled with wrapping comparisons).
    ///
    /// A request whose `now_ns` is older than the window the slot already moved to (a stale
    /// clock reading in flight) is counted in the slot's newer window.
    pub fn count(
        &self,
        key_hash: u64,
        limit: u64,
        window_ns: u64,
        cost: u64,
        now_ns: u64,
        sliding: bool,
    ) -> CountDecision {
        let wns = window_ns.max(1);
        let win = now_ns / wns;
        let elapsed = now_ns % wns;
        let reset_ns = wns - elapsed;
        let limit = limit.min(u64::from(u32::MAX));
        let cur_tag = window_tag(win, wns);
        // A slot tag further ahead than this is a wrapped-around stale one, not a late reader.
        let ahead_max = ((2 * u128::from(wns)) >> TAG_SHIFT) as i64 + 1;
        let key = nonzero(key_hash);
        let (slot_key, prev_weight) = if sliding {
            let prev = if win > 0 {
                self.peek_count(
                    counter_key(key, wns, 1 + ((win + 1) & 1)),
                    window_tag(win - 1, wns),
                )
            } else {
                0
            };
            let weighted = (u128::from(prev) * u128::from(wns - elapsed)).div_ceil(u128::from(wns));
            (counter_key(key, wns, 1 + (win & 1)), weighted as u64)
        } else {
            (counter_key(key, wns, 0), 0)
        };
        let now_tag = (now_ns >> TAG_SHIFT) & TAG_MASK;
        let grace = RECLAIM_GRACE_NS >> TAG_SHIFT;
        let decision = Self::update(
            &self.counters,
            slot_key,
            |s| s & COUNT_MASK == 0 || tag_diff(now_tag, s >> 32) >= grace as i64,
            |s| (((s >> 32) + 1) & TAG_MASK) << 32,
            |s| {
                let (tag, count) = (s >> 32, s & COUNT_MASK);
                let (tag, count) = if count == 0 {
                    (cur_tag, 0)
                } else {
                    let d = tag_diff(tag, cur_tag);
                    if d == 0 || (d > 0 && d <= ahead_max) {
                        (tag, count)
                    } else {
                        (cur_tag, 0)
                    }
                };
                let used = prev_weight.saturating_add(count);
                let left = limit.saturating_sub(used);
                if cost > left {
                    (CountDecision { allowed: false, remaining: left, reset_ns }, None)
                } else {
                    let d = CountDecision { allowed: true, remaining: left - cost, reset_ns };
                    (d, if cost > 0 { Some((tag << 32) | (count + cost)) } else { None })
                }
            },
        );
        decision.unwrap_or_else(|| {
            self.header().overflow_counters.fetch_add(1, Ordering::Relaxed);
            CountDecision { allowed: true, remaining: limit.saturating_sub(cost), reset_ns }
        })
    }

    /// Requests counted in the current fixed window of `key` (as [`Limiter::count`] with
    /// `sliding == false` sees them). For a per-node syncer that pushes a node's counts to a
    /// shared store.
    pub fn count_used(&self, key_hash: u64, window_ns: u64, now_ns: u64) -> u64 {
        let all = u64::from(u32::MAX);
        all - self.count(key_hash, all, window_ns, 0, now_ns, false).remaining
    }

    /// Adds `delta` to the current fixed window of `key` whatever the limit (capped at the
    /// largest count, 2^32 - 1), so that the other nodes' requests, pulled from a shared store,
    /// count in this node's decisions. Returns the count after it.
    pub fn count_add(&self, key_hash: u64, window_ns: u64, delta: u64, now_ns: u64) -> u64 {
        let all = u64::from(u32::MAX);
        let mut d = self.count(key_hash, all, window_ns, delta, now_ns, false);
        if !d.allowed {
            // more than the room left: fill it (only the cap is lost)
            d = self.count(key_hash, all, window_ns, d.remaining, now_ns, false);
        }
        all - d.remaining
    }

    /// Count stored for window `tag` under `key`, 0 if absent (read-only).
    fn peek_count(&self, key: u64, tag: u64) -> u64 {
        let Some(slot) = self.counters.find(key) else { return 0 };
        let s = slot.state.load(Ordering::Acquire);
        if s & TOMB != 0 || slot.key.load(Ordering::Acquire) != key || s >> 32 != tag {
            return 0;
        }
        s & COUNT_MASK
    }
}

const TAG_SHIFT: u32 = 22;
const TAG_MASK: u64 = (1 << 31) - 1;
const COUNT_MASK: u64 = 0xffff_ffff;

/// Tag of window `win` of length `wns`: `((win + 2)·wns >> 22) mod 2^31`.
fn window_tag(win: u64, wns: u64) -> u64 {
    (((u128::from(win) + 2) * u128::from(wns)) >> TAG_SHIFT) as u64 & TAG_MASK
}

/// `a - b` for 31-bit wrapping tags, as a signed distance.
fn tag_diff(a: u64, b: u64) -> i64 {
    let d = a.wrapping_sub(b) & TAG_MASK;
    if d >= 1 << 30 {
        d as i64 - (1 << 31)
    } else {
        d as i64
    }
}

/// Slot key of a counter: distinct per (key, window length, mode/parity) so that a change of
/// window length or mode never reads counts kept in other units. A synced key's fixed-window
/// counter is the key itself (its tag already names the window), so that the master's syncer
/// finds it by iterating the table; every other slot key has the top bit clear.
fn counter_key(key: u64, wns: u64, tag: u64) -> u64 {
    if key & SYNCED != 0 && tag == 0 {
        return key;
    }
    nonzero(fmix64(key ^ fmix64(wns ^ tag.wrapping_mul(0x9E37_79B9_7F4A_7C15))) & !SYNCED)
}

/// Rounds values within 1e-6 of an integer to it (undoes float noise in `remaining`).
fn snap(x: f64) -> f64 {
    let r = x.round();
    if (x - r).abs() < 1e-6 {
        r
    } else {
        x
    }
}
