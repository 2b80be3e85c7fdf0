//! How mail leaves Ward: an SMTP server, `.eml` files in a folder (the default, so Ward
//! works with no mail server), or memory (tests).

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use lettre::{
    AsyncFileTransport, AsyncSmtpTransport, AsyncTransport as _, Message as Email, Tokio1Executor,
};
use ward_control::OutboxMail;

use crate::MailError;
use crate::message::links_in;

/// How long one SMTP exchange may take before it counts as a failed attempt.
const SMTP_TIMEOUT: Duration = Duration::from_secs(30);

/// Where delivered mail goes.
#[derive(Debug, Clone)]
pub struct Transport {
    kind: Kind,
}

#[derive(Debug, Clone)]
enum Kind {
    /// An SMTP server; `server` is `scheme://host:port` without credentials, for logs.
    Smtp {
        transport: AsyncSmtpTransport<Tokio1Executor>,
        server: String,
    },
    /// `.eml` files in `dir`; each mail's links are logged.
    File {
        transport: AsyncFileTransport<Tokio1Executor>,
        dir: PathBuf,
    },
    /// Kept in memory.
    Memory(MemoryMailbox),
}

/// Why one delivery attempt failed.
#[derive(Debug)]
pub(crate) struct DeliveryError {
    /// The server refused the mail for good (a 5xx reply): retrying cannot help.
    pub permanent: bool,
    /// What went wrong, with its causes.
    pub message: String,
}

impl Transport {
    /// An SMTP server from a URL: `smtps://user:password@host[:port]` (TLS from the
    /// start) or `smtp://user:password@host[:port]?tls=required` (STARTTLS, required).
    /// Plain `smtp://` (or `?tls=opportunistic`, which an attacker on the path can
    /// downgrade) is refused unless the host is this machine's loopback.
    pub fn smtp(url: &str) -> Result<Self, MailError> {
        // Never echo the URL: it may hold the server's password.
        let bad = |why: &str| MailError::Config(format!("WARD_SMTP_URL {why}"));
        let parsed = url::Url::parse(url)
            .map_err(|_| bad("is not a URL such as smtps://user:password@smtp.example.com"))?;
        let host = parsed
            .host()
            .ok_or_else(|| bad("has no host name"))?
            .to_owned();
        // `smtp` is not a special scheme to the URL parser, so an IPv4 host arrives as a
        // domain: parse it as an address before deciding it is not loopback.
        let loopback = match &host {
            url::Host::Domain(d) => {
                d.eq_ignore_ascii_case("localhost")
                    || d.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
            }
            url::Host::Ipv4(ip) => ip.is_loopback(),
            url::Host::Ipv6(ip) => ip.is_loopback(),
        };
        let tls = parsed
            .query_pairs()
            .find(|(k, _)| k == "tls")
            .map(|(_, v)| v.into_owned());
        let (encrypted, default_port) = match (parsed.scheme(), tls.as_deref()) {
            ("smtps", _) => (true, 465),
            ("smtp", Some("required")) => (true, 587),
            ("smtp", None) => (false, 25),
            ("smtp", Some("opportunistic")) => (false, 587),
            ("smtp", Some(_)) => return Err(bad("has a tls= setting other than required")),
            _ => return Err(bad("must start with smtps:// or smtp://")),
        };
        if !encrypted && !loopback {
            return Err(bad(
                "must use TLS: smtps://… or smtp://…?tls=required (plain SMTP is allowed only to this machine)",
            ));
        }
        let transport = AsyncSmtpTransport::<Tokio1Executor>::from_url(url)
            .map_err(|_| bad("cannot be used (check the host name and the TLS setting)"))?
            .timeout(Some(SMTP_TIMEOUT))
            .build();
        let server = format!(
            "{}://{}:{}",
            parsed.scheme(),
            host,
            parsed.port().unwrap_or(default_port)
        );
        Ok(Self {
            kind: Kind::Smtp { transport, server },
        })
    }

    /// `.eml` files under `dir` (created if missing); every mail's links are also logged
    /// at info level, so a developer can follow them without a mail server.
    pub fn file(dir: &Path) -> Result<Self, MailError> {
        std::fs::create_dir_all(dir).map_err(|e| {
            MailError::Config(format!(
                "cannot create the mail folder {}: {e}",
                dir.display()
            ))
        })?;
        Ok(Self {
            kind: Kind::File {
                transport: AsyncFileTransport::<Tokio1Executor>::new(dir),
                dir: dir.to_owned(),
            },
        })
    }

    /// Memory, for tests: the returned mailbox sees every delivered mail.
    pub fn memory() -> (Self, MemoryMailbox) {
        let mailbox = MemoryMailbox::default();
        (
            Self {
                kind: Kind::Memory(mailbox.clone()),
            },
            mailbox,
        )
    }

    /// Where mail goes, for the log (never credentials).
    pub fn describe(&self) -> String {
        match &self.kind {
            Kind::Smtp { server, .. } => format!("SMTP server {server}"),
            Kind::File { dir, .. } => format!(".eml files in {}", dir.display()),
            Kind::Memory(_) => "memory".to_owned(),
        }
    }

    /// Hands one built mail to the transport.
    pub(crate) async fn deliver(
        &self,
        row: &OutboxMail,
        email: Email,
    ) -> Result<(), DeliveryError> {
        match &self.kind {
            Kind::Smtp { transport, .. } => match transport.send(email).await {
                Ok(_) => Ok(()),
                Err(e) => Err(DeliveryError {
                    permanent: e.is_permanent(),
                    message: chain(&e),
                }),
            },
            Kind::File { transport, .. } => match transport.send(email).await {
                Ok(id) => {
                    // Only the links: the rest of the mail stays in the file.
                    for link in links_in(&row.body_text) {
                        tracing::info!(outbox_id = row.id, file = %format!("{id}.eml"), link, "mail written to the outbox folder");
                    }
                    Ok(())
                }
                Err(e) => Err(DeliveryError {
                    permanent: false,
                    message: chain(&e),
                }),
            },
            Kind::Memory(mailbox) => mailbox.accept(row, email.formatted()),
        }
    }
}

/// An error and its causes on one line (causes already in the text are not repeated).
fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

/// One mail the memory transport accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SentMail {
    /// Recipient address.
    pub to: String,
    /// Recipient display name.
    pub to_name: String,
    /// Subject.
    pub subject: String,
    /// Plain-text body.
    pub text: String,
    /// HTML body.
    pub html: String,
    /// The whole message as it would go on the wire.
    pub raw: Vec<u8>,
}

impl SentMail {
    /// The `http(s)://` links in the text body, in order.
    pub fn links(&self) -> Vec<String> {
        links_in(&self.text).map(str::to_owned).collect()
    }
}

/// What the memory transport received; clones share it.
#[derive(Debug, Clone)]
pub struct MemoryMailbox {
    state: Arc<Mutex<MemoryState>>,
    /// How many mails were ever accepted, for [`MemoryMailbox::wait_for`].
    count: Arc<tokio::sync::watch::Sender<usize>>,
}

impl Default for MemoryMailbox {
    fn default() -> Self {
        Self {
            state: Arc::default(),
            count: Arc::new(tokio::sync::watch::channel(0).0),
        }
    }
}

#[derive(Debug, Default)]
struct MemoryState {
    sent: Vec<SentMail>,
    failing: Option<String>,
}

impl MemoryMailbox {
    fn lock(&self) -> std::sync::MutexGuard<'_, MemoryState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn accept(&self, row: &OutboxMail, raw: Vec<u8>) -> Result<(), DeliveryError> {
        let mut state = self.lock();
        if let Some(error) = &state.failing {
            return Err(DeliveryError {
                permanent: false,
                message: error.clone(),
            });
        }
        state.sent.push(SentMail {
            to: row.to_addr.clone(),
            to_name: row.to_name.clone(),
            subject: row.subject.clone(),
            text: row.body_text.clone(),
            html: row.body_html.clone(),
            raw,
        });
        drop(state);
        self.count.send_modify(|n| *n += 1);
        Ok(())
    }

    /// Waits until at least `n` mails were accepted since the mailbox was made (taking
    /// them out does not lower the count).
    pub async fn wait_for(&self, n: usize) {
        let mut rx = self.count.subscribe();
        // Only fails if the sender is gone, and this mailbox holds it.
        let _ = rx.wait_for(|count| *count >= n).await;
    }

    /// Every mail delivered so far, oldest first.
    pub fn sent(&self) -> Vec<SentMail> {
        self.lock().sent.clone()
    }

    /// Takes the delivered mails out, oldest first.
    pub fn take(&self) -> Vec<SentMail> {
        std::mem::take(&mut self.lock().sent)
    }

    /// The newest mail delivered to `to` (compared case-insensitively).
    pub fn last_to(&self, to: &str) -> Option<SentMail> {
        self.lock()
            .sent
            .iter()
            .rev()
            .find(|m| m.to.eq_ignore_ascii_case(to))
            .cloned()
    }

    /// Makes every delivery fail with `error` (as a server being down would) until
    /// called again with `None`.
    pub fn fail_with(&self, error: Option<&str>) {
        self.lock().failing = error.map(str::to_owned);
    }
}
