//! Support access: the operator asks, an owner approves, the one-time link opens a
//! session bound to one clinic, read only unless allowed, with a banner, every page in
//! the audit log as support, ended by the owner or by time; and the emergency path.

use axum::http::StatusCode;
use chrono::TimeDelta;
use ward_clinic::audit::AuditRow;
use ward_control::support::{Grant, LinkRefused, NewGrant};

use crate::support::admin::*;
use crate::support::*;

const REASON: &str = "Owner reports the appointment book shows an error";

async fn request(
    t: &TestApp,
    clinic: &Clinic,
    minutes: u32,
    write: bool,
    emergency: bool,
) -> Grant {
    let (grant, mails) = ward_app::support::request(
        &t.app.control,
        &t.app.tenants,
        &t.app.mailer,
        t.app.base_url(),
        NewGrant {
            clinic_id: clinic.id,
            operator: "alice",
            reason: REASON,
            minutes,
            write,
            emergency,
        },
    )
    .await
    .unwrap();
    assert_eq!(mails.len(), 1, "the one owner is mailed");
    grant
}

async fn link(t: &TestApp, grant: &Grant) -> String {
    let (token, _) = t
        .app
        .control
        .issue_support_link(grant.id)
        .await
        .unwrap()
        .unwrap();
    format!("/support/{token}")
}

/// A new browser that opens `link` and starts the session there.
async fn open_session(t: &TestApp, clinic: &Clinic, link: &str) -> TestApp {
    let mut op = t.fresh_browser();
    let page = op.get(link).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert!(page.body.contains("Start the support session"));
    assert!(page.body.contains("Acme Clinic") && page.body.contains(REASON));
    let token = field_value(&page.body, "token").unwrap();
    let r = op
        .post_with_csrf("/support/start", &page.csrf(), &[("token", &token)])
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    assert_eq!(r.location(), clinic.path(""));
    op
}

/// A browser signed in as the owner of a new clinic Acme, and support's request to look
/// at it.
async fn requested(minutes: u32, write: bool, emergency: bool) -> (TestApp, Clinic, Grant) {
    let (t, clinic) = acme().await;
    let grant = request(&t, &clinic, minutes, write, emergency).await;
    (t, clinic, grant)
}

/// Why no link can be issued for `grant` now.
async fn refused_link(t: &TestApp, grant: &Grant) -> LinkRefused {
    t.app
        .control
        .issue_support_link(grant.id)
        .await
        .unwrap()
        .unwrap_err()
}

/// A new link for `grant`, and a new browser in which it started the session.
async fn session(t: &TestApp, clinic: &Clinic, grant: &Grant) -> (String, TestApp) {
    let link = link(t, grant).await;
    let op = open_session(t, clinic, &link).await;
    (link, op)
}

/// The owner's `decision` (`approve`, `refuse`, `end`) on `grant`, from the support page.
async fn decide(
    t: &mut TestApp,
    clinic: &Clinic,
    grant: &Grant,
    decision: &str,
    form: &[(&str, &str)],
) -> Response {
    let action = clinic.path(&format!("support/{}/{decision}", grant.id));
    t.submit(&clinic.path("support"), &action, form).await
}

async fn approve(t: &mut TestApp, clinic: &Clinic, grant: &Grant, allow_changes: bool) {
    let form: &[(&str, &str)] = if allow_changes {
        &[("allow_changes", "1")]
    } else {
        &[]
    };
    let r = decide(t, clinic, grant, "approve", form).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    assert_eq!(r.location(), clinic.path("support?done=approved"));
}

/// The support browser `op` adds a patient through the clinic's form.
async fn add_patient(op: &mut TestApp, clinic: &Clinic) -> Response {
    let new = clinic.path("patients/new");
    op.submit_page(
        &new,
        &[
            ("full_name", "Ada Lovelace"),
            ("sex", "female"),
            ("phone", "98450 00001"),
        ],
    )
    .await
}

async fn support_rows(t: &TestApp, clinic: &Clinic) -> Vec<AuditRow> {
    t.app.audit.flush().await;
    t.audit_rows(clinic)
        .await
        .into_iter()
        .filter(|r| r.action == "support" || r.actor_name.starts_with("Support ("))
        .collect()
}

fn details(rows: &[AuditRow]) -> Vec<String> {
    rows.iter()
        .filter(|r| r.action == "support")
        .map(|r| r.detail.clone().unwrap_or_default())
        .collect()
}

#[tokio::test]
async fn an_approved_read_only_session_shows_a_banner_is_audited_and_the_owner_ends_it() {
    let (mut t, clinic, grant) = requested(30, false, false).await;

    // The owner is mailed (no reason, nothing about patients in the subject) …
    let mail = t
        .last_mail("Support asks to look at your clinic on Ward")
        .await;
    assert!(mail.contains("alice") && mail.contains("30"), "{mail}");
    assert!(
        !mail.contains(REASON),
        "the reason stays on the page: {mail}"
    );
    assert!(mail.contains(&format!("http://ward.test{}", clinic.path("support"))));
    // … and every clinic page says so, linking to the support page.
    let home = t.get(&clinic.path("")).await;
    home.assert_contains("Support (alice) asks to look at this clinic for up to 30 minutes");
    assert!(
        home.body
            .contains(&format!("href=\"{}\"", clinic.path("support")))
    );

    // No link before approval.
    assert_eq!(refused_link(&t, &grant).await, LinkRefused::NotApproved);
    let page = t.get(&clinic.path("support")).await;
    page.assert_contains(REASON);
    assert!(page.body.contains("Approve for 30 minutes"));
    approve(&mut t, &clinic, &grant, false).await;

    let (link, mut op) = session(&t, &clinic, &grant).await;
    let home = op.get(&clinic.path("")).await;
    assert_eq!(home.status, StatusCode::OK, "{}", home.body);
    home.assert_contains(
        "Support session (alice) — read only — ends at 09:30 UTC (30 minutes left)",
    );
    assert!(home.body.contains(&format!("Reason: {REASON}")));
    assert!(home.body.contains("End support session"));
    t.clock.advance(TimeDelta::minutes(10));
    let patients = op.get(&clinic.path("patients")).await;
    assert_eq!(patients.status, StatusCode::OK);
    patients.assert_contains("(20 minutes left)");

    // The link worked once.
    let mut again = t.fresh_browser();
    assert_eq!(again.get(&link).await.status, StatusCode::GONE);
    assert_eq!(refused_link(&t, &grant).await, LinkRefused::AlreadyUsed);

    // Nothing outside the clinic: no clinic list, no account, no second factor.
    for page in ["/clinics", "/account", "/account/two-factor"] {
        let r = op.get(page).await;
        assert_eq!(r.status, StatusCode::SEE_OTHER, "{page}");
        assert_eq!(r.location(), "/login", "{page}");
    }
    // Read only: a change is refused with a page saying so.
    let r = add_patient(&mut op, &clinic).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    r.assert_contains("This support session is read only");
    // Never: exports, staff, closing, support itself.
    for page in ["export", "staff", "settings/close", "support"] {
        let r = op.get(&clinic.path(page)).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{page}");
        assert!(
            r.body.contains("Not available in a support session"),
            "{page}"
        );
    }

    // A search: the log names the page and the parameter, never what was typed.
    let r = op
        .get(&format!(
            "{}?q=Wilhelmina+Searched",
            clinic.path("patients")
        ))
        .await;
    assert_eq!(r.status, StatusCode::OK);

    // Every page view is in the audit log as support, with the reason.
    let rows = support_rows(&t, &clinic).await;
    assert!(
        rows.iter()
            .any(|v| v.detail.as_deref()
                == Some(&format!("page {} (with q)", clinic.path("patients")))),
        "{rows:#?}"
    );
    assert!(!format!("{rows:?}").contains("Wilhelmina"), "{rows:#?}");
    let views: Vec<&AuditRow> = rows.iter().filter(|r| r.action == "view").collect();
    assert!(views.len() >= 2, "{rows:#?}");
    for v in &views {
        assert_eq!(v.actor_kind, "operator");
        assert_eq!(v.actor_name, "Support (alice)");
        assert_eq!(v.actor_role.as_deref(), Some("support"));
        assert_eq!(v.actor_id, Some(format!("support:{}", grant.id)));
        assert_eq!(v.reason.as_deref(), Some(REASON));
    }
    assert!(
        views
            .iter()
            .any(|v| v.detail.as_deref() == Some(&format!("page {}", clinic.path("patients")))),
        "{views:#?}"
    );
    let steps = details(&rows);
    assert_eq!(steps[0], "support requested: 30 minutes, read only");
    assert_eq!(
        steps[1],
        "support approved by Dr. Ana Rao: 30 minutes, read only"
    );
    assert!(steps[2].starts_with("support session started: until 2026-03-01T09:30:00.000Z"));
    // The owner's audit page shows them readably.
    let audit = t.get(&clinic.path("audit")).await;
    audit.assert_contains("Support (alice) <span class=\"muted\">support</span>");
    assert!(audit.body.contains(REASON));
    let this_grant = t
        .get(&clinic.path(&format!("audit?actor=support:{}", grant.id)))
        .await;
    assert!(
        this_grant
            .body
            .contains(&format!("page {}", clinic.path("patients")))
    );

    // The owner sees it open and ends it now; the next page is signed out.
    let page = t.get(&clinic.path("support")).await;
    page.assert_contains("Open now");
    assert!(
        t.get(&clinic.path(""))
            .await
            .body
            .contains("A support session (alice) is open until 09:30 UTC — read only.")
    );
    let r = decide(&mut t, &clinic, &grant, "end", &[]).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    let r = op.get(&clinic.path("")).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert_eq!(r.location(), "/login");
    let page = t.get(&clinic.path("support")).await;
    assert!(page.body.contains("Past support sessions"));
    page.assert_contains("ended: Dr. Ana Rao");
    let steps = details(&support_rows(&t, &clinic).await);
    assert_eq!(steps.last().unwrap(), "support ended by Dr. Ana Rao");
    // The chain still verifies.
    t.assert_audit_chain_holds(clinic.id).await;
}

#[tokio::test]
async fn changes_only_when_the_owner_allows_them_and_the_session_expires_on_time() {
    let (mut t, clinic, grant) = requested(15, true, false).await;
    approve(&mut t, &clinic, &grant, true).await;
    let spare = link(&t, &grant).await;
    let (_, mut op) = session(&t, &clinic, &grant).await;
    // Once one link started the session, no other link starts another.
    let mut second = t.fresh_browser();
    assert_eq!(second.get(&spare).await.status, StatusCode::GONE);
    let token = spare.trim_start_matches("/support/");
    let csrf = second.get("/login").await.csrf();
    let r = second
        .post_with_csrf("/support/start", &csrf, &[("token", token)])
        .await;
    assert_eq!(r.status, StatusCode::GONE, "{}", r.body);
    assert!(second.session_cookie().is_none());
    let home = op.get(&clinic.path("")).await;
    home.assert_contains(
        "Support session (alice) — changes allowed — ends at 09:15 UTC (15 minutes left)",
    );

    let r = add_patient(&mut op, &clinic).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let rows = support_rows(&t, &clinic).await;
    let created = rows
        .iter()
        .find(|r| r.action == "create")
        .expect("a create row");
    assert_eq!(created.actor_name, "Support (alice)");
    assert_eq!(created.reason.as_deref(), Some(REASON));
    // Staff changes stay out of reach even with changes allowed.
    let r = op
        .post_with_csrf(
            &clinic.path("staff/invite"),
            &home.csrf(),
            &[("email", "x@acme.test"), ("role", "doctor")],
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    // Nor can it answer support requests, its own or any other.
    let r = op
        .post(
            &clinic.path(&format!("support/{}/approve", grant.id)),
            &[("_csrf", &home.csrf()), ("allow_changes", "1")],
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert!(r.body.contains("Not available in a support session"));

    // Its time runs out: the next request is signed out, and the log says expired.
    t.clock.advance(TimeDelta::minutes(15));
    let r = op.get(&clinic.path("")).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert_eq!(r.location(), "/login");
    let page = t.get(&clinic.path("support")).await;
    page.assert_contains("expired");
    assert!(!page.body.contains("Open now"));
    let steps = details(&support_rows(&t, &clinic).await);
    assert_eq!(
        steps.last().unwrap(),
        "support session expired: its time was up"
    );
    assert_eq!(refused_link(&t, &grant).await, LinkRefused::Over);
}

#[tokio::test]
async fn a_refused_request_opens_nothing() {
    let (mut t, clinic, grant) = requested(30, false, false).await;
    // Approving needs a recent sign-in, like other sensitive owner actions.
    t.clock.advance(TimeDelta::hours(1));
    let r = decide(&mut t, &clinic, &grant, "approve", &[]).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert!(
        r.location().starts_with("/account/confirm"),
        "{}",
        r.location()
    );
    assert_eq!(refused_link(&t, &grant).await, LinkRefused::NotApproved);
    let r = decide(&mut t, &clinic, &grant, "refuse", &[]).await;
    assert_eq!(r.location(), clinic.path("support?done=refused"));
    assert_eq!(refused_link(&t, &grant).await, LinkRefused::Over);
    assert!(!t.get(&clinic.path("")).await.body.contains("asks to look"));
    let steps = details(&support_rows(&t, &clinic).await);
    assert_eq!(steps.last().unwrap(), "support refused by Dr. Ana Rao");
}

#[tokio::test]
async fn a_support_session_cannot_reach_another_clinic() {
    let (mut t, clinic) = acme().await;
    let mut other_owner = t.fresh_browser();
    let other = other_owner.clinic("Beta Clinic", "owner@beta.test").await;
    let grant = request(&t, &clinic, 30, true, false).await;
    approve(&mut t, &clinic, &grant, true).await;
    let (_, mut op) = session(&t, &clinic, &grant).await;
    assert_eq!(op.get(&clinic.path("")).await.status, StatusCode::OK);

    let nowhere = op.get("/c/no-such-clinic/").await;
    assert_eq!(nowhere.status, StatusCode::NOT_FOUND);
    for page in ["", "patients", "audit", "settings"] {
        let r = op.get(&other.path(page)).await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{page}");
        assert_eq!(
            r.body, nowhere.body,
            "like any clinic one does not belong to"
        );
    }
    let csrf = op.get(&clinic.path("")).await.csrf();
    let r = op
        .post_with_csrf(&other.path("patients/new"), &csrf, &[("full_name", "X")])
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    // Nothing of the other clinic's log mentions support.
    other_owner.app.audit.flush().await;
    assert!(
        t.audit_rows(&other)
            .await
            .iter()
            .all(|r| !r.actor_name.starts_with("Support"))
    );
}

#[tokio::test]
async fn the_emergency_path_needs_no_approval_tells_the_owners_at_once_and_is_marked() {
    let (mut t, clinic, grant) = requested(20, false, true).await;
    let mail = t
        .last_mail("Emergency support access to your clinic on Ward")
        .await;
    assert!(mail.contains("without waiting for approval"), "{mail}");

    let (_, mut op) = session(&t, &clinic, &grant).await;
    let home = op.get(&clinic.path("")).await;
    home.assert_contains(
        "Support session (alice) — read only — ends at 09:20 UTC (20 minutes left)",
    );
    let owner_home = t.get(&clinic.path("")).await;
    owner_home.assert_contains("An emergency support session (alice) is open until 09:20 UTC");
    let rows = support_rows(&t, &clinic).await;
    let steps = details(&rows);
    assert_eq!(
        steps[0],
        "emergency support opened without approval: 20 minutes, read only"
    );
    let view = rows
        .iter()
        .find(|r| r.action == "view")
        .expect("a page view");
    assert_eq!(view.actor_role.as_deref(), Some("emergency support"));
    assert_eq!(view.reason.as_deref(), Some(REASON));
    let page = t.get(&clinic.path("support")).await;
    page.assert_contains("emergency, opened without approval");
    // The session ends itself from its banner.
    let r = op.post("/support/end", &[("_csrf", &home.csrf())]).await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.body.contains("Support session ended"));
    assert_eq!(op.get(&clinic.path("")).await.status, StatusCode::SEE_OTHER);
}

#[tokio::test]
async fn requests_are_checked() {
    let t = TestApp::new().await;
    let mut b = t.fresh_browser();
    let clinic = b.clinic("Acme Clinic", "owner@acme.test").await;
    let control = &t.app.control;
    let ask = |minutes, reason: &'static str| NewGrant {
        clinic_id: clinic.id,
        operator: "alice",
        reason,
        minutes,
        write: false,
        emergency: false,
    };
    let too_long = control.request_support(ask(45, REASON)).await.unwrap_err();
    assert!(
        too_long.to_string().contains("1 to 30 minutes"),
        "{too_long}"
    );
    let blank = control.request_support(ask(10, "  ")).await.unwrap_err();
    assert!(blank.to_string().contains("needs a reason"), "{blank}");
    let mut emergency_write = ask(10, REASON);
    emergency_write.emergency = true;
    emergency_write.write = true;
    let refused = control.request_support(emergency_write).await.unwrap_err();
    assert!(refused.to_string().contains("read only"), "{refused}");
    let first = control.request_support(ask(10, REASON)).await.unwrap();
    let twice = control.request_support(ask(10, REASON)).await.unwrap_err();
    assert!(
        twice
            .to_string()
            .contains(&format!("open support grant (#{})", first.id)),
        "{twice}"
    );
}
