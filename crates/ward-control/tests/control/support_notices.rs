//! What an owner's pages say about support: cached for every page, yet a request, an
//! answer or an end made in this process shows on the next page, and time passing
//! (a request going stale, a window closing) shows at once.

use std::sync::Arc;

use chrono::{TimeDelta, TimeZone as _, Utc};
use ward_control::support::{GrantState, NewGrant, REQUEST_TTL};
use ward_core::ManualClock;
use ward_tenancy::StoreConfig;

use crate::support::MASTER_HEX;

#[tokio::test(flavor = "multi_thread")]
async fn the_owner_notice_follows_every_change_and_the_clock_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(Utc.with_ymd_and_hms(2026, 3, 2, 9, 0, 0).unwrap());
    let platform = ward_testkit::open_platform(
        StoreConfig::new(dir.path().join("data")),
        MASTER_HEX,
        Arc::new(clock.clone()),
    )
    .await;
    let control = &platform.control;
    let clinic = crate::support::create_clinic(&platform, "Lakeside").await;
    let notice = || control.support_notice(clinic.id);
    let ask = |minutes| {
        control.request_support(NewGrant {
            clinic_id: clinic.id,
            operator: "Priya (support)",
            reason: "the printer settings",
            minutes,
            write: false,
            emergency: false,
        })
    };

    // Nothing yet, and that answer is now cached.
    let (pending, open) = notice().await.unwrap();
    assert!(pending.is_empty() && open.is_none());

    let asked = ask(20).await.unwrap();
    let (pending, open) = notice().await.unwrap();
    assert_eq!(
        pending.iter().map(|g| g.id).collect::<Vec<_>>(),
        vec![asked.id],
        "a new request shows on the next page"
    );
    assert!(open.is_none());

    control
        .decide_support(clinic.id, asked.id, "owner@lakeside.example", true, false)
        .await
        .unwrap()
        .unwrap();
    let (pending, open) = notice().await.unwrap();
    assert!(pending.is_empty(), "the answered request left the notice");
    let open = open.expect("the approved window shows");
    assert_eq!((open.id, open.state), (asked.id, GrantState::Approved));

    // The window's 20 minutes pass: the cached list is filtered by the clock again.
    clock.advance(TimeDelta::minutes(21));
    let (pending, open) = notice().await.unwrap();
    assert!(pending.is_empty() && open.is_none(), "{open:?}");

    // A request nobody answers goes stale.
    let stale = ask(10).await.unwrap();
    assert_eq!(notice().await.unwrap().0.len(), 1);
    clock.advance(REQUEST_TTL + TimeDelta::seconds(1));
    assert!(
        notice().await.unwrap().0.is_empty(),
        "request {} is past its time",
        stale.id
    );

    // One withdrawn before any answer leaves at once.
    let withdrawn = ask(10).await.unwrap();
    assert_eq!(notice().await.unwrap().0.len(), 1);
    control
        .end_support(
            withdrawn.id,
            Some(clinic.id),
            "Priya (support)",
            "sorted by phone",
        )
        .await
        .unwrap()
        .unwrap();
    let (pending, open) = notice().await.unwrap();
    assert!(pending.is_empty() && open.is_none());
}
