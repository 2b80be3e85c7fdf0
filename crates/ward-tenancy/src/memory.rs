//! How the process's memory is backed.
//!
//! Ward allocates through mimalloc, which takes memory from the kernel in large aligned
//! regions and gives idle parts back after a moment. Where the kernel backs such regions
//! with transparent huge pages, every region touched again costs zeroing a whole 2 MiB
//! page: with thousands of clinics open (each page cache and prepared statement a
//! separate allocation) that zeroing was a sixth of the server's CPU time, and the huge
//! pages held memory no clinic used (bench-http, 2,000 clinics all open: 2,195 → 3,383
//! req/s and 1,671 → 1,364 MiB resident with them refused).

/// Asks the kernel to back this process's memory with ordinary pages only. Call it
/// first thing in `main`; it applies to the whole process (every thread) from then on.
/// Elsewhere than Linux it does nothing.
pub fn small_pages() -> std::io::Result<()> {
    #[cfg(target_os = "linux")]
    rustix::thread::disable_transparent_huge_pages(true)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    #[cfg(target_os = "linux")]
    fn the_process_refuses_huge_pages_afterwards() {
        super::small_pages().unwrap();
        assert!(rustix::thread::transparent_huge_pages_are_disabled().unwrap());
    }
}
