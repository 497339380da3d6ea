use super::*;
use std::sync::atomic::AtomicU32;
use std::sync::Arc;

const MS: u64 = 1_000_000;
const SEC: u64 = 1_000_000_000;
/// An arbitrary simulated "now" far from 0 (like a real CLOCK_MONOTONIC reading).
const T0: u64 = 1_000 * SEC;

fn lim() -> Limiter {
    Limiter::create(1024, 1024).expect("create")
}

// ---------------------------------------------------------------- hashing, clock, region

#[test]
fn monotonic_clock_advances() {
    let a = monotonic_ns();
    let b = monotonic_ns();
    assert!(a > 0 && b >= a);
}

#[test]
fn header_and_sizes() {
    let l = Limiter::create(1000, 3).unwrap();
    assert_eq!(l.bucket_slots(), 1024);
    assert_eq!(l.counter_slots(), 4);
    assert_eq!(l.region().len() % 4096, 0);
    assert!(l.region().len() >= HEADER_SIZE + 16 * (1024 + 4));
    assert!(l.fd() >= 0);
    assert!(Limiter::create(0, 1).is_err());
    assert!(Limiter::create(1, MAX_SLOTS + 1).is_err());
}

#[test]
fn attach_shares_state_and_validates() {
    let a = lim();
    let b = Limiter::attach(a.fd()).expect("attach");
    assert_eq!(b.bucket_slots(), a.bucket_slots());
    assert!(a.acquire(7, 10.0, 0.0, 1.0, T0).allowed);
    assert!(!b.acquire(7, 10.0, 0.0, 1.0, T0).allowed, "attached view sees the same bucket");
    assert_eq!(b.fd(), a.fd());
    drop(b); // must not close the fd that `a` owns
    assert!(Limiter::attach(a.fd()).is_ok());

    // A region that is not a limiter.
    let other = ShmRegion::create("not-a-limiter", 8192).unwrap();
    let err = Limiter::attach(other.fd()).err().expect("bad magic must fail");
    assert_eq!(err.kind(), io::ErrorKind::InvalidData);
    // A bad fd.
    assert!(Limiter::attach(-1).is_err());
}

#[test]
fn attach_refuses_regions_of_other_builds() {
    // A limiter region stamped by a build with the previous layout version.
    let older = gateway_shm::Layout::new(*b"GWLIMIT1", VERSION - 1, HEADER_SIZE);
    let region = older.create("gateway-limiter", 8192).unwrap();
    let err = Limiter::attach(region.fd()).err().expect("old version must fail");
    assert_eq!(err.kind(), io::ErrorKind::InvalidData);
    assert!(err.to_string().contains("GWLIMIT1"), "{err}");
    // The same version, other constants (say a different probe window).
    let other = gateway_shm::Layout::new(*b"GWLIMIT1", VERSION, HEADER_SIZE).with(&[1, 2, 3]);
    let region = other.create("gateway-limiter", 8192).unwrap();
    assert!(Limiter::attach(region.fd()).is_err());
    // A stamp that matches, over slot counts that do not fit the region.
    let region = LAYOUT.create("gateway-limiter", 8192).unwrap();
    // SAFETY: our fresh region; the header fields after the stamp are plain words.
    unsafe {
        let h = &mut *(region.as_ptr() as *mut Header);
        (h.bucket_slots, h.counter_slots, h.cell_slots) = (1024, 1024, 1024);
        h.bucket_offset = HEADER_SIZE as u64;
        h.counter_offset = h.bucket_offset + 16 * 1024;
        h.cell_offset = h.counter_offset + 16 * 1024;
    }
    let err = Limiter::attach(region.fd()).err().expect("offsets past the end must fail");
    assert_eq!(err.kind(), io::ErrorKind::InvalidData);
}

#[test]
fn created_fd_is_inheritable() {
    let l = lim();
    // SAFETY: fcntl query on our own fd.
    let flags = unsafe { libc::fcntl(l.fd(), libc::F_GETFD) };
    assert!(flags >= 0);
    assert_eq!(flags & libc::FD_CLOEXEC, 0);
}

// ---------------------------------------------------------------- GCRA

#[test]
fn gcra_burst_zero() {
    let l = lim();
    let d = l.acquire(1, 10.0, 0.0, 1.0, T0);
    assert_eq!(d, Decision { allowed: true, delay_ns: 0, remaining: 0.0 });
    let d = l.acquire(1, 10.0, 0.0, 1.0, T0);
    assert!(!d.allowed);
    assert_eq!(d.delay_ns, 100 * MS, "next slot one interval later");
    // Half an interval later: still rejected, 50 ms to go.
    let d = l.acquire(1, 10.0, 0.0, 1.0, T0 + 50 * MS);
    assert!(!d.allowed);
    assert_eq!(d.delay_ns, 50 * MS);
    // Exactly one interval later: admitted without delay.
    let d = l.acquire(1, 10.0, 0.0, 1.0, T0 + 100 * MS);
    assert!(d.allowed);
    assert_eq!(d.delay_ns, 0);
}

#[test]
fn gcra_burst_n_delays_like_nginx() {
    let l = lim();
    // rate 10 r/s, burst 3: 4 requests at once pass, delayed 0, 100, 200, 300 ms.
    let mut delays = vec![];
    let mut remaining = vec![];
    for _ in 0..4 {
        let d = l.acquire(2, 10.0, 3.0, 1.0, T0);
        assert!(d.allowed);
        delays.push(d.delay_ns);
        remaining.push(d.remaining);
    }
    assert_eq!(delays, vec![0, 100 * MS, 200 * MS, 300 * MS]);
    assert_eq!(remaining, vec![3.0, 2.0, 1.0, 0.0]);
    let d = l.acquire(2, 10.0, 3.0, 1.0, T0);
    assert!(!d.allowed);
    assert_eq!(d.delay_ns, 100 * MS);
    assert_eq!(d.remaining, 0.0);
    // Rejections consume nothing: 100 ms later exactly one more fits, delayed 300 ms.
    let d = l.acquire(2, 10.0, 3.0, 1.0, T0 + 100 * MS);
    assert!(d.allowed);
    assert_eq!(d.delay_ns, 300 * MS);
    assert!(!l.acquire(2, 10.0, 3.0, 1.0, T0 + 100 * MS).allowed);
}

#[test]
fn gcra_nodelay_usage() {
    // nodelay: the caller forwards admitted requests at once, ignoring delay_ns. The bucket
    // still only refills at the rate: burst+1 at once, then one per interval.
    let l = lim();
    let mut passed = 0;
    for _ in 0..10 {
        if l.acquire(3, 5.0, 4.0, 1.0, T0).allowed {
            passed += 1;
        }
    }
    assert_eq!(passed, 5);
    assert!(!l.acquire(3, 5.0, 4.0, 1.0, T0 + 199 * MS).allowed);
    assert!(l.acquire(3, 5.0, 4.0, 1.0, T0 + 200 * MS).allowed);
    assert!(!l.acquire(3, 5.0, 4.0, 1.0, T0 + 200 * MS).allowed);
}

#[test]
fn gcra_refill_over_time() {
    let l = lim();
    for _ in 0..4 {
        assert!(l.acquire(4, 10.0, 3.0, 1.0, T0).allowed);
    }
    // After 400 ms the bucket is full again: 4 more at once.
    let now = T0 + 400 * MS;
    let d = l.acquire(4, 10.0, 3.0, 1.0, now);
    assert_eq!(d.delay_ns, 0);
    assert_eq!(d.remaining, 3.0);
    for _ in 0..3 {
        assert!(l.acquire(4, 10.0, 3.0, 1.0, now).allowed);
    }
    assert!(!l.acquire(4, 10.0, 3.0, 1.0, now).allowed);
    // Partial refill: after 250 ms, two requests fit.
    let now = now + 250 * MS;
    assert!(l.acquire(4, 10.0, 3.0, 1.0, now).allowed);
    assert!(l.acquire(4, 10.0, 3.0, 1.0, now).allowed);
    let d = l.acquire(4, 10.0, 3.0, 1.0, now);
    assert!(!d.allowed);
    assert_eq!(d.delay_ns, 50 * MS);
    assert!((d.remaining - 0.5).abs() < 1e-9);
}

#[test]
fn gcra_steady_state_is_exactly_the_rate() {
    let l = lim();
    // 10 simulated seconds, one attempt per ms, 100 r/s, burst 0: exactly 1000 pass.
    let mut passed = 0;
    for i in 0..10_000u64 {
        if l.acquire(5, 100.0, 0.0, 1.0, T0 + i * MS).allowed {
            passed += 1;
        }
    }
    assert_eq!(passed, 1000);
    // Same with a burst: the burst is a one-time allowance on top.
    let mut passed = 0;
    for i in 0..10_000u64 {
        if l.acquire(6, 100.0, 20.0, 1.0, T0 + i * MS).allowed {
            passed += 1;
        }
    }
    // 21 at t=0 (TAT = 210 ms), then one per 10 ms from t=10 ms whenever TAT - now <= 200 ms.
    assert!((1000..=1021).contains(&passed), "{passed}");
}

#[test]
fn gcra_cost_and_invalid_inputs() {
    let l = lim();
    // cost 2 at 10 r/s burst 3 (capacity 4 units): two pass, the third does not.
    assert!(l.acquire(8, 10.0, 3.0, 2.0, T0).allowed);
    let d = l.acquire(8, 10.0, 3.0, 2.0, T0);
    assert!(d.allowed);
    assert_eq!(d.delay_ns, 200 * MS);
    let d = l.acquire(8, 10.0, 3.0, 2.0, T0);
    assert!(!d.allowed);
    assert_eq!(d.delay_ns, 200 * MS);
    // cost larger than the capacity can never pass.
    let d = l.acquire(9, 10.0, 3.0, 5.0, T0);
    assert!(!d.allowed);
    assert_eq!(d.delay_ns, u64::MAX);
    // cost 0 inspects without consuming.
    let d = l.acquire(10, 10.0, 1.0, 0.0, T0);
    assert!(d.allowed);
    assert_eq!(d.remaining, 2.0);
    assert_eq!(l.acquire(10, 10.0, 1.0, 1.0, T0).remaining, 1.0);
    // invalid rates reject.
    for rate in [0.0, -1.0, f64::NAN, f64::INFINITY] {
        let d = l.acquire(11, rate, 1.0, 1.0, T0);
        assert!(!d.allowed);
        assert_eq!(d.delay_ns, u64::MAX);
    }
    // negative / NaN burst is 0.
    assert!(l.acquire(12, 10.0, f64::NAN, 1.0, T0).allowed);
    assert!(!l.acquire(12, 10.0, -3.0, 1.0, T0).allowed);
}

#[test]
fn zero_hash_is_one() {
    let l = lim();
    assert!(l.acquire(0, 1.0, 0.0, 1.0, T0).allowed);
    assert!(!l.acquire(1, 1.0, 0.0, 1.0, T0).allowed, "hash 0 and hash 1 share a bucket");
}

// ---------------------------------------------------------------- counters

#[test]
fn fixed_window_counts_and_resets() {
    let l = lim();
    let base = T0 + 250 * MS; // 250 ms into a 1 s window
    let mut rem = vec![];
    for _ in 0..3 {
        let d = l.count(20, 3, SEC, 1, base, false);
        assert!(d.allowed);
        assert_eq!(d.reset_ns, 750 * MS);
        rem.push(d.remaining);
    }
    assert_eq!(rem, vec![2, 1, 0]);
    let d = l.count(20, 3, SEC, 1, base + 700 * MS, false);
    assert_eq!(d, CountDecision { allowed: false, remaining: 0, reset_ns: 50 * MS });
    // Next window: fresh quota.
    let d = l.count(20, 3, SEC, 1, base + 750 * MS, false);
    assert_eq!(d, CountDecision { allowed: true, remaining: 2, reset_ns: SEC });
    // Two windows later, still fresh.
    let d = l.count(20, 3, SEC, 1, base + 2750 * MS, false);
    assert_eq!(d.remaining, 2);
}

#[test]
fn rejected_requests_do_not_consume() {
    let l = lim();
    assert_eq!(l.count(21, 5, SEC, 4, T0, false).remaining, 1);
    let d = l.count(21, 5, SEC, 2, T0, false);
    assert!(!d.allowed);
    assert_eq!(d.remaining, 1);
    for _ in 0..100 {
        assert!(!l.count(21, 5, SEC, 3, T0, false).allowed);
    }
    let d = l.count(21, 5, SEC, 1, T0, false);
    assert!(d.allowed);
    assert_eq!(d.remaining, 0);
    assert!(!l.count(21, 5, SEC, 1, T0, false).allowed);
    // cost 0 inspects.
    assert_eq!(
        l.count(22, 5, SEC, 0, T0, false),
        CountDecision { allowed: true, remaining: 5, reset_ns: SEC }
    );
}

#[test]
fn sliding_window_weights_previous_window() {
    let l = lim();
    let w0 = T0; // T0 is a multiple of 1 s: start of a window
    for _ in 0..10 {
        assert!(l.count(30, 10, SEC, 1, w0 + 500 * MS, true).allowed);
    }
    assert!(!l.count(30, 10, SEC, 1, w0 + 900 * MS, true).allowed);
    // 250 ms into the next window: previous weighs ceil(10 * 0.75) = 8 -> 2 fit.
    let t = w0 + SEC + 250 * MS;
    let d = l.count(30, 10, SEC, 1, t, true);
    assert_eq!(d, CountDecision { allowed: true, remaining: 1, reset_ns: 750 * MS });
    assert!(l.count(30, 10, SEC, 1, t, true).allowed);
    assert!(!l.count(30, 10, SEC, 1, t, true).allowed);
    // 600 ms in: ceil(10 * 0.4) = 4, plus 2 current -> 4 more fit.
    let t = w0 + SEC + 600 * MS;
    let mut n = 0;
    while l.count(30, 10, SEC, 1, t, true).allowed {
        n += 1;
    }
    assert_eq!(n, 4);
    // Two windows later the first window no longer counts; previous (6) weighs 6 * 0.5 = 3.
    let t = w0 + 2 * SEC + 500 * MS;
    assert_eq!(l.count(30, 10, SEC, 1, t, true).remaining, 10 - 3 - 1);
    // Far later: fresh.
    assert_eq!(l.count(30, 10, SEC, 1, w0 + 10 * SEC, true).remaining, 9);
}

#[test]
fn fixed_and_sliding_and_windows_are_separate_counters() {
    let l = lim();
    assert!(l.count(40, 1, SEC, 1, T0, false).allowed);
    assert!(l.count(40, 1, SEC, 1, T0, true).allowed);
    assert!(l.count(40, 1, 2 * SEC, 1, T0, false).allowed);
    assert!(!l.count(40, 1, SEC, 1, T0, false).allowed);
    assert!(!l.count(40, 1, SEC, 1, T0, true).allowed);
}

#[test]
fn stale_reader_is_counted_in_newer_window() {
    let l = lim();
    assert!(l.count(41, 2, SEC, 1, T0 + SEC + 1, false).allowed);
    // A request whose clock reading is from the previous window arrives late.
    let d = l.count(41, 2, SEC, 1, T0 + SEC - 1, false);
    assert!(d.allowed);
    assert_eq!(d.remaining, 0);
    assert!(!l.count(41, 2, SEC, 1, T0 + SEC + 2, false).allowed);
}

// ---------------------------------------------------------------- table: probing, reclaim, overflow

#[test]
fn tiny_table_overflow_fails_open_and_counts() {
    let l = Limiter::create(1, 1).unwrap();
    assert!(l.acquire(100, 1.0, 0.0, 1.0, T0).allowed);
    assert_eq!(l.overflow(), 0);
    // Another key: the only slot holds a live bucket -> fail open.
    assert!(l.acquire(200, 1.0, 0.0, 1.0, T0).allowed);
    assert!(l.acquire(200, 1.0, 0.0, 1.0, T0).allowed);
    assert_eq!(l.overflow_buckets(), 2);
    // The live key is still limited.
    assert!(!l.acquire(100, 1.0, 0.0, 1.0, T0).allowed);
    // Refilled (TAT = T0 + 1 s) but not for the grace period yet: still not reclaimable.
    assert!(l.acquire(200, 1.0, 0.0, 1.0, T0 + SEC + RECLAIM_GRACE_NS - 1).allowed);
    assert_eq!(l.overflow_buckets(), 3);
    // Now it is: key 200 takes the slot over and is limited from then on.
    let t = T0 + SEC + RECLAIM_GRACE_NS;
    assert!(l.acquire(200, 1.0, 0.0, 1.0, t).allowed);
    assert!(!l.acquire(200, 1.0, 0.0, 1.0, t).allowed);
    assert_eq!(l.overflow_buckets(), 3);
    // ...and key 100 is the one failing open now.
    assert!(l.acquire(100, 1.0, 0.0, 1.0, t).allowed);
    assert_eq!(l.overflow_buckets(), 4);

    // Counters: same rules.
    assert!(l.count(300, 1, SEC, 1, T0, false).allowed);
    assert!(!l.count(300, 1, SEC, 1, T0, false).allowed);
    assert!(l.count(400, 1, SEC, 1, T0, false).allowed);
    assert_eq!(l.overflow_counters(), 1);
    // Window of T0 is [T0, T0+1s); the slot is useless from T0 + 2 s, reclaimable after grace.
    let t = T0 + 2 * SEC + RECLAIM_GRACE_NS + 10 * MS;
    assert!(l.count(400, 1, SEC, 1, t, false).allowed);
    assert!(!l.count(400, 1, SEC, 1, t, false).allowed);
    assert_eq!(l.overflow_counters(), 1);
    assert_eq!(l.overflow(), 5);
}

#[test]
fn probing_places_colliding_keys_in_the_window() {
    // 4 slots, window 4: every key probes every slot.
    let l = Limiter::create(4, 4).unwrap();
    for k in 1..=4u64 {
        assert!(l.acquire(k, 1.0, 0.0, 1.0, T0).allowed);
    }
    for k in 1..=4u64 {
        assert!(!l.acquire(k, 1.0, 0.0, 1.0, T0).allowed, "key {k} keeps its own bucket");
    }
    assert_eq!(l.overflow(), 0);
    assert!(l.acquire(5, 1.0, 0.0, 1.0, T0).allowed);
    assert_eq!(l.overflow(), 1);
    let keys: Vec<u64> = l.buckets.snapshot().iter().map(|&(k, _)| k).collect();
    let mut sorted = keys.clone();
    sorted.sort();
    assert_eq!(sorted, vec![1, 2, 3, 4]);
    // A full 16-slot window in a larger table: the 17th colliding key overflows. Find keys
    // with the same home slot.
    let l = Limiter::create(64, 64).unwrap();
    let home0 = table::home_for_tests(1, 63);
    let colliding: Vec<u64> =
        (1..).filter(|&k| table::home_for_tests(k, 63) == home0).take(17).collect();
    for &k in &colliding[..16] {
        assert!(l.acquire(k, 1.0, 0.0, 1.0, T0).allowed);
    }
    assert_eq!(l.overflow(), 0);
    assert!(l.acquire(colliding[16], 1.0, 0.0, 1.0, T0).allowed);
    assert_eq!(l.overflow(), 1);
    for &k in &colliding[..16] {
        assert!(!l.acquire(k, 1.0, 0.0, 1.0, T0).allowed);
    }
}

#[test]
fn reclaimed_slot_behaves_like_a_fresh_bucket() {
    let l = Limiter::create(1, 1).unwrap();
    for _ in 0..3 {
        assert!(l.acquire(1, 10.0, 2.0, 1.0, T0).allowed);
    }
    let t = T0 + 300 * MS + RECLAIM_GRACE_NS;
    // Key 2 takes over: it gets a full bucket (3 at once), not key 1's leftovers.
    for i in 0..3 {
        let d = l.acquire(2, 10.0, 2.0, 1.0, t);
        assert!(d.allowed);
        assert_eq!(d.delay_ns, i * 100 * MS);
    }
    assert!(!l.acquire(2, 10.0, 2.0, 1.0, t).allowed);
    // No slot is left tombstoned.
    assert!(l.buckets.snapshot().iter().all(|&(_, s)| s & TOMB == 0));
}

#[test]
fn takeover_races_between_threads_never_overadmit() {
    // 8 slots, 32 keys, 8 threads, simulated time advancing: lots of takeovers. Each key's
    // admitted count must stay within what one bucket allows (burst + elapsed * rate + 1),
    // plus at most one per racing thread per takeover race (see table docs), and nothing may
    // be left tombstoned.
    let l = Arc::new(Limiter::create(8, 8).unwrap());
    let clock = Arc::new(AtomicU64::new(T0));
    let admitted: Arc<Vec<AtomicU64>> = Arc::new((0..32).map(|_| AtomicU64::new(0)).collect());
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let (l, clock, admitted) = (l.clone(), clock.clone(), admitted.clone());
            std::thread::spawn(move || {
                for i in 0..20_000u64 {
                    let key = (i * 7 + t) % 32;
                    let now = clock.fetch_add(100_000, Ordering::Relaxed); // 0.1 ms per attempt
                    if l.acquire(key + 1, 10.0, 0.0, 1.0, now).allowed {
                        admitted[key as usize].fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert!(l.buckets.snapshot().iter().all(|&(_, s)| s & TOMB == 0));
    let total_ns = clock.load(Ordering::Relaxed) - T0;
    let total: u64 = admitted.iter().map(|a| a.load(Ordering::Relaxed)).sum();
    // Everything that failed open is counted in overflow; the rest obeyed a bucket.
    let limited = total - l.overflow();
    let per_key_bound = total_ns / (100 * MS) + 1;
    assert!(limited <= 32 * per_key_bound, "{limited} > {}", 32 * per_key_bound);
}

// ---------------------------------------------------------------- exactness: threads

fn hammer_threads(n: usize, per: usize, f: impl Fn() -> bool + Send + Sync + 'static) -> u64 {
    let f = Arc::new(f);
    let go = Arc::new(std::sync::Barrier::new(n));
    let handles: Vec<_> = (0..n)
        .map(|_| {
            let (f, go) = (f.clone(), go.clone());
            std::thread::spawn(move || {
                go.wait();
                (0..per).filter(|_| f()).count() as u64
            })
        })
        .collect();
    handles.into_iter().map(|h| h.join().unwrap()).sum()
}

#[test]
fn exact_across_threads() {
    let l = Arc::new(lim());
    let a = l.clone();
    assert_eq!(hammer_threads(8, 1000, move || a.acquire(77, 1000.0, 0.0, 1.0, T0).allowed), 1);
    let a = l.clone();
    assert_eq!(hammer_threads(8, 1000, move || a.acquire(78, 1000.0, 49.0, 1.0, T0).allowed), 50);
    let a = l.clone();
    assert_eq!(hammer_threads(8, 1000, move || a.count(79, 100, SEC, 1, T0, false).allowed), 100);
    let a = l.clone();
    assert_eq!(hammer_threads(8, 1000, move || a.count(80, 100, SEC, 1, T0, true).allowed), 100);
    // Sliding with a previous window: prev 100 at 25% elapsed -> 75 weighed -> 25 more.
    let a = l.clone();
    let t = T0 + SEC + 250 * MS;
    assert_eq!(hammer_threads(8, 1000, move || a.count(80, 100, SEC, 1, t, true).allowed), 25);
    assert_eq!(l.overflow(), 0);
}

// ---------------------------------------------------------------- exactness: processes

/// A small anonymous MAP_SHARED page for a start barrier and a shared simulated clock.
struct SharedPage(*mut u64);

impl SharedPage {
    fn new() -> SharedPage {
        // SAFETY: anonymous shared mapping, checked.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                4096,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        assert_ne!(p, libc::MAP_FAILED);
        SharedPage(p.cast())
    }
    fn ready(&self) -> &AtomicU32 {
        // SAFETY: page-aligned, zeroed, lives until drop.
        unsafe { &*(self.0 as *const AtomicU32) }
    }
    fn clock(&self) -> &AtomicU64 {
        // SAFETY: as above, offset 8.
        unsafe { &*(self.0.add(1) as *const AtomicU64) }
    }
}

impl Drop for SharedPage {
    fn drop(&mut self) {
        // SAFETY: mapping created in new().
        unsafe { libc::munmap(self.0.cast(), 4096) };
    }
}

/// Forks `n` children that attach to `fd`, wait for each other, run `body(limiter, page)`
/// and exit with the number of admitted requests (< 256). Returns the sum.
fn hammer_processes(
    fd: RawFd,
    n: u32,
    page: &SharedPage,
    body: fn(&Limiter, &SharedPage) -> u64,
) -> u64 {
    let mut pids = vec![];
    for _ in 0..n {
        // SAFETY: the child only does syscalls and atomics on already-mapped memory, then
        // _exit()s; it never returns into the test harness.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0, "fork failed");
        if pid == 0 {
            let code = match Limiter::attach(fd) {
                Ok(l) => {
                    page.ready().fetch_add(1, Ordering::AcqRel);
                    while page.ready().load(Ordering::Acquire) < n {
                        std::hint::spin_loop();
                    }
                    body(&l, page).min(254) as i32
                }
                Err(_) => 255,
            };
            // SAFETY: terminate the child without running destructors or atexit handlers.
            unsafe { libc::_exit(code) };
        }
        pids.push(pid);
    }
    let mut total = 0;
    for pid in pids {
        let mut status = 0;
        // SAFETY: waiting for our own child.
        let r = unsafe { libc::waitpid(pid, &mut status, 0) };
        assert_eq!(r, pid);
        assert!(libc::WIFEXITED(status), "child crashed");
        let code = libc::WEXITSTATUS(status);
        assert_ne!(code, 255, "child could not attach");
        total += code as u64;
    }
    total
}

#[test]
fn exact_across_processes() {
    let l = lim();
    let page = SharedPage::new();
    // rate 1000/s, burst 0, time frozen: exactly 1 of 4 x 1000.
    let got = hammer_processes(l.fd(), 4, &page, |l, _| {
        (0..1000).filter(|_| l.acquire(hash_key(b"k1"), 1000.0, 0.0, 1.0, T0).allowed).count()
            as u64
    });
    assert_eq!(got, 1);
    page.ready().store(0, Ordering::Release);
    // burst 49: exactly 50.
    let got = hammer_processes(l.fd(), 4, &page, |l, _| {
        (0..1000).filter(|_| l.acquire(hash_key(b"k2"), 1000.0, 49.0, 1.0, T0).allowed).count()
            as u64
    });
    assert_eq!(got, 50);
    page.ready().store(0, Ordering::Release);
    // counters, limit 100: exactly 100 of 4 x 1000 (fixed and sliding).
    let got = hammer_processes(l.fd(), 4, &page, |l, _| {
        (0..1000).filter(|_| l.count(hash_key(b"k3"), 100, SEC, 1, T0, false).allowed).count()
            as u64
    });
    assert_eq!(got, 100);
    page.ready().store(0, Ordering::Release);
    let got = hammer_processes(l.fd(), 4, &page, |l, _| {
        (0..1000).filter(|_| l.count(hash_key(b"k4"), 100, SEC, 1, T0, true).allowed).count() as u64
    });
    assert_eq!(got, 100);
    // The parent sees the children's writes.
    assert!(!l.acquire(hash_key(b"k1"), 1000.0, 0.0, 1.0, T0).allowed);
    assert_eq!(l.count(hash_key(b"k3"), 100, SEC, 0, T0, false).remaining, 0);
    assert_eq!(l.overflow(), 0);
}

#[test]
fn processes_with_a_moving_clock_never_exceed_the_rate() {
    let l = lim();
    let page = SharedPage::new();
    page.clock().store(T0, Ordering::Release);
    // A shared simulated clock advancing 1 us per attempt across 4 processes: 80 ms in total at
    // 1000 r/s, burst 0 -> at most 80 + 1 admissions however the processes interleave.
    let got = hammer_processes(l.fd(), 4, &page, |l, page| {
        let mut n = 0;
        for _ in 0..20_000 {
            let now = page.clock().fetch_add(1_000, Ordering::AcqRel);
            if l.acquire(hash_key(b"moving"), 1000.0, 0.0, 1.0, now).allowed {
                n += 1;
            }
        }
        n
    });
    let elapsed = page.clock().load(Ordering::Acquire) - T0;
    assert_eq!(elapsed, 80 * MS);
    assert!(got <= 81, "{got}");
    assert!(got >= 70, "{got}"); // only late clock readings are refused
}

// ---------------------------------------------------------------- cells: gauges

#[test]
fn region_has_a_cell_table() {
    let l = Limiter::create_with_cells(4, 4, 100).unwrap();
    assert_eq!(l.cell_slots(), 128);
    assert!(l.region().len() >= HEADER_SIZE + 16 * (4 + 4 + 128));
    let b = Limiter::attach(l.fd()).unwrap();
    assert_eq!(b.cell_slots(), 128);
    assert_eq!(lim().cell_slots(), DEFAULT_CELL_SLOTS);
    assert!(Limiter::create_with_cells(1, 1, 0).is_err());
}

#[test]
fn gauge_counts_in_flight_and_releases_by_slot() {
    let l = lim();
    let a = l.gauge_acquire(5, 2);
    let b = l.gauge_acquire(5, 2);
    assert!(a.allowed && b.allowed);
    assert_eq!((a.count, b.count), (1, 2));
    assert_eq!(a.slot, b.slot);
    let c = l.gauge_acquire(5, 2);
    assert_eq!(c, GaugeDecision { allowed: false, count: 2, slot: None });
    assert_eq!(l.gauge(5), 2);
    assert!(l.gauge_release(5, a.slot.unwrap()));
    assert_eq!(l.gauge(5), 1);
    assert!(l.gauge_acquire(5, 2).allowed);
    assert!(l.gauge_release(5, b.slot.unwrap()));
    assert!(l.gauge_release(5, b.slot.unwrap()));
    assert_eq!(l.gauge(5), 0);
    // Nothing to release: no underflow, and a wrong key or slot changes nothing.
    assert!(!l.gauge_release(5, b.slot.unwrap()));
    let d = l.gauge_acquire(6, 1);
    assert!(!l.gauge_release(7, d.slot.unwrap()));
    assert!(!l.gauge_release(6, usize::MAX));
    assert_eq!(l.gauge(6), 1);
    assert_eq!(l.gauge(404), 0);
}

#[test]
fn gauge_slots_are_reclaimed_only_at_zero() {
    let l = Limiter::create_with_cells(1, 1, 1).unwrap();
    let a = l.gauge_acquire(1, 10);
    assert!(a.slot.is_some());
    // The only slot is busy: another key fails open, uncounted.
    let b = l.gauge_acquire(2, 10);
    assert_eq!(b, GaugeDecision { allowed: true, count: 0, slot: None });
    assert_eq!(l.overflow_cells(), 1);
    assert!(l.gauge_release(1, a.slot.unwrap()));
    // Count 0: key 2 takes the slot over and starts from 0; key 1's stale slot index is no
    // longer its own.
    let c = l.gauge_acquire(2, 10);
    assert_eq!((c.allowed, c.count), (true, 1));
    assert!(!l.gauge_release(1, a.slot.unwrap()));
    assert_eq!(l.gauge(2), 1);
}

#[test]
fn gauge_is_exact_across_threads() {
    let l = Arc::new(lim());
    let peak = Arc::new(AtomicU64::new(0));
    let (a, p) = (l.clone(), peak.clone());
    let admitted = hammer_threads(8, 2000, move || {
        let d = a.gauge_acquire(77, 3);
        if let Some(slot) = d.slot {
            p.fetch_max(a.gauge(77), Ordering::Relaxed);
            assert!(a.gauge_release(77, slot));
        }
        d.allowed
    });
    assert!(admitted > 0);
    assert!(peak.load(Ordering::Relaxed) <= 3);
    assert_eq!(l.gauge(77), 0, "every acquire was released");
}

#[test]
fn gauge_is_exact_across_processes() {
    let l = lim();
    let page = SharedPage::new();
    // 4 processes take 1000 each without releasing: exactly `max` are admitted.
    let got = hammer_processes(l.fd(), 4, &page, |l, _| {
        (0..1000).filter(|_| l.gauge_acquire(hash_key(b"conn"), 37).slot.is_some()).count() as u64
    });
    assert_eq!(got, 37);
    assert_eq!(l.gauge(hash_key(b"conn")), 37);
}

// ---------------------------------------------------------------- cells: breakers

const MAX_OPEN: u64 = 300 * SEC;

fn report(l: &Limiter, outcome: BreakerOutcome, now: u64) -> BreakerState {
    l.breaker_report(9, outcome, 3, 2, MAX_OPEN, None, now)
}

#[test]
fn breaker_opens_after_failures_and_doubles() {
    let l = lim();
    assert_eq!(l.breaker_check(9, 3, MAX_OPEN, T0), BreakerState::default());
    assert!(!report(&l, BreakerOutcome::Unhealthy, T0).open);
    assert!(!report(&l, BreakerOutcome::Unhealthy, T0).open);
    let s = report(&l, BreakerOutcome::Unhealthy, T0);
    assert!(s.open);
    assert_eq!(s.retry_after_ns, 2 * SEC);
    let s = l.breaker_check(9, 3, MAX_OPEN, T0 + SEC);
    assert!(s.open);
    assert_eq!(s.retry_after_ns, SEC);
    // Half open after 2 s: closed to callers, but the count is kept.
    let s = l.breaker_check(9, 3, MAX_OPEN, T0 + 2 * SEC);
    assert!(!s.open);
    assert_eq!(s.unhealthy, 3);
    // Three more failures: open for 4 s.
    let t = T0 + 2 * SEC;
    report(&l, BreakerOutcome::Unhealthy, t);
    report(&l, BreakerOutcome::Unhealthy, t);
    let s = report(&l, BreakerOutcome::Unhealthy, t);
    assert!(s.open);
    assert_eq!(s.retry_after_ns, 4 * SEC);
    assert!(l.breaker_check(9, 3, MAX_OPEN, t + 4 * SEC - 10 * MS).open);
    assert!(!l.breaker_check(9, 3, MAX_OPEN, t + 4 * SEC).open);
    // Capped by the maximum.
    assert_eq!(l.breaker_check(9, 3, 3 * SEC, t + SEC).retry_after_ns, 2 * SEC);
}

#[test]
fn breaker_closes_after_successes() {
    let l = lim();
    for _ in 0..3 {
        report(&l, BreakerOutcome::Unhealthy, T0);
    }
    let open_gen = l.breaker_check(9, 3, MAX_OPEN, T0).generation;
    let t = T0 + 2 * SEC;
    let s = report(&l, BreakerOutcome::Healthy, t);
    assert_eq!((s.unhealthy, s.healthy), (3, 1));
    // An unhealthy response in between starts the successes over.
    let s = report(&l, BreakerOutcome::Unhealthy, t);
    assert_eq!((s.unhealthy, s.healthy, s.open), (4, 0, false));
    report(&l, BreakerOutcome::Healthy, t);
    let s = report(&l, BreakerOutcome::Healthy, t);
    assert_eq!((s.unhealthy, s.healthy, s.open), (0, 0, false));
    assert_ne!(s.generation, open_gen);
    // Closed and forgotten: it takes `failures` new failures to open again, for 2 s.
    report(&l, BreakerOutcome::Unhealthy, t);
    report(&l, BreakerOutcome::Unhealthy, t);
    assert_eq!(report(&l, BreakerOutcome::Unhealthy, t).retry_after_ns, 2 * SEC);
}

#[test]
fn healthy_reports_about_unknown_breakers_write_nothing() {
    let l = Limiter::create_with_cells(1, 1, 1).unwrap();
    assert_eq!(
        l.breaker_report(1, BreakerOutcome::Healthy, 3, 3, MAX_OPEN, None, T0),
        BreakerState::default()
    );
    assert!(l.cells.snapshot().iter().all(|&(k, _)| k == 0));
    assert_eq!(l.overflow(), 0);
}

#[test]
fn breaker_trip_opens_once_per_generation() {
    let l = lim();
    let g = l.breaker_check(9, 3, MAX_OPEN, T0).generation;
    let s = l.breaker_report(9, BreakerOutcome::Trip, 3, 2, MAX_OPEN, Some(g), T0);
    assert!(s.open);
    assert_eq!(s.retry_after_ns, 2 * SEC);
    assert_eq!(s.unhealthy, 3);
    // A second process judging the same (old) generation does not trip it again.
    let s2 = l.breaker_report(9, BreakerOutcome::Trip, 3, 2, MAX_OPEN, Some(g), T0);
    assert_eq!(s2, s);
    // A trip in the new generation doubles like a run of failures does.
    let s3 =
        l.breaker_report(9, BreakerOutcome::Trip, 3, 2, MAX_OPEN, Some(s.generation), T0 + 2 * SEC);
    assert_eq!((s3.unhealthy, s3.retry_after_ns), (6, 4 * SEC));
}

#[test]
fn breaker_state_is_shared_across_processes() {
    let l = lim();
    let page = SharedPage::new();
    // 4 processes report 2 failures each with failures = 8: the eighth opens it.
    let opened = hammer_processes(l.fd(), 4, &page, |l, _| {
        (0..2)
            .filter(|_| {
                l.breaker_report(
                    hash_key(b"brk"),
                    BreakerOutcome::Unhealthy,
                    8,
                    1,
                    MAX_OPEN,
                    None,
                    T0,
                )
                .open
            })
            .count() as u64
    });
    assert_eq!(opened, 1);
    let s = l.breaker_check(hash_key(b"brk"), 8, MAX_OPEN, T0 + SEC);
    assert!(s.open);
    assert_eq!(s.unhealthy, 8);
}

// ---------------------------------------------------------------- syncer access to counters

#[test]
fn count_used_reads_without_counting() {
    let l = lim();
    let w = 10 * SEC;
    assert_eq!(l.count_used(7, w, T0), 0);
    for _ in 0..3 {
        assert!(l.count(7, 5, w, 1, T0, false).allowed);
    }
    assert_eq!(l.count_used(7, w, T0), 3);
    assert_eq!(l.count_used(7, w, T0), 3);
    assert_eq!(l.count_used(8, w, T0), 0, "another key");
    assert_eq!(l.count_used(7, 20 * SEC, T0), 0, "another window length");
    assert_eq!(l.count_used(7, w, T0 + w), 0, "the next window starts empty");
}

#[test]
fn count_add_counts_in_later_decisions() {
    let l = lim();
    let w = 10 * SEC;
    assert!(l.count(7, 5, w, 1, T0, false).allowed);
    assert_eq!(l.count_add(7, w, 3, T0), 4);
    let d = l.count(7, 5, w, 1, T0, false);
    assert!(d.allowed && d.remaining == 0);
    assert!(!l.count(7, 5, w, 1, T0, false).allowed);
    // beyond any limit: added anyway, capped at the largest count
    assert_eq!(l.count_add(7, w, 100, T0), 105);
    assert_eq!(l.count_add(7, w, u64::MAX, T0), u64::from(u32::MAX));
    assert_eq!(l.count_used(7, w, T0 + w), 0, "the next window starts empty");
}

// ---------------------------------------------------------------- keys synced between nodes

#[test]
fn local_and_synced_keys_are_apart() {
    for i in 0..10_000u32 {
        let bytes = i.to_string();
        assert_eq!(hash_key(bytes.as_bytes()) & SYNCED, 0);
        let s = synced_key(bytes.as_bytes(), 0xabcde);
        assert_eq!(synced_tag(s), Some(0xabcde));
        assert_eq!(synced_tag(hash_key(bytes.as_bytes())), None);
    }
    assert_eq!(synced_tag(synced_key(b"k", u32::MAX)), Some((1 << SYNCED_TAG_BITS) - 1));
    assert_ne!(synced_key(b"a", 1), synced_key(b"b", 1));
    assert_ne!(synced_key(b"a", 1), synced_key(b"a", 2));
}

#[test]
fn synced_counter_keys_lists_the_live_synced_counters_only() {
    let l = lim();
    let synced: Vec<u64> = (0..50u32).map(|i| synced_key(format!("c{i}").as_bytes(), 7)).collect();
    for &k in &synced {
        assert!(l.count(k, 10, SEC, 1, T0, false).allowed);
    }
    // local counters (fixed and sliding), sliding counters of a synced key, buckets: not listed
    for i in 0..50u32 {
        l.count(hash_key(format!("c{i}").as_bytes()), 10, SEC, 1, T0, false);
        l.count(hash_key(format!("s{i}").as_bytes()), 10, SEC, 1, T0, true);
        l.acquire(synced_key(format!("b{i}").as_bytes(), 7), 10.0, 0.0, 1.0, T0);
    }
    l.count(synced_key(b"sliding", 7), 10, SEC, 1, T0, true);
    let mut listed = l.synced_counter_keys();
    listed.sort_unstable();
    let mut expected = synced.clone();
    expected.sort_unstable();
    assert_eq!(listed, expected);
    // the count of a listed key is read and added to by the same key
    assert_eq!(l.count_used(synced[0], SEC, T0), 1);
    assert_eq!(l.count_add(synced[0], SEC, 4, T0), 5);
    assert_eq!(l.count_used(synced[0], SEC, T0 + SEC), 0);
}

#[test]
fn synced_counter_keys_sees_other_processes_counts() {
    let a = lim();
    let b = Limiter::attach(a.fd()).unwrap();
    let k = synced_key(b"route\x00203.0.113.9", 3);
    b.count(k, 10, SEC, 1, T0, false);
    assert_eq!(a.synced_counter_keys(), vec![k]);
}

#[test]
fn bucket_raise_only_fills_the_bucket() {
    let l = lim();
    let k = synced_key(b"req", 9);
    // empty bucket raised by 300 ms of others' requests: at 10 r/s with burst 2, 0.3 s of backlog
    // leaves room for none
    assert_eq!(l.bucket_raise(k, 300 * MS, T0), 300 * MS);
    assert_eq!(l.bucket_backlog(k, T0), 300 * MS);
    assert!(!l.acquire(k, 10.0, 2.0, 1.0, T0).allowed);
    // a smaller backlog leaves the fuller bucket alone
    assert_eq!(l.bucket_raise(k, 100 * MS, T0), 300 * MS);
    // once it drained, requests pass again
    assert!(l.acquire(k, 10.0, 2.0, 1.0, T0 + 200 * MS).allowed);
    assert_eq!(l.bucket_backlog(k, T0 + 200 * MS), 200 * MS);
    assert_eq!(l.bucket_backlog(synced_key(b"absent", 9), T0), 0);
}
