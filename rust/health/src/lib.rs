//! Upstream node health in shared memory: one table for the whole gateway, created by the master
//! before it starts the workers, written by the master's active checks and by every worker's
//! passive checks, read by every worker's balancer.
//!
//! Each node of an upstream with `checks` owns one slot, found by its label (the upstream's key
//! and the node's `host:port`), so a node kept across a config change keeps its slot and its
//! state. The balancer reads one word per pick ([`Slot::state`], bit 63 = down) with one relaxed
//! atomic load: nothing is broadcast between processes, so no worker can miss a change.
//!
//! # The state word
//!
//! ```text
//! bit 63      DOWN: the node takes no traffic (unless the upstream fails open)
//! bits 0..8   consecutive successes      (counted while down: the way back up)
//! bits 8..16  consecutive HTTP failures  (a status listed as unhealthy)
//! bits 16..24 consecutive TCP failures   (refused, reset, closed before a response)
//! bits 24..32 consecutive timeouts
//! ```
//!
//! Every outcome is one compare-and-swap of that word, so active and passive reports of all
//! processes count together (lua-resty-healthcheck's rules): a success clears the failure
//! counters, a failure clears the success counter; a failure counter that reaches its threshold
//! marks a healthy node down, a success counter that reaches its threshold marks a down node up,
//! and a transition clears every counter. A threshold of 0 never triggers. A success on a healthy
//! node with no failure counted writes nothing, so steady traffic does not bounce the cache line
//! between workers.
//!
//! # Region layout (native-endian words)
//!
//! ```text
//! 0    stamp   32 bytes (gateway_shm::Stamp): magic "GWHEALTH", version 1, header size 64
//! 32   slots   u64 (power of two)
//! 40   used    AtomicU64  slots claimed
//! 48.. reserved up to 64
//! 64   slots:  256 bytes x slots (see Slot)
//! ```
//!
//! Slots are found and claimed by `gateway_shm::find_or_claim` (CAS of the key, label written,
//! `READY` published) and never freed; the master resets a slot when a node (re)appears in the
//! config.

use std::io;
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use gateway_shm::{
    find_or_claim, hash_key, invalid_header, slot_count, valid_slot_count, whole_pages, Layout,
    Stamp,
};

pub use gateway_shm::ShmRegion;

#[cfg(feature = "python")]
pub mod python;

#[cfg(test)]
mod tests;

/// Layout version; bumped on any incompatible change of the header or slot format.
pub const VERSION: u32 = 1;
/// Bytes reserved for the header at the start of the region.
pub const HEADER_SIZE: usize = 64;
/// Size of one slot in bytes.
pub const SLOT_SIZE: usize = 256;
/// Longest label accepted (bytes).
pub const LABEL_MAX: usize = 128;
/// Largest table accepted by [`HealthTable::create`].
pub const MAX_SLOTS: usize = 1 << 20;
/// The state word's down bit.
pub const DOWN: u64 = 1 << 63;
/// The stamp of a health region.
pub const LAYOUT: Layout = Layout::new(*b"GWHEALTH", VERSION, HEADER_SIZE).with(&[
    std::mem::size_of::<Header>() as u64,
    SLOT_SIZE as u64,
    LABEL_MAX as u64,
]);

const LABEL_WORDS: usize = LABEL_MAX / 8;
const MAX_PROBES: usize = 4096;
const READY_SPINS: u32 = 1 << 20;
const COUNTER_MAX: u64 = 0xff;

/// Who observed an outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Source {
    /// The master's probe of the node.
    Active = 1,
    /// A worker's real request to the node.
    Passive = 2,
}

/// What one check or request found. The numbers are the C ABI's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Outcome {
    /// A status listed as healthy (or a TCP check that connected).
    Success = 0,
    /// A status listed as unhealthy.
    HttpFailure = 1,
    /// Refused, reset, or closed before a response.
    TcpFailure = 2,
    /// No answer in time.
    Timeout = 3,
}

impl Outcome {
    /// From the C ABI's number.
    pub fn from_u8(n: u8) -> Option<Outcome> {
        match n {
            0 => Some(Outcome::Success),
            1 => Some(Outcome::HttpFailure),
            2 => Some(Outcome::TcpFailure),
            3 => Some(Outcome::Timeout),
            _ => None,
        }
    }

    /// The name `/status` shows.
    pub fn name(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::HttpFailure => "http_status",
            Outcome::TcpFailure => "tcp_failure",
            Outcome::Timeout => "timeout",
        }
    }

    fn shift(self) -> u32 {
        self as u32 * 8
    }
}

/// How many consecutive outcomes of each kind change a node's state (0: never). Packed as one
/// u32 for the C ABI: successes | http_failures << 8 | tcp_failures << 16 | timeouts << 24.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Thresholds {
    pub successes: u8,
    pub http_failures: u8,
    pub tcp_failures: u8,
    pub timeouts: u8,
}

impl Thresholds {
    /// From the packed form.
    pub fn unpack(packed: u32) -> Thresholds {
        let [successes, http_failures, tcp_failures, timeouts] = packed.to_le_bytes();
        Thresholds { successes, http_failures, tcp_failures, timeouts }
    }

    /// The packed form.
    pub fn pack(self) -> u32 {
        u32::from_le_bytes([self.successes, self.http_failures, self.tcp_failures, self.timeouts])
    }

    fn of(self, outcome: Outcome) -> u64 {
        u64::from(match outcome {
            Outcome::Success => self.successes,
            Outcome::HttpFailure => self.http_failures,
            Outcome::TcpFailure => self.tcp_failures,
            Outcome::Timeout => self.timeouts,
        })
    }
}

/// A state change caused by a report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    /// The node is down from now on.
    Down,
    /// The node is back.
    Up,
}

#[repr(C)]
struct Header {
    stamp: Stamp,
    slots: u64,
    used: AtomicU64,
}

/// One node's slot (256 bytes). Times are Unix milliseconds; 0 = never.
#[repr(C, align(64))]
pub struct Slot {
    key: AtomicU64,
    meta: AtomicU64,
    /// The state word (see the module docs): what the balancer reads.
    pub state: AtomicU64,
    /// Why the node went down: source << 32 | outcome << 16 | HTTP status (0: none).
    reason: AtomicU64,
    /// When the node last went down or came back.
    changed_ms: AtomicU64,
    /// When the last active check ended, and what it found (outcome << 16 | status).
    checked_ms: AtomicU64,
    last_check: AtomicU64,
    active_ok: AtomicU64,
    active_failed: AtomicU64,
    passive_failed: AtomicU64,
    label: [AtomicU64; LABEL_WORDS],
    _pad: [u64; 6],
}

const _: () = assert!(std::mem::size_of::<Header>() <= HEADER_SIZE);
const _: () = assert!(std::mem::size_of::<Slot>() == SLOT_SIZE);
const _: () = assert!(HEADER_SIZE.is_multiple_of(64));

/// The cause of a node's last fall, as `/status` shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reason {
    pub source: Source,
    pub outcome: Outcome,
    /// The HTTP status for [`Outcome::HttpFailure`], else 0.
    pub status: u16,
}

/// What `/status` reads of one slot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeHealth {
    pub down: bool,
    pub successes: u8,
    pub http_failures: u8,
    pub tcp_failures: u8,
    pub timeouts: u8,
    pub reason: Option<Reason>,
    pub changed_ms: u64,
    pub checked_ms: u64,
    /// The last active check's outcome and status (None before the first one).
    pub last_check: Option<(Outcome, u16)>,
    pub active_ok: u64,
    pub active_failed: u64,
    pub passive_failed: u64,
}

/// Unix time in milliseconds.
pub fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// Whether a state word says the node is down.
#[inline]
pub fn is_down(state: u64) -> bool {
    state & DOWN != 0
}

/// The state word after `outcome`, and the transition it makes (pure: the CAS loop's step).
pub fn next_state(state: u64, outcome: Outcome, th: Thresholds) -> (u64, Option<Transition>) {
    let down = is_down(state);
    let count = |o: Outcome| (state >> o.shift()) & COUNTER_MAX;
    let failures_mask = (0xff_ffffu64) << 8;
    if outcome == Outcome::Success {
        if !down {
            return (state & !failures_mask & !COUNTER_MAX, None);
        }
        let n = (count(Outcome::Success) + 1).min(COUNTER_MAX);
        if th.successes > 0 && n >= th.of(Outcome::Success) {
            return (0, Some(Transition::Up));
        }
        return ((state & DOWN) | n, None);
    }
    let n = (count(outcome) + 1).min(COUNTER_MAX);
    if !down && th.of(outcome) > 0 && n >= th.of(outcome) {
        return (DOWN, Some(Transition::Down));
    }
    let cleared = state & !COUNTER_MAX & !(COUNTER_MAX << outcome.shift());
    (cleared | (n << outcome.shift()), None)
}

/// The shared health region.
pub struct HealthTable {
    slots: *const Slot,
    len: usize,
    region: ShmRegion,
}

// SAFETY: the pointer points into `region`, which the table owns; every access to the shared
// contents goes through atomics.
unsafe impl Send for HealthTable {}
// SAFETY: as above.
unsafe impl Sync for HealthTable {}

impl HealthTable {
    /// Creates a region with room for `slots` nodes (rounded up to a power of two).
    pub fn create(slots: usize) -> io::Result<HealthTable> {
        let n = slot_count(slots, MAX_SLOTS)?;
        let region = LAYOUT.create("gateway-health", whole_pages(HEADER_SIZE + SLOT_SIZE * n))?;
        // SAFETY: fresh, stamped, zero-filled region larger than the header; nobody sees it yet.
        unsafe { (*(region.as_ptr() as *mut Header)).slots = n as u64 };
        Self::from_region(region)
    }

    /// Maps the region behind `fd` after validating it. The fd is borrowed, not closed.
    pub fn attach(fd: RawFd) -> io::Result<HealthTable> {
        Self::from_region(LAYOUT.attach(fd)?)
    }

    fn from_region(region: ShmRegion) -> io::Result<HealthTable> {
        // SAFETY: the stamp check guarantees HEADER_SIZE mapped bytes; `slots` was written
        // before the region was shared.
        let n = unsafe { (*(region.as_ptr() as *const Header)).slots };
        if !valid_slot_count(n, MAX_SLOTS) {
            return Err(invalid_header("health region has an invalid slot count"));
        }
        let n = n as usize;
        if HEADER_SIZE + SLOT_SIZE * n > region.len() {
            return Err(invalid_header("health region is smaller than its slots"));
        }
        // SAFETY: bounds checked above; HEADER_SIZE keeps the slots 64-byte aligned.
        let slots = unsafe { region.as_ptr().add(HEADER_SIZE) as *const Slot };
        Ok(HealthTable { slots, len: n, region })
    }

    fn header(&self) -> &Header {
        // SAFETY: validated in from_region.
        unsafe { &*(self.region.as_ptr() as *const Header) }
    }

    /// The slot at `i` (None when out of range).
    #[inline]
    pub fn get(&self, i: usize) -> Option<&Slot> {
        // SAFETY: i < len, see from_region.
        (i < self.len).then(|| unsafe { &*self.slots.add(i) })
    }

    /// The memfd number.
    pub fn fd(&self) -> RawFd {
        self.region.fd()
    }

    /// Number of slots.
    pub fn capacity(&self) -> usize {
        self.len
    }

    /// Slots claimed so far.
    pub fn used(&self) -> u64 {
        self.header().used.load(Ordering::Relaxed)
    }

    /// The slot of `label`, claimed if new; None if the label is too long or the table full.
    pub fn slot(&self, label: &[u8]) -> Option<usize> {
        if label.len() > LABEL_MAX {
            return None;
        }
        // SAFETY: `slots` points at `len` slots of the mapping (see from_region).
        let slots = unsafe { std::slice::from_raw_parts(self.slots, self.len) };
        let (i, claimed) = find_or_claim(
            slots,
            hash_key(label),
            label,
            label.len() as u64,
            MAX_PROBES,
            READY_SPINS,
            |meta| (meta & 0xffff) as usize == label.len(),
        )?;
        if claimed {
            self.header().used.fetch_add(1, Ordering::Relaxed);
        }
        Some(i)
    }

    /// Records one outcome for slot `i`; returns the transition it caused. `status` is the HTTP
    /// status (for the reason and the last check), 0 when there is none.
    pub fn report(
        &self,
        i: usize,
        source: Source,
        outcome: Outcome,
        status: u16,
        th: Thresholds,
    ) -> Option<Transition> {
        let slot = self.get(i)?;
        let mut current = slot.state.load(Ordering::Acquire);
        let transition = loop {
            let (next, transition) = next_state(current, outcome, th);
            if next == current {
                break transition;
            }
            match slot.state.compare_exchange_weak(
                current,
                next,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => break transition,
                Err(actual) => current = actual,
            }
        };
        match (source, outcome) {
            (Source::Active, Outcome::Success) => {
                slot.active_ok.fetch_add(1, Ordering::Relaxed);
            }
            (Source::Active, _) => {
                slot.active_failed.fetch_add(1, Ordering::Relaxed);
            }
            (Source::Passive, Outcome::Success) => {}
            (Source::Passive, _) => {
                slot.passive_failed.fetch_add(1, Ordering::Relaxed);
            }
        }
        if source == Source::Active {
            slot.checked_ms.store(now_ms(), Ordering::Relaxed);
            slot.last_check.store((outcome as u64) << 16 | u64::from(status), Ordering::Relaxed);
        }
        match transition {
            Some(Transition::Down) => {
                let why = (source as u64) << 32 | (outcome as u64) << 16 | u64::from(status);
                slot.reason.store(why, Ordering::Relaxed);
                slot.changed_ms.store(now_ms(), Ordering::Relaxed);
            }
            Some(Transition::Up) => slot.changed_ms.store(now_ms(), Ordering::Relaxed),
            None => {}
        }
        transition
    }

    /// Makes slot `i` a healthy node with no history (a node new to the config).
    pub fn reset(&self, i: usize) {
        if let Some(slot) = self.get(i) {
            slot.state.store(0, Ordering::Release);
            for word in [
                &slot.reason,
                &slot.changed_ms,
                &slot.checked_ms,
                &slot.last_check,
                &slot.active_ok,
                &slot.active_failed,
                &slot.passive_failed,
            ] {
                word.store(0, Ordering::Relaxed);
            }
        }
    }

    /// Whether the node of slot `i` is down.
    pub fn is_down(&self, i: usize) -> bool {
        self.get(i).is_some_and(|s| is_down(s.state.load(Ordering::Relaxed)))
    }

    /// Everything `/status` shows of slot `i`.
    pub fn read(&self, i: usize) -> Option<NodeHealth> {
        let slot = self.get(i)?;
        let state = slot.state.load(Ordering::Acquire);
        let byte = |o: Outcome| ((state >> o.shift()) & COUNTER_MAX) as u8;
        let reason = slot.reason.load(Ordering::Relaxed);
        let source = match reason >> 32 {
            1 => Some(Source::Active),
            2 => Some(Source::Passive),
            _ => None,
        };
        let reason = match (is_down(state), source, Outcome::from_u8((reason >> 16) as u8)) {
            (true, Some(source), Some(outcome)) => {
                Some(Reason { source, outcome, status: reason as u16 })
            }
            _ => None,
        };
        let checked_ms = slot.checked_ms.load(Ordering::Relaxed);
        let last = slot.last_check.load(Ordering::Relaxed);
        Some(NodeHealth {
            down: is_down(state),
            successes: byte(Outcome::Success),
            http_failures: byte(Outcome::HttpFailure),
            tcp_failures: byte(Outcome::TcpFailure),
            timeouts: byte(Outcome::Timeout),
            reason,
            changed_ms: slot.changed_ms.load(Ordering::Relaxed),
            checked_ms,
            last_check: (checked_ms != 0)
                .then(|| Outcome::from_u8((last >> 16) as u8).map(|o| (o, last as u16)))
                .flatten(),
            active_ok: slot.active_ok.load(Ordering::Relaxed),
            active_failed: slot.active_failed.load(Ordering::Relaxed),
            passive_failed: slot.passive_failed.load(Ordering::Relaxed),
        })
    }
}

gateway_shm::labeled_slot!(Slot);
