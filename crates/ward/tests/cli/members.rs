//! `ward members add` and `ward members list` through the binary, checked over HTTP
//! against a running `ward serve`: an account that joins, an invitation mailed to a new
//! address and accepted, and the refusals.

use crate::support::{PASSWORD, Run, Server, Visitor, Ward, sign_up_and_confirm};

/// `ward members add --clinic <clinic> --email <email> --role <role> <more>`.
fn add(ward: &Ward, clinic: &str, email: &str, role: &str, more: &[&str]) -> Run {
    let mut args = vec![
        "members", "add", "--clinic", clinic, "--email", email, "--role", role,
    ];
    args.extend_from_slice(more);
    ward.run(&args)
}

/// Fails, showing the list, unless `ward members list` for `clinic` passes `check`.
fn assert_members(ward: &Ward, clinic: &str, check: impl Fn(&str) -> bool) {
    let listed = ward.run(&["members", "list", "--clinic", clinic]).ok();
    assert!(check(&listed), "{listed}");
}

#[test]
fn an_existing_account_becomes_the_owner_of_an_imported_clinic() {
    let ward = Ward::new();
    let server = Server::start(&ward);
    let mut ada = Visitor::new(&server);
    sign_up_and_confirm(
        &ward,
        &server,
        &mut ada,
        "Ada's Own Clinic",
        "ada@example.com",
    );
    let (_, slug) = ward.create("Imported Clinic");
    let home = format!("/c/{slug}/");
    let staff = format!("/c/{slug}/staff");
    assert_ne!(ada.get(&home).0, 200, "a stranger opened the clinic");

    let out = add(
        &ward,
        &slug,
        "Ada@Example.com",
        "owner",
        &["--reason", "owner of the imported clinic"],
    )
    .ok();
    assert!(
        out.contains("added ada@example.com") && out.contains("as owner"),
        "{out}"
    );
    // The server sees it once its two-second membership cache has turned over; the
    // staff page is for owners only.
    assert_eq!(ada.status_becomes(&home, 200), 200);
    assert_eq!(ada.get(&staff).0, 200);

    let listed: serde_json::Value = serde_json::from_str(
        &ward
            .run(&["members", "list", "--clinic", &slug, "--json"])
            .ok(),
    )
    .unwrap();
    let members = listed["members"].as_array().unwrap();
    assert_eq!(members.len(), 1, "{listed}");
    assert_eq!(members[0]["email"], "ada@example.com");
    assert_eq!(members[0]["role"], "owner");
    assert_eq!(listed["invitations"].as_array().unwrap().len(), 0);

    // The clinic's own audit log names the operator and the reason.
    let (status, audit) = ada.get(&format!("/c/{slug}/audit"));
    assert_eq!(status, 200, "{audit}");
    assert!(
        audit.contains("owner of the imported clinic"),
        "no audit row with the reason: {audit}"
    );

    let err = add(
        &ward,
        &slug,
        "ada@example.com",
        "doctor",
        &["--reason", "again"],
    )
    .final_error();
    assert!(err.contains("already a member"), "{err}");
    assert_members(&ward, &slug, |listed| {
        listed.contains("owner") && !listed.contains("doctor")
    });
}

#[test]
fn a_new_address_gets_an_invitation_mail_whose_link_makes_the_account_and_joins() {
    let ward = Ward::new();
    let server = Server::start(&ward);
    let (_, slug) = ward.create("Imported Clinic");
    let base = format!("http://{}", server.addr);
    let out = add(
        &ward,
        &slug,
        "grace@example.com",
        "owner",
        &[
            "--reason",
            "owner of the imported clinic",
            "--public-url",
            &base,
            "--json",
        ],
    )
    .ok();
    let added: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(added["outcome"], "invited", "{added}");
    assert_eq!(added["mail"], "delivered", "{added}");
    assert_eq!(added["role"], "owner");

    let mail = ward.mail_to("grace@example.com", "/invite?token=").unwrap();
    assert!(mail.contains("Imported Clinic"), "{mail}");
    let link = ward.link_in_mail(&server, "grace@example.com", "/invite");
    assert_members(&ward, &slug, |listed| {
        listed.contains("invited: grace@example.com as owner")
    });

    let mut grace = Visitor::new(&server);
    let page = link.trim_start_matches(&base).to_owned();
    let token = link.split("token=").nth(1).unwrap().to_owned();
    let (status, head) = grace.submit(
        &page,
        "/invite",
        &[
            ("token", &token),
            ("name", "Grace Hopper"),
            ("password", PASSWORD),
        ],
    );
    assert_eq!(status, 303, "{head}");
    assert!(head.contains(&format!("location: /c/{slug}/")), "{head}");
    assert_eq!(grace.get(&format!("/c/{slug}/staff")).0, 200);

    // The link works once; the account it made signs in.
    let mut again = Visitor::new(&server);
    assert_eq!(again.get(&page).0, 400);
    assert!(again.sign_in("grace@example.com", PASSWORD));
    assert_members(&ward, &slug, |listed| {
        listed.contains("grace@example.com") && !listed.contains("invited:")
    });
}

#[test]
fn members_add_refuses_what_it_cannot_do_and_changes_nothing() {
    let ward = Ward::new();
    let (_, slug) = ward.create("Acme Clinic");
    let reason = ["--reason", "new owner"];
    let url = [
        "--reason",
        "new owner",
        "--public-url",
        "http://127.0.0.1:9",
    ];

    let err = add(&ward, "no-such-clinic", "a@example.com", "owner", &url).final_error();
    assert!(
        err.contains("no clinic") && err.contains("no-such-clinic"),
        "{err}"
    );

    let run = add(&ward, &slug, "a@example.com", "boss", &url);
    assert_eq!(run.status.code(), Some(2), "{run:#?}");
    assert!(
        run.stderr.contains("--role") && run.stderr.contains("owner, doctor"),
        "{run:#?}"
    );

    let err = add(&ward, &slug, "not an address", "owner", &url).final_error();
    assert!(err.contains("--email"), "{err}");

    let err = add(&ward, &slug, "a@example.com", "owner", &["--reason", "  "]).final_error();
    assert!(err.contains("--reason"), "{err}");

    // Without the address users reach Ward at, an invitation's link cannot be written.
    let err = add(&ward, &slug, "a@example.com", "owner", &reason).final_error();
    assert!(err.contains("WARD_PUBLIC_URL"), "{err}");

    ward.run(&["clinics", "suspend", &slug, "--reason", "unpaid"])
        .ok();
    let err = add(&ward, &slug, "a@example.com", "owner", &url).final_error();
    assert!(err.contains("suspended"), "{err}");

    let listed: serde_json::Value = serde_json::from_str(
        &ward
            .run(&["members", "list", "--clinic", &slug, "--json"])
            .ok(),
    )
    .unwrap();
    assert_eq!(listed["members"].as_array().unwrap().len(), 0, "{listed}");
    assert_eq!(
        listed["invitations"].as_array().unwrap().len(),
        0,
        "{listed}"
    );
    assert!(
        !ward.data_dir().join("outbox").exists()
            || std::fs::read_dir(ward.data_dir().join("outbox"))
                .unwrap()
                .next()
                .is_none(),
        "a mail was written"
    );
}
