//! The order a rebuilt machine restores clinics in: most recently used first.

use ward_core::{Email, Role};

use crate::support::TestPlatform;

#[tokio::test(flavor = "multi_thread")]
async fn clinics_come_most_recently_used_first() {
    let t = TestPlatform::new().await;
    let control = &t.platform.control;
    let quiet = t.clinic("Quiet Clinic").await;
    let busy = t.clinic("Busy Clinic").await;
    let older = t.clinic("Older Clinic").await;
    let never = t.clinic("Never Used").await;
    for (clinic, who) in [(&older, "older@example.com"), (&busy, "busy@example.com")] {
        let user = control
            .create_user(&Email::parse(who).unwrap(), "Dr. A", "hash")
            .await
            .unwrap()
            .unwrap();
        control
            .add_membership(&user.id, clinic.id, Role::Owner)
            .await
            .unwrap();
        control.create_session(&user.id, None, None).await.unwrap();
        // Times are kept to the millisecond.
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let order: Vec<String> = control
        .clinics_by_recent_use()
        .await
        .unwrap()
        .into_iter()
        .map(|c| c.name)
        .collect();
    // Used: the latest session first. Unused: the newest clinic first.
    assert_eq!(
        order,
        [&busy.name, &older.name, &never.name, &quiet.name].map(|n| n.clone()),
        "{order:?}"
    );
}
