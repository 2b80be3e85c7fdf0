//! `ward support request|status|link|end` through the real binary, against a running
//! `ward serve`: the owner approves on the page, the operator's link opens the session,
//! `ward support end` signs it out; and the emergency path.

use crate::support::{Run, Server, Visitor, Ward, run, sign_up_and_confirm};

const REASON: &str = "Receipts print without the clinic address";

/// `ward support <args>` as operator "alice".
fn support(ward: &Ward, args: &[&str]) -> Run {
    run(ward.cmd().env("USER", "alice").arg("support").args(args))
}

/// `ward support request --clinic <clinic> --reason <reason> --minutes <minutes> <more>`.
fn request(ward: &Ward, clinic: &str, reason: &str, minutes: &str, more: &[&str]) -> Run {
    let mut args = vec![
        "request",
        "--clinic",
        clinic,
        "--reason",
        reason,
        "--minutes",
        minutes,
    ];
    args.extend(more);
    support(ward, &args)
}

/// The sign-in link `out` prints.
fn link_in(out: &str, base: &str) -> String {
    out.split_whitespace()
        .find(|w| w.starts_with(&format!("{base}/support/")))
        .unwrap_or_else(|| panic!("no link in {out}"))
        .to_owned()
}

/// A new visitor that opens the sign-in link and starts the session.
fn open_session(server: &Server, link: &str) -> Visitor {
    let base = format!("http://{}", server.addr);
    let page = link.trim().trim_start_matches(&base).to_owned();
    assert!(page.starts_with("/support/"), "{link}");
    let token = page.trim_start_matches("/support/").to_owned();
    let mut op = Visitor::new(server);
    let (status, head) = op.submit(&page, "/support/start", &[("token", &token)]);
    assert_eq!(status, 303, "{head}");
    op
}

/// [`open_session`], then the clinic's page `home` as the session sees it (which must
/// open).
fn session_at(server: &Server, link: &str, home: &str) -> (Visitor, String) {
    let mut op = open_session(server, link);
    let (code, page) = op.get(home);
    assert_eq!(code, 200, "{page}");
    (op, page)
}

/// Fails, showing it, unless `ward support status` for `clinic` passes `check`.
fn assert_status(ward: &Ward, clinic: &str, check: impl Fn(&str) -> bool) {
    let status = support(ward, &["status", "--clinic", clinic]).ok();
    assert!(check(&status), "{status}");
}

#[test]
fn support_access_through_the_command_line_and_the_pages() {
    let ward = Ward::new();
    let server = Server::start(&ward);
    let base = format!("http://{}", server.addr);
    let mut owner = Visitor::new(&server);
    let home = sign_up_and_confirm(&ward, &server, &mut owner, "Acme Clinic", "owner@acme.test");
    let slug = home
        .trim_start_matches("/c/")
        .trim_end_matches('/')
        .to_owned();
    let url = ["--public-url", base.as_str()];

    // What is refused, and why.
    let long = request(&ward, &slug, REASON, "45", &[]);
    assert!(!long.status.success());
    assert!(
        long.stderr.contains("45 is not in 1..=30"),
        "{}",
        long.stderr
    );
    let no_reason = support(&ward, &["request", "--clinic", &slug, "--minutes", "10"]);
    assert!(!no_reason.status.success());
    assert!(
        no_reason.stderr.contains("--reason"),
        "{}",
        no_reason.stderr
    );
    let blank = request(&ward, &slug, "  ", "10", &url).final_error();
    assert!(blank.contains("--reason must say why"), "{blank}");
    let no_url = request(&ward, &slug, REASON, "10", &[]).final_error();
    assert!(no_url.contains("WARD_PUBLIC_URL"), "{no_url}");
    let nowhere = request(&ward, "no-such-clinic", REASON, "10", &url).final_error();
    assert!(nowhere.contains("no-such-clinic"), "{nowhere}");
    let write = request(
        &ward,
        &slug,
        REASON,
        "10",
        &["--emergency", "--write", "--public-url", &base],
    )
    .final_error();
    assert!(
        write.contains("emergency support session is read only"),
        "{write}"
    );
    let help = support(&ward, &["request", "--help"]).ok();
    assert!(
        help.contains("1 to 30 minutes") && help.contains("--emergency"),
        "{help}"
    );

    // The request: the owner is mailed and sees it on their pages.
    let out = request(&ward, &slug, REASON, "30", &url).ok();
    assert!(
        out.contains(&format!(
            "support grant #1 requested on clinic {slug} for 30 minutes; 1 owner(s) were asked"
        )),
        "{out}"
    );
    let mail = ward
        .mail_to("owner@acme.test", "Support asks to look at your clinic")
        .expect("the owner is mailed");
    assert!(
        mail.contains("alice") && mail.contains(&format!("{base}/c/{slug}/support")),
        "{mail}"
    );
    let (_, page) = owner.get(&home);
    assert!(
        page.contains("Support (alice) asks to look at this clinic"),
        "{page}"
    );
    let again = request(&ward, &slug, REASON, "30", &url).final_error();
    assert!(
        again.contains("already has an open support grant (#1)"),
        "{again}"
    );

    // No link before approval.
    let early = support(&ward, &["link", "--grant", "1", "--public-url", &base]).final_error();
    assert!(early.contains("not approved yet"), "{early}");
    assert_status(&ward, &slug, |status| {
        status.contains("#1") && status.contains("requested") && status.contains(REASON)
    });

    // The owner approves; the link opens the session, once.
    let (code, head) = owner.submit(
        &format!("/c/{slug}/support"),
        &format!("/c/{slug}/support/1/approve"),
        &[],
    );
    assert_eq!(code, 303, "{head}");
    assert_status(&ward, &slug, |status| {
        status.contains("approved (link not used yet)")
            && status.contains("`ward support link --grant 1`")
    });
    let out = support(&ward, &["link", "--grant", "1", "--public-url", &base]).ok();
    let link = link_in(&out, &base);
    assert!(out.starts_with("sign in once, within 10 minutes:"), "{out}");
    let (mut op, page) = session_at(&server, &link, &home);
    assert!(
        page.contains("Support session (alice) — read only — ends at"),
        "{page}"
    );
    assert!(page.contains(&format!("Reason: {REASON}")), "{page}");
    let used = support(&ward, &["link", "--grant", "1", "--public-url", &base]).final_error();
    assert!(used.contains("its link was used"), "{used}");
    let (code, _) = op.get(&format!("/c/{slug}/export"));
    assert_eq!(code, 403);
    assert_status(&ward, &slug, |status| {
        status.contains("active") && status.contains("approved by Dr Ada Lovelace")
    });

    // `ward support end` signs it out at its next page.
    let out = support(&ward, &["end", "--grant", "1"]).ok();
    assert!(out.contains("support grant #1 ended"), "{out}");
    assert_eq!(op.status_becomes(&home, 303), 303);
    assert_status(&ward, &slug, |status| {
        status.contains("ended") && status.contains("ended by Support (alice)")
    });
    let twice = support(&ward, &["end", "--grant", "1"]).final_error();
    assert!(twice.contains("is not open"), "{twice}");
    let (_, page) = owner.get(&format!("/c/{slug}/support"));
    assert!(
        page.contains("Past support sessions") && page.contains(REASON),
        "{page}"
    );

    // The emergency path: open at once, the owner mailed at once, marked in the log.
    let out = request(
        &ward,
        &slug,
        REASON,
        "5",
        &["--emergency", "--public-url", &base],
    )
    .ok();
    assert!(out.contains("emergency support grant #2"), "{out}");
    let link = link_in(&out, &base);
    let mail = ward
        .mail_to("owner@acme.test", "Emergency support access to your clinic")
        .expect("the owner is mailed at once");
    assert!(mail.contains("without waiting for approval"), "{mail}");
    let (_op, page) = session_at(&server, &link, &home);
    assert!(
        page.contains("Support session (alice) — read only"),
        "{page}"
    );
    let (_, page) = owner.get(&format!("/c/{slug}/audit"));
    assert!(page.contains("emergency support"), "{page}");
    assert!(
        page.contains("emergency support opened without approval: 5 minutes, read only"),
        "{page}"
    );

    // The log still verifies.
    drop(server);
    let verify = ward.run(&["verify"]).ok();
    assert!(
        verify.contains("1 clinic(s) verified, 0 with problems"),
        "{verify}"
    );
}
