//! Merging a duplicate: everything moves to the survivor, both numbers show, the merge is
//! audited and undone exactly.

use axum::http::StatusCode;

use super::rights::patient_with_everything;
use crate::support::staffed::Staffed as _;
use crate::support::{TestApp, id_of};

#[tokio::test(flavor = "multi_thread")]
async fn a_merge_moves_everything_shows_both_numbers_and_is_undone_exactly() {
    let t = TestApp::new().await;
    let mut c = t.clinic("Twin Clinic", "twin").await;
    let a = patient_with_everything(&t, &mut c, "Aardvark").await;
    let b = patient_with_everything(&t, &mut c, "Bumblebee").await;
    let (a_id, b_id) = (id_of(&a).to_owned(), id_of(&b).to_owned());
    let base = c.base.clone();
    let count =
        |table: &str, id: &str| format!("SELECT COUNT(*) FROM {table} WHERE patient_id = {id}");

    // The review shows both records; a wrong number or the record itself is refused.
    let review = c.receptionist.get(&format!("{a}/merge?other=2")).await;
    assert_eq!(review.status, StatusCode::OK);
    assert!(review.body.contains("Aardvark Person") && review.body.contains("Bumblebee Person"));
    for (other, message) in [
        ("1", "That is this record"),
        ("99", "No patient has the number 99"),
        ("x", "Enter the duplicate"),
    ] {
        let r = c
            .receptionist
            .get(&format!("{a}/merge?other={other}"))
            .await;
        assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{other}");
        assert!(r.body.contains(message), "{other}: {}", r.body);
    }
    let r = c.billing.get(&format!("{a}/merge?other=2")).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let merge = format!("{a}/merge");
    let r = c.receptionist.submit_page(&merge, &[("other", "1")]).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    r.assert_contains("cannot be merged into itself");

    let r = c.receptionist.submit_page(&merge, &[("other", "2")]).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    for table in ["visits", "appointments", "payments"] {
        assert_eq!(t.count(c.id, &count(table, &a_id)).await, 2, "{table}");
        assert_eq!(t.count(c.id, &count(table, &b_id)).await, 0, "{table}");
    }
    // The survivor shows both numbers, the other's visits and the summed balance.
    let page = c.owner.get(&a).await.body;
    assert!(page.contains("Also No. 2 (Bumblebee Person)"), "{page}");
    assert!(page.contains("Bumblebee diagnosis"), "{page}");
    assert!(
        page.contains("₹1,000.00"),
        "charged for both visits: {page}"
    );
    let page = c.owner.get(&b).await.body;
    assert!(
        page.contains("id=\"merged-into\"") && page.contains("No. 1"),
        "{page}"
    );
    // The duplicate leaves search; its number finds the survivor.
    let r = c
        .receptionist
        .get(&format!("{base}/patients/search?q=bumblebee"))
        .await;
    assert!(!r.body.contains("Bumblebee Person"), "{}", r.body);
    let r = c
        .receptionist
        .get(&format!("{base}/patients/search?q=2"))
        .await;
    r.assert_contains("Aardvark Person");
    // Merged once, not twice.
    let again = format!("{b}/merge");
    let r = c.receptionist.submit_page(&again, &[("other", "1")]).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    r.assert_contains("already merged");
    // Audited on both records, and the chain holds.
    for id in [&a_id, &b_id] {
        let rows = t.audit_of(c.id, ("patient", &id), None).await;
        assert!(
            rows.iter().any(|r| r
                .detail
                .as_deref()
                .is_some_and(|d| d.starts_with("merge 1"))),
            "{rows:?}"
        );
    }

    // Undo: everything goes back.
    let r = c
        .receptionist
        .submit(&a, &format!("{a}/merges/1/undo"), &[])
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    for table in ["visits", "appointments", "payments"] {
        assert_eq!(t.count(c.id, &count(table, &a_id)).await, 1, "{table}");
        assert_eq!(t.count(c.id, &count(table, &b_id)).await, 1, "{table}");
    }
    let r = c
        .receptionist
        .get(&format!("{base}/patients/search?q=bumblebee"))
        .await;
    r.assert_contains("Bumblebee Person");
    let page = c.owner.get(&a).await.body;
    assert!(
        page.contains("undone") && !page.contains("Bumblebee diagnosis"),
        "{page}"
    );
    let r = c
        .receptionist
        .submit(&a, &format!("{a}/merges/1/undo"), &[])
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "undone once");
    t.assert_audit_chain_holds(c.id).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_patient_page_offers_to_merge_a_likely_duplicate() {
    let t = TestApp::new().await;
    let mut c = t.clinic("Dup Clinic", "dup").await;
    let base = c.base.clone();
    let fields = [
        ("full_name", "Ira Sen"),
        ("phone", "98450 67676"),
        ("date_of_birth", "1980-01-01"),
    ];
    let first = c.receptionist.register(&base, &fields).await;
    let _second = c.receptionist.register(&base, &fields).await;
    let page = c.receptionist.get(&first).await.body;
    assert!(page.contains("id=\"possible-duplicates\""), "{page}");
    assert!(page.contains(&format!("{first}/merge?other=2")), "{page}");
}
