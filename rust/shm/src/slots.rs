//! The sizing every slot table in a region shares: a requested slot count checked against its
//! owner's maximum and rounded up to a power of two (probes wrap with a mask), the same check
//! of a count read back from a header another process wrote, and the region's size in whole
//! pages.

use std::io;

/// The page size regions are rounded up to.
pub const PAGE: usize = 4096;

/// Checks a requested number of slots (1..=`max`) and rounds it up to a power of two.
pub fn slot_count(requested: usize, max: usize) -> io::Result<usize> {
    if requested == 0 || requested > max {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("slot count must be in 1..={max}"),
        ));
    }
    Ok(requested.next_power_of_two())
}

/// Whether `n`, read from a region's header, is a count [`slot_count`] can give for `max`.
pub fn valid_slot_count(n: u64, max: usize) -> bool {
    n.is_power_of_two() && n <= max as u64
}

/// `bytes` rounded up to whole pages: the size a region is created with.
pub fn whole_pages(bytes: usize) -> usize {
    bytes.div_ceil(PAGE) * PAGE
}

/// The error of a header whose fields do not describe its region.
pub fn invalid_header(msg: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.to_string())
}
