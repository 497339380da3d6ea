//! Shared memory for the gateway's processes: one memfd region per kind of state (the limiter's
//! tables, the request metrics), created by the master before it starts the workers and mapped
//! by each worker from the inherited fd.
//!
//! * [`ShmRegion`]: the mapping itself (create a memfd, attach to an inherited one).
//! * [`Layout`] and [`Stamp`]: every region starts with a 32-byte stamp (magic, layout version,
//!   header size, a fingerprint of the owner's layout constants, the size at creation).
//!   [`Layout::create`] writes it, [`Layout::attach`] checks it, so a process never reads a
//!   region laid out by another kind of owner or another build (a worker started from a newer
//!   install than its master's) as if it were its own: it gets a [`StampError`] instead.
//! * [`hash_key`]: the key hash every process computes the same way (the shared tables are
//!   indexed by it).
//! * [`slot_count`], [`valid_slot_count`], [`whole_pages`], [`invalid_header`]: the sizing and
//!   header checks of the owners' slot tables.
//! * [`find_or_claim`]: the slot of a label in a shared table, claimed if new.
//! * `python` (feature `python`): what the owners' PyO3 bindings share.
//!
//! This crate knows nothing of what the regions hold; its owners lay out their headers after
//! the stamp and keep every access to shared contents atomic.

mod hash;
mod labels;
mod region;
mod slots;
mod stamp;

#[cfg(feature = "python")]
pub mod python;

#[cfg(test)]
mod tests;

pub use hash::{fmix64, hash_key, nonzero};
pub use labels::{find_or_claim, LabeledSlot, READY};
pub use region::ShmRegion;
pub use slots::{invalid_header, slot_count, valid_slot_count, whole_pages, PAGE};
pub use stamp::{Layout, Stamp, StampError, STAMP_SIZE};
