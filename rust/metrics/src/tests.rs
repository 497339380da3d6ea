use super::*;
use std::sync::Arc;

fn store(slots: usize) -> MetricsStore {
    MetricsStore::create(slots).expect("create")
}

#[test]
fn layout_and_sizes() {
    let m = store(1000);
    assert_eq!(m.capacity(), 1024);
    assert_eq!(m.region().len() % 4096, 0);
    assert!(m.region().len() >= HEADER_SIZE + 4 * 1024 + SLOT_SIZE * 1024);
    assert_eq!(m.used(), 0);
    assert_eq!(m.dropped(), 0);
    assert!(MetricsStore::create(0).is_err());
    assert!(MetricsStore::create(MAX_SLOTS + 1).is_err());
}

#[test]
fn buckets_are_inclusive_upper_bounds() {
    assert_eq!(bucket_index(0), 0);
    assert_eq!(bucket_index(1000), 0); // exactly 1 ms is <= 1
    assert_eq!(bucket_index(1001), 1);
    assert_eq!(bucket_index(2000), 1);
    assert_eq!(bucket_index(2001), 2);
    assert_eq!(bucket_index(60_000_000), 14);
    assert_eq!(bucket_index(60_000_001), 15);
    assert_eq!(bucket_index(u64::MAX), 15);
    assert_eq!(seconds_to_us(-1.0), 0);
    assert_eq!(seconds_to_us(f64::NAN), 0);
    assert_eq!(seconds_to_us(0.0015), 1500);
}

#[test]
fn slots_are_stable_and_distinct_per_kind_and_label() {
    let m = store(64);
    let a = m.slot(Kind::Series, b"r1\x1f\x1fn").unwrap();
    let b = m.slot(Kind::Counter, b"r1\x1f\x1fn").unwrap();
    let c = m.slot(Kind::Counter, b"200\x1fr1").unwrap();
    assert_ne!(a, b);
    assert_ne!(b, c);
    assert_eq!(m.slot(Kind::Series, b"r1\x1f\x1fn"), Some(a));
    assert_eq!(m.slot(Kind::Counter, b"200\x1fr1"), Some(c));
    assert_eq!(m.used(), 3);
    assert!(m.slot(Kind::Counter, &[b'x'; LABEL_MAX]).is_some());
    assert_eq!(m.slot(Kind::Counter, &[b'x'; LABEL_MAX + 1]), None);
    assert_eq!(m.slot(Kind::Counter, b""), m.slot(Kind::Counter, b""));
}

#[test]
fn record_fills_histograms_and_bandwidth() {
    let m = store(64);
    let s = m.slot(Kind::Series, b"route").unwrap();
    let ok = m.slot(Kind::Counter, b"200").unwrap();
    let err = m.slot(Kind::Counter, b"502").unwrap();
    m.record(Some(s), Some(ok), 1_500, Some(700), 100, 1000);
    m.record(Some(s), Some(ok), 3_000_000, Some(2_900_000), 50, 10);
    m.record(Some(s), Some(err), 70_000_000, None, 1, 2);
    let snap = m.snapshot();
    assert_eq!(snap.requests, 3);
    assert_eq!(snap.dropped, 0);
    assert_eq!(snap.counters, vec![(b"200".to_vec(), 2), (b"502".to_vec(), 1)]);
    assert_eq!(snap.series.len(), 1);
    let series = &snap.series[0];
    assert_eq!(series.label, b"route");
    // 1.5 ms -> le=2; 3 s -> le=5000; 70 s -> +Inf
    let mut want = [0u64; BUCKETS];
    for (i, w) in want.iter_mut().enumerate() {
        *w = u64::from(i >= 1) + u64::from(i >= 11) + u64::from(i >= 15);
    }
    assert_eq!(series.request.buckets, want);
    assert_eq!(series.request.count(), 3);
    assert_eq!(series.request.sum_us, 1_500 + 3_000_000 + 70_000_000);
    // The upstream histogram only saw the two proxied requests: 0.7 ms -> le=1, 2.9 s -> le=5000.
    assert_eq!(series.upstream.count(), 2);
    assert_eq!(series.upstream.buckets[0], 1);
    assert_eq!(series.upstream.buckets[10], 1);
    assert_eq!(series.upstream.buckets[11], 2);
    assert_eq!(series.upstream.sum_us, 2_900_700);
    assert_eq!((series.bytes_in, series.bytes_out), (151, 1012));
}

#[test]
fn full_table_drops_and_counts() {
    let m = store(4);
    let claimed: Vec<_> =
        (0..4).map(|i| m.slot(Kind::Counter, format!("k{i}").as_bytes())).collect();
    assert!(claimed.iter().all(Option::is_some));
    assert_eq!(m.slot(Kind::Counter, b"one too many"), None);
    // Existing labels are still found when the table is full.
    assert_eq!(m.slot(Kind::Counter, b"k2"), claimed[2]);
    m.record(None, claimed[0], 10, None, 0, 0);
    m.record(None, None, 10, None, 0, 0);
    m.add(None, 5);
    m.add(claimed[1], 5);
    assert_eq!(m.dropped(), 3);
    assert_eq!(m.requests(), 2);
    let snap = m.snapshot();
    assert_eq!(snap.counters.iter().map(|c| c.1).sum::<u64>(), 6);
    // Out-of-range indexes are drops, never writes past the table.
    m.record(Some(1 << 40), Some(4), 1, None, 0, 0);
    assert_eq!(m.dropped(), 4);
}

#[test]
fn colliding_hashes_keep_separate_slots() {
    // Every label gets the same 64-bit hash: lookups must compare labels, not just hashes.
    let m = store(8);
    let series = m.slot_hashed(Kind::Series, b"same", 7).unwrap();
    assert_ne!(m.slot_hashed(Kind::Counter, b"same", 7), Some(series), "the kind is compared too");
    let m = store(8);
    let labels: Vec<Vec<u8>> = (0..8).map(|i| format!("label-{i}").into_bytes()).collect();
    let slots: Vec<usize> =
        labels.iter().map(|l| m.slot_hashed(Kind::Series, l, 42).unwrap()).collect();
    let mut unique = slots.clone();
    unique.sort_unstable();
    unique.dedup();
    assert_eq!(unique.len(), 8);
    for (label, slot) in labels.iter().zip(&slots) {
        assert_eq!(m.slot_hashed(Kind::Series, label, 42), Some(*slot));
    }
    assert_eq!(m.slot_hashed(Kind::Series, b"ninth", 42), None);
}

#[test]
fn attach_shares_the_pages() {
    let m = store(128);
    let other = MetricsStore::attach(m.fd()).expect("attach");
    assert_eq!(other.capacity(), 128);
    let s = other.slot(Kind::Series, b"shared").unwrap();
    assert_eq!(m.slot(Kind::Series, b"shared"), Some(s));
    other.record(Some(s), None, 5_000, None, 1, 1);
    let snap = m.snapshot();
    assert_eq!(snap.series[0].request.count(), 1);
    assert_eq!(snap.dropped, 1);
}

#[test]
fn attach_rejects_foreign_regions() {
    let region = ShmRegion::create("not-metrics", 8192).unwrap();
    assert!(MetricsStore::attach(region.fd()).is_err());
    assert!(MetricsStore::attach(-1).is_err());
    // Another kind of stamped region, and a metrics region of an older layout version.
    let limiter =
        Layout::new(*b"GWLIMIT1", 3, HEADER_SIZE).create("gateway-limiter", 8192).unwrap();
    let err = MetricsStore::attach(limiter.fd()).err().expect("another magic must fail");
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidData);
    assert!(err.to_string().contains("not a GWMETRC1"), "{err}");
    let older = Layout::new(*b"GWMETRC1", VERSION - 1, HEADER_SIZE);
    let region = older.create("gateway-metrics", 8192).unwrap();
    assert!(MetricsStore::attach(region.fd()).is_err());
    // Other histogram bounds, the version not bumped: refused too.
    let bounds = Layout::new(*b"GWMETRC1", VERSION, HEADER_SIZE)
        .with(&[std::mem::size_of::<Header>() as u64, SLOT_SIZE as u64, LABEL_MAX as u64])
        .with(&[1, 2, 3]);
    assert_ne!(bounds, LAYOUT);
    let region = bounds.create("gateway-metrics", 8192).unwrap();
    assert!(MetricsStore::attach(region.fd()).is_err());
}

#[test]
fn concurrent_writers_lose_nothing() {
    let m = Arc::new(store(4096));
    let threads = 8;
    let per_thread = 20_000u64;
    let routes = 50;
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let m = Arc::clone(&m);
            std::thread::spawn(move || {
                for n in 0..per_thread {
                    let route = (n + t) % routes;
                    // Every thread claims the same labels concurrently: they must converge.
                    let series = m.slot(Kind::Series, format!("r{route}").as_bytes());
                    let status = m.slot(Kind::Counter, format!("200\x1fr{route}").as_bytes());
                    m.record(series, status, n % 100_000, Some(n % 1000 + 1), 3, 7);
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    let snap = m.snapshot();
    let total = threads * per_thread;
    assert_eq!(snap.requests, total);
    assert_eq!(snap.dropped, 0);
    assert_eq!(snap.used, 2 * routes);
    assert_eq!(snap.counters.len() as u64, routes);
    assert_eq!(snap.counters.iter().map(|c| c.1).sum::<u64>(), total);
    assert_eq!(snap.series.iter().map(|s| s.request.count()).sum::<u64>(), total);
    assert_eq!(snap.series.iter().map(|s| s.upstream.count()).sum::<u64>(), total);
    assert_eq!(snap.series.iter().map(|s| s.bytes_in).sum::<u64>(), 3 * total);
    assert_eq!(snap.series.iter().map(|s| s.bytes_out).sum::<u64>(), 7 * total);
}

#[test]
fn snapshot_of_many_slots_reads_only_claimed_ones() {
    let m = store(1 << 16);
    for r in 0..10_000 {
        let s = m.slot(Kind::Series, format!("route-{r}").as_bytes());
        let c = m.slot(Kind::Counter, format!("200\x1froute-{r}").as_bytes());
        m.record(s, c, 1000, Some(500), 10, 20);
    }
    let snap = m.snapshot();
    assert_eq!(snap.series.len(), 10_000);
    assert_eq!(snap.counters.len(), 10_000);
    assert_eq!(snap.dropped, 0);
}

mod exposition {
    use crate::exposition::{go_float, render, ExpositionOptions};
    use crate::{Kind, MetricsStore};

    fn text(m: &MetricsStore) -> String {
        let opts = ExpositionOptions { prefix: "gw_", hostname: "h\"1", capacity: 64 };
        String::from_utf8(render(&m.snapshot(), &opts)).unwrap()
    }

    #[test]
    fn bucket_bounds_are_spelled_as_go_does() {
        assert_eq!(go_float(1), "1.0");
        assert_eq!(go_float(60000), "60000.0");
        assert_eq!(go_float(999_999), "999999.0");
        assert_eq!(go_float(1_000_000), "1e+06");
        assert_eq!(go_float(2_500_000), "2.5e+06");
    }

    #[test]
    fn counters_series_and_totals() {
        let m = MetricsStore::create(64).unwrap();
        let c = m.slot(Kind::Counter, b"200\x1fr\"1\x1f\x1fn:80").unwrap();
        m.add(Some(c), 3);
        let text = text(&m);
        assert!(text.contains("# TYPE gw_http_status_total counter\n"), "{text}");
        // the empty consumer is left out; quotes are escaped
        assert!(
            text.contains("gw_http_status_total{code=\"200\",route=\"r\\\"1\",node=\"n:80\"} 3\n")
        );
        assert!(text.contains("gw_metrics_slots{state=\"capacity\"} 64\n"));
        assert!(text.contains("gw_node_info{hostname=\"h\\\"1\"} 1\n"));
        assert!(text.contains("# TYPE gw_http_latency histogram\n"));
        assert!(!text.contains("gw_http_latency_bucket"), "no traffic, no histogram");
    }
}
