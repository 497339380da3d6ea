//! Open-addressed slot table in shared memory, shared by the bucket and the counter tables.
//!
//! A slot is two words: `key` (0 = never used) and `state` (a 63-bit value whose meaning belongs
//! to the table's user, plus the [`TOMB`] bit). Every operation on a key is a CAS on `state`.
//!
//! # Invariants the race analysis relies on
//!
//! 1. `key` goes from 0 to a key once (claim of an empty slot, CAS `0 -> K`) and afterwards only
//!    changes during a *takeover*, while `state` carries the `TOMB` bit. It never returns to 0,
//!    so empty slots never reappear: if a probe meets an empty slot, the key it looks for is not
//!    stored further along its window.
//! 2. `state` never takes the same value twice while the slot is in use (no ABA). The users
//!    guarantee it: every write by an operation moves the value strictly forward (a GCRA TAT grows
//!    by at least 1 ns, a counter's (window, count) grows), and a takeover replaces the old
//!    value `v` by `TOMB|v` and then by `reset(v)`, which is again strictly past `v`.
//!
//! # Takeover of an expired slot (key A -> key B), done by one process P
//!
//! 1. CAS `state: v -> TOMB|v` (v checked free by the user's `reclaimable`); on failure, rescan.
//! 2. CAS `key: A -> B` (cannot fail: nobody else changes the key of a tombstoned slot).
//! 3. CAS `state: TOMB|v -> reset(v)`.
//!
//! Everybody else treats a tombstoned slot as "not mine": a probe skips it (it neither matches
//! nor is claimable). An operation on key K loads `state` (Acquire), then re-loads `key` and
//! only proceeds if it is still K, then CASes `state`. If the CAS succeeds, `state` did not change
//! between the load and the CAS (invariant 2), so no takeover started in between, so the key was
//! K during the whole operation: an update is never applied to another key's bucket. An A
//! operation racing with the takeover either lands before step 1 (then step 1 fails and the slot
//! stays A's) or fails its CAS and re-probes, finding no A slot; it then starts a fresh bucket
//! elsewhere, which is exact because A's old state was "fully refilled" (that is what made the
//! slot reclaimable).
//!
//! Remaining imprecision, by construction bounded and rare:
//! * Two processes that see a brand-new key B for the first time at the same instant, in a full
//!   window, may each take over a *different* expired slot for B (the loser of a race on the
//!   same slot re-probes; the duplicate only arises if the set of reclaimable slots changed
//!   between their probes, or one probe ran between steps 1 and 2 of the other's takeover).
//!   Later probes use the first B slot in probe order, so at most one request per racing process
//!   is counted in the other slot and forgotten.
//! * A process killed between steps 1 and 3 leaves the slot tombstoned forever: it is skipped by
//!   everyone (one slot of capacity lost, no wrong answer).

use std::sync::atomic::{AtomicU64, Ordering};

/// Top bit of `state`: the slot is being taken over by another key.
pub const TOMB: u64 = 1 << 63;
/// The bits of `state` that belong to the table's user.
pub const VALUE_MASK: u64 = TOMB - 1;
/// Number of slots inspected from a key's home slot (linear probing window).
pub const PROBE_WINDOW: usize = 16;

/// One table entry (16 bytes, 16-byte aligned so a slot never straddles a cache line).
#[repr(C, align(16))]
pub struct Slot {
    pub key: AtomicU64,
    pub state: AtomicU64,
}

/// Result of [`Table::find_or_claim`].
pub enum Probe<'a> {
    /// The key's slot (found, claimed, or taken over).
    Found(&'a Slot),
    /// Lost a race during a takeover; probe again.
    Retry,
    /// No slot for the key, no empty and no reclaimable slot in the window.
    Full,
}

/// A view of `len` slots (a power of two) at a fixed address inside the mapped region.
pub struct Table {
    base: *const Slot,
    len: usize,
}

// SAFETY: a Table only points into the shared mapping, which the owning Limiter keeps alive;
// all access is through atomics.
unsafe impl Send for Table {}
// SAFETY: as above.
unsafe impl Sync for Table {}

/// Multiplicative (Fibonacci) mixing so that callers' raw hashes spread over the table.
#[inline]
fn home(key: u64, mask: usize) -> usize {
    (key.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 32) as usize & mask
}

impl Table {
    /// # Safety
    /// `base` must point to `len` (power of two, > 0) initialised slots that stay mapped for the
    /// lifetime of the Table.
    pub unsafe fn new(base: *const Slot, len: usize) -> Table {
        debug_assert!(len.is_power_of_two());
        Table { base, len }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    /// Position of `slot` (which must belong to this table).
    pub fn index_of(&self, slot: &Slot) -> usize {
        (slot as *const Slot as usize - self.base as usize) / std::mem::size_of::<Slot>()
    }

    /// The slot at `index`, if the table has one there.
    pub fn slot_at(&self, index: usize) -> Option<&Slot> {
        (index < self.len).then(|| self.slot(index))
    }

    #[inline]
    fn slot(&self, i: usize) -> &Slot {
        // SAFETY: i is always masked to < len by the callers; see `new`.
        unsafe { &*self.base.add(i & (self.len - 1)) }
    }

    fn window(&self) -> usize {
        PROBE_WINDOW.min(self.len)
    }

    /// Finds the slot holding `key` without claiming anything (read-only lookup).
    pub fn find(&self, key: u64) -> Option<&Slot> {
        let start = home(key, self.len - 1);
        for i in 0..self.window() {
            let slot = self.slot(start + i);
            let k = slot.key.load(Ordering::Acquire);
            if k == key {
                if slot.state.load(Ordering::Acquire) & TOMB == 0 {
                    return Some(slot);
                }
            } else if k == 0 {
                return None;
            }
        }
        None
    }

    /// Finds the slot of `key`, or claims an empty one, or takes over the first slot whose
    /// state satisfies `reclaimable` (which must mean "indistinguishable from a fresh state"),
    /// resetting its state to `reset(old)`. `key` must not be 0.
    pub fn find_or_claim(
        &self,
        key: u64,
        reclaimable: impl Fn(u64) -> bool,
        reset: impl Fn(u64) -> u64,
    ) -> Probe<'_> {
        debug_assert!(key != 0);
        let start = home(key, self.len - 1);
        let window = self.window();
        // Pass 1: the key itself, or the first empty slot (the key cannot be past it).
        for i in 0..window {
            let slot = self.slot(start + i);
            let k = slot.key.load(Ordering::Acquire);
            if k == key {
                if slot.state.load(Ordering::Acquire) & TOMB == 0 {
                    return Probe::Found(slot);
                }
                // Being taken over (from us, or to us and not finished): not usable.
                continue;
            }
            if k == 0 {
                match slot.key.compare_exchange(0, key, Ordering::AcqRel, Ordering::Acquire) {
                    Ok(_) => return Probe::Found(slot),
                    Err(actual) if actual == key => return Probe::Found(slot),
                    // Another key claimed it first; ours may be claimed next to it.
                    Err(_) => continue,
                }
            }
        }
        // Pass 2: no slot for the key and no empty slot. Take over the first expired one.
        for i in 0..window {
            let slot = self.slot(start + i);
            let k = slot.key.load(Ordering::Acquire);
            let s = slot.state.load(Ordering::Acquire);
            if k == 0 || s & TOMB != 0 || !reclaimable(s) {
                continue;
            }
            if slot
                .state
                .compare_exchange(s, TOMB | s, Ordering::AcqRel, Ordering::Acquire)
                .is_err()
            {
                // Someone used or took it meanwhile: probe again.
                return Probe::Retry;
            }
            // The key read above may be stale only if a takeover happened between our two loads;
            // then `s` was written by that takeover's reset, and the key we read may be the old
            // one. Read it again now that the slot is frozen.
            let owner = slot.key.load(Ordering::Acquire);
            let switched =
                slot.key.compare_exchange(owner, key, Ordering::AcqRel, Ordering::Acquire).is_ok();
            debug_assert!(switched, "key of a tombstoned slot changed");
            let _ = slot.state.compare_exchange(
                TOMB | s,
                reset(s) & VALUE_MASK,
                Ordering::AcqRel,
                Ordering::Acquire,
            );
            return if switched { Probe::Found(slot) } else { Probe::Retry };
        }
        Probe::Full
    }

    /// Iterates over all slots (diagnostics and tests).
    #[cfg(test)]
    pub fn snapshot(&self) -> Vec<(u64, u64)> {
        (0..self.len)
            .map(|i| {
                let s = self.slot(i);
                (s.key.load(Ordering::Acquire), s.state.load(Ordering::Acquire))
            })
            .collect()
    }
}

/// The home slot of `key` in a table of `mask + 1` slots (tests build colliding keys with it).
#[cfg(test)]
pub fn home_for_tests(key: u64, mask: usize) -> usize {
    home(key, mask)
}
