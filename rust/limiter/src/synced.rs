//! Keys shared between gateway nodes (`policy: redis` of limit-count and limit-req).
//!
//! The workers count in this node's tables as for a local limit; once per interval the master's
//! syncer exchanges the counts with a shared store. The master learns which keys are live by
//! iterating the counter table ([`Limiter::synced_counter_keys`]) rather than by a message per
//! new key from the workers, so a synced key must say, by itself, that it is synced and how it
//! is synced:
//!
//! ```text
//! bit 63        1 (local keys always have it clear: see crate::hash_key and counter_key)
//! bits 43..63   the tag: names the parameters of the limit (kind, window or rate, store)
//! bits 0..43    the hash of the key's bytes
//! ```
//!
//! 43 bits of hash keep collisions rare (two keys of one tag collide with probability about
//! n²/2^44: 0.06 for a million live keys), and the slot's home is taken from the low bits, so
//! the tag does not crowd keys together.

use std::sync::atomic::Ordering;

use crate::table::TOMB;
use crate::{nonzero, Limiter, MAX_STATE};

/// The bit that marks a synced key.
pub const SYNCED: u64 = 1 << 63;
/// Width of a synced key's tag.
pub const SYNCED_TAG_BITS: u32 = 20;
const HASH_BITS: u32 = 63 - SYNCED_TAG_BITS;
const HASH_MASK: u64 = (1 << HASH_BITS) - 1;
const TAG_MASK: u64 = (1 << SYNCED_TAG_BITS) - 1;

/// The slot key of `key` for a limit synced between nodes under `tag` (only its low
/// [`SYNCED_TAG_BITS`] bits are kept).
pub fn synced_key(key: &[u8], tag: u32) -> u64 {
    SYNCED | ((u64::from(tag) & TAG_MASK) << HASH_BITS) | (gateway_shm::hash_key(key) & HASH_MASK)
}

/// The tag of a synced key, `None` for a local one.
pub fn synced_tag(slot_key: u64) -> Option<u32> {
    (slot_key & SYNCED != 0).then_some(((slot_key >> HASH_BITS) & TAG_MASK) as u32)
}

impl Limiter {
    /// The synced keys that hold a counter slot (fixed windows; a key whose window is over is
    /// listed until its slot is taken over: the caller skips the ones with nothing counted).
    /// A scan of the whole counter table: a few hundred microseconds for 65536 slots, once per
    /// sync interval in the master.
    pub fn synced_counter_keys(&self) -> Vec<u64> {
        (0..self.counters.len())
            .filter_map(|i| {
                let slot = self.counters.slot_at(i)?;
                let state = slot.state.load(Ordering::Acquire);
                let key = slot.key.load(Ordering::Acquire);
                (key & SYNCED != 0 && state & TOMB == 0).then_some(key)
            })
            .collect()
    }

    /// Moves the token bucket of `key_hash` so that at least `backlog_ns` of requests are
    /// waiting in it (its TAT is at least `now + backlog_ns`; a fuller bucket is left alone): the
    /// other nodes' requests, pulled from a shared store, weigh on this node's decisions. Returns
    /// the backlog after it, 0 when no slot could be had (the bucket table is full).
    pub fn bucket_raise(&self, key_hash: u64, backlog_ns: u64, now_ns: u64) -> u64 {
        let now = now_ns.min(MAX_STATE);
        let target = now.saturating_add(backlog_ns).min(MAX_STATE);
        let key = nonzero(key_hash);
        Self::update(
            &self.buckets,
            key,
            |tat| tat.saturating_add(crate::RECLAIM_GRACE_NS) <= now,
            |tat| tat + 1,
            |tat| {
                if target > tat {
                    (target - now, Some(target))
                } else {
                    (tat.saturating_sub(now), None)
                }
            },
        )
        .unwrap_or(0)
    }

    /// The backlog of the token bucket of `key_hash` (how far its TAT is ahead of `now_ns`; 0
    /// for an empty or absent bucket). Read-only.
    pub fn bucket_backlog(&self, key_hash: u64, now_ns: u64) -> u64 {
        let key = nonzero(key_hash);
        let Some(slot) = self.buckets.find(key) else { return 0 };
        let tat = slot.state.load(Ordering::Acquire);
        if tat & TOMB != 0 || slot.key.load(Ordering::Acquire) != key {
            return 0;
        }
        tat.saturating_sub(now_ns)
    }
}
