//! Request metrics in shared memory: written by every worker, read by the master's scrape.
//!
//! The master creates one [`MetricsStore`] (a memfd region) before it starts the workers and
//! keeps it for its whole life, so the numbers survive worker restarts and config reloads. A
//! worker records a request with [`MetricsStore::record`]: a handful of relaxed atomic adds on
//! words that live in the shared pages, no lock and no system call. A scrape
//! ([`MetricsStore::snapshot`]) reads the same pages from the master; it never talks to a worker,
//! so scraping cannot slow the data plane down.
//!
//! # Slots
//!
//! A slot belongs to one label set, given by the caller as opaque bytes (at most
//! [`LABEL_MAX`]), and has a [`Kind`]:
//! * [`Kind::Counter`]: one counter (e.g. requests per route and status code);
//! * [`Kind::Series`]: a request-latency histogram, an upstream-latency histogram and the bytes
//!   received and sent (per route, consumer and node).
//!
//! [`MetricsStore::slot`] finds or claims the slot of a label set and returns its index. A slot
//! is never freed, so the index is stable for the life of the region and callers cache it:
//! the per-request path ([`MetricsStore::record`]) works on indexes and never hashes or compares
//! a label.
//!
//! # Region layout (native-endian words, offsets in bytes)
//!
//! ```text
//! 0    stamp        32 bytes (gateway_shm::Stamp): magic "GWMETRC1", version 2, header size
//!                   128, fingerprint of the slot size, label size and bucket bounds, total length
//! 32   slots        u64 (power of two)
//! 40   order_offset u64 = 128
//! 48   slot_offset  u64 (order_offset + 4 * slots, rounded up to 512)
//! 56   used         AtomicU64  claimed slots (entries reserved in the order array)
//! 64   dropped      AtomicU64  observations lost because the table was full
//! 72   requests     AtomicU64  requests recorded
//! 80.. reserved (zero) up to 128
//! 128  order: AtomicU32 x slots   (1 + index of each claimed slot, in claim order; 0 = not yet)
//! ...  slots: 512 bytes x slots
//! ```
//!
//! A slot is 64 words: `key` (64-bit hash of kind and label; 0 = free), `meta`
//! (`READY | kind << 32 | label_len`), 24 words of label bytes, then the counters (see [`Slot`]).
//! The order array lets a scrape visit only the claimed slots: a table sized for 65536 label sets
//! costs nothing for the ones never used (their pages are never touched).
//!
//! # Claiming
//!
//! Open addressing with linear probing from the slot picked by the hash
//! (`gateway_shm::find_or_claim`). The first process to CAS a free slot's key from 0 to the hash
//! owns the slot: it writes the label, publishes `meta` with `READY` (Release) and appends the
//! index to the order array. Anyone who meets the
//! same hash waits for `READY` and compares kind and label, so two label sets whose hashes collide
//! get separate slots. A process killed between the CAS and `READY` leaves a slot that is never
//! shown (one slot of capacity lost, no wrong number).
//!
//! # When the table is full
//!
//! [`MetricsStore::slot`] returns `None`; [`MetricsStore::record`] with a missing slot counts the
//! observation in `dropped`, which the scrape exposes so operators can size the table.

use std::io;
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use gateway_shm::{
    find_or_claim, hash_key, invalid_header, slot_count, valid_slot_count, whole_pages, Layout,
    Stamp, READY,
};

pub use gateway_shm::ShmRegion;

pub mod exposition;
#[cfg(feature = "python")]
pub mod python;

#[cfg(test)]
mod tests;

/// Layout version; bumped on any incompatible change of the header or slot formats.
pub const VERSION: u32 = 2;
/// Bytes reserved for the header at the start of the region.
pub const HEADER_SIZE: usize = 128;
/// Size of one slot in bytes.
pub const SLOT_SIZE: usize = 512;
/// Longest label accepted (bytes).
pub const LABEL_MAX: usize = 192;
/// Largest table accepted by [`MetricsStore::create`].
pub const MAX_SLOTS: usize = 1 << 22;
/// Upper bounds (inclusive, milliseconds) of the latency histogram buckets; a last bucket
/// (+Inf) follows. APISIX's default buckets for its `http_latency` histogram.
pub const LATENCY_BUCKETS_MS: [u64; 15] =
    [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000, 30000, 60000];
/// Number of histogram buckets including +Inf.
pub const BUCKETS: usize = LATENCY_BUCKETS_MS.len() + 1;
/// The stamp of a metrics region (written by [`MetricsStore::create`], checked by
/// [`MetricsStore::attach`]). The bucket bounds are part of it: a build with other bounds would
/// read the same counters as other histograms.
pub const LAYOUT: Layout = Layout::new(*b"GWMETRC1", VERSION, HEADER_SIZE)
    .with(&[std::mem::size_of::<Header>() as u64, SLOT_SIZE as u64, LABEL_MAX as u64])
    .with(&LATENCY_BUCKETS_MS);

const LABEL_WORDS: usize = LABEL_MAX / 8;
/// Probes of [`MetricsStore::slot`] before it declares the table full. Claiming is off the hot
/// path (callers cache indexes), so the bound only keeps a nearly full table from being scanned
/// end to end on every cache miss.
const MAX_PROBES: usize = 4096;
/// Spins waiting for another process to publish a slot it has just claimed (it only has to copy
/// at most 192 bytes, so this is reached only if that process died in between).
const READY_SPINS: u32 = 1 << 20;

/// What a slot counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Kind {
    /// A single counter.
    Counter = 1,
    /// Latency histograms (request, upstream) and bandwidth.
    Series = 2,
}

impl Kind {
    fn from_bits(bits: u64) -> Option<Kind> {
        match bits {
            1 => Some(Kind::Counter),
            2 => Some(Kind::Series),
            _ => None,
        }
    }
}

#[repr(C)]
struct Header {
    stamp: Stamp,
    slots: u64,
    order_offset: u64,
    slot_offset: u64,
    used: AtomicU64,
    dropped: AtomicU64,
    requests: AtomicU64,
}

/// One slot (512 bytes). Latency sums are in microseconds.
#[repr(C, align(64))]
pub struct Slot {
    key: AtomicU64,
    meta: AtomicU64,
    label: [AtomicU64; LABEL_WORDS],
    /// Counter slots: the counter. Series slots: requests recorded.
    count: AtomicU64,
    request_sum_us: AtomicU64,
    request_buckets: [AtomicU64; BUCKETS],
    upstream_count: AtomicU64,
    upstream_sum_us: AtomicU64,
    upstream_buckets: [AtomicU64; BUCKETS],
    bytes_in: AtomicU64,
    bytes_out: AtomicU64,
}

const _: () = assert!(std::mem::size_of::<Header>() <= HEADER_SIZE);
const _: () = assert!(std::mem::size_of::<Slot>() == SLOT_SIZE);
const _: () = assert!(LABEL_MAX.is_multiple_of(8));

/// A latency histogram read by a scrape.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Histogram {
    /// Cumulative counts: `buckets[i]` = observations <= `LATENCY_BUCKETS_MS[i]`; the last one is
    /// +Inf, i.e. the number of observations.
    pub buckets: [u64; BUCKETS],
    /// Sum of the observations in microseconds.
    pub sum_us: u64,
}

impl Histogram {
    /// Number of observations (the +Inf bucket, so `_count` always equals it in an exposition).
    pub fn count(&self) -> u64 {
        self.buckets[BUCKETS - 1]
    }
}

/// What a scrape reads from one series slot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeriesSnapshot {
    pub label: Vec<u8>,
    pub request: Histogram,
    pub upstream: Histogram,
    pub bytes_in: u64,
    pub bytes_out: u64,
}

/// Everything a scrape reads, in slot claim order.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    pub requests: u64,
    pub dropped: u64,
    pub used: u64,
    pub counters: Vec<(Vec<u8>, u64)>,
    pub series: Vec<SeriesSnapshot>,
}

/// FNV-1a + fmix64 of the label (the shared tables' key hash), mixed with the kind; never 0.
pub fn label_hash(kind: Kind, label: &[u8]) -> u64 {
    let h = hash_key(label) ^ (kind as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    if h == 0 {
        1
    } else {
        h
    }
}

/// Converts seconds to whole microseconds (negative and NaN -> 0, saturating).
#[inline]
pub fn seconds_to_us(seconds: f64) -> u64 {
    if seconds > 0.0 {
        (seconds * 1e6).round().min(u64::MAX as f64) as u64
    } else {
        0
    }
}

/// Index of the histogram bucket that a latency of `us` microseconds falls in.
#[inline]
pub fn bucket_index(us: u64) -> usize {
    // Inclusive upper bounds, as Prometheus' `le` requires.
    LATENCY_BUCKETS_MS.iter().position(|&ms| us <= ms * 1000).unwrap_or(BUCKETS - 1)
}

/// The shared metrics region.
pub struct MetricsStore {
    slots: *const Slot,
    order: *const AtomicU32,
    len: usize,
    region: ShmRegion,
}

// SAFETY: the pointers point into `region`, which the store owns; every access to the shared
// contents goes through atomics.
unsafe impl Send for MetricsStore {}
// SAFETY: as above.
unsafe impl Sync for MetricsStore {}

impl MetricsStore {
    /// Creates a region with room for `slots` label sets (rounded up to a power of two).
    pub fn create(slots: usize) -> io::Result<MetricsStore> {
        let n = slot_count(slots, MAX_SLOTS)?;
        let order_offset = HEADER_SIZE;
        let slot_offset = (order_offset + 4 * n).div_ceil(SLOT_SIZE) * SLOT_SIZE;
        let region = LAYOUT.create("gateway-metrics", whole_pages(slot_offset + SLOT_SIZE * n))?;
        // SAFETY: the region is fresh, stamped, zero-filled after the stamp, page aligned and
        // larger than the header; nobody else can see it yet.
        unsafe {
            let h = &mut *(region.as_ptr() as *mut Header);
            h.slots = n as u64;
            h.order_offset = order_offset as u64;
            h.slot_offset = slot_offset as u64;
        }
        Self::from_region(region)
    }

    /// Maps the region behind `fd` (created by [`MetricsStore::create`], possibly in another
    /// process) after validating its header. The fd is borrowed, not closed.
    pub fn attach(fd: RawFd) -> io::Result<MetricsStore> {
        Self::from_region(LAYOUT.attach(fd)?)
    }

    /// Validates the header fields after the stamp (which [`LAYOUT`] has written or checked, so
    /// at least HEADER_SIZE bytes are mapped and the region has the size it was created with).
    fn from_region(region: ShmRegion) -> io::Result<MetricsStore> {
        debug_assert_eq!(LAYOUT.check(&region), Ok(()));
        // SAFETY: at least HEADER_SIZE bytes mapped; the plain fields were written before the
        // region was shared.
        let h = unsafe { &*(region.as_ptr() as *const Header) };
        if !valid_slot_count(h.slots, MAX_SLOTS) {
            return Err(invalid_header("metrics region has an invalid slot count"));
        }
        let n = h.slots as usize;
        if h.order_offset as usize != HEADER_SIZE
            || (h.slot_offset as usize) < HEADER_SIZE + 4 * n
            || !(h.slot_offset as usize).is_multiple_of(SLOT_SIZE)
            || h.slot_offset as usize + SLOT_SIZE * n > region.len()
        {
            return Err(invalid_header("metrics region offsets do not match its size"));
        }
        let base = region.as_ptr();
        // SAFETY: offsets validated against the mapping above; atomics are valid for any bit
        // pattern (the region is zero-initialised) and live as long as `region`.
        let (order, slots) = unsafe {
            (
                base.add(h.order_offset as usize) as *const AtomicU32,
                base.add(h.slot_offset as usize) as *const Slot,
            )
        };
        Ok(MetricsStore { slots, order, len: n, region })
    }

    fn header(&self) -> &Header {
        // SAFETY: validated in from_region; lives as long as the region.
        unsafe { &*(self.region.as_ptr() as *const Header) }
    }

    #[inline]
    fn slot_at(&self, i: usize) -> &Slot {
        debug_assert!(i < self.len);
        // SAFETY: callers pass i < len; see from_region.
        unsafe { &*self.slots.add(i) }
    }

    #[inline]
    fn order_at(&self, i: usize) -> &AtomicU32 {
        debug_assert!(i < self.len);
        // SAFETY: as slot_at.
        unsafe { &*self.order.add(i) }
    }

    /// The memfd number.
    pub fn fd(&self) -> RawFd {
        self.region.fd()
    }

    /// The underlying region.
    pub fn region(&self) -> &ShmRegion {
        &self.region
    }

    /// Number of slots (label sets) the table holds.
    pub fn capacity(&self) -> usize {
        self.len
    }

    /// Slots claimed so far.
    pub fn used(&self) -> u64 {
        self.header().used.load(Ordering::Relaxed).min(self.len as u64)
    }

    /// Observations lost because no slot could be had.
    pub fn dropped(&self) -> u64 {
        self.header().dropped.load(Ordering::Relaxed)
    }

    /// Requests recorded (including those whose observations were dropped).
    pub fn requests(&self) -> u64 {
        self.header().requests.load(Ordering::Relaxed)
    }

    /// The slot of `label` for `kind`, claimed if new; `None` if the label is longer than
    /// [`LABEL_MAX`] or the table is full. Indexes are stable for the life of the region.
    pub fn slot(&self, kind: Kind, label: &[u8]) -> Option<usize> {
        if label.len() > LABEL_MAX {
            return None;
        }
        self.slot_hashed(kind, label, label_hash(kind, label))
    }

    fn slot_hashed(&self, kind: Kind, label: &[u8], hash: u64) -> Option<usize> {
        // SAFETY: `slots` points at `len` slots of the mapping (see from_region).
        let slots = unsafe { std::slice::from_raw_parts(self.slots, self.len) };
        let (i, claimed) = find_or_claim(
            slots,
            hash,
            label,
            ((kind as u64) << 32) | label.len() as u64,
            MAX_PROBES,
            READY_SPINS,
            |meta| {
                Kind::from_bits((meta >> 32) & 0xff) == Some(kind)
                    && (meta & 0xffff_ffff) as usize == label.len()
            },
        )?;
        if claimed {
            // Each slot is claimed once, so positions never exceed the slot count.
            let position = self.header().used.fetch_add(1, Ordering::AcqRel) as usize;
            if position < self.len {
                self.order_at(position).store(i as u32 + 1, Ordering::Release);
            }
        }
        Some(i)
    }

    /// Records one request: `status` counter slot +1, and into the `series` slot the request
    /// latency, the upstream latency (skipped when 0: nothing was proxied) and the bytes. A
    /// missing slot (None, or an index out of range) counts one dropped observation.
    pub fn record(
        &self,
        series: Option<usize>,
        status: Option<usize>,
        request_us: u64,
        upstream_us: Option<u64>,
        bytes_in: u64,
        bytes_out: u64,
    ) {
        let h = self.header();
        h.requests.fetch_add(1, Ordering::Relaxed);
        let status = status.filter(|&i| i < self.len);
        let series = series.filter(|&i| i < self.len);
        if let Some(i) = status {
            self.slot_at(i).count.fetch_add(1, Ordering::Relaxed);
        }
        if let Some(i) = series {
            let s = self.slot_at(i);
            s.count.fetch_add(1, Ordering::Relaxed);
            s.request_buckets[bucket_index(request_us)].fetch_add(1, Ordering::Relaxed);
            s.request_sum_us.fetch_add(request_us, Ordering::Relaxed);
            if let Some(up) = upstream_us {
                s.upstream_count.fetch_add(1, Ordering::Relaxed);
                s.upstream_buckets[bucket_index(up)].fetch_add(1, Ordering::Relaxed);
                s.upstream_sum_us.fetch_add(up, Ordering::Relaxed);
            }
            if bytes_in != 0 {
                s.bytes_in.fetch_add(bytes_in, Ordering::Relaxed);
            }
            if bytes_out != 0 {
                s.bytes_out.fetch_add(bytes_out, Ordering::Relaxed);
            }
        }
        if status.is_none() || series.is_none() {
            h.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Adds `n` to a counter slot (None: counted as dropped).
    pub fn add(&self, counter: Option<usize>, n: u64) {
        match counter.filter(|&i| i < self.len) {
            Some(i) => {
                self.slot_at(i).count.fetch_add(n, Ordering::Relaxed);
            }
            None => {
                self.header().dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Reads every published slot. Each value is read atomically but the snapshot as a whole
    /// is not (writers keep going); a histogram's count is derived from its buckets so that
    /// `_count` and the +Inf bucket always agree.
    pub fn snapshot(&self) -> Snapshot {
        let h = self.header();
        let used = self.used() as usize;
        let mut out = Snapshot {
            requests: h.requests.load(Ordering::Relaxed),
            dropped: h.dropped.load(Ordering::Relaxed),
            used: used as u64,
            counters: Vec::new(),
            series: Vec::new(),
        };
        let mut label = [0u8; LABEL_MAX];
        for position in 0..used {
            let entry = self.order_at(position).load(Ordering::Acquire) as usize;
            if entry == 0 || entry > self.len {
                continue; // reserved by a claimer that has not written it yet
            }
            let slot = self.slot_at(entry - 1);
            let meta = slot.meta.load(Ordering::Acquire);
            if meta & READY == 0 {
                continue;
            }
            let len = ((meta & 0xffff_ffff) as usize).min(LABEL_MAX);
            read_label(slot, len, &mut label);
            match Kind::from_bits((meta >> 32) & 0xff) {
                Some(Kind::Counter) => {
                    out.counters.push((label[..len].to_vec(), slot.count.load(Ordering::Relaxed)))
                }
                Some(Kind::Series) => out.series.push(SeriesSnapshot {
                    label: label[..len].to_vec(),
                    request: read_histogram(&slot.request_buckets, &slot.request_sum_us),
                    upstream: read_histogram(&slot.upstream_buckets, &slot.upstream_sum_us),
                    bytes_in: slot.bytes_in.load(Ordering::Relaxed),
                    bytes_out: slot.bytes_out.load(Ordering::Relaxed),
                }),
                None => {}
            }
        }
        out
    }
}

fn read_label(slot: &Slot, len: usize, out: &mut [u8; LABEL_MAX]) {
    for (i, word) in slot.label.iter().enumerate().take(len.div_ceil(8)) {
        out[i * 8..i * 8 + 8].copy_from_slice(&word.load(Ordering::Relaxed).to_ne_bytes());
    }
}

fn read_histogram(buckets: &[AtomicU64; BUCKETS], sum: &AtomicU64) -> Histogram {
    let mut out = Histogram { buckets: [0; BUCKETS], sum_us: sum.load(Ordering::Relaxed) };
    let mut total = 0u64;
    for (dst, src) in out.buckets.iter_mut().zip(buckets) {
        total = total.wrapping_add(src.load(Ordering::Relaxed));
        *dst = total;
    }
    out
}

gateway_shm::labeled_slot!(Slot);
