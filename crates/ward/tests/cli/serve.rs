//! `ward serve`: health, status, and a clean stop on SIGTERM.

use crate::support::{Server, Ward, http_get, http_get_with};

#[test]
fn serve_answers_health_and_status_and_stops_cleanly_on_sigterm() {
    let ward = Ward::new();
    for name in ["Alpha", "Beta", "Gamma"] {
        ward.create(name);
    }
    let server = Server::start(&ward);
    assert_eq!(server.operator, None, "no operator listener unless asked");
    assert_eq!(server.get("/healthz"), (200, "ok".to_owned()));
    let (status, body) = server.get("/status");
    assert_eq!(status, 200);
    assert!(body.contains(">ok</p>"), "{body}");
    assert!(!body.contains("Alpha"), "/status shows clinic names");
    assert!(!body.contains("3"), "/status shows counts: {body}");
    let (status, _) = server.get("/no/such/page");
    assert_eq!(status, 404);
    let (status, _) = server.get("/metrics");
    assert_eq!(status, 404, "metrics on the public port");

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
fn the_operator_listener_serves_metrics_and_the_detailed_status_apart_from_the_public_port() {
    let ward = Ward::new();
    for name in ["Alpha", "Beta", "Gamma"] {
        ward.create(name);
    }
    let server = Server::start_with(&ward, &["--operator-addr", "127.0.0.1:0"]);
    let operator = server.operator.expect("the operator listener's address");
    assert_ne!(operator, server.addr);
    for _ in 0..3 {
        assert_eq!(server.get("/healthz").0, 200);
    }
    assert_eq!(server.get("/no/such/page?patient=Ana+Rao").0, 404);

    let (status, metrics) = http_get(operator, "/metrics");
    assert_eq!(status, 200);
    let healthz = metrics
        .lines()
        .find(|l| {
            l.starts_with("ward_http_requests_total{")
                && l.contains("route=\"/healthz\"")
                && l.contains("status=\"200\"")
        })
        .unwrap_or_else(|| panic!("no request counter for /healthz: {metrics}"));
    let count: f64 = healthz.rsplit(' ').next().unwrap().parse().unwrap();
    assert!(count >= 3.0, "{healthz}");
    assert!(metrics.contains("route=\"unmatched\""), "{metrics}");
    assert!(metrics.contains("ward_tenant_handle_budget "), "{metrics}");
    assert!(
        !metrics.contains("no/such") && !metrics.contains("Ana"),
        "{metrics}"
    );

    let (status, text) = http_get(operator, "/status");
    assert_eq!(status, 200, "{text}");
    assert!(text.contains("overall: ok"), "{text}");
    assert!(text.contains("clinics: 3 · 3 active"), "{text}");
    assert!(text.contains(env!("CARGO_PKG_VERSION")), "{text}");
    assert!(!text.contains("Alpha"), "{text}");
    let (_, _, json) = http_get_with(operator, "/status", &[("Accept", "application/json")]);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["clinics"]["total"], 3);

    // Each request logs one line with its route template and id, never its path or query.
    let (_, head, _) = http_get_with(server.addr, "/healthz", &[("X-Request-Id", "probe-42")]);
    assert!(head.contains("x-request-id: probe-42"), "{head}");
    let (exit, log) = server.terminate();
    assert!(exit.success(), "{log}");
    let line = log
        .lines()
        .find(|l| l.contains("request_id=probe-42"))
        .unwrap_or_else(|| panic!("no request line: {log}"));
    assert!(
        line.contains("route=/healthz") && line.contains("status=200"),
        "{line}"
    );
    assert!(line.contains("latency_us="), "{line}");
    assert!(log.contains("route=unmatched"), "{log}");
    assert!(!log.contains("no/such") && !log.contains("Ana"), "{log}");
}

#[test]
fn json_logs_are_one_object_a_line_with_the_request_span() {
    let ward = Ward::new();
    let server = Server::start_with(&ward, &["--log-format", "json"]);
    let (_, head, _) = http_get_with(server.addr, "/healthz", &[("X-Request-Id", "json-7")]);
    assert!(head.contains("x-request-id: json-7"), "{head}");
    let (exit, log) = server.terminate();
    assert!(exit.success(), "{log}");
    // Every log line is an object (a panic's report, should one happen, is not a log line).
    assert!(!log.contains(" INFO "), "text lines in a JSON log: {log}");
    let lines: Vec<serde_json::Value> = log
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l:?}")))
        .collect();
    assert!(
        lines
            .iter()
            .any(|v| v["fields"]["message"] == "Ward is listening"),
        "{log}"
    );
    let request = lines
        .iter()
        .find(|v| v["span"]["request_id"] == "json-7")
        .unwrap_or_else(|| panic!("no request line: {log}"));
    assert_eq!(request["span"]["route"], "/healthz", "{request}");
    assert_eq!(request["span"]["method"], "GET", "{request}");
    assert_eq!(request["span"]["status"], 200, "{request}");
    assert_eq!(
        request["fields"]["message"], "request finished",
        "{request}"
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
