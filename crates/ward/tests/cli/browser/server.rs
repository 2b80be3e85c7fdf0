//! The real `ward serve` on a free loopback port, with its own data directory.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use crate::support::{link_in, outbox_files, read_mail};

pub struct Server {
    pub base: String,
    pub data: tempfile::TempDir,
    process: Child,
}

impl Server {
    /// A server whose owners work inside a long grace for two-step sign-in.
    pub fn start() -> Self {
        Self::start_with(&[("WARD_OWNER_MFA_GRACE", "365d")])
    }

    /// A server with these extra variables.
    pub fn start_with(env: &[(&str, &str)]) -> Self {
        let data = tempfile::tempdir().unwrap();
        let mut process = Command::new(env!("CARGO_BIN_EXE_ward"))
            .args(["serve", "--addr", "127.0.0.1:0"])
            .env("WARD_SIGNUP_MIN_SECONDS", "0")
            .envs(env.iter().copied())
            .env("WARD_DATA_DIR", data.path())
            .env("WARD_MASTER_KEY", "22".repeat(32))
            .env("WARD_LOG", "info")
            .env_remove("WARD_SMTP_URL")
            .env_remove("WARD_PUBLIC_URL")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = process.stderr.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut sent = false;
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                eprintln!("ward: {line}");
                if !sent && line.contains("Ward is listening") {
                    let addr = line
                        .split("addr=")
                        .nth(1)
                        .and_then(|r| r.split_whitespace().next())
                        .unwrap_or_default()
                        .to_owned();
                    let _ = tx.send(addr);
                    sent = true;
                }
            }
        });
        let addr = rx
            .recv_timeout(Duration::from_secs(60))
            .expect("ward serve did not start listening");
        Self {
            base: format!("http://{addr}"),
            data,
            process,
        }
    }

    /// The first link to `path` in the newest mail of the outbox (decoding the
    /// quoted-printable soft breaks a mail body may carry).
    pub fn link_in_newest_mail(&self, path: &str) -> String {
        let dir = self.data.path().join("outbox");
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(newest) = outbox_files(&dir).last() {
                let text = read_mail(newest);
                if let Some(link) = link_in(&text, &format!("{}{path}", self.base)) {
                    return link;
                }
            }
            assert!(
                std::time::Instant::now() < deadline,
                "no mail with a {path} link in {}",
                dir.display()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.process.kill();
        let _ = self.process.wait();
    }
}
