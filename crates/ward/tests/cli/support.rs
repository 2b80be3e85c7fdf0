//! Running `ward` as an operator would, and talking HTTP to `ward serve`.

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tempfile::TempDir;
use ward_control::ClinicRecord;
use ward_core::SystemClock;
use ward_tenancy::{Migration, StoreConfig};

/// The master key every test passes in `WARD_MASTER_KEY`.
pub const MASTER_HEX: &str = "0b5e7a9c2d4f6081a3c5e7f9b1d3e5a7c9e1f3b5d7f9a1c3e5b7d9f1a3c5e7f9";

/// What a finished command left.
#[derive(Debug)]
pub struct Run {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// Asserts success and returns stdout.
    pub fn ok(self) -> String {
        assert!(self.status.success(), "ward failed: {self:#?}");
        self.stdout
    }

    /// Asserts failure ending in one `error:` line on stderr (after any log lines), and
    /// returns that line.
    pub fn final_error(self) -> String {
        assert!(!self.status.success(), "ward succeeded: {self:#?}");
        let errors = self
            .stderr
            .lines()
            .filter(|l| l.starts_with("error"))
            .count();
        assert_eq!(errors, 1, "{self:#?}");
        let last = self.stderr.trim().lines().last().unwrap_or_default();
        assert!(last.starts_with("error: "), "{self:#?}");
        last.to_owned()
    }

    /// Asserts failure with exactly one `error:` line on stderr, and returns that line.
    pub fn one_line_error(self) -> String {
        assert!(!self.status.success(), "ward succeeded: {self:#?}");
        let lines: Vec<_> = self.stderr.trim().lines().collect();
        assert_eq!(lines.len(), 1, "expected one line: {self:#?}");
        assert!(lines[0].starts_with("error: "), "{self:#?}");
        lines[0].to_owned()
    }
}

/// A data directory for one test.
pub struct Ward {
    dir: TempDir,
    env: Vec<(String, String)>,
}

impl Ward {
    pub fn new() -> Self {
        Self {
            dir: tempfile::tempdir().unwrap(),
            env: Vec::new(),
        }
    }

    /// A data directory whose commands also get `env` (a replica target, say).
    pub fn with_env(env: Vec<(String, String)>) -> Self {
        Self {
            dir: tempfile::tempdir().unwrap(),
            env,
        }
    }

    /// Sets (or replaces) one variable for every later command of this data directory.
    pub fn set_env(&mut self, key: &str, value: &str) {
        self.env.retain(|(k, _)| k != key);
        self.env.push((key.to_owned(), value.to_owned()));
    }

    /// The data directory (created by the first command).
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// A `ward` command with this data directory and the test master key, and no other
    /// Ward setting inherited from the environment.
    pub fn cmd(&self) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_ward"));
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("WARD_") {
                cmd.env_remove(key);
            }
        }
        // Owners here are not about two-step sign-in: they work inside a long grace.
        cmd.env("WARD_OWNER_MFA_GRACE", "365d");
        // Nor about signup abuse: no per-address limit, no minimum time on the form.
        cmd.env("WARD_SIGNUP_PER_HOUR", "1000000")
            .env("WARD_FORM_BURST", "1000")
            .env("WARD_SIGNUP_MIN_SECONDS", "0");
        cmd.envs(self.env.iter().map(|(k, v)| (k, v)));
        match self.env.iter().find(|(k, _)| k == "WARD_MASTER_KEY") {
            // An empty key set with `set_env`: the data directory's master.key is used.
            Some((_, v)) if v.is_empty() => cmd.env_remove("WARD_MASTER_KEY"),
            Some(_) => &mut cmd,
            None => cmd.env("WARD_MASTER_KEY", MASTER_HEX),
        };
        cmd.env("WARD_LOG", "info")
            .arg("--data-dir")
            .arg(self.data_dir())
            .stdin(Stdio::null());
        cmd
    }

    /// Runs `ward <args>` to completion.
    pub fn run(&self, args: &[&str]) -> Run {
        run(self.cmd().args(args))
    }

    /// Creates a clinic with the CLI and returns its id and slug as printed.
    pub fn create(&self, name: &str) -> (String, String) {
        let out = self.run(&["clinics", "create", "--name", name]).ok();
        let field = |label: &str| {
            out.lines()
                .find_map(|l| l.strip_prefix(label))
                .map(|v| v.trim().to_owned())
                .unwrap_or_else(|| panic!("no {label} in {out}"))
        };
        (field("id:"), field("slug:"))
    }

    /// The clinics as `ward clinics list --json` reports them.
    pub fn list(&self) -> Vec<serde_json::Value> {
        let out = self.run(&["clinics", "list", "--json"]).ok();
        serde_json::from_str::<Vec<serde_json::Value>>(&out).unwrap()
    }

    /// Creates clinics through the library with `migrations` as the tenant schema (to
    /// leave them behind the binary's), closing everything afterwards.
    pub fn seed_with_schema(&self, names: &[&str], migrations: &[Migration]) -> Vec<ClinicRecord> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let mut config = StoreConfig::new(self.data_dir());
            config.migrations = migrations.into();
            let platform =
                ward_testkit::open_platform(config, MASTER_HEX, Arc::new(SystemClock)).await;
            let mut out = Vec::new();
            for name in names {
                out.push(ward_testkit::create_clinic(&platform, name).await);
            }
            assert_eq!(platform.tenants.shutdown(Duration::from_secs(10)).await, 0);
            out
        })
    }

    /// Every WAL under the data directory that still holds frames. A cleanly closed
    /// database keeps its WAL file, checkpointed and empty.
    pub fn non_empty_wals(&self) -> Vec<PathBuf> {
        self.files_ending("-wal")
            .into_iter()
            .filter(|p| std::fs::metadata(p).is_ok_and(|m| m.len() > 0))
            .collect()
    }

    /// Every file under the data directory whose name ends with `suffix`.
    pub fn files_ending(&self, suffix: &str) -> Vec<PathBuf> {
        let mut out = Vec::new();
        walk(&self.data_dir(), &mut |p| {
            if p.to_string_lossy().ends_with(suffix) {
                out.push(p.to_owned());
            }
        });
        out
    }
}

fn walk(dir: &Path, f: &mut impl FnMut(&Path)) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            walk(&path, f);
        } else {
            f(&path);
        }
    }
}

/// Runs a prepared command to completion.
pub fn run(cmd: &mut Command) -> Run {
    let out = cmd.output().unwrap();
    Run {
        status: out.status,
        stdout: String::from_utf8(out.stdout).unwrap(),
        stderr: String::from_utf8(out.stderr).unwrap(),
    }
}

/// A running `ward serve`, killed if the test ends without stopping it.
pub struct Server {
    child: Child,
    pub addr: SocketAddr,
    /// The operator listener's address, when one was asked for.
    pub operator: Option<SocketAddr>,
    log: Arc<Mutex<String>>,
}

/// The `addr` field of a log line, text (`addr=…`) or JSON (`"addr":"…"`).
fn addr_field(line: &str) -> Option<SocketAddr> {
    if let Ok(v) = serde_json::from_str::<serde_json::Value>(line) {
        return v["fields"]["addr"].as_str()?.parse().ok();
    }
    line.split_whitespace()
        .find_map(|w| w.strip_prefix("addr="))?
        .parse()
        .ok()
}

impl Server {
    /// Starts `ward serve` on a port the system picks and waits until it says where.
    pub fn start(ward: &Ward) -> Self {
        Self::start_with(ward, &[])
    }

    /// [`Self::start`] with more arguments for `ward serve`.
    pub fn start_with(ward: &Ward, args: &[&str]) -> Self {
        let mut child = ward
            .cmd()
            .args(["serve", "--addr", "127.0.0.1:0"])
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let log = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = mpsc::channel();
        std::thread::spawn({
            let log = log.clone();
            move || {
                for line in BufReader::new(stderr).lines() {
                    let Ok(line) = line else { break };
                    log.lock().unwrap().push_str(&line);
                    log.lock().unwrap().push('\n');
                    if line.contains("Ward is listening") {
                        let _ = tx.send(line);
                    }
                }
            }
        });
        let line = match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(line) => line,
            Err(_) => {
                let _ = child.kill();
                panic!("ward serve did not start: {}", log.lock().unwrap());
            }
        };
        assert!(
            !line.contains('\u{1b}'),
            "escape codes in a piped log: {line:?}"
        );
        let addr = addr_field(&line).unwrap_or_else(|| panic!("no addr in {line:?}"));
        // Logged before the public listener's line.
        let operator = log
            .lock()
            .unwrap()
            .lines()
            .find(|l| l.contains("operator listener"))
            .and_then(addr_field);
        Self {
            child,
            addr,
            operator,
            log,
        }
    }

    /// Kills the process outright (SIGKILL), as a dying machine would.
    pub fn kill(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    /// Sends SIGTERM (what fly.io and systemd send) and waits for the exit.
    pub fn terminate(mut self) -> (ExitStatus, String) {
        let pid = self.child.id().to_string();
        // The shell's built-in kill: no procps needed on a minimal machine.
        let killed = Command::new("sh")
            .args(["-c", &format!("kill -TERM {pid}")])
            .status()
            .unwrap();
        assert!(killed.success());
        let deadline = Instant::now() + Duration::from_secs(60);
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            assert!(Instant::now() < deadline, "ward serve ignored SIGTERM");
            std::thread::sleep(Duration::from_millis(10));
        };
        // The log thread ends when the pipe closes.
        let deadline = Instant::now() + Duration::from_secs(10);
        while !self.log.lock().unwrap().contains("stopped") && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        let log = self.log.lock().unwrap().clone();
        (status, log)
    }

    /// GET `path`: the status code and the body.
    pub fn get(&self, path: &str) -> (u16, String) {
        http_get(self.addr, path)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A minimal HTTP/1.1 GET: enough for a health check and a status page.
pub fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    let (status, _, body) = http_get_with(addr, path, &[]);
    (status, body)
}

/// A GET with extra request headers: the status, the response's head (lower-cased) and
/// the body.
pub fn http_get_with(
    addr: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
) -> (u16, String, String) {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let extra: String = headers
        .iter()
        .map(|(k, v)| format!("{k}: {v}\r\n"))
        .collect();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\n{extra}Connection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).unwrap();
    let text = String::from_utf8(raw).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    let status = head
        .split_whitespace()
        .nth(1)
        .unwrap()
        .parse::<u16>()
        .unwrap();
    let chunked = head.lines().any(|l| {
        l.to_ascii_lowercase()
            .starts_with("transfer-encoding: chunked")
    });
    let body = if chunked {
        dechunk(body)
    } else {
        body.to_owned()
    };
    (status, head.to_ascii_lowercase(), body)
}

fn dechunk(mut rest: &str) -> String {
    let mut out = String::new();
    loop {
        let (size, after) = rest.split_once("\r\n").unwrap();
        let size = usize::from_str_radix(size.trim(), 16).unwrap();
        if size == 0 {
            return out;
        }
        out.push_str(&after[..size]);
        rest = &after[size + 2..];
    }
}

/// A POST of a urlencoded form with a cookie: the status and the response's head.
pub fn http_post_form(addr: SocketAddr, path: &str, cookie: &str, form: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    write!(
        stream,
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nCookie: {cookie}\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{form}",
        form.len()
    )
    .unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).unwrap();
    let text = String::from_utf8_lossy(&raw).into_owned();
    let head = text
        .split_once("\r\n\r\n")
        .map_or(text.as_str(), |(h, _)| h);
    let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    (status, head.to_ascii_lowercase())
}

/// A browser against one `ward serve`: it keeps the cookies the server sets and sends
/// them back, and posts forms with the CSRF token of the page they are on.
pub struct Visitor {
    addr: SocketAddr,
    cookies: std::collections::BTreeMap<String, String>,
}

impl Visitor {
    pub fn new(server: &Server) -> Self {
        Self {
            addr: server.addr,
            cookies: std::collections::BTreeMap::new(),
        }
    }

    fn cookie_header(&self) -> String {
        self.cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    /// Keeps the cookies a response sets; an emptied one is dropped.
    fn absorb(&mut self, head: &str) {
        for line in head.lines() {
            let Some(cookie) = line.strip_prefix("set-cookie: ") else {
                continue;
            };
            let pair = cookie.split(';').next().unwrap();
            let (name, value) = pair.split_once('=').unwrap();
            if value.is_empty() {
                self.cookies.remove(name);
            } else {
                self.cookies.insert(name.to_owned(), value.to_owned());
            }
        }
    }

    /// GET `path`: the status and the body.
    pub fn get(&mut self, path: &str) -> (u16, String) {
        let cookie = self.cookie_header();
        let headers: Vec<(&str, &str)> = if cookie.is_empty() {
            Vec::new()
        } else {
            vec![("Cookie", cookie.as_str())]
        };
        let (status, head, body) = http_get_with(self.addr, path, &headers);
        self.absorb(&head);
        (status, body)
    }

    /// Opens the form at `page`, then posts `fields` with its CSRF token to `action`:
    /// the status and the response's head (lower-cased).
    pub fn submit(&mut self, page: &str, action: &str, fields: &[(&str, &str)]) -> (u16, String) {
        let (status, body) = self.get(page);
        assert_eq!(status, 200, "{page}: {body}");
        let csrf = body
            .split("name=\"_csrf\" value=\"")
            .nth(1)
            .and_then(|r| r.split('"').next())
            .unwrap_or_else(|| panic!("no CSRF token on {page}: {body}"))
            .to_owned();
        let mut form = form_urlencoded::Serializer::new(String::new());
        form.append_pair("_csrf", &csrf);
        for (k, v) in fields {
            form.append_pair(k, v);
        }
        let (status, head) =
            http_post_form(self.addr, action, &self.cookie_header(), &form.finish());
        self.absorb(&head);
        (status, head)
    }

    /// Posts a multipart form to `action` (which carries its own `?_csrf=`, as upload
    /// forms do): `fields` as text parts, then `file` (name, content type, bytes) as the
    /// part named `file`. The status and the response's head (lower-cased).
    pub fn post_multipart(
        &mut self,
        action: &str,
        fields: &[(&str, &str)],
        file: (&str, &str, &[u8]),
    ) -> (u16, String) {
        let boundary = "----WardCliBoundary4kq7Vb2";
        let mut body = Vec::new();
        for (name, value) in fields {
            body.extend_from_slice(
                format!("--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n")
                    .as_bytes(),
            );
        }
        let (file_name, content_type, bytes) = file;
        body.extend_from_slice(
            format!("--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{file_name}\"\r\nContent-Type: {content_type}\r\n\r\n")
                .as_bytes(),
        );
        body.extend_from_slice(bytes);
        body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
        let mut stream = TcpStream::connect(self.addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        write!(
            stream,
            "POST {action} HTTP/1.1\r\nHost: {}\r\nCookie: {}\r\nContent-Type: multipart/form-data; boundary={boundary}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            self.addr,
            self.cookie_header(),
            body.len()
        )
        .unwrap();
        stream.write_all(&body).unwrap();
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).unwrap();
        let text = String::from_utf8_lossy(&raw).into_owned();
        let head = text
            .split_once("\r\n\r\n")
            .map_or(text.as_str(), |(h, _)| h)
            .to_ascii_lowercase();
        self.absorb(&head);
        let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
        (status, head)
    }

    /// Signs in with the form; true when the server started a session.
    pub fn sign_in(&mut self, email: &str, password: &str) -> bool {
        let (status, head) = self.submit(
            "/login",
            "/login",
            &[("email", email), ("password", password)],
        );
        assert!(
            status == 303 || status == 401,
            "sign-in answered {status}: {head}"
        );
        status == 303
    }

    /// GETs `path` until it answers `want` (another process's change reaches the
    /// server's caches within seconds), and returns the last status.
    pub fn status_becomes(&mut self, path: &str, want: u16) -> u16 {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let (status, _) = self.get(path);
            if status == want || Instant::now() >= deadline {
                return status;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// The password every test account gets.
pub const PASSWORD: &str = "correct horse battery staple 42";

/// Signs up `email` as the owner of a new clinic `clinic_name` through the public form
/// and confirms the address with the link mailed for it, which signs the visitor in.
/// Returns the clinic's home page (`/c/<slug>/`).
pub fn sign_up_and_confirm(
    ward: &Ward,
    server: &Server,
    visitor: &mut Visitor,
    clinic_name: &str,
    email: &str,
) -> String {
    let (status, head) = visitor.submit(
        "/signup",
        "/signup",
        &[
            ("clinic_name", clinic_name),
            ("name", "Dr Ada Lovelace"),
            ("email", email),
            ("password", PASSWORD),
        ],
    );
    assert!(
        (200..400).contains(&status),
        "signup answered {status}: {head}"
    );
    let link = ward.link_in_mail(server, email, "/verify-email");
    let token = link.split("token=").nth(1).unwrap().to_owned();
    let page = link
        .trim_start_matches(&format!("http://{}", server.addr))
        .to_owned();
    let (status, head) = visitor.submit(&page, "/verify-email", &[("token", &token)]);
    assert_eq!(status, 303, "{head}");
    head.lines()
        .find_map(|l| l.strip_prefix("location: "))
        .unwrap()
        .trim()
        .to_owned()
}

impl Ward {
    /// The first link to `path` on `server` in the newest mail to `to` in the outbox
    /// folder (quoted-printable soft breaks undone), waiting a little for it.
    pub fn link_in_mail(&self, server: &Server, to: &str, path: &str) -> String {
        self.link_in_mail_at(&format!("http://{}", server.addr), to, path)
    }

    /// [`Self::link_in_mail`] for links to `base`.
    pub fn link_in_mail_at(&self, base: &str, to: &str, path: &str) -> String {
        self.mail_to(to, path)
            .and_then(|text| link_in(&text, &format!("{base}{path}")))
            .unwrap_or_else(|| panic!("no mail to {to} with a {base}{path} link"))
    }

    /// The decoded text of the newest mail to `to` that mentions `needle`, waiting up to
    /// 20 seconds for it.
    pub fn mail_to(&self, to: &str, needle: &str) -> Option<String> {
        let dir = self.data_dir().join("outbox");
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let found = outbox_files(&dir).iter().rev().find_map(|f| {
                let text = read_mail(f);
                let to_line = text
                    .lines()
                    .find(|l| l.starts_with("To:"))
                    .unwrap_or_default();
                (to_line.contains(to) && text.contains(needle)).then_some(text)
            });
            if found.is_some() || Instant::now() >= deadline {
                return found;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// The `.eml` files in the outbox folder `dir`, oldest first.
pub fn outbox_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|d| {
            d.filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|x| x == "eml"))
                .collect()
        })
        .unwrap_or_default();
    files.sort_by_key(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok());
    files
}

/// A mail file's text with its quoted-printable soft breaks and `=3D` undone.
pub fn read_mail(file: &Path) -> String {
    std::fs::read_to_string(file)
        .unwrap()
        .replace("=\r\n", "")
        .replace("=\n", "")
        .replace("=3D", "=")
}

/// The first link in `text` that starts with `prefix`, up to a space, quote or bracket.
pub fn link_in(text: &str, prefix: &str) -> Option<String> {
    let start = text.find(prefix)?;
    let end = text[start..]
        .find(|c: char| c.is_whitespace() || c == '"' || c == '<' || c == '>')
        .map_or(text.len(), |e| start + e);
    Some(text[start..end].replace("&amp;", "&"))
}

/// Runs `f` against the data directory in this process (the platform and the
/// attachment store `ward serve` would use), then closes every clinic again.
pub fn in_process<T>(
    ward: &Ward,
    f: impl AsyncFnOnce(&ward_control::Platform, &ward_web::attachments::AttachmentStore) -> T,
) -> T {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let platform = ward_testkit::open_platform(
            ward_tenancy::StoreConfig::new(ward.data_dir()),
            crate::support::MASTER_HEX,
            std::sync::Arc::new(ward_core::SystemClock),
        )
        .await;
        let store = ward_web::attachments::AttachmentStore::from_url(
            &format!("file://{}", ward.data_dir().join("attachments").display()),
            25,
        )
        .unwrap();
        let out = f(&platform, &store).await;
        assert_eq!(
            platform
                .tenants
                .shutdown(std::time::Duration::from_secs(10))
                .await,
            0
        );
        out
    })
}
