//! Cross-clinic isolation: a member of clinic B requests every page and form of clinic A
//! (found by crawling A as its owner) and must get "not found", never A's data.

mod front_desk;

use std::collections::{BTreeSet, VecDeque};

use crate::support::{self, TestApp};
use axum::http::StatusCode;
use ward_core::{Email, Role};

const CANARY: &str = "Zebulon Quartzfeather";
const CANARY_PHONE: &str = "5550199";

/// Every `href="…"` and `action="…"` under `prefix` in a page.
fn links(body: &str, prefix: &str) -> Vec<String> {
    let mut out = Vec::new();
    for attr in ["href=\"", "action=\""] {
        let mut rest = body;
        while let Some(i) = rest.find(attr) {
            rest = &rest[i + attr.len()..];
            let end = rest.find('"').unwrap_or(0);
            let link = rest[..end].replace("&amp;", "&");
            if link.starts_with(prefix) {
                out.push(link);
            }
        }
    }
    out
}

/// The actions of the page's `method="post"` forms.
fn post_forms(body: &str) -> Vec<String> {
    body.split("<form")
        .skip(1)
        .filter_map(|f| {
            let tag = &f[..f.find('>')?];
            if !tag.contains("method=\"post\"") {
                return None;
            }
            let start = tag.find("action=\"")? + 8;
            let end = tag[start..].find('"')? + start;
            Some(tag[start..end].replace("&amp;", "&"))
        })
        .collect()
}

/// The clinic at `slug`, as the control plane records it.
async fn clinic_of(t: &TestApp, slug: &str) -> ward_control::ClinicRecord {
    t.app
        .control
        .clinic_by_slug(&ward_core::Slug::parse(slug).unwrap())
        .await
        .unwrap()
}

/// Seeds clinic A through its own database with canary records.
async fn seed(t: &TestApp, slug: &str) {
    let clinic = clinic_of(t, slug).await;
    let tenant = t.app.tenants.get(clinic.id).await.unwrap();
    tenant
        .with(|conn| {
            for n in 1..=3 {
                conn.execute(
                    "INSERT INTO patients (number, full_name, sex, phone, phone_digits, address, created_at, updated_at)
                     VALUES (?1, ?2, 'female', ?3, ?3, 'Canary Lane', '2026-01-01T00:00:00.000Z', '2026-01-01T00:00:00.000Z')",
                    ward_tenancy::sql::params![n, format!("{CANARY} {n}"), format!("{CANARY_PHONE}{n}")],
                )
                .unwrap();
            }
            // A visit, so the crawl reaches the visit page and its edit form.
            conn.execute(
                "INSERT INTO visits (patient_id, doctor_id, doctor_name, visited_at, presenting_complaints, fee_minor, created_at, updated_at)
                 VALUES (1, 'doc', 'Dr Canary', '2026-01-01T00:00:00.000Z', ?1, 50000, '2026-01-01T00:00:00.000Z', '2026-01-01T00:00:00.000Z')",
                [format!("{CANARY} notes")],
            )
            .unwrap();
        })
        .await;
}

/// Makes a signed-in member of `slug` with `role`.
async fn member(owner: &TestApp, slug: &str, role: Role, email: &str) -> TestApp {
    let mut b = owner.fresh_browser();
    let hash = b.app.hasher.hash(support::PASSWORD).await.unwrap();
    let user = b
        .app
        .control
        .create_user(&Email::parse(email).unwrap(), "Staff", &hash)
        .await
        .unwrap()
        .unwrap();
    b.app.control.mark_email_verified(&user.id).await.unwrap();
    let clinic = clinic_of(&b, slug).await;
    b.app
        .control
        .add_membership(&user.id, clinic.id, role)
        .await
        .unwrap();
    assert_eq!(
        b.login(email, support::PASSWORD).await.status,
        StatusCode::SEE_OTHER
    );
    b
}

#[tokio::test(flavor = "multi_thread")]
async fn members_of_another_clinic_never_reach_this_clinics_records() {
    let mut a = TestApp::new().await;
    let a_home = a.signup_verified("Alpha Clinic", "alpha@example.com").await;
    seed(&a, "alpha-clinic").await;
    let mut b_owner = a.fresh_browser();
    b_owner
        .signup_verified("Beta Clinic", "beta@example.com")
        .await;

    // Crawl clinic A as its owner.
    let mut seen = BTreeSet::new();
    let mut visited = BTreeSet::new();
    let mut forms = BTreeSet::new();
    let mut queue = VecDeque::from([a_home.clone()]);
    while let Some(url) = queue.pop_front() {
        if !visited.insert(url.clone()) || visited.len() > 300 {
            continue;
        }
        let page = a.get(&url).await;
        if !page.status.is_success() {
            continue;
        }
        seen.insert(url.clone());
        for link in links(&page.body, "/c/alpha-clinic/") {
            if post_forms(&page.body).contains(&link) {
                forms.insert(link.clone());
            } else {
                queue.push_back(link);
            }
        }
        for prefix in [
            "/c/alpha-clinic/patients?q=",
            "/c/alpha-clinic/patients?q=5550",
        ] {
            queue.push_back(prefix.to_owned());
        }
    }
    assert!(seen.contains(&a_home));
    assert!(
        seen.iter().any(|u| u.contains("/patients/")),
        "the crawl reached patient records: {seen:?}"
    );
    assert!(
        seen.iter().any(|u| u.ends_with("/visits/1/edit"))
            && forms.iter().any(|f| f.ends_with("/visits/1/edit")),
        "the crawl reached the visit edit form: {seen:?} {forms:?}"
    );
    // A's own views are written to its log in batches: let them land first.
    a.app.audit.flush().await;
    let audit_before = audit_rows(&a, "alpha-clinic").await;

    let mut outsiders = vec![b_owner];
    for (i, role) in [Role::Doctor, Role::Receptionist, Role::Billing]
        .into_iter()
        .enumerate()
    {
        outsiders.push(member(&a, "beta-clinic", role, &format!("beta{i}@example.com")).await);
    }
    let mut requests = 0;
    'outer: loop {
        for b in &mut outsiders {
            for url in &seen {
                let r = b.get(url).await;
                requests += 1;
                assert_eq!(r.status, StatusCode::NOT_FOUND, "{url}");
                assert!(
                    !r.body.contains(CANARY) && !r.body.contains(CANARY_PHONE),
                    "{url} leaked"
                );
                // The same path in B's own clinic shows only B's data.
                let own = url.replacen("/c/alpha-clinic/", "/c/beta-clinic/", 1);
                let r = b.get(&own).await;
                requests += 1;
                assert!(!r.body.contains(CANARY), "{own} leaked A's data");
            }
            for action in &forms {
                let csrf = b.get("/account").await.csrf();
                let r = b
                    .post_with_csrf(action, &csrf, &[("full_name", "Intruder"), ("amount", "1")])
                    .await;
                requests += 2;
                assert!(
                    matches!(r.status, StatusCode::NOT_FOUND | StatusCode::FORBIDDEN),
                    "{action}: {}",
                    r.status
                );
            }
            if requests >= 10_000 {
                break 'outer;
            }
        }
    }
    assert!(requests >= 10_000);
    assert_eq!(
        audit_rows(&a, "alpha-clinic").await,
        audit_before,
        "no request from outside changed clinic A"
    );
}

async fn audit_rows(t: &TestApp, slug: &str) -> i64 {
    let clinic = clinic_of(t, slug).await;
    let tenant = t.app.tenants.get(clinic.id).await.unwrap();
    tenant
        .with(|conn| {
            let row = ward_tenancy::db::first_row(
                &conn,
                "SELECT count(*) + coalesce(max(seq), 0) FROM audit_log",
                (),
            )
            .unwrap()
            .unwrap();
            row.get::<i64>(0).unwrap()
        })
        .await
}
