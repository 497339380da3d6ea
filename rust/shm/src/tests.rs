use super::*;
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};

const LAYOUT: Layout = Layout::new(*b"GWTEST01", 3, 64).with(&[16, 4]);

fn stamp_error(e: io::Error) -> StampError {
    assert_eq!(e.kind(), io::ErrorKind::InvalidData, "{e}");
    e.into_inner().expect("inner error").downcast::<StampError>().map(|b| *b).expect("StampError")
}

/// A fresh region whose stamp is then overwritten by `edit` (as another build would have it).
fn forged(bytes: usize, edit: impl FnOnce(&mut Stamp)) -> ShmRegion {
    let region = LAYOUT.create("forged", bytes).unwrap();
    let mut stamp = Stamp::read(&region).unwrap();
    edit(&mut stamp);
    // SAFETY: the region is ours alone and at least STAMP_SIZE bytes long.
    unsafe { std::ptr::write(region.as_ptr() as *mut Stamp, stamp) };
    region
}

// ---------------------------------------------------------------- the region

#[test]
fn create_maps_zeroed_pages_and_attach_shares_them() {
    let a = ShmRegion::create("gateway-test", 8192).unwrap();
    assert_eq!(a.len(), 8192);
    assert!(!a.is_empty());
    assert_eq!(a.as_ptr() as usize % 4096, 0, "page aligned");
    // SAFETY: 8192 bytes mapped.
    let bytes = unsafe { std::slice::from_raw_parts(a.as_ptr(), a.len()) };
    assert!(bytes.iter().all(|&b| b == 0));

    let b = ShmRegion::attach(a.fd()).unwrap();
    assert_eq!((b.len(), b.fd()), (8192, a.fd()));
    assert_ne!(a.as_ptr(), b.as_ptr(), "a second mapping");
    // SAFETY: both mappings are 8192 bytes, 8-aligned at offset 4096, and only accessed
    // atomically.
    let (wa, wb) = unsafe {
        (&*(a.as_ptr().add(4096) as *const AtomicU64), &*(b.as_ptr().add(4096) as *const AtomicU64))
    };
    wa.store(0xfeed, Ordering::Relaxed);
    assert_eq!(wb.load(Ordering::Relaxed), 0xfeed, "the same pages");
    drop(b); // borrowed fd: must stay open for `a`
    assert!(ShmRegion::attach(a.fd()).is_ok());
}

#[test]
fn created_fd_is_inheritable() {
    let region = ShmRegion::create("gateway-test", 4096).unwrap();
    // SAFETY: fcntl query on our own fd.
    let flags = unsafe { libc::fcntl(region.fd(), libc::F_GETFD) };
    assert!(flags >= 0);
    assert_eq!(flags & libc::FD_CLOEXEC, 0, "workers inherit it");
}

#[test]
fn bad_sizes_and_fds_are_refused() {
    assert_eq!(ShmRegion::create("x", 0).unwrap_err().kind(), io::ErrorKind::InvalidInput);
    assert_eq!(ShmRegion::create("a\0b", 4096).unwrap_err().kind(), io::ErrorKind::InvalidInput);
    assert!(ShmRegion::attach(-1).is_err());
    // An empty file cannot be mapped.
    // SAFETY: plain memfd_create; the fd is closed below.
    let fd = unsafe { libc::memfd_create(c"empty".as_ptr(), 0) };
    assert!(fd >= 0);
    assert_eq!(ShmRegion::attach(fd).unwrap_err().kind(), io::ErrorKind::InvalidData);
    // SAFETY: our fd.
    unsafe { libc::close(fd) };
}

// ---------------------------------------------------------------- the stamp

#[test]
fn create_stamps_and_attach_checks() {
    let region = LAYOUT.create("gateway-test", 4096).unwrap();
    let stamp = Stamp::read(&region).unwrap();
    assert_eq!(stamp.magic(), *b"GWTEST01");
    assert_eq!(stamp.version(), 3);
    assert_eq!(stamp.header_size(), 64);
    assert_eq!(stamp.layout(), LAYOUT.fingerprint());
    assert_eq!(stamp.total_len(), 4096);
    // SAFETY: 4096 bytes mapped.
    let bytes = unsafe { std::slice::from_raw_parts(region.as_ptr(), region.len()) };
    assert!(bytes[STAMP_SIZE..].iter().all(|&b| b == 0), "only the stamp is written");
    assert_eq!(&bytes[..8], b"GWTEST01", "magic at offset 0");
    assert_eq!(&bytes[8..12], &3u32.to_ne_bytes(), "version at offset 8");

    let view = LAYOUT.attach(region.fd()).unwrap();
    assert_eq!(view.len(), 4096);
    assert_eq!(LAYOUT.check(&region), Ok(()));
}

#[test]
fn another_kind_of_region_is_refused() {
    let other = Layout::new(*b"GWOTHER1", 3, 64).with(&[16, 4]);
    let region = other.create("gateway-test", 4096).unwrap();
    let err = stamp_error(LAYOUT.attach(region.fd()).unwrap_err());
    assert_eq!(err, StampError::Magic { expected: *b"GWTEST01", found: *b"GWOTHER1" });
    assert_eq!(err.to_string(), "not a GWTEST01 shared memory region (its magic is \"GWOTHER1\")");
    // A region nobody stamped (all zero).
    let blank = ShmRegion::create("gateway-test", 4096).unwrap();
    let err = stamp_error(LAYOUT.attach(blank.fd()).unwrap_err());
    assert_eq!(err, StampError::Magic { expected: *b"GWTEST01", found: [0; 8] });
    assert!(err
        .to_string()
        .ends_with("(its magic is \"\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\")"));
}

#[test]
fn another_version_is_refused() {
    let region = forged(4096, |s| s.version = 4);
    let err = stamp_error(LAYOUT.attach(region.fd()).unwrap_err());
    assert_eq!(err, StampError::Version { magic: *b"GWTEST01", expected: 3, found: 4 });
    assert!(err.to_string().contains("version 4, this build reads version 3"), "{err}");
}

#[test]
fn other_layout_constants_are_refused() {
    // Same magic and version, but a build with another slot size (the version was not bumped).
    let newer = Layout::new(*b"GWTEST01", 3, 64).with(&[32, 4]);
    assert_ne!(newer.fingerprint(), LAYOUT.fingerprint());
    let region = newer.create("gateway-test", 4096).unwrap();
    assert_eq!(LAYOUT.check(&region), Err(StampError::Layout { magic: *b"GWTEST01" }));
    // Another header size.
    let region = forged(4096, |s| s.header_size = 128);
    assert_eq!(LAYOUT.check(&region), Err(StampError::Layout { magic: *b"GWTEST01" }));
}

#[test]
fn fingerprint_depends_on_every_constant_and_their_order() {
    let base = Layout::new(*b"GWTEST01", 1, 64);
    let prints = [
        base.fingerprint(),
        base.with(&[]).fingerprint(),
        base.with(&[0]).fingerprint(),
        base.with(&[0, 0]).fingerprint(),
        base.with(&[1, 2]).fingerprint(),
        base.with(&[2, 1]).fingerprint(),
        base.with(&[1]).with(&[2]).fingerprint(),
    ];
    for (i, a) in prints.iter().enumerate() {
        for b in &prints[i + 1..] {
            assert_ne!(a, b, "{prints:x?}");
        }
    }
    // Deterministic (a const, the same in every process and every build of the same source).
    assert_eq!(base.with(&[1, 2]), Layout::new(*b"GWTEST01", 1, 64).with(&[1, 2]));
}

#[test]
fn a_resized_region_is_refused() {
    let region = LAYOUT.create("gateway-test", 4096).unwrap();
    // SAFETY: grows our own memfd.
    assert_eq!(unsafe { libc::ftruncate(region.fd(), 8192) }, 0);
    let err = stamp_error(LAYOUT.attach(region.fd()).unwrap_err());
    assert_eq!(err, StampError::Size { magic: *b"GWTEST01", stamped: 4096, mapped: 8192 });
}

#[test]
fn too_small_regions_are_refused() {
    // create: the header must fit.
    let err = LAYOUT.create("gateway-test", 63).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
    assert!(LAYOUT.create("gateway-test", 64).is_ok());
    // attach: a file shorter than the stamp is not read past its end.
    let tiny = ShmRegion::create("gateway-test", 16).unwrap();
    let err = stamp_error(LAYOUT.attach(tiny.fd()).unwrap_err());
    assert_eq!(err, StampError::TooSmall { len: 16, need: STAMP_SIZE });
    assert_eq!(Stamp::read(&tiny), Err(StampError::TooSmall { len: 16, need: STAMP_SIZE }));
    // A stamp that matches but claims a size smaller than the header.
    let region = forged(4096, |s| s.total_len = 48);
    // SAFETY: shrinks our own memfd to what the forged stamp claims.
    assert_eq!(unsafe { libc::ftruncate(region.fd(), 48) }, 0);
    let err = stamp_error(LAYOUT.attach(region.fd()).unwrap_err());
    assert_eq!(err, StampError::TooSmall { len: 48, need: 64 });
}

#[test]
#[should_panic(expected = "header_size must hold the stamp")]
fn a_header_without_room_for_the_stamp_is_a_bug() {
    let _ = Layout::new(*b"GWTEST01", 1, STAMP_SIZE - 8);
}

// ---------------------------------------------------------------- the key hash

#[test]
fn hash_is_fixed_and_nonzero() {
    // Fixed seed: the same value in every process and every run.
    assert_eq!(hash_key(b"abc"), hash_key(b"abc"));
    assert_ne!(hash_key(b"abc"), hash_key(b"abd"));
    assert_ne!(hash_key(b""), 0);
    // FNV-1a of "a" is the published 0xaf63dc4c8601ec8c; we finalise it.
    assert_eq!(hash_key(b"a"), nonzero(fmix64(0xaf63_dc4c_8601_ec8c)));
    assert_eq!(nonzero(0), 1);
    assert_eq!(fmix64(0), 0);
}

// ---------------------------------------------------------------- slot table sizing

#[test]
fn slot_count_rounds_up_to_a_power_of_two_within_the_maximum() {
    assert_eq!(slot_count(1, 64).unwrap(), 1);
    assert_eq!(slot_count(5, 64).unwrap(), 8);
    assert_eq!(slot_count(64, 64).unwrap(), 64);
    for bad in [0, 65] {
        let e = slot_count(bad, 64).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
        assert_eq!(e.to_string(), "slot count must be in 1..=64");
    }
}

#[test]
fn a_slot_count_read_back_must_be_one_slot_count_gives() {
    assert!(valid_slot_count(1, 64));
    assert!(valid_slot_count(64, 64));
    for bad in [0, 3, 128, u64::MAX] {
        assert!(!valid_slot_count(bad, 64), "{bad}");
    }
}

#[test]
fn regions_are_whole_pages() {
    assert_eq!(whole_pages(1), PAGE);
    assert_eq!(whole_pages(PAGE), PAGE);
    assert_eq!(whole_pages(PAGE + 1), 2 * PAGE);
    assert_eq!(invalid_header("bad").kind(), io::ErrorKind::InvalidData);
}

// ---------------------------------------------------------------- labeled slots

#[derive(Default)]
struct TestSlot {
    key: AtomicU64,
    meta: AtomicU64,
    label: [AtomicU64; 2],
}

crate::labeled_slot!(TestSlot);

fn find(slots: &[TestSlot], hash: u64, label: &[u8]) -> Option<(usize, bool)> {
    find_or_claim(slots, hash, label, label.len() as u64, 8, 1000, |meta| {
        (meta & 0xffff) as usize == label.len()
    })
}

#[test]
fn a_label_is_claimed_once_and_found_again() {
    let slots: Vec<TestSlot> = (0..8).map(|_| TestSlot::default()).collect();
    let (i, claimed) = find(&slots, 42, b"shop:9001").unwrap();
    assert!(claimed);
    assert_eq!(slots[i].meta.load(Ordering::Relaxed), READY | 9);
    assert_eq!(find(&slots, 42, b"shop:9001"), Some((i, false)));
    // the same hash, another label: a slot of its own
    let (j, claimed) = find(&slots, 42, b"shop:9002").unwrap();
    assert!(claimed && j != i);
    assert_eq!(find(&slots, 42, b"shop:9002"), Some((j, false)));
}

#[test]
fn a_full_table_or_an_unpublished_claim_finds_nothing() {
    let slots: Vec<TestSlot> = (0..2).map(|_| TestSlot::default()).collect();
    assert!(find(&slots, 7, b"a").unwrap().1);
    assert!(find(&slots, 7, b"b").unwrap().1);
    assert_eq!(find(&slots, 7, b"c"), None, "full");
    let slots: Vec<TestSlot> = (0..2).map(|_| TestSlot::default()).collect();
    slots[0].key.store(9, Ordering::Relaxed); // claimed by a process that died before READY
    slots[1].key.store(9, Ordering::Relaxed);
    assert_eq!(find(&slots, 9, b"x"), None);
}
