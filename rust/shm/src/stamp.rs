//! The stamp at the start of every region, and the [`Layout`] that writes and checks it.
//!
//! An owner of a region (the limiter, the metrics store) declares one `const` [`Layout`] and
//! puts a [`Stamp`] first in its `#[repr(C)]` header struct:
//!
//! ```
//! use gateway_shm::{Layout, Stamp};
//! use std::sync::atomic::AtomicU64;
//!
//! #[repr(C)]
//! struct Header {
//!     stamp: Stamp,         // written by LAYOUT.create, checked by LAYOUT.attach
//!     slots: u64,           // the owner's own fields follow
//!     hits: AtomicU64,
//! }
//! const SLOT_SIZE: u64 = 16;
//! const LAYOUT: Layout = Layout::new(*b"EXAMPLE1", 1, 64)
//!     .with(&[std::mem::size_of::<Header>() as u64, SLOT_SIZE]);
//!
//! let region = LAYOUT.create("example", 4096).unwrap(); // stamped, zero-filled after the stamp
//! let view = LAYOUT.attach(region.fd()).unwrap();        // what another process does
//! assert_eq!(view.len(), 4096);
//! ```
//!
//! The owner then validates only its own fields (slot counts, offsets against the size).

use std::fmt;
use std::io;
use std::os::fd::RawFd;

use crate::hash::fmix64;
use crate::ShmRegion;

/// Bytes the stamp takes at the start of a region; the owner's header fields follow it.
pub const STAMP_SIZE: usize = 32;

/// The first [`STAMP_SIZE`] bytes of a region, written by [`Layout::create`] before the region is
/// shared and never changed afterwards.
///
/// ```text
/// 0   magic        [u8; 8]  the kind of region ("GWLIMIT1", "GWMETRC1")
/// 8   version      u32      the owner's layout version
/// 12  header_size  u32      bytes reserved for the header, stamp included
/// 16  layout       u64      fingerprint of the owner's layout constants (Layout::with)
/// 24  total_len    u64      size of the region when it was created
/// ```
///
/// `magic` and `version` never move: any build, older or newer, can read them and refuse a
/// region it does not understand instead of misreading it.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    pub(crate) magic: [u8; 8],
    pub(crate) version: u32,
    pub(crate) header_size: u32,
    pub(crate) layout: u64,
    pub(crate) total_len: u64,
}

const _: () = assert!(std::mem::size_of::<Stamp>() == STAMP_SIZE);
const _: () = assert!(std::mem::align_of::<Stamp>() == 8);

impl Stamp {
    /// Reads the stamp at the start of `region` (whatever it says; see [`Layout::check`]).
    pub fn read(region: &ShmRegion) -> Result<Stamp, StampError> {
        if region.len() < STAMP_SIZE {
            return Err(StampError::TooSmall { len: region.len(), need: STAMP_SIZE });
        }
        // SAFETY: at least STAMP_SIZE bytes are mapped at a page-aligned address, and every bit
        // pattern is a valid `Stamp`. The stamp is written once before the region is handed to
        // anyone (the fd travels by fork/exec or a socket, which orders the write before this).
        Ok(unsafe { std::ptr::read(region.as_ptr() as *const Stamp) })
    }

    /// The kind of region.
    pub fn magic(&self) -> [u8; 8] {
        self.magic
    }

    /// The owner's layout version.
    pub fn version(&self) -> u32 {
        self.version
    }

    /// Bytes reserved for the header, stamp included.
    pub fn header_size(&self) -> usize {
        self.header_size as usize
    }

    /// Fingerprint of the owner's layout constants.
    pub fn layout(&self) -> u64 {
        self.layout
    }

    /// Size of the region when it was created.
    pub fn total_len(&self) -> u64 {
        self.total_len
    }
}

/// What an owner expects at the start of its regions: declare one `const` per kind of region.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    magic: [u8; 8],
    version: u32,
    header_size: u32,
    fingerprint: u64,
}

impl Layout {
    /// A layout named by `magic` (8 bytes, e.g. `*b"GWLIMIT1"`), at `version` (bump it on any
    /// incompatible change of the owner's header or slots), whose header takes `header_size`
    /// bytes from offset 0 (the stamp included, so at least [`STAMP_SIZE`]; a multiple of 8).
    ///
    /// Panics (at compile time in a `const`) if `header_size` is out of range.
    pub const fn new(magic: [u8; 8], version: u32, header_size: usize) -> Layout {
        assert!(header_size >= STAMP_SIZE, "header_size must hold the stamp");
        assert!(header_size <= u32::MAX as usize, "header_size must fit in a u32");
        assert!(header_size.is_multiple_of(8), "header_size must be a multiple of 8");
        Layout {
            magic,
            version,
            header_size: header_size as u32,
            fingerprint: 0x243f_6a88_85a3_08d3,
        }
    }

    /// Adds compile-time constants the layout depends on (slot size, probe window, bucket
    /// bounds, `size_of` of the header struct, ...) to the fingerprint, in order. Two builds
    /// whose constants differ refuse each other's regions even if somebody forgot to bump the
    /// version.
    pub const fn with(self, params: &[u64]) -> Layout {
        let mut h = self.fingerprint;
        let mut i = 0;
        while i < params.len() {
            h = fmix64(h ^ params[i]).wrapping_add(0x9e37_79b9_7f4a_7c15);
            i += 1;
        }
        Layout { fingerprint: fmix64(h ^ params.len() as u64), ..self }
    }

    /// The kind of region.
    pub const fn magic(&self) -> [u8; 8] {
        self.magic
    }

    /// The layout version.
    pub const fn version(&self) -> u32 {
        self.version
    }

    /// Bytes reserved for the header, stamp included.
    pub const fn header_size(&self) -> usize {
        self.header_size as usize
    }

    /// The fingerprint of the constants given to [`Layout::with`].
    pub const fn fingerprint(&self) -> u64 {
        self.fingerprint
    }

    /// Creates a region of `bytes` bytes (see [`ShmRegion::create`]) and writes the stamp. The
    /// rest of the region is zero; the owner writes its header fields next, before it hands the
    /// fd to anyone.
    pub fn create(&self, name: &str, bytes: usize) -> io::Result<ShmRegion> {
        if bytes < self.header_size() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("a region of {bytes} bytes cannot hold a {}-byte header", self.header_size),
            ));
        }
        let region = ShmRegion::create(name, bytes)?;
        self.write(&region);
        Ok(region)
    }

    /// Maps the region behind `fd` (see [`ShmRegion::attach`]; the fd is borrowed) and checks
    /// its stamp. A mismatch is an [`io::ErrorKind::InvalidData`] error whose inner error is the
    /// [`StampError`].
    pub fn attach(&self, fd: RawFd) -> io::Result<ShmRegion> {
        let region = ShmRegion::attach(fd)?;
        self.check(&region)?;
        Ok(region)
    }

    /// Whether `region` was stamped with this layout and has the size it was created with (so
    /// at least `header_size` bytes can be read).
    pub fn check(&self, region: &ShmRegion) -> Result<(), StampError> {
        let stamp = Stamp::read(region)?;
        if stamp.magic != self.magic {
            return Err(StampError::Magic { expected: self.magic, found: stamp.magic });
        }
        if stamp.version != self.version {
            return Err(StampError::Version {
                magic: self.magic,
                expected: self.version,
                found: stamp.version,
            });
        }
        if stamp.header_size != self.header_size || stamp.layout != self.fingerprint {
            return Err(StampError::Layout { magic: self.magic });
        }
        if stamp.total_len != region.len() as u64 {
            return Err(StampError::Size {
                magic: self.magic,
                stamped: stamp.total_len,
                mapped: region.len(),
            });
        }
        if region.len() < self.header_size() {
            return Err(StampError::TooSmall { len: region.len(), need: self.header_size() });
        }
        Ok(())
    }

    /// Writes the stamp at the start of a region nobody else has yet.
    pub(crate) fn write(&self, region: &ShmRegion) {
        assert!(region.len() >= STAMP_SIZE);
        let stamp = Stamp {
            magic: self.magic,
            version: self.version,
            header_size: self.header_size,
            layout: self.fingerprint,
            total_len: region.len() as u64,
        };
        // SAFETY: at least STAMP_SIZE bytes are mapped at a page-aligned address; the region was
        // just created, so no other process or thread reads it yet.
        unsafe { std::ptr::write(region.as_ptr() as *mut Stamp, stamp) };
    }
}

/// Why a region was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StampError {
    /// The region is smaller than the header it must hold.
    TooSmall { len: usize, need: usize },
    /// Another kind of region (or not a stamped region at all).
    Magic { expected: [u8; 8], found: [u8; 8] },
    /// The same kind of region, laid out by a build with another layout version.
    Version { magic: [u8; 8], expected: u32, found: u32 },
    /// The same kind and version, but other layout constants (header size, slot size, ...).
    Layout { magic: [u8; 8] },
    /// The file was resized after the region was created.
    Size { magic: [u8; 8], stamped: u64, mapped: usize },
}

impl fmt::Display for StampError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = |magic: &[u8; 8]| magic.escape_ascii().to_string();
        match self {
            StampError::TooSmall { len, need } => {
                write!(
                    f,
                    "shared memory region of {len} bytes is smaller than its {need}-byte header"
                )
            }
            StampError::Magic { expected, found } => write!(
                f,
                "not a {} shared memory region (its magic is \"{}\")",
                name(expected),
                name(found)
            ),
            StampError::Version { magic, expected, found } => write!(
                f,
                "{} shared memory region has layout version {found}, this build reads version \
                 {expected}",
                name(magic)
            ),
            StampError::Layout { magic } => write!(
                f,
                "{} shared memory region was laid out by a build with other layout constants",
                name(magic)
            ),
            StampError::Size { magic, stamped, mapped } => write!(
                f,
                "{} shared memory region was created with {stamped} bytes but {mapped} are mapped",
                name(magic)
            ),
        }
    }
}

impl std::error::Error for StampError {}

impl From<StampError> for io::Error {
    fn from(e: StampError) -> io::Error {
        io::Error::new(io::ErrorKind::InvalidData, e)
    }
}
