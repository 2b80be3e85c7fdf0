//! Bad arguments and `--help`.

use crate::support::{MASTER_HEX, Ward};

#[test]
fn missing_or_bad_arguments_fail_with_a_clear_message() {
    let ward = Ward::new();
    let run = ward.run(&["clinics", "create"]);
    assert_eq!(run.status.code(), Some(2), "{run:#?}");
    assert!(run.stderr.contains("--name"), "{run:#?}");
    assert!(
        !run.stderr.contains(MASTER_HEX),
        "the key was echoed: {run:#?}"
    );

    let err = ward
        .run(&["clinics", "create", "--name", "Acme", "--slug", "Bad Slug"])
        .one_line_error();
    assert!(err.contains("--slug") && err.contains("lowercase"), "{err}");

    let err = ward
        .run(&["clinics", "create", "--name", "   "])
        .one_line_error();
    assert!(err.contains("name"), "{err}");

    let run = ward.run(&["clinics", "frobnicate"]);
    assert_eq!(run.status.code(), Some(2));
    let run = ward.run(&["--max-open-tenants", "0", "clinics", "list"]);
    assert_eq!(run.status.code(), Some(2), "{run:#?}");
    let run = ward.run(&["serve", "--addr", "not-an-address"]);
    assert_eq!(run.status.code(), Some(2), "{run:#?}");
    let run = ward.run(&["serve", "--trusted-proxy", "cloudflare"]);
    assert_eq!(run.status.code(), Some(2), "{run:#?}");
}

#[test]
fn a_malformed_master_key_is_refused_before_anything_is_written() {
    let ward = Ward::new();
    let err = crate::support::run(
        ward.cmd()
            .env("WARD_MASTER_KEY", "not-hex")
            .args(["clinics", "list"]),
    )
    .one_line_error();
    assert!(
        err.contains("WARD_MASTER_KEY") && err.contains("64 hexadecimal"),
        "{err}"
    );
    assert!(!err.contains("not-hex"), "the key was echoed: {err}");
    assert!(!ward.data_dir().join("control.db").exists());
}

#[test]
fn the_wrong_master_key_names_the_file_it_cannot_open() {
    let ward = Ward::new();
    ward.create("Acme Clinic");
    let other = "ab".repeat(32);
    let err = crate::support::run(
        ward.cmd()
            .env("WARD_MASTER_KEY", &other)
            .args(["clinics", "list"]),
    )
    .one_line_error();
    assert!(err.contains("control.db") && err.contains("key"), "{err}");
    assert!(!err.contains(&other) && !err.contains(MASTER_HEX), "{err}");
}

#[test]
fn help_says_what_each_command_is_for() {
    let ward = Ward::new();
    for (args, purpose) in [
        (&["--help"][..], "one encrypted database per clinic"),
        (&["serve", "--help"], "Run the web server"),
        (&["migrate", "--help"], "newest schema"),
        (&["clinics", "--help"], "Create, list and inspect clinics"),
        (&["clinics", "create", "--help"], "Register a clinic"),
        (&["clinics", "list", "--help"], "List every clinic"),
        (&["clinics", "show", "--help"], "Show one clinic"),
        (&["support", "--help"], "with its owners' approval"),
        (
            &["support", "request", "--help"],
            "Nothing opens before an owner approves",
        ),
        (&["support", "link", "--help"], "one-time sign-in link"),
        (&["support", "end", "--help"], "signed out at"),
    ] {
        let out = ward.run(args).ok();
        assert!(out.contains(purpose), "ward {args:?}: {out}");
        assert!(out.contains("Usage: ward"), "{out}");
    }
    // Every setting names its environment variable, and secrets are not echoed.
    let out = ward.run(&["serve", "--help"]).ok();
    ward_testkit::assert_contains_all(
        &out,
        &[
            "WARD_ADDR",
            "WARD_DATA_DIR",
            "WARD_MASTER_KEY",
            "WARD_PUBLIC_URL",
            "WARD_SMTP_URL",
            "WARD_MAIL_FROM",
            "WARD_TRUSTED_PROXY",
            "WARD_MAX_OPEN_TENANTS",
            "WARD_LOG",
        ],
    );
    assert!(
        !out.contains(MASTER_HEX),
        "serve --help shows the master key"
    );
    let version = ward.run(&["--version"]).ok();
    assert!(version.contains(env!("CARGO_PKG_VERSION")));
}

#[test]
fn a_handle_cap_beyond_the_open_file_limit_is_refused_with_what_to_do() {
    let ward = Ward::new();
    // A million clinics need four million descriptors: more than any Linux allows.
    let err = ward
        .run(&["--max-open-tenants", "1000000", "clinics", "list"])
        .one_line_error();
    assert!(err.contains("WARD_MAX_OPEN_TENANTS is 1000000"), "{err}");
    assert!(err.contains("allows at most"), "{err}");
    assert!(err.contains("ulimit -n"), "{err}");
    assert!(
        !ward.data_dir().join("control.db").exists(),
        "nothing was opened"
    );
    // Within the limit, the same command works.
    ward.run(&["--max-open-tenants", "50", "clinics", "list"])
        .ok();
}

#[test]
fn a_data_directory_of_the_old_engine_is_refused_in_one_sentence() {
    let ward = Ward::new();
    std::fs::create_dir_all(ward.data_dir()).unwrap();
    // A control plane written before the format mark existed (by the old engine).
    std::fs::write(ward.data_dir().join("control.db"), vec![0x42; 8192]).unwrap();
    let err = ward.run(&["clinics", "list"]).one_line_error();
    assert!(err.contains("earlier Ward"), "{err}");
    assert!(err.contains("move the directory aside"), "{err}");
    assert_eq!(
        std::fs::read(ward.data_dir().join("control.db")).unwrap(),
        vec![0x42; 8192],
        "the old file is left as it was"
    );
}
