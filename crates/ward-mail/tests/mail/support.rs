//! A control plane in a temp dir with a controlled clock, a real SMTP server on
//! loopback, and helpers to read what it received.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};

use ward_control::ControlPlane;
use ward_core::{Email, ManualClock, parse_time};
use ward_mail::{MailConfig, Mailer};
use ward_tenancy::MasterKey;

/// A fixed master key, so a test can reopen the same control plane.
pub const MASTER_HEX: &str = "4a1f5e0c9b7d3a2e8f6c1b0d9e8a7c6b5d4e3f2a1b0c9d8e7f6a5b4c3d2e1f00";

/// The sender every test mailer uses.
pub const FROM: &str = "Ward <ward@ward.test>";

/// A control plane in its own data directory.
pub struct Plane {
    pub dir: tempfile::TempDir,
    pub control: Arc<ControlPlane>,
    pub clock: ManualClock,
}

impl Plane {
    pub async fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let clock = ManualClock::new(parse_time("2026-03-01T09:00:00Z").unwrap());
        let control = open_control(dir.path(), &clock).await;
        Self {
            dir,
            control,
            clock,
        }
    }

    /// A mailer on this plane sending to `smtp_url` (or files when `None`).
    pub fn mailer(&self, smtp_url: Option<String>) -> Mailer {
        Mailer::new(
            self.control.clone(),
            MailConfig {
                smtp_url,
                from: FROM.into(),
                outbox_dir: self.outbox_dir(),
            },
        )
        .unwrap()
    }

    pub fn outbox_dir(&self) -> PathBuf {
        self.dir.path().join("outbox")
    }
}

pub async fn open_control(dir: &Path, clock: &ManualClock) -> Arc<ControlPlane> {
    let master = MasterKey::from_hex(MASTER_HEX).unwrap();
    let (control, _) = ControlPlane::open(dir, &master, Arc::new(clock.clone()))
        .await
        .unwrap();
    Arc::new(control)
}

pub fn email(s: &str) -> Email {
    Email::parse(s).unwrap()
}

/// `scripts/test-smtp-server.py`: aiosmtpd on 127.0.0.1, storing what it receives.
pub struct SmtpServer {
    child: Child,
    pub port: u16,
    dir: tempfile::TempDir,
}

impl SmtpServer {
    /// Starts the server on `port` (0: any free port) and waits for its READY line.
    pub fn start(port: u16) -> Self {
        let script =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/test-smtp-server.py");
        let dir = tempfile::tempdir().unwrap();
        let messages = dir.path().join("messages");
        // A file rather than a pipe nobody reads, so a chatty server never blocks.
        let stderr_path = dir.path().join("stderr");
        let mut child = Command::new("python3")
            .arg(&script)
            .arg(&messages)
            .arg(port.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&stderr_path).unwrap())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot run python3 for the SMTP test server ({e}); the mail tests need python3 with aiosmtpd: run scripts/install-deps")
            });
        let mut line = String::new();
        let stdout = child.stdout.take().unwrap();
        // Blocks until the server listens (or exits): its READY line is the signal.
        BufReader::new(stdout).read_line(&mut line).unwrap();
        let Some(bound) = line.trim().strip_prefix("READY ") else {
            let _ = child.kill();
            let _ = child.wait();
            let err = std::fs::read_to_string(&stderr_path).unwrap_or_default();
            panic!(
                "the SMTP test server ({}) did not start; the mail tests need python3 with aiosmtpd (run scripts/install-deps). It said: {}",
                script.display(),
                err.trim()
            );
        };
        let port = bound.parse().unwrap();
        Self { child, port, dir }
    }

    pub fn url(&self) -> String {
        format!("smtp://127.0.0.1:{}", self.port)
    }

    /// Every message received so far, in arrival order.
    pub fn received(&self) -> Vec<Received> {
        let mut out = Vec::new();
        for n in 1.. {
            let eml = self.dir.path().join("messages").join(format!("{n}.eml"));
            if !eml.exists() {
                break;
            }
            let meta: serde_json::Value = serde_json::from_slice(
                &std::fs::read(self.dir.path().join("messages").join(format!("{n}.json"))).unwrap(),
            )
            .unwrap();
            out.push(Received {
                raw: std::fs::read(eml).unwrap(),
                mail_from: meta["mail_from"].as_str().unwrap().to_owned(),
                rcpt_tos: meta["rcpt_tos"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|v| v.as_str().unwrap().to_owned())
                    .collect(),
            });
        }
        out
    }
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One message as the SMTP server received it.
pub struct Received {
    pub raw: Vec<u8>,
    pub mail_from: String,
    pub rcpt_tos: Vec<String>,
}

/// A parsed mail: headers and the text and HTML parts, decoded.
pub struct Parsed {
    /// (name, decoded value) in order.
    pub headers: Vec<(String, String)>,
    /// The raw header section, before the first blank line.
    pub raw_headers: String,
    pub text: String,
    pub html: String,
    /// The To header's addresses, parsed from the raw header (encoded words decoded
    /// inside the display name, not before parsing).
    pub to: Vec<mailparse::MailAddr>,
}

impl Parsed {
    pub fn header(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }

    pub fn subject(&self) -> &str {
        let s = self.header("Subject");
        assert_eq!(s.len(), 1, "one Subject header");
        s[0]
    }
}

pub fn parse(raw: &[u8]) -> Parsed {
    let mail = mailparse::parse_mail(raw).unwrap();
    let headers = mail
        .headers
        .iter()
        .map(|h| (h.get_key(), h.get_value()))
        .collect();
    let to = mail
        .headers
        .iter()
        .filter(|h| h.get_key().eq_ignore_ascii_case("To"))
        .flat_map(|h| mailparse::addrparse_header(h).unwrap().into_inner())
        .collect();
    let text_raw = String::from_utf8_lossy(raw).replace("\r\n", "\n");
    let raw_headers = text_raw
        .split_once("\n\n")
        .map(|(h, _)| h.to_owned())
        .unwrap_or_default();
    assert_eq!(
        mail.ctype.mimetype, "multipart/alternative",
        "a text and an HTML part"
    );
    let mut text = None;
    let mut html = None;
    for part in &mail.subparts {
        match part.ctype.mimetype.as_str() {
            "text/plain" => text = Some(part.get_body().unwrap()),
            "text/html" => html = Some(part.get_body().unwrap()),
            other => panic!("unexpected part {other}"),
        }
    }
    Parsed {
        headers,
        raw_headers,
        text: text.expect("a text/plain part"),
        html: html.expect("a text/html part"),
        to,
    }
}

/// Log lines written while the guard lives (on this thread), for checking what is logged.
pub struct LogCapture {
    buf: Arc<Mutex<Vec<u8>>>,
    _guard: tracing::subscriber::DefaultGuard,
}

impl LogCapture {
    pub fn start() -> Self {
        let buf = Arc::new(Mutex::new(Vec::new()));
        let writer = buf.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::DEBUG)
            .with_ansi(false)
            .with_writer(move || CaptureWriter(writer.clone()))
            .finish();
        Self {
            buf,
            _guard: tracing::subscriber::set_default(subscriber),
        }
    }

    pub fn text(&self) -> String {
        String::from_utf8(self.buf.lock().unwrap().clone()).unwrap()
    }
}

struct CaptureWriter(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for CaptureWriter {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
