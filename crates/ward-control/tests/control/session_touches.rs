//! Sessions' last-seen times: noted by requests, written together, never lost to a
//! reader (the sessions list, the sweep, the restore order) or to the idle timeout.

use std::sync::Arc;

use chrono::{DateTime, TimeDelta};
use ward_control::sessions::SessionPolicy;
use ward_core::{Clock, Email, ManualClock};
use ward_tenancy::StoreConfig;

use crate::support::MASTER_HEX;

struct Fixture {
    _dir: tempfile::TempDir,
    clock: ManualClock,
    platform: ward_control::Platform,
}

async fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let start: DateTime<chrono::Utc> = "2026-03-02T09:00:00Z".parse().unwrap();
    let clock = ManualClock::new(start);
    let config = StoreConfig::new(dir.path().join("data"));
    let platform = ward_testkit::open_platform(config, MASTER_HEX, Arc::new(clock.clone())).await;
    Fixture {
        _dir: dir,
        clock,
        platform,
    }
}

impl Fixture {
    /// A new user with one session; returns (user id, cookie token).
    async fn signed_in(&self, email: &str) -> (String, String) {
        let control = &self.platform.control;
        let user = control
            .create_user(&Email::parse(email).unwrap(), "Dr. A", "hash")
            .await
            .unwrap()
            .unwrap();
        let token = control.create_session(&user.id, None, None).await.unwrap();
        (user.id, token)
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn noted_uses_show_on_the_sessions_list_at_once() {
    let f = fixture().await;
    let control = &f.platform.control;
    let policy = SessionPolicy::default();
    let mut users = Vec::new();
    for i in 0..3 {
        users.push(f.signed_in(&format!("doctor{i}@example.com")).await);
    }
    let start = f.clock.now();
    f.clock.advance(TimeDelta::minutes(5));
    for (_, token) in &users {
        assert!(control.session(token, policy).await.unwrap().is_some());
    }
    for (user, _) in &users {
        let listed = control.list_sessions(user, policy).await.unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!(
            listed[0].last_seen_at - start,
            TimeDelta::minutes(5),
            "the use five minutes in is what the list shows"
        );
    }
    assert_eq!(
        control.write_session_touches().await,
        0,
        "the list wrote what was noted; nothing is left"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_session_used_just_before_its_idle_limit_stays_signed_in() {
    let f = fixture().await;
    let control = &f.platform.control;
    let policy = SessionPolicy::default();
    let (user, token) = f.signed_in("night@example.com").await;

    // Used a minute before the idle limit; the use is only noted, not written.
    f.clock.advance(policy.idle - TimeDelta::minutes(1));
    assert!(control.session(&token, policy).await.unwrap().is_some());
    // Past the limit counted from sign-in, well within it counted from that use.
    f.clock.advance(TimeDelta::minutes(3));
    assert!(
        control.session(&token, policy).await.unwrap().is_some(),
        "a noted use counts for the idle timeout before it is written"
    );
    // The sweep writes noted uses first, so it does not end the session either.
    control.sweep(policy).await.unwrap();
    assert_eq!(control.list_sessions(&user, policy).await.unwrap().len(), 1);
    assert!(control.session(&token, policy).await.unwrap().is_some());

    // Unused past the limit: ended, and swept.
    f.clock.advance(policy.idle + TimeDelta::minutes(1));
    assert!(control.session(&token, policy).await.unwrap().is_none());
    assert!(control.sweep(policy).await.unwrap().sessions >= 1);
    assert!(
        control
            .list_sessions(&user, policy)
            .await
            .unwrap()
            .is_empty()
    );
}
