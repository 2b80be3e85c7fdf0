//! Which opened clinics the handle cache keeps.
//!
//! A page of a clinic that is not open has to open it, but keeping that handle means
//! closing another one when the cache is full. With many clinics and a few busy ones, the
//! clinic just opened is usually one of the long tail, used once and not again for a
//! long while; closing a busy clinic to keep it would cost another open soon. So the
//! store counts how often each clinic is looked up (the counts halve every
//! [`HALVING_PER_CAPACITY`] x capacity lookups, so old habits fade) and, when the cache
//! is full, keeps the newly opened clinic only if it was used more often than the least
//! used of a few cached clinics drawn at random, which it then replaces. Otherwise the
//! handle serves the pages that asked for it and closes when they finish.
//!
//! The residents listed here follow the cache's contents: clinics this module chose,
//! less the ones the store closed; what the cache removed on its own (idle clinics) is
//! caught up with at each housekeeping pass ([`Admission::resync`]). A list that is out of
//! date only makes a choice of victim worse: the cache's own size bound still holds.

use std::collections::HashMap;

use parking_lot::Mutex;
use rand::Rng as _;
use ward_core::ClinicId;

/// Lookups between two halvings of every count, per cached clinic the cache holds.
pub(super) const HALVING_PER_CAPACITY: u64 = 40;

/// Cached clinics drawn to find the least used one.
const SAMPLE: usize = 8;

/// What to do with a clinic just opened for a page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Verdict {
    /// Cache it, closing `evict` to make room when that is set.
    Keep { evict: Option<ClinicId> },
    /// Use it for the pages waiting for it, then close it.
    Pass,
}

pub(super) struct Admission {
    capacity: usize,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    uses: HashMap<ClinicId, u32>,
    lookups: u64,
    /// The cached clinics, in no order, and where each is in that list.
    residents: Vec<ClinicId>,
    at: HashMap<ClinicId, usize>,
}

impl State {
    fn count(&mut self, id: ClinicId, halve_every: u64) -> u32 {
        self.lookups += 1;
        if self.lookups >= halve_every {
            self.lookups = 0;
            self.uses.retain(|_, n| {
                *n /= 2;
                *n > 0
            });
        }
        let n = self.uses.entry(id).or_default();
        *n = n.saturating_add(1);
        *n
    }

    fn uses(&self, id: ClinicId) -> u32 {
        self.uses.get(&id).copied().unwrap_or(0)
    }

    fn add(&mut self, id: ClinicId) {
        if !self.at.contains_key(&id) {
            self.at.insert(id, self.residents.len());
            self.residents.push(id);
        }
    }

    fn remove(&mut self, id: ClinicId) {
        if let Some(i) = self.at.remove(&id) {
            self.residents.swap_remove(i);
            if let Some(moved) = self.residents.get(i) {
                self.at.insert(*moved, i);
            }
        }
    }

    /// The least used of [`SAMPLE`] residents drawn at random (of all of them, when there
    /// are no more than that).
    fn least_used(&self) -> Option<ClinicId> {
        let n = self.residents.len();
        if n <= SAMPLE {
            return self
                .residents
                .iter()
                .copied()
                .min_by_key(|id| self.uses(*id));
        }
        let mut rng = rand::thread_rng();
        (0..SAMPLE)
            .filter_map(|_| self.residents.get(rng.gen_range(0..n)).copied())
            .min_by_key(|id| self.uses(*id))
    }
}

impl Admission {
    pub(super) fn new(capacity: u64) -> Self {
        Self {
            capacity: usize::try_from(capacity).unwrap_or(usize::MAX),
            state: Mutex::new(State::default()),
        }
    }

    fn halve_every(&self) -> u64 {
        (self.capacity as u64)
            .saturating_mul(HALVING_PER_CAPACITY)
            .max(1_024)
    }

    /// A lookup that found clinic `id` cached.
    pub(super) fn used(&self, id: ClinicId) {
        self.state.lock().count(id, self.halve_every());
    }

    /// A lookup that did not find clinic `id`: whether to cache it once opened.
    pub(super) fn missed(&self, id: ClinicId) -> Verdict {
        let mut st = self.state.lock();
        let uses = st.count(id, self.halve_every());
        if st.at.contains_key(&id) || st.residents.len() < self.capacity {
            st.add(id);
            return Verdict::Keep { evict: None };
        }
        match st.least_used() {
            Some(victim) if uses > st.uses(victim) => {
                st.remove(victim);
                st.add(id);
                Verdict::Keep {
                    evict: Some(victim),
                }
            }
            _ => Verdict::Pass,
        }
    }

    /// Clinic `id` was cached without a lookup (a clinic just created, whose first pages
    /// are about to come): the least used of a few cached clinics to close for it, when
    /// the cache is full.
    pub(super) fn added(&self, id: ClinicId) -> Option<ClinicId> {
        let mut st = self.state.lock();
        st.count(id, self.halve_every());
        let victim = if st.at.contains_key(&id) || st.residents.len() < self.capacity {
            None
        } else {
            st.least_used()
        };
        if let Some(v) = victim {
            st.remove(v);
        }
        st.add(id);
        victim
    }

    /// Clinic `id` left the cache (closed by the store, or passed on after all).
    pub(super) fn left(&self, id: ClinicId) {
        self.state.lock().remove(id);
    }

    /// The cache holds exactly `cached` now.
    pub(super) fn resync(&self, cached: impl IntoIterator<Item = ClinicId>) {
        let mut st = self.state.lock();
        st.residents.clear();
        st.at.clear();
        for id in cached {
            st.add(id);
        }
    }

    /// How many clinics are listed as cached.
    #[cfg(test)]
    fn residents(&self) -> usize {
        self.state.lock().residents.len()
    }

    #[cfg(test)]
    fn is_resident(&self, id: ClinicId) -> bool {
        self.state.lock().at.contains_key(&id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u128) -> ClinicId {
        ClinicId::parse(&uuid::Uuid::from_u128(n).hyphenated().to_string()).unwrap()
    }

    #[test]
    fn a_stream_of_clinics_used_once_does_not_push_out_the_busy_ones() {
        let a = Admission::new(4);
        let busy = [id(1), id(2), id(3)];
        for b in busy {
            assert_eq!(a.missed(b), Verdict::Keep { evict: None });
        }
        let mut passed = 0;
        for n in 100..400 {
            for b in busy {
                a.used(b);
            }
            // A one-off takes the free place, or replaces another one-off (once the
            // counts have halved, that one's use is forgotten), or passes: it never
            // closes a busy clinic.
            match a.missed(id(n)) {
                Verdict::Keep { evict: None } => assert_eq!(n, 100, "only while there is room"),
                Verdict::Keep {
                    evict: Some(victim),
                } => {
                    assert!(!busy.contains(&victim), "clinic {n} pushed out a busy one")
                }
                Verdict::Pass => passed += 1,
            }
        }
        assert!(passed > 250, "{passed} of 300 passed");
        assert!(busy.iter().all(|b| a.is_resident(*b)));
        assert_eq!(a.residents(), 4);
    }

    #[test]
    fn a_clinic_that_becomes_busy_replaces_the_least_used_one() {
        let a = Admission::new(2);
        assert_eq!(a.missed(id(1)), Verdict::Keep { evict: None });
        assert_eq!(a.missed(id(2)), Verdict::Keep { evict: None });
        for _ in 0..5 {
            a.used(id(1));
        }
        // Clinic 3 is used once (not kept), then again: now more than clinic 2.
        assert_eq!(a.missed(id(3)), Verdict::Pass);
        assert_eq!(a.missed(id(3)), Verdict::Keep { evict: Some(id(2)) });
        a.used(id(3));
        // Clinic 2, just closed, comes back used less than either: passed.
        assert_eq!(a.missed(id(2)), Verdict::Pass);
    }

    #[test]
    fn counts_fade_so_a_clinic_busy_long_ago_can_be_replaced() {
        let a = Admission::new(1);
        let every = a.halve_every();
        assert_eq!(a.missed(id(1)), Verdict::Keep { evict: None });
        for _ in 0..100 {
            a.used(id(1));
        }
        // A long quiet spell for clinic 1 while others are looked up: its count halves
        // at every period until a clinic used once since beats it (without the fading
        // it would take 102 uses).
        for round in 0..10u128 {
            for _ in 0..every {
                a.used(id(1_000 + round));
            }
        }
        assert_eq!(a.missed(id(7)), Verdict::Keep { evict: Some(id(1)) });
    }

    #[test]
    fn the_list_follows_the_cache_after_a_resync() {
        let a = Admission::new(2);
        assert_eq!(a.missed(id(1)), Verdict::Keep { evict: None });
        assert_eq!(a.missed(id(2)), Verdict::Keep { evict: None });
        // The cache closed clinic 1 on its own (idle): once told, there is room again.
        a.resync([id(2)]);
        assert_eq!(a.missed(id(3)), Verdict::Keep { evict: None });
        a.left(id(3));
        a.left(id(3));
        assert_eq!(a.residents(), 1);
    }
}
