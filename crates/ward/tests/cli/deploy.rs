//! fly.toml, the Dockerfile and the start script agree with the binary.

use std::path::PathBuf;

use crate::support::{Server, Ward};

fn repo_file(name: &str) -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The default of `--addr` as `ward serve --help` prints it.
fn default_addr(ward: &Ward) -> std::net::SocketAddr {
    let help = ward.run(&["serve", "--help"]).ok();
    let after = &help[help.find("--addr").unwrap()..];
    let default = &after[after.find("[default: ").unwrap() + "[default: ".len()..];
    default[..default.find(']').unwrap()].parse().unwrap()
}

#[test]
fn fly_toml_agrees_with_the_binary() {
    let fly: toml::Table = repo_file("fly.toml").parse().unwrap();
    let env = fly["env"].as_table().unwrap();
    let env_str = |k: &str| env[k].as_str().unwrap().to_owned();

    // The volume holds the data directory.
    let mounts = fly["mounts"].as_array().unwrap();
    assert_eq!(mounts.len(), 1);
    assert_eq!(
        mounts[0]["destination"].as_str().unwrap(),
        env_str("WARD_DATA_DIR")
    );

    // The port fly routes to is the one Ward listens on, and the binary's default.
    let ward = Ward::new();
    let default = default_addr(&ward);
    let listen: std::net::SocketAddr = env_str("WARD_ADDR").parse().unwrap();
    let service = fly["http_service"].as_table().unwrap();
    let internal = service["internal_port"].as_integer().unwrap();
    assert_eq!(internal, i64::from(listen.port()));
    assert_eq!(internal, i64::from(default.port()));
    assert!(
        listen.ip().is_unspecified(),
        "inside the VM Ward must listen on all addresses"
    );
    assert_eq!(service["force_https"].as_bool(), Some(true));

    // The health check asks the route that answers `ok`.
    let checks = service["checks"].as_array().unwrap();
    assert_eq!(checks.len(), 1);
    let path = checks[0]["path"].as_str().unwrap();
    assert_eq!(path, "/healthz");
    assert_eq!(checks[0]["method"].as_str().unwrap_or("GET"), "GET");
    let server = Server::start(&ward);
    assert_eq!(server.get(path), (200, "ok".to_owned()));
    drop(server);

    assert_eq!(env_str("WARD_TRUSTED_PROXY"), "fly");
    // fly stops machines with the signal Ward drains on.
    assert_eq!(fly["kill_signal"].as_str(), Some("SIGTERM"));

    // Secrets are set with `fly secrets`, never written here.
    for secret in ["WARD_MASTER_KEY", "WARD_PEPPER", "WARD_SMTP_URL"] {
        assert!(!env.contains_key(secret), "{secret} is in fly.toml's [env]");
    }
    for (k, v) in env {
        let v = v.as_str().unwrap_or_default();
        let hexish = v.len() >= 32 && v.chars().all(|c| c.is_ascii_hexdigit());
        assert!(!hexish, "{k} looks like a key");
        assert!(
            !(v.contains("://") && v.contains('@')),
            "{k} carries credentials"
        );
    }
}

#[test]
fn the_image_and_its_start_script_match_fly_toml() {
    let fly: toml::Table = repo_file("fly.toml").parse().unwrap();
    let data_dir = fly["env"]["WARD_DATA_DIR"].as_str().unwrap();
    let port = fly["http_service"]["internal_port"].as_integer().unwrap();
    let dockerfile = repo_file(fly["build"]["dockerfile"].as_str().unwrap());
    assert!(
        dockerfile.contains(&format!("WARD_DATA_DIR={data_dir}")),
        "{dockerfile}"
    );
    assert!(
        dockerfile.contains(&format!("EXPOSE {port}")),
        "{dockerfile}"
    );
    // Migrations run at boot, where the volume is, and a failure does not stop serving.
    let start = repo_file("scripts/start");
    let migrate = start.find("ward migrate").unwrap();
    let serve = start.find("exec $run ward serve").unwrap();
    assert!(migrate < serve);
    assert!(!repo_file("fly.toml").contains("release_command"));
}
