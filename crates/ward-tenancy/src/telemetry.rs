//! The handle cache's counters for the operator's `/metrics` (names and labels are listed
//! in docs/operations.md). They go to the process's `metrics` recorder if one is
//! installed, and nowhere otherwise; the gauges (open handles, cap, budget) are read from
//! [`crate::TenantStore::stats`] when scraped.

use moka::notification::RemovalCause;

/// A lookup served from the cache.
pub(crate) fn hit() {
    metrics::counter!("ward_tenant_cache_hits_total").increment(1);
}

/// A lookup that had to open the clinic (or wait for another request's open).
pub(crate) fn miss() {
    metrics::counter!("ward_tenant_cache_misses_total").increment(1);
}

/// A clinic file actually opened.
pub(crate) fn opened() {
    metrics::counter!("ward_tenant_opens_total").increment(1);
}

/// What became of a clinic opened for a lookup: `room` (kept, the cache had room),
/// `replaced` (kept, a less used clinic closed for it) or `passed` (used for its pages,
/// then closed).
pub(crate) fn admitted(verdict: &'static str) {
    metrics::counter!("ward_tenant_cache_admissions_total", "verdict" => verdict).increment(1);
}

/// A handle left the cache; a replacement (the same clinic cached again) is not counted.
pub(crate) fn evicted(cause: RemovalCause) {
    let cause = match cause {
        RemovalCause::Expired => "idle",
        RemovalCause::Size => "capacity",
        RemovalCause::Explicit => "explicit",
        RemovalCause::Replaced => return,
    };
    metrics::counter!("ward_tenant_cache_evictions_total", "cause" => cause).increment(1);
}
