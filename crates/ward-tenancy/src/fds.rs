//! File descriptors as a budget.
//!
//! An open clinic holds four descriptors: its database, its WAL, its shared-memory file
//! and its pin. The pin cannot share the database's descriptor: closing any descriptor
//! of a file drops every POSIX lock the process holds on it, SQLite's own included (see
//! [`crate::Pin`]). Everything else the process opens (sockets, the control plane,
//! backups and checks on side connections, exports, mail) comes out of a fixed
//! reserve. The store never holds more clinic handles than fit beside that reserve, counting
//! handles that left the cache but are still in use, so no request meets `EMFILE`.

/// Descriptors one open clinic holds.
pub const PER_HANDLE: u64 = 4;

/// Descriptors kept for everything but clinic handles.
pub const RESERVED: u64 = 1024;

/// Raises the soft open-file limit to the hard one; the soft limit now in force.
pub fn raise_limit() -> std::io::Result<u64> {
    rlimit::increase_nofile_limit(u64::MAX)
}

/// The soft open-file limit in force.
pub fn limit() -> std::io::Result<u64> {
    rlimit::Resource::NOFILE.get().map(|(soft, _)| soft)
}

/// The most clinic handles that fit in an open-file limit of `nofile`, with `reserved`
/// descriptors kept for everything else.
pub fn budget(nofile: u64, reserved: u64) -> u64 {
    nofile.saturating_sub(reserved) / PER_HANDLE
}

/// The default cap on cached handles for a budget of `budget` handles: seven eighths of
/// it, leaving the rest for handles still in use after they left the cache (a request
/// finishing, views waiting to be written to the audit log).
pub fn default_cap(budget: u64) -> u64 {
    (budget / 8 * 7).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_budget_leaves_the_reserve_and_four_descriptors_per_handle() {
        assert_eq!(budget(20_000, RESERVED), 4_744);
        assert_eq!(budget(1_000, RESERVED), 0);
        assert_eq!(default_cap(4_744), 4_151);
        assert_eq!(default_cap(0), 1);
    }
}
