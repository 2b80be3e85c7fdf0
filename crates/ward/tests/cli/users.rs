//! `ward users disable` and `ward users enable` through the binary, checked over HTTP
//! against a running `ward serve`.

use crate::support::{PASSWORD, Run, Server, Visitor, Ward, sign_up_and_confirm};

/// `ward users <verb> --email <email> --reason <reason>`.
fn users(ward: &Ward, verb: &str, email: &str, reason: &str) -> Run {
    ward.run(&["users", verb, "--email", email, "--reason", reason])
}

#[test]
fn a_disabled_account_loses_its_sessions_and_cannot_sign_in_until_enabled() {
    let ward = Ward::new();
    let server = Server::start(&ward);
    let mut ada = Visitor::new(&server);
    let home = sign_up_and_confirm(&ward, &server, &mut ada, "Ada's Clinic", "ada@example.com");
    let home = home.as_str();
    assert!(home.starts_with("/c/"), "{home}");
    assert_eq!(ada.get(home).0, 200, "the confirmed owner is not signed in");
    let mut other_device = Visitor::new(&server);
    assert!(other_device.sign_in("ada@example.com", PASSWORD));
    assert_eq!(other_device.get(home).0, 200);

    let out = users(&ward, "disable", "ada@example.com", "left the practice").ok();
    assert!(out.contains("disabled ada@example.com"), "{out}");
    // Both sessions end (the server's session cache holds an answer two seconds).
    assert_eq!(ada.status_becomes(home, 303), 303);
    assert_eq!(other_device.status_becomes(home, 303), 303);
    let mut fresh = Visitor::new(&server);
    assert!(
        !fresh.sign_in("ada@example.com", PASSWORD),
        "a disabled account signed in"
    );
    assert_ne!(fresh.get(home).0, 200);

    let out = users(&ward, "enable", "ada@example.com", "back from leave").ok();
    assert!(out.contains("re-enabled ada@example.com"), "{out}");
    let mut back = Visitor::new(&server);
    assert!(
        back.sign_in("ada@example.com", PASSWORD),
        "enabled, yet refused"
    );
    assert_eq!(back.get(home).0, 200);
    // Enabling does not bring back the sessions that disabling ended.
    assert_ne!(ada.get(home).0, 200);
}

#[test]
fn users_commands_refuse_an_unknown_address_a_bad_one_and_no_reason() {
    let ward = Ward::new();
    ward.create("Acme Clinic");
    for verb in ["disable", "enable"] {
        let err = users(&ward, verb, "nobody@example.com", "x").final_error();
        assert!(err.contains("no account for nobody@example.com"), "{err}");
        let err = users(&ward, verb, "not an address", "x").final_error();
        assert!(err.contains("--email"), "{err}");
        let err = users(&ward, verb, "nobody@example.com", " ").final_error();
        assert!(err.contains("--reason"), "{err}");
    }
}
