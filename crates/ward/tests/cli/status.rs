//! `ward status`: the detailed health report from the data directory, exit 1 when
//! degraded.

use crate::support::Ward;

#[test]
fn status_reports_counts_and_failing_clinics_and_exits_1_when_degraded() {
    let ward = Ward::new();
    let (alpha, _) = ward.create("Alpha Clinic");
    let (beta, _) = ward.create("Beta Clinic");

    let out = ward.run(&["status", "--json"]).ok();
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["state"], "ok", "{out}");
    assert_eq!(v["control_plane"]["ok"], true, "{out}");
    assert_eq!(v["clinics"]["total"], 2, "{out}");
    assert_eq!(v["clinics"]["by_status"]["active"], 2, "{out}");
    assert_eq!(v["failing"], serde_json::json!([]), "{out}");
    assert!(v.get("process").is_none(), "{out}");
    assert!(!out.contains("Alpha"), "{out}");

    // A clinic whose file no longer opens: `ward migrate` finds and records it.
    let file = ward.data_dir().join("clinics").join(format!("{alpha}.db"));
    std::fs::write(&file, vec![0x5a; 8192]).unwrap();
    let _ = ward.run(&["migrate"]);
    let run = ward.run(&["status", "--json"]);
    assert_eq!(run.status.code(), Some(1), "{run:#?}");
    let v: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(v["state"], "degraded", "{}", run.stdout);
    assert_eq!(v["failing"][0]["id"], alpha, "{}", run.stdout);
    assert!(!run.stdout.contains(&beta), "{}", run.stdout);

    let run = ward.run(&["status"]);
    assert_eq!(run.status.code(), Some(1));
    assert!(run.stdout.contains("overall: degraded"), "{}", run.stdout);
    assert!(run.stdout.contains(&alpha), "{}", run.stdout);
}
