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
    ] {
        let out = ward.run(args).ok();
        assert!(out.contains(purpose), "ward {args:?}: {out}");
        assert!(out.contains("Usage: ward"), "{out}");
    }
    // Every setting names its environment variable, and secrets are not echoed.
    let out = ward.run(&["serve", "--help"]).ok();
    for var in [
        "WARD_ADDR",
        "WARD_DATA_DIR",
        "WARD_MASTER_KEY",
        "WARD_PUBLIC_URL",
        "WARD_SMTP_URL",
        "WARD_MAIL_FROM",
        "WARD_TRUSTED_PROXY",
        "WARD_MAX_OPEN_TENANTS",
        "WARD_LOG",
    ] {
        assert!(out.contains(var), "serve --help lacks {var}");
    }
    assert!(
        !out.contains(MASTER_HEX),
        "serve --help shows the master key"
    );
    let version = ward.run(&["--version"]).ok();
    assert!(version.contains(env!("CARGO_PKG_VERSION")));
}
