//! The patient register over HTTP.

use axum::http::StatusCode;
use ward_clinic::audit::{Action, Diff};

use crate::support::staffed::Staffed as _;
use crate::support::{TestApp, id_of};

#[tokio::test(flavor = "multi_thread")]
async fn registering_searching_and_editing_patients_is_audited() {
    let t = TestApp::new().await;
    let mut c = t.clinic("Sunrise Clinic", "sunrise").await;
    let base = c.base.clone();
    let rec = &mut c.receptionist;

    let ana = rec
        .register(
            &base,
            &[
                ("full_name", "Ana Maria Rao"),
                ("date_of_birth", "1990-05-04"),
                ("phone", "+91 98450-12345"),
                ("address", "12 MG Road"),
            ],
        )
        .await;
    let page = rec.get(&ana).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains("Ana Maria Rao"));
    assert!(page.body.contains("No. 1"), "sequential number");
    assert!(
        page.body.contains("35 y · Female"),
        "age from the date of birth"
    );
    let bob = rec
        .register(
            &base,
            &[
                ("full_name", "Bob Raman"),
                ("age_years", "40"),
                ("sex", "male"),
                ("phone", "080 2222 3333"),
            ],
        )
        .await;
    assert!(rec.get(&bob).await.body.contains("No. 2"));

    // Search: name prefix, any word, phone in another format (with or without the
    // country code), patient number; the list works as a plain GET form.
    let list = format!("{base}/patients");
    for (q, expect_ana, expect_bob) in [
        ("ana", true, false),
        ("RAO", true, false),
        ("mar", true, false),
        ("ra", true, true),
        ("rao ana", true, false),
        ("98450 12345", true, false),
        ("9845012345", true, false),
        ("+919845012345", true, false),
        ("(080) 2222-3333", false, true),
        ("2", false, true),
        ("#1", true, false),
        ("zed", false, false),
        ("%", false, false),
        ("' OR 1=1 --", false, false),
    ] {
        let r = rec.get(&format!("{list}?q={}", urlencode(q))).await;
        assert_eq!(r.status, StatusCode::OK, "{q}");
        assert_eq!(
            r.body.contains("Ana Maria Rao"),
            expect_ana,
            "{q}: {}",
            r.body
        );
        assert_eq!(r.body.contains("Bob Raman"), expect_bob, "{q}");
        let fragment = rec
            .get(&format!("{base}/patients/search?q={}", urlencode(q)))
            .await;
        assert_eq!(fragment.status, StatusCode::OK);
        assert_eq!(fragment.body.contains("Ana Maria Rao"), expect_ana, "{q}");
        assert!(!fragment.body.contains("<html"), "a fragment, not a page");
    }
    let list_page = rec.get(&list).await.body;
    assert!(list_page.contains(r#"<script src="/static/search.js" defer></script>"#));
    let js = rec.get("/static/search.js").await;
    assert_eq!(js.status, StatusCode::OK);
    assert!(js.body.contains("patient-search"));

    // Duplicate warning: same name + phone, linking to the existing record; confirming
    // registers anyway.
    let new = format!("{base}/patients/new");
    let r = rec
        .submit_page(
            &new,
            &[
                ("full_name", "ana maria rao"),
                ("sex", "female"),
                ("phone", "98450 12345"),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(r.body.contains("may already be registered"));
    assert!(
        r.body.contains(&format!("href=\"{ana}\"")),
        "links the existing record"
    );
    assert!(r.body.contains("value=\"ana maria rao\""), "input kept");
    assert_eq!(t.count(c.id, "SELECT COUNT(*) FROM patients").await, 2);
    let r = rec
        .submit_page(
            &new,
            &[
                ("full_name", "Ana Maria Rao"),
                ("sex", "female"),
                ("date_of_birth", "1990-05-04"),
            ],
        )
        .await;
    assert!(
        r.body.contains("may already be registered"),
        "name + date of birth"
    );
    let r = rec
        .submit_page(
            &new,
            &[
                ("full_name", "ana maria rao"),
                ("sex", "female"),
                ("phone", "98450 12345"),
                ("confirm_duplicate", "yes"),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert_eq!(t.count(c.id, "SELECT COUNT(*) FROM patients").await, 3);
    let r = rec
        .submit_page(
            &new,
            &[
                ("full_name", "Ana Maria Rao"),
                ("sex", "female"),
                ("phone", "111 222"),
            ],
        )
        .await;
    assert_eq!(
        r.status,
        StatusCode::SEE_OTHER,
        "same name alone is not a duplicate"
    );

    // Edit: a correction needs a reason; without one nothing changes.
    let edit = format!("{ana}/edit");
    let form = rec.get(&edit).await;
    assert!(form.body.contains("value=\"Ana Maria Rao\""));
    assert!(form.body.contains("name=\"reason\""));
    let corrected = [
        ("full_name", "Ana Maria Rao"),
        ("date_of_birth", "1990-05-04"),
        ("sex", "female"),
        ("phone", "+91 98450 99999"),
        ("address", "12 MG Road"),
    ];
    let r = rec.submit_page(&edit, &corrected).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.body);
    r.assert_contains("id=\"reason-error\"");
    assert!(
        r.body.contains("value=\"+91 98450 99999\""),
        "what was typed is kept"
    );
    assert!(rec.get(&ana).await.body.contains("+91 98450-12345"));
    let mut with_reason = corrected.to_vec();
    with_reason.push(("reason", "patient changed their number"));
    let r = rec.submit_page(&edit, &with_reason).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    // The record keeps both versions: the history shows the old number struck out, the
    // new one, who, and why.
    let page = rec.get(&ana).await.body;
    assert!(page.contains("id=\"corrections\""), "{page}");
    let history = rec.get(&format!("{ana}/history")).await;
    assert_eq!(history.status, StatusCode::OK);
    history.assert_contains("<del>+91 98450-12345</del><ins>+91 98450 99999</ins>");
    assert!(history.body.contains("patient changed their number"));
    assert!(history.body.contains("Corrected") && history.body.contains("by Ravi Kumar"));
    assert!(rec.get(&list).await.status == StatusCode::OK);
    let by_phone = rec.get(&format!("{list}?q=9845099999")).await;
    assert!(
        by_phone.body.contains("Ana Maria Rao"),
        "search follows the edit"
    );

    let rows = t.audit_of(c.id, ("patient", id_of(&ana)), None).await;
    let actions: Vec<&str> = rows.iter().map(|r| r.action.as_str()).collect();
    assert!(actions.contains(&Action::Create.as_str()), "{actions:?}");
    assert!(actions.contains(&Action::View.as_str()), "{actions:?}");
    let update = rows
        .iter()
        .find(|r| r.action == Action::Update.as_str())
        .unwrap();
    assert_eq!(update.actor_name, "Ravi Kumar");
    assert_eq!(update.actor_role.as_deref(), Some("receptionist"));
    assert!(update.ip.is_some());
    let diff = Diff::parse(update.diff.as_deref().unwrap()).unwrap();
    let changed: Vec<_> = diff
        .fields()
        .map(|(f, o, n)| (f.to_owned(), o.clone(), n.clone()))
        .collect();
    // Only the changed field, by the versions: the log holds no demographics.
    assert_eq!(changed.len(), 1, "{changed:?}");
    assert_eq!(changed[0].0, "phone");
    assert_eq!(changed[0].1, "version 1");
    assert_eq!(changed[0].2, "version 2");
    let create = rows
        .iter()
        .find(|r| r.action == Action::Create.as_str())
        .unwrap();
    let created = create.diff.as_deref().unwrap();
    assert!(created.contains("full_name") && created.contains("version 1"));
    for value in ["Ana", "Rao", "98450", "MG Road", "1990-05-04"] {
        assert!(!created.contains(value), "{value} in {created}");
    }
    // A saved edit that changes nothing writes nothing.
    let before = rows.len();
    let r = rec
        .submit_page(
            &edit,
            &[
                ("full_name", "Ana Maria Rao"),
                ("date_of_birth", "1990-05-04"),
                ("sex", "female"),
                ("phone", "+91 98450 99999"),
                ("address", "12 MG Road"),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    let after = t
        .audit_of(c.id, ("patient", id_of(&ana)), Some(Action::Update))
        .await;
    assert_eq!(
        after.len(),
        1,
        "no second update row ({before} rows before)"
    );
}

pub fn urlencode(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_input_is_shown_next_to_the_field_and_never_a_500() {
    let t = TestApp::new().await;
    let mut c = t.clinic("Hostile Clinic", "hostile").await;
    let base = c.base.clone();
    let rec = &mut c.receptionist;
    let new = format!("{base}/patients/new");
    let long = "x".repeat(5000);
    let r = rec
        .submit_page(
            &new,
            &[
                ("full_name", long.as_str()),
                ("date_of_birth", "1990-02-30"),
                ("sex", "robot"),
                ("phone", "12"),
                ("email", "not an email"),
                ("notes", "kept <b>notes</b>"),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    for id in [
        "full_name-error",
        "date_of_birth-error",
        "sex-error",
        "phone-error",
        "email-error",
    ] {
        assert!(r.body.contains(&format!("id=\"{id}\"")), "{id}");
    }
    let notes = &r.body[r.body.find("id=\"notes\"").unwrap()..][..200];
    assert!(
        notes.contains("kept &#60;b&#62;notes"),
        "input kept, escaped: {notes}"
    );
    assert!(r.body.contains("value=\"1990-02-30\""));
    assert_eq!(t.count(c.id, "SELECT COUNT(*) FROM patients").await, 0);

    for (dob, age) in [
        ("2999-01-01", ""),
        ("", "-3"),
        ("", "1e9"),
        ("1990-01-01", "30"),
        ("01/02/1990", ""),
    ] {
        let r = rec
            .submit_page(
                &new,
                &[
                    ("full_name", "A B"),
                    ("sex", "male"),
                    ("date_of_birth", dob),
                    ("age_years", age),
                ],
            )
            .await;
        assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{dob} {age}");
    }
    // A form that cannot be read at all is a 400 page.
    let csrf = rec.get(&new).await.csrf();
    let r = rec
        .post_with_csrf(&new, &csrf, &[("full_name", "A"), ("full_name", "B")])
        .await;
    assert!(r.status.is_client_error(), "{}", r.status);

    let p = rec.register(&base, &[("full_name", "Real Person")]).await;
    for path in [
        format!("{base}/patients/abc"),
        format!("{base}/patients/0"),
        format!("{base}/patients/-1"),
        format!("{base}/patients/99999999999999999999999"),
        format!("{base}/patients/9999"),
        format!("{base}/patients/9999/edit"),
        format!("{base}/patients/1.5"),
        format!("{base}/visits/abc"),
        format!("{base}/visits/1"),
        format!("{base}/visits/1/prescription"),
        format!("{base}/patients/9999/visits/new"),
    ] {
        let r = c.owner.get(&path).await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{path}");
    }
    let r = c
        .owner
        .submit(
            &format!("{p}/edit"),
            &format!("{base}/patients/9999/edit"),
            &[("full_name", "Z"), ("sex", "male")],
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let r = c
        .owner
        .get(&format!("{base}/patients?q={}", "9".repeat(5000)))
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let r = c
        .owner
        .get(&format!("{base}/patients?q=%F0%9F%92%A9%00"))
        .await;
    assert_eq!(r.status, StatusCode::OK);
}
