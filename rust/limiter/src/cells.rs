//! The cell table: in-flight gauges (`limit-conn`) and circuit breakers (`api-breaker`).
//!
//! Both keep one 63-bit state word per key in a slot of the third table of the region, updated
//! by CAS like the buckets and counters (see the `table` module for the takeover analysis). Keys
//! of the two kinds are kept apart by the callers (they hash different strings); a gauge key
//! and a breaker key never share a slot unless their 64-bit hashes collide.
//!
//! # Gauges
//!
//! State `generation:31 | count:32`. Every write bumps the generation, so the state word never
//! repeats while the slot is in use (invariant 2 of the table) even though the count goes up and
//! down. A slot whose count is 0 is as good as fresh and may be taken over by another key.
//!
//! [`Limiter::gauge_acquire`] returns the index of the slot it incremented; the release names
//! that slot, so a release always decrements exactly the slot its acquire incremented (with a
//! full table two racing first uses of a key could otherwise end up on different slots).
//! A slot with a count above 0 is never taken over, so the index stays valid until the release.
//! A process that dies between acquire and release leaks its increments (like nginx's
//! `limit_conn` zone does when a worker crashes).
//!
//! # Breakers
//!
//! State `opened_at:31 | generation:8 | healthy:12 | unhealthy:12` (low bits first), with
//! `opened_at` the time the breaker last opened in 10 ms units of `CLOCK_MONOTONIC` (wrapping
//! after ~248 days; elapsed times are taken modulo that). The transitions follow APISIX's
//! `api-breaker`:
//!
//! * an unhealthy response adds one to `unhealthy` and zeroes `healthy`; when `unhealthy` reaches
//!   a multiple of `failures` the breaker opens (`opened_at = now`);
//! * while `unhealthy >= failures` and less than `min(2^(unhealthy / failures) s, max)` has
//!   passed since `opened_at`, the breaker is open;
//! * a healthy response counts only while `unhealthy > 0`; after `successes` of them in a row
//!   the breaker is closed and forgotten (`unhealthy = healthy = 0`).
//!
//! `generation` changes whenever the breaker opens or closes, so callers can keep side
//! statistics (the error-rate trigger's window counters) per breaker period. A slot whose
//! `unhealthy` and `healthy` are 0 is as good as fresh and may be taken over.

use std::sync::atomic::Ordering;

use crate::table::{Table, TOMB};
use crate::{nonzero, Limiter};

const GAUGE_COUNT_MASK: u64 = 0xffff_ffff;
const GAUGE_GEN_MASK: u64 = (1 << 31) - 1;

/// Outcome of [`Limiter::gauge_acquire`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GaugeDecision {
    /// Below the maximum: counted (or failed open, see `slot`).
    pub allowed: bool,
    /// The count after this decision (admitted: including this one; rejected: the count that
    /// was already at the maximum).
    pub count: u64,
    /// The slot to pass to [`Limiter::gauge_release`]; `None` when the request was not counted
    /// (rejected, or admitted because the table window was full).
    pub slot: Option<usize>,
}

/// What a response tells a breaker (see [`Limiter::breaker_report`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerOutcome {
    /// A status listed as healthy.
    Healthy,
    /// A status listed as unhealthy.
    Unhealthy,
    /// Open the breaker now, as if another `failures` unhealthy responses had arrived (used by
    /// triggers other than consecutive failures, e.g. an error rate).
    Trip,
}

/// A breaker as seen by [`Limiter::breaker_check`] / after [`Limiter::breaker_report`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct BreakerState {
    pub open: bool,
    /// Open: time until requests are let through again.
    pub retry_after_ns: u64,
    pub unhealthy: u32,
    pub healthy: u32,
    pub generation: u32,
}

const FIELD_MASK: u64 = 0xfff;
const MAX_FIELD: u64 = FIELD_MASK;
const GEN_SHIFT: u32 = 24;
const GEN_MASK: u64 = 0xff;
const OPENED_SHIFT: u32 = 32;
const OPENED_MASK: u64 = (1 << 31) - 1;
/// Resolution of `opened_at`.
const OPENED_UNIT_NS: u64 = 10_000_000;

struct Breaker {
    unhealthy: u64,
    healthy: u64,
    generation: u64,
    opened_at: u64,
}

impl Breaker {
    fn unpack(s: u64) -> Breaker {
        Breaker {
            unhealthy: s & FIELD_MASK,
            healthy: (s >> 12) & FIELD_MASK,
            generation: (s >> GEN_SHIFT) & GEN_MASK,
            opened_at: (s >> OPENED_SHIFT) & OPENED_MASK,
        }
    }

    fn pack(&self) -> u64 {
        (self.unhealthy & FIELD_MASK)
            | (self.healthy & FIELD_MASK) << 12
            | (self.generation & GEN_MASK) << GEN_SHIFT
            | (self.opened_at & OPENED_MASK) << OPENED_SHIFT
    }

    /// Open duration for the current unhealthy count (APISIX: 2^(unhealthy / failures) s).
    fn open_for_ns(&self, failures: u64, max_ns: u64) -> u64 {
        let exponent = (self.unhealthy / failures).min(40) as u32;
        (1u64 << exponent).saturating_mul(1_000_000_000).min(max_ns)
    }

    fn view(&self, failures: u64, max_ns: u64, now_ns: u64) -> BreakerState {
        let mut state = BreakerState {
            open: false,
            retry_after_ns: 0,
            unhealthy: self.unhealthy as u32,
            healthy: self.healthy as u32,
            generation: self.generation as u32,
        };
        if self.unhealthy >= failures {
            let now = (now_ns / OPENED_UNIT_NS) & OPENED_MASK;
            let elapsed = now.wrapping_sub(self.opened_at) & OPENED_MASK;
            let elapsed_ns = elapsed * OPENED_UNIT_NS;
            let open_for = self.open_for_ns(failures, max_ns);
            if elapsed_ns < open_for {
                state.open = true;
                state.retry_after_ns = open_for - elapsed_ns;
            }
        }
        state
    }
}

impl Limiter {
    fn cell_overflow(&self) {
        self.header().overflow_cells.fetch_add(1, Ordering::Relaxed);
    }

    fn cells(&self) -> &Table {
        &self.cells
    }

    /// Adds one to the gauge of `key_hash` if it is below `max`. A rejected request changes
    /// nothing. When the table window is full the request is admitted uncounted (fails open,
    /// counted in [`Limiter::overflow_cells`]).
    pub fn gauge_acquire(&self, key_hash: u64, max: u64) -> GaugeDecision {
        let key = nonzero(key_hash);
        let result = Self::update_slot(
            self.cells(),
            key,
            true,
            |s| s & GAUGE_COUNT_MASK == 0,
            |s| (((s >> 32) + 1) & GAUGE_GEN_MASK) << 32,
            |s| {
                let count = s & GAUGE_COUNT_MASK;
                if count >= max || count >= GAUGE_COUNT_MASK {
                    ((false, count), None)
                } else {
                    let generation = ((s >> 32) + 1) & GAUGE_GEN_MASK;
                    ((true, count + 1), Some(generation << 32 | (count + 1)))
                }
            },
        );
        match result {
            Some(((allowed, count), index)) => {
                GaugeDecision { allowed, count, slot: allowed.then_some(index) }
            }
            None => {
                self.cell_overflow();
                GaugeDecision { allowed: true, count: 0, slot: None }
            }
        }
    }

    /// Takes back one admission of [`Limiter::gauge_acquire`] from the slot it returned.
    /// Returns false (and changes nothing) if that slot does not hold `key_hash` with a count
    /// above 0, which a correct caller never sees.
    pub fn gauge_release(&self, key_hash: u64, slot: usize) -> bool {
        let key = nonzero(key_hash);
        let Some(slot) = self.cells().slot_at(slot) else { return false };
        let mut cur = slot.state.load(Ordering::Acquire);
        loop {
            if cur & TOMB != 0 || slot.key.load(Ordering::Acquire) != key {
                return false;
            }
            let count = cur & GAUGE_COUNT_MASK;
            if count == 0 {
                return false;
            }
            let generation = ((cur >> 32) + 1) & GAUGE_GEN_MASK;
            let new = generation << 32 | (count - 1);
            match slot.state.compare_exchange_weak(cur, new, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => return true,
                Err(actual) => cur = actual,
            }
        }
    }

    /// Current count of the gauge of `key_hash` (0 if it has none).
    pub fn gauge(&self, key_hash: u64) -> u64 {
        let key = nonzero(key_hash);
        let Some(slot) = self.cells().find(key) else { return 0 };
        let s = slot.state.load(Ordering::Acquire);
        if s & TOMB != 0 || slot.key.load(Ordering::Acquire) != key {
            return 0;
        }
        s & GAUGE_COUNT_MASK
    }

    /// The breaker of `key_hash` now (read-only; a key never reported is closed).
    /// `failures` >= 1; `max_open_ns` caps the open duration.
    pub fn breaker_check(
        &self,
        key_hash: u64,
        failures: u64,
        max_open_ns: u64,
        now_ns: u64,
    ) -> BreakerState {
        let key = nonzero(key_hash);
        let failures = failures.clamp(1, MAX_FIELD);
        let Some(slot) = self.cells().find(key) else { return BreakerState::default() };
        let s = slot.state.load(Ordering::Acquire);
        if s & TOMB != 0 || slot.key.load(Ordering::Acquire) != key {
            return BreakerState::default();
        }
        Breaker::unpack(s).view(failures, max_open_ns, now_ns)
    }

    /// Records a response's outcome in the breaker of `key_hash` and returns its new state.
    /// `expected_generation` (a `Trip` only): trip only if the breaker is still in that
    /// generation, so that several processes judging the same statistics trip it once.
    /// Healthy reports about a breaker that has no unhealthy responses write nothing.
    #[allow(clippy::too_many_arguments)]
    pub fn breaker_report(
        &self,
        key_hash: u64,
        outcome: BreakerOutcome,
        failures: u64,
        successes: u64,
        max_open_ns: u64,
        expected_generation: Option<u32>,
        now_ns: u64,
    ) -> BreakerState {
        let key = nonzero(key_hash);
        let failures = failures.clamp(1, MAX_FIELD);
        let successes = successes.clamp(1, MAX_FIELD);
        let now_unit = (now_ns / OPENED_UNIT_NS) & OPENED_MASK;
        let claim = outcome != BreakerOutcome::Healthy;
        let result = Self::update_slot(
            self.cells(),
            key,
            claim,
            |s| s & (FIELD_MASK | FIELD_MASK << 12) == 0,
            |s| {
                let mut b = Breaker::unpack(s);
                b.generation = (b.generation + 1) & GEN_MASK;
                b.pack()
            },
            |s| {
                let old = Breaker::unpack(s);
                let mut b = Breaker::unpack(s);
                match outcome {
                    BreakerOutcome::Unhealthy => {
                        b.unhealthy = (b.unhealthy + 1).min(MAX_FIELD);
                        b.healthy = 0;
                        if b.unhealthy.is_multiple_of(failures) {
                            b.opened_at = now_unit;
                            b.generation = (b.generation + 1) & GEN_MASK;
                        }
                    }
                    BreakerOutcome::Healthy => {
                        if b.unhealthy > 0 {
                            b.healthy += 1;
                            if b.healthy >= successes {
                                b.unhealthy = 0;
                                b.healthy = 0;
                                b.generation = (b.generation + 1) & GEN_MASK;
                            }
                        }
                    }
                    BreakerOutcome::Trip => {
                        let current =
                            expected_generation.is_none_or(|g| u64::from(g) == old.generation);
                        if current {
                            b.unhealthy = ((b.unhealthy / failures + 1) * failures).min(MAX_FIELD);
                            b.healthy = 0;
                            b.opened_at = now_unit;
                            b.generation = (b.generation + 1) & GEN_MASK;
                        }
                    }
                }
                let new = b.pack();
                let view = b.view(failures, max_open_ns, now_ns);
                (view, (new != s).then_some(new))
            },
        );
        match result {
            Some((view, _)) => view,
            None if claim => {
                self.cell_overflow();
                BreakerState::default()
            }
            None => BreakerState::default(),
        }
    }
}
