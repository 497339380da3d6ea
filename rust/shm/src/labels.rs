//! The slots of a shared table found by their label (the health table's nodes, the metrics'
//! label sets): open addressing on the label's hash, a free slot claimed by a compare-and-swap
//! of its key word, the label then written into the slot's words and published by its meta word
//! (Release, with [`READY`]); a process that finds the key waits, boundedly, for [`READY`]
//! before it compares the label. Slots are never freed.

use std::sync::atomic::{AtomicU64, Ordering};

/// The meta word's bit saying that the claimer has written the label.
pub const READY: u64 = 1 << 63;

/// A slot of such a table: its key word (the label's hash; 0 while free), its meta word
/// ([`READY`] and the owner's bits: the label's length, a kind) and the label's bytes,
/// native-endian, zero-padded.
pub trait LabeledSlot {
    fn key(&self) -> &AtomicU64;
    fn meta(&self) -> &AtomicU64;
    fn label_words(&self) -> &[AtomicU64];
}

/// The index of `label`'s slot in `slots` (a power-of-two count), and whether this call claimed
/// it (it was new: the caller does its own bookkeeping). `hash` is the label's hash (never 0);
/// `meta` the owner's bits published with a claim; `fits(meta)` says whether a published meta
/// word is the label's (its length, its kind). None when `max_probes` slots hold other labels,
/// or a slot with the same hash was never published within `ready_spins` (its claimer died).
pub fn find_or_claim<S: LabeledSlot>(
    slots: &[S],
    hash: u64,
    label: &[u8],
    meta: u64,
    max_probes: usize,
    ready_spins: u32,
    fits: impl Fn(u64) -> bool,
) -> Option<(usize, bool)> {
    let mask = slots.len() - 1;
    let start = (hash.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 32) as usize & mask;
    for probe in 0..slots.len().min(max_probes) {
        let i = (start + probe) & mask;
        let slot = &slots[i];
        let mut key = slot.key().load(Ordering::Acquire);
        if key == 0 {
            match slot.key().compare_exchange(0, hash, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => {
                    publish(slot, label, meta);
                    return Some((i, true));
                }
                Err(actual) => key = actual,
            }
        }
        if key == hash && holds(slot, label, ready_spins, &fits) {
            return Some((i, false));
        }
    }
    None
}

fn publish<S: LabeledSlot>(slot: &S, label: &[u8], meta: u64) {
    for (word, chunk) in slot.label_words().iter().zip(label.chunks(8)) {
        let mut bytes = [0u8; 8];
        bytes[..chunk.len()].copy_from_slice(chunk);
        word.store(u64::from_ne_bytes(bytes), Ordering::Relaxed);
    }
    slot.meta().store(READY | meta, Ordering::Release);
}

fn holds<S: LabeledSlot>(
    slot: &S,
    label: &[u8],
    ready_spins: u32,
    fits: &impl Fn(u64) -> bool,
) -> bool {
    let mut meta = slot.meta().load(Ordering::Acquire);
    let mut spins = 0;
    while meta & READY == 0 {
        if spins == ready_spins {
            return false;
        }
        spins += 1;
        if spins % 64 == 0 {
            std::thread::yield_now();
        } else {
            std::hint::spin_loop();
        }
        meta = slot.meta().load(Ordering::Acquire);
    }
    fits(meta)
        && slot.label_words().iter().zip(label.chunks(8)).all(|(word, chunk)| {
            word.load(Ordering::Relaxed).to_ne_bytes()[..chunk.len()] == *chunk
        })
}

/// Implements [`LabeledSlot`] for a slot struct whose words are its fields `key`, `meta` and
/// `label` (an array of `AtomicU64`).
#[macro_export]
macro_rules! labeled_slot {
    ($slot:ty) => {
        impl $crate::LabeledSlot for $slot {
            fn key(&self) -> &::std::sync::atomic::AtomicU64 {
                &self.key
            }
            fn meta(&self) -> &::std::sync::atomic::AtomicU64 {
                &self.meta
            }
            fn label_words(&self) -> &[::std::sync::atomic::AtomicU64] {
                &self.label
            }
        }
    };
}
