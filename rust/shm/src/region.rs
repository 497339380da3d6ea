//! A fixed-size shared memory region backed by a `memfd`.
//!
//! The master calls [`ShmRegion::create`] before it starts any worker. The memfd is created
//! *without* `MFD_CLOEXEC`, so a worker started with `fork()` (or `fork()+exec()` with the fd
//! kept open, e.g. Python's `subprocess.Popen(pass_fds=...)`) inherits it; the worker then calls
//! [`ShmRegion::attach`] with the fd number and gets a `MAP_SHARED` mapping of the same pages.
//!
//! Ownership of the fd:
//! * a region from [`ShmRegion::create`] owns its fd and closes it on drop;
//! * a region from [`ShmRegion::attach`] borrows the fd: it neither dups nor closes it (the
//!   caller keeps owning the number it passed in). Once mapped, the fd is not needed any more
//!   for the mapping to stay valid, so the caller may close it whenever it likes.
//!
//! Both kinds unmap on drop. The region's size is fixed at creation (`ftruncate`) and read back
//! with `fstat` on attach.
//!
//! A region knows nothing of its contents; [`crate::Layout`] stamps a header at its start and
//! checks it on attach.

use std::ffi::CString;
use std::io;
use std::os::fd::RawFd;
use std::ptr::NonNull;

/// A `MAP_SHARED` mapping of a memfd.
#[derive(Debug)]
pub struct ShmRegion {
    ptr: NonNull<u8>,
    len: usize,
    fd: RawFd,
    owns_fd: bool,
}

// SAFETY: the mapping is plain shared memory; the region itself holds no thread-affine state.
// Its owners (the limiter, the metrics store) access the shared contents through atomics only,
// and the region's own fields are immutable after construction.
unsafe impl Send for ShmRegion {}
// SAFETY: as above; `&ShmRegion` only hands out the base pointer and length.
unsafe impl Sync for ShmRegion {}

fn map_shared(fd: RawFd, len: usize) -> io::Result<NonNull<u8>> {
    // SAFETY: plain mmap call; the result is checked against MAP_FAILED.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED,
            fd,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        return Err(io::Error::last_os_error());
    }
    NonNull::new(p.cast::<u8>()).ok_or_else(|| io::Error::other("mmap returned NULL"))
}

impl ShmRegion {
    /// Creates an anonymous memfd named `name` (for `/proc/<pid>/fd` listings only) of exactly
    /// `bytes` bytes, zero-filled, and maps it shared. The fd is inheritable (no close-on-exec).
    pub fn create(name: &str, bytes: usize) -> io::Result<ShmRegion> {
        if bytes == 0 {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "region size must be > 0"));
        }
        let cname = CString::new(name)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "name contains NUL"))?;
        // SAFETY: valid NUL-terminated string; flags 0 = no MFD_CLOEXEC, so the fd survives exec.
        let fd = unsafe { libc::memfd_create(cname.as_ptr(), 0) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        let fail = |e: io::Error| {
            // SAFETY: we own fd and it is not used after this.
            unsafe { libc::close(fd) };
            e
        };
        let off = libc::off_t::try_from(bytes)
            .map_err(|_| fail(io::Error::new(io::ErrorKind::InvalidInput, "size too large")))?;
        // SAFETY: fd is a valid memfd we own.
        if unsafe { libc::ftruncate(fd, off) } != 0 {
            return Err(fail(io::Error::last_os_error()));
        }
        let ptr = map_shared(fd, bytes).map_err(fail)?;
        Ok(ShmRegion { ptr, len: bytes, fd, owns_fd: true })
    }

    /// Maps the whole file behind `fd` (size from `fstat`). The fd is borrowed: it is not
    /// duplicated and not closed by this region.
    pub fn attach(fd: RawFd) -> io::Result<ShmRegion> {
        // SAFETY: zeroed stat is a valid out-parameter for fstat.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        // SAFETY: fstat on a caller-provided fd; errors (EBADF) are reported.
        if unsafe { libc::fstat(fd, &mut st) } != 0 {
            return Err(io::Error::last_os_error());
        }
        let len = usize::try_from(st.st_size)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "negative file size"))?;
        if len == 0 {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "region is empty"));
        }
        let ptr = map_shared(fd, len)?;
        Ok(ShmRegion { ptr, len, fd, owns_fd: false })
    }

    /// The fd number (owned by this region if it was created here, borrowed if attached).
    pub fn fd(&self) -> RawFd {
        self.fd
    }

    /// Size of the mapping in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Always false (a region is never empty); present for API symmetry with `len`.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Base address of the mapping (page aligned).
    pub fn as_ptr(&self) -> *mut u8 {
        self.ptr.as_ptr()
    }
}

impl Drop for ShmRegion {
    fn drop(&mut self) {
        // SAFETY: ptr/len describe a mapping created by map_shared and not unmapped before.
        unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.len) };
        if self.owns_fd {
            // SAFETY: the fd was created by `create` and is owned by this value.
            unsafe { libc::close(self.fd) };
        }
    }
}
