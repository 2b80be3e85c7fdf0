//! `ward serve`: health, status, and a clean stop on SIGTERM.

use crate::support::{Server, Ward};

#[test]
fn serve_answers_health_and_status_and_stops_cleanly_on_sigterm() {
    let ward = Ward::new();
    for name in ["Alpha", "Beta", "Gamma"] {
        ward.create(name);
    }
    let server = Server::start(&ward);
    assert_eq!(server.get("/healthz"), (200, "ok".to_owned()));
    let (status, body) = server.get("/status");
    assert_eq!(status, 200);
    assert!(body.contains("Clinics</th><td>3 "), "{body}");
    assert!(body.contains(env!("CARGO_PKG_VERSION")), "{body}");
    assert!(!body.contains("Alpha"), "/status shows clinic names");
    let (status, _) = server.get("/no/such/page");
    assert_eq!(status, 404);

    let (exit, log) = server.terminate();
    assert!(exit.success(), "{exit:?}\n{log}");
    assert!(log.contains("shutdown requested"), "{log}");
    assert!(log.contains("stopped"), "{log}");
    assert!(!log.contains(crate::support::MASTER_HEX));
    assert_eq!(
        ward.non_empty_wals(),
        Vec::<std::path::PathBuf>::new(),
        "{log}"
    );
}

#[test]
fn a_taken_port_is_one_clear_error() {
    let ward = Ward::new();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    // Opening the data directory logs first; the error is the last word.
    let err = ward.run(&["serve", "--addr", &addr]).final_error();
    assert!(err.contains(&addr) && err.contains("listen"), "{err}");
}
