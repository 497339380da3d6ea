use std::sync::atomic::Ordering;

use super::*;

const TH: Thresholds = Thresholds { successes: 2, http_failures: 3, tcp_failures: 2, timeouts: 3 };

#[test]
fn thresholds_pack_round_trip() {
    assert_eq!(Thresholds::unpack(TH.pack()), TH);
    assert_eq!(TH.pack(), 2 | 3 << 8 | 2 << 16 | 3 << 24);
}

#[test]
fn failures_below_threshold_keep_the_node_up() {
    let (s, t) = next_state(0, Outcome::Timeout, TH);
    assert_eq!(t, None);
    let (s, t) = next_state(s, Outcome::Timeout, TH);
    assert_eq!(t, None);
    assert!(!is_down(s));
    let (s, t) = next_state(s, Outcome::Timeout, TH);
    assert_eq!((s, t), (DOWN, Some(Transition::Down)));
}

#[test]
fn a_success_clears_the_failure_counters() {
    let (s, _) = next_state(0, Outcome::TcpFailure, TH);
    let (s, _) = next_state(s, Outcome::Success, TH);
    assert_eq!(s, 0);
    let (s, t) = next_state(s, Outcome::TcpFailure, TH);
    assert_eq!(t, None, "the earlier failure was forgotten");
    assert!(!is_down(s));
}

#[test]
fn failure_kinds_count_separately() {
    let (s, _) = next_state(0, Outcome::TcpFailure, TH);
    let (s, _) = next_state(s, Outcome::Timeout, TH);
    let (s, _) = next_state(s, Outcome::HttpFailure, TH);
    assert!(!is_down(s));
    let (s, t) = next_state(s, Outcome::TcpFailure, TH);
    assert_eq!((s, t), (DOWN, Some(Transition::Down)));
}

#[test]
fn a_zero_threshold_never_triggers() {
    let th = Thresholds { timeouts: 0, ..TH };
    let mut s = 0;
    for _ in 0..300 {
        let (next, t) = next_state(s, Outcome::Timeout, th);
        assert_eq!(t, None);
        s = next;
    }
    assert!(!is_down(s));
    assert_eq!((s >> 24) & 0xff, 0xff, "the counter saturates");
}

#[test]
fn successes_bring_a_down_node_back_and_failures_restart_the_count() {
    let (s, t) = next_state(DOWN, Outcome::Success, TH);
    assert_eq!(t, None);
    assert!(is_down(s));
    let (s, _) = next_state(s, Outcome::Timeout, TH);
    assert!(is_down(s), "a failure while down keeps it down");
    let (s, t) = next_state(s, Outcome::Success, TH);
    assert_eq!(t, None, "the failure reset the success count");
    let (s, t) = next_state(s, Outcome::Success, TH);
    assert_eq!((s, t), (0, Some(Transition::Up)));
}

#[test]
fn slots_are_found_again_by_label_and_distinct_per_label() {
    let table = HealthTable::create(64).unwrap();
    let a = table.slot(b"shop\x1f127.0.0.1:80").unwrap();
    let b = table.slot(b"shop\x1f127.0.0.1:81").unwrap();
    assert_ne!(a, b);
    assert_eq!(table.slot(b"shop\x1f127.0.0.1:80"), Some(a));
    assert_eq!(table.used(), 2);
    assert_eq!(table.slot(&[b'x'; LABEL_MAX + 1]), None);
}

#[test]
fn a_full_table_says_so() {
    let table = HealthTable::create(4).unwrap();
    for i in 0..4 {
        assert!(table.slot(format!("n{i}").as_bytes()).is_some());
    }
    assert_eq!(table.slot(b"one too many"), None);
}

#[test]
fn another_process_sees_the_same_state() {
    let table = HealthTable::create(16).unwrap();
    let i = table.slot(b"up\x1fa:1").unwrap();
    let other = HealthTable::attach(table.fd()).unwrap();
    assert_eq!(other.slot(b"up\x1fa:1"), Some(i));
    for _ in 0..2 {
        other.report(i, Source::Passive, Outcome::TcpFailure, 0, TH);
    }
    assert!(table.is_down(i));
    let seen = table.read(i).unwrap();
    assert!(seen.down);
    assert_eq!(
        seen.reason,
        Some(Reason { source: Source::Passive, outcome: Outcome::TcpFailure, status: 0 })
    );
    assert_eq!(seen.passive_failed, 2);
    assert!(seen.changed_ms > 0);
    assert_eq!(seen.last_check, None, "no active check ran");
}

#[test]
fn active_reports_record_the_last_check() {
    let table = HealthTable::create(16).unwrap();
    let i = table.slot(b"up\x1fa:1").unwrap();
    let th = Thresholds { http_failures: 1, ..TH };
    assert_eq!(
        table.report(i, Source::Active, Outcome::HttpFailure, 503, th),
        Some(Transition::Down)
    );
    let seen = table.read(i).unwrap();
    assert_eq!(seen.last_check, Some((Outcome::HttpFailure, 503)));
    assert_eq!(seen.reason.unwrap().status, 503);
    assert_eq!((seen.active_ok, seen.active_failed), (0, 1));
    table.report(i, Source::Active, Outcome::Success, 200, th);
    assert_eq!(table.report(i, Source::Active, Outcome::Success, 200, th), Some(Transition::Up));
    let seen = table.read(i).unwrap();
    assert!(!seen.down);
    assert_eq!(seen.reason, None, "a healthy node shows no reason");
    table.reset(i);
    assert_eq!(table.read(i).unwrap().active_ok, 0);
}

#[test]
fn steady_successes_do_not_write_the_state_word() {
    let table = HealthTable::create(16).unwrap();
    let i = table.slot(b"up\x1fa:1").unwrap();
    let slot = table.get(i).unwrap();
    slot.state.store(0, Ordering::Relaxed);
    assert_eq!(table.report(i, Source::Passive, Outcome::Success, 200, TH), None);
    assert_eq!(slot.state.load(Ordering::Relaxed), 0);
}

#[test]
fn concurrent_reports_count_every_failure() {
    let table = std::sync::Arc::new(HealthTable::create(16).unwrap());
    let i = table.slot(b"busy").unwrap();
    let th = Thresholds { timeouts: 0, ..TH };
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let table = table.clone();
            std::thread::spawn(move || {
                for _ in 0..100 {
                    table.report(i, Source::Passive, Outcome::Timeout, 0, th);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let seen = table.read(i).unwrap();
    assert_eq!(seen.timeouts, 255, "saturated, not wrapped");
    assert_eq!(seen.passive_failed, 400, "no report lost");
}

#[test]
fn a_region_of_another_kind_is_refused() {
    let other = Layout::new(*b"GWOTHER1", 1, 64).create("other", 4096).unwrap();
    assert!(HealthTable::attach(other.fd()).is_err());
}
