//! A whole Ward app in-process over real files, with a controllable clock: the one
//! harness of the web tests. [`TestApp`] is a browser (cookies, forms, mail links);
//! [`direct::Direct`] sends bare requests to the same app. The modules below add what
//! groups of tests share on top: clinics signed up by an owner ([`owner`]), staffed with
//! one member of each role ([`staffed`]), the front desk's helpers ([`desk`]) and the
//! owner pages' ([`admin`]).

pub mod admin;
pub mod desk;
pub mod direct;
pub mod owner;
pub mod staffed;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{HeaderMap, Request, StatusCode, header};
use chrono::TimeZone;
use http_body_util::BodyExt as _;
use tower::ServiceExt as _;
use ward_app::{App, Config, Hashing, MailSetup};
use ward_clinic::audit::{Action, AuditRow, Filter, MAX_PAGE};
use ward_control::passwords::Pepper;
use ward_control::{ClinicRecord, Platform, SessionPolicy};
use ward_core::{ClinicId, Clock, Email, ManualClock, Role, Slug};
use ward_mail::MemoryMailbox;
use ward_tenancy::StoreConfig;
use ward_web::limits::{EmailLimits, IpLimit};
use ward_web::{TrustedProxy, Web, WebConfig, WebOptions, router};

pub const PASSWORD: &str = "correct horse battery staple";

pub struct Options {
    pub hashing_cost: u32,
    pub public_url: Option<String>,
    pub trusted_proxy: TrustedProxy,
    pub ip_limit: IpLimit,
    /// How long owners may work without a second factor. Flows that are not about
    /// two-step sign-in run inside a long grace; its own tests set zero.
    pub owner_mfa_grace: chrono::TimeDelta,
    /// Signups per client address per hour, and the least time a signup form takes.
    /// Flows not about signup abuse get no limit and no wait; its own tests set them.
    pub signup_per_hour: u32,
    pub signup_min_fill_secs: i64,
    /// The version the app reports.
    pub version: &'static str,
}

impl Default for Options {
    fn default() -> Self {
        // Generous per-address limit so flows are not throttled; limit tests set their own.
        Self {
            hashing_cost: 4,
            public_url: None,
            trusted_proxy: TrustedProxy::None,
            ip_limit: IpLimit {
                burst: 10_000,
                replenish: std::time::Duration::from_millis(1),
            },
            owner_mfa_grace: chrono::TimeDelta::days(365),
            signup_per_hour: 100_000,
            signup_min_fill_secs: 0,
            version: "test",
        }
    }
}

pub struct TestApp {
    pub app: Arc<Web>,
    router: Router,
    pub dir: Arc<tempfile::TempDir>,
    pub clock: ManualClock,
    pub cookies: HashMap<String, String>,
    pub peer: SocketAddr,
    pub mailbox: MemoryMailbox,
}

pub struct Response {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: String,
    /// The body as sent (`body` is its text, for pages).
    pub bytes: Vec<u8>,
}

impl Response {
    pub fn location(&self) -> &str {
        self.headers
            .get(header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
    }

    pub fn set_cookies(&self) -> Vec<String> {
        self.headers
            .get_all(header::SET_COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .map(str::to_owned)
            .collect()
    }

    /// Fails, showing the page, unless the body holds `text`.
    #[track_caller]
    pub fn assert_contains(&self, text: &str) {
        assert!(self.body.contains(text), "{}", self.body);
    }

    /// Fails, showing the page, unless it is a 200 holding every one of `texts`.
    #[track_caller]
    pub fn assert_shows(&self, texts: &[&str]) {
        assert_eq!(self.status, StatusCode::OK, "{}", self.body);
        ward_testkit::assert_contains_all(&self.body, texts);
    }

    /// Fails, showing the page, unless the form was refused (422) with every one of
    /// `texts` on the page.
    #[track_caller]
    pub fn assert_refused(&self, texts: &[&str]) {
        assert_eq!(
            self.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{}",
            self.body
        );
        ward_testkit::assert_contains_all(&self.body, texts);
    }

    /// The `_csrf` value of the first form on the page.
    pub fn csrf(&self) -> String {
        field_value(&self.body, "_csrf").expect("page has a _csrf field")
    }
}

/// The record id at the end of a page's path, as in `/c/x/patients/7` or `/c/x/visits/3`.
pub fn id_of(path: &str) -> &str {
    path.rsplit('/').next().unwrap()
}

pub fn field_value(body: &str, name: &str) -> Option<String> {
    let marker = format!("name=\"{name}\" value=\"");
    let start = body.find(&marker)? + marker.len();
    let end = body[start..].find('"')? + start;
    Some(body[start..end].to_owned())
}

/// `form` with the submit button `action` pressed.
pub fn with_action<'a>(form: &[(&'a str, &'a str)], action: &'a str) -> Vec<(&'a str, &'a str)> {
    let mut fields = form.to_vec();
    fields.push(("action", action));
    fields
}

/// The attachment size cap in tests.
pub const ATTACHMENT_CAP: u64 = 512 * 1024;
/// Each clinic's attachment quota in tests.
pub const ATTACHMENT_QUOTA: u64 = 2 * 1024 * 1024;

impl TestApp {
    pub async fn new() -> Self {
        Self::with(Options::default()).await
    }

    pub async fn with_hashing_cost(cost: u32) -> Self {
        Self::with(Options {
            hashing_cost: cost,
            ..Options::default()
        })
        .await
    }

    pub async fn with(options: Options) -> Self {
        let Opened {
            dir,
            platform: _,
            app,
            clock,
            mailbox,
        } = open(options).await;
        let router = router(app.clone());
        Self {
            app,
            router,
            dir,
            clock,
            cookies: HashMap::new(),
            peer: "203.0.113.7:40000".parse().unwrap(),
            mailbox,
        }
    }

    /// Sets the clock to `y`-`mo`-`d` `h`:`mi` UTC.
    pub fn set_utc(&self, y: i32, mo: u32, d: u32, h: u32, mi: u32) {
        let at = chrono::Utc.with_ymd_and_hms(y, mo, d, h, mi, 0).unwrap();
        self.clock.set(at);
    }

    pub async fn send(&mut self, mut req: Request<Body>) -> Response {
        if !self.cookies.is_empty() && !req.headers().contains_key(header::COOKIE) {
            let cookie = self
                .cookies
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join("; ");
            req.headers_mut()
                .insert(header::COOKIE, cookie.parse().unwrap());
        }
        req.extensions_mut().insert(ConnectInfo(self.peer));
        let res = self.router.clone().oneshot(req).await.unwrap();
        let (parts, body) = res.into_parts();
        let bytes = body.collect().await.unwrap().to_bytes().to_vec();
        let body = String::from_utf8_lossy(&bytes).into_owned();
        for c in parts.headers.get_all(header::SET_COOKIE) {
            let c = c.to_str().unwrap();
            let (pair, attrs) = c.split_once(';').unwrap_or((c, ""));
            let (k, v) = pair.split_once('=').unwrap();
            if attrs.contains("Max-Age=0") {
                self.cookies.remove(k);
            } else {
                self.cookies.insert(k.to_owned(), v.to_owned());
            }
        }
        Response {
            status: parts.status,
            headers: parts.headers,
            body,
            bytes,
        }
    }

    pub async fn get(&mut self, path: &str) -> Response {
        self.send(Request::get(path).body(Body::empty()).unwrap())
            .await
    }

    pub async fn post(&mut self, path: &str, form: &[(&str, &str)]) -> Response {
        let body = serde_urlencoded::to_string(form).unwrap();
        self.post_body(path, "application/x-www-form-urlencoded", body)
            .await
    }

    /// Posts `body` to `path` as `content_type`.
    async fn post_body(
        &mut self,
        path: &str,
        content_type: &str,
        body: impl Into<Body>,
    ) -> Response {
        let request = Request::post(path)
            .header(header::CONTENT_TYPE, content_type)
            .body(body.into())
            .unwrap();
        self.send(request).await
    }

    /// Posts a multipart form (as a browser sends one): `fields` as text parts, in
    /// order, then `file` (`(file name, content type, bytes)`) as the part named `file`.
    pub async fn post_multipart(
        &mut self,
        path: &str,
        fields: &[(&str, &str)],
        file: (&str, &str, &[u8]),
    ) -> Response {
        self.post_files(path, fields, &[file]).await
    }

    /// [`Self::post_multipart`] with every file of `files`, in order, as a part named
    /// `file`.
    pub async fn post_files(
        &mut self,
        path: &str,
        fields: &[(&str, &str)],
        files: &[(&str, &str, &[u8])],
    ) -> Response {
        let boundary = "----WardTestBoundary7MA4YWxkTrZu0gW";
        let mut body = Vec::new();
        for (name, value) in fields {
            body.extend_from_slice(
                format!(
                    "--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n"
                )
                .as_bytes(),
            );
        }
        for (file_name, content_type, bytes) in files {
            body.extend_from_slice(
                format!(
                    "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{file_name}\"\r\nContent-Type: {content_type}\r\n\r\n"
                )
                .as_bytes(),
            );
            body.extend_from_slice(bytes);
            body.extend_from_slice(b"\r\n");
        }
        body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
        let content_type = format!("multipart/form-data; boundary={boundary}");
        self.post_body(path, &content_type, body).await
    }

    /// Posts `form` with the `_csrf` of the page at `form_page` (fetched first).
    pub async fn submit(
        &mut self,
        form_page: &str,
        action: &str,
        form: &[(&str, &str)],
    ) -> Response {
        let csrf = self.get(form_page).await.csrf();
        self.post_with_csrf(action, &csrf, form).await
    }

    /// Posts `form` after the `_csrf` field `csrf`.
    pub async fn post_with_csrf(
        &mut self,
        path: &str,
        csrf: &str,
        form: &[(&str, &str)],
    ) -> Response {
        let mut fields = vec![("_csrf", csrf)];
        fields.extend_from_slice(form);
        self.post(path, &fields).await
    }

    /// Posts `form` back to the page at `path`, with that page's `_csrf`.
    pub async fn submit_page(&mut self, path: &str, form: &[(&str, &str)]) -> Response {
        self.submit(path, path, form).await
    }

    /// Every mail sent so far (delivering what is queued first), oldest first, as
    /// subject and text body.
    pub async fn mails(&self) -> Vec<String> {
        self.app.mailer.deliver_due().await.unwrap();
        self.mailbox
            .sent()
            .into_iter()
            .map(|m| format!("Subject: {}\n\n{}", m.subject, m.text))
            .collect()
    }

    /// The newest mail (as [`Self::mails`] gives it), which must have the subject
    /// `subject`.
    pub async fn last_mail(&self, subject: &str) -> String {
        let mail = self.mails().await.pop().expect("a mail was sent");
        assert!(mail.starts_with(&format!("Subject: {subject}\n")), "{mail}");
        mail
    }

    /// The path and query of the first link to `path` in the newest mail.
    pub async fn link_in_last_mail(&self, path: &str) -> String {
        self.app.mailer.deliver_due().await.unwrap();
        let mail = self.mailbox.sent().pop().expect("a mail was sent");
        let base = self.app.base_url();
        let link = mail
            .links()
            .into_iter()
            .find(|l| l.starts_with(&format!("{base}{path}")))
            .unwrap_or_else(|| panic!("no {path} link in {}", mail.text));
        link[base.len()..].to_owned()
    }

    pub fn session_cookie(&self) -> Option<String> {
        self.cookies
            .get("ward_session")
            .or_else(|| self.cookies.get("__Host-ward_session"))
            .cloned()
    }

    /// Posts the sign-up form: clinic `clinic`, owner `name` at `email` with `password`.
    pub async fn sign_up(
        &mut self,
        clinic: &str,
        name: &str,
        email: &str,
        password: &str,
    ) -> Response {
        self.submit(
            "/signup",
            "/signup",
            &[
                ("clinic_name", clinic),
                ("name", name),
                ("email", email),
                ("password", password),
            ],
        )
        .await
    }

    /// Posts the new-password form of the reset page `form` with its `token`.
    pub async fn reset_password(
        &mut self,
        form: &Response,
        token: &str,
        password: &str,
    ) -> Response {
        self.post(
            "/password/reset",
            &[
                ("_csrf", &form.csrf()),
                ("token", token),
                ("password", password),
            ],
        )
        .await
    }

    /// Signs up a clinic and confirms the owner's address; returns the clinic's path.
    pub async fn signup_verified(&mut self, clinic: &str, email: &str) -> String {
        let r = self.sign_up(clinic, "Dr. Ana Rao", email, PASSWORD).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        let link = self.link_in_last_mail("/verify-email").await;
        let page = self.get(&link).await;
        let token = field_value(&page.body, "token").unwrap();
        let r = self
            .post(
                "/verify-email",
                &[("_csrf", &page.csrf()), ("token", &token)],
            )
            .await;
        assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
        r.location().to_owned()
    }

    pub async fn login(&mut self, email: &str, password: &str) -> Response {
        self.submit(
            "/login",
            "/login",
            &[("email", email), ("password", password)],
        )
        .await
    }

    /// A second browser (no cookies) against the same app.
    pub fn fresh_browser(&self) -> Self {
        Self {
            app: self.app.clone(),
            router: self.router.clone(),
            dir: self.dir.clone(),
            clock: self.clock.clone(),
            cookies: HashMap::new(),
            peer: self.peer,
            mailbox: self.mailbox.clone(),
        }
    }
}

/// A new clinic Acme's owner (ana@example.com), signed in in two browsers.
pub async fn signed_in_twice() -> (TestApp, TestApp) {
    let mut t = TestApp::new().await;
    t.signup_verified("Acme", "ana@example.com").await;
    let mut other = t.fresh_browser();
    other.login("ana@example.com", PASSWORD).await;
    (t, other)
}

/// How many of `statuses` are `status`.
pub fn times(statuses: &[StatusCode], status: StatusCode) -> usize {
    statuses.iter().filter(|s| **s == status).count()
}

/// One app over a fresh data directory, as the harness opens it.
pub struct Opened {
    /// Keeps the data directory alive.
    pub dir: Arc<tempfile::TempDir>,
    /// The opened data directory.
    pub platform: Platform,
    pub app: Arc<Web>,
    pub clock: ManualClock,
    pub mailbox: MemoryMailbox,
}

/// Opens a data directory in a temporary folder and builds the app over it.
pub async fn open(options: Options) -> Opened {
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let clock = ManualClock::new(chrono::Utc.with_ymd_and_hms(2026, 3, 1, 9, 0, 0).unwrap());
    let shared: Arc<dyn Clock> = Arc::new(clock.clone());
    let platform = ward_testkit::open_platform(
        StoreConfig::new(dir.path()),
        &"11".repeat(32),
        shared.clone(),
    )
    .await;
    let base_url = options
        .public_url
        .clone()
        .unwrap_or_else(|| "http://ward.test".to_owned());
    // A small cap, so the over-the-cap test sends little.
    let attachments = ward_web::attachments::AttachmentStore::from_url(
        &format!("file://{}", dir.path().join("attachments").display()),
        1,
    )
    .unwrap()
    .with_max_bytes(ATTACHMENT_CAP)
    .with_quota_bytes(ATTACHMENT_QUOTA);
    let core = App::build(
        &platform,
        Config {
            mail: MailSetup::InMemory,
            // Cost 4 keeps the suite fast; production runs at PRODUCTION_COST.
            hashing: Hashing {
                pepper: Pepper::from_bytes([3; 32]),
                previous: None,
                cost: options.hashing_cost,
                parallel: 2,
            },
            session_policy: SessionPolicy::default(),
            settings: WebConfig {
                public_url: options.public_url,
                base_url,
                version: options.version.to_owned(),
                retention_days: 90,
                owner_second_factor_grace: options.owner_mfa_grace,
            },
            clock: shared,
            read_audit: Default::default(),
            attachment_files: Some(Arc::new(attachments.clone())),
        },
    )
    .unwrap();
    let mailbox = core.mailbox().unwrap().clone();
    let app = Web::new(
        Arc::new(core),
        WebOptions {
            trusted_proxy: options.trusted_proxy,
            ip_limit: options.ip_limit,
            email_limits: EmailLimits::with_signup(
                options.signup_per_hour,
                options.signup_min_fill_secs,
            ),
            attachments,
        },
    );
    Opened {
        dir,
        platform,
        app,
        clock,
        mailbox,
    }
}

/// A response's body as text.
pub async fn body_text(response: axum::http::Response<Body>) -> String {
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    String::from_utf8(bytes.to_vec()).unwrap()
}

/// What the helper modules build on: a clinic's rows, and its members.
impl TestApp {
    /// One integer from the clinic's database (after writing queued views and prints).
    pub async fn count(&self, clinic: ClinicId, sql: &str) -> i64 {
        self.app.audit.flush().await;
        let tenant = self.app.tenants.get(clinic).await.unwrap();
        let sql = sql.to_owned();
        tenant
            .with(|conn| {
                let mut rows = conn.query(&sql, ()).unwrap();
                rows.next().unwrap().unwrap().get::<i64>(0).unwrap()
            })
            .await
    }

    /// The clinic's audit rows matching `filter`, newest first, after writing queued views.
    pub async fn audit(&self, clinic: ClinicId, filter: Filter) -> Vec<AuditRow> {
        self.app.audit.flush().await;
        let tenant = self.app.tenants.get(clinic).await.unwrap();
        tenant
            .with(|conn| ward_clinic::audit::search(&conn, &filter, None, MAX_PAGE))
            .await
            .unwrap()
    }

    /// The clinic's audit rows about one record (`(entity type, id)`), newest first; with
    /// `action`, only those.
    pub async fn audit_of(
        &self,
        clinic: ClinicId,
        (entity_type, id): (&str, impl std::fmt::Display),
        action: Option<Action>,
    ) -> Vec<AuditRow> {
        let filter = Filter {
            entity: Some((entity_type.to_owned(), id.to_string())),
            action,
            ..Filter::default()
        };
        self.audit(clinic, filter).await
    }

    /// Fails unless the clinic's audit chain verifies.
    pub async fn assert_audit_chain_holds(&self, clinic: ClinicId) {
        let tenant = self.app.tenants.get(clinic).await.unwrap();
        let report = tenant
            .with(|conn| ward_clinic::audit::verify_chain(&conn, None))
            .await
            .unwrap();
        assert!(report.problems.is_empty(), "{report:?}");
    }

    /// Gives the account for `email` (made verified, password [`PASSWORD`], if there is
    /// none yet) `role` in `clinic`, straight through the control plane; returns its id.
    pub async fn add_member(
        &self,
        clinic: ClinicId,
        role: Role,
        email: &str,
        name: &str,
    ) -> String {
        let control = &self.app.control;
        let email = Email::parse(email).unwrap();
        let user = match control.user_by_email(&email).await.unwrap() {
            Some(u) => u,
            None => {
                let hash = self.app.hasher.hash(PASSWORD).await.unwrap();
                let u = control
                    .create_user(&email, name, &hash)
                    .await
                    .unwrap()
                    .unwrap();
                control.mark_email_verified(&u.id).await.unwrap();
                u
            }
        };
        control
            .add_membership(&user.id, clinic, role)
            .await
            .unwrap();
        user.id
    }

    /// A new browser signed in as `email`.
    pub async fn browser_as(&self, email: &str) -> Self {
        let mut b = self.fresh_browser();
        let r = b.login(email, PASSWORD).await;
        assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
        b
    }

    /// The names of every clinic, as the control plane lists them.
    pub async fn clinic_names(&self) -> Vec<String> {
        let clinics = self.app.control.list_clinics().await.unwrap();
        clinics.into_iter().map(|c| c.name).collect()
    }

    /// The clinic at `home` (`/c/{slug}/`, as signing up redirects) and its slug.
    pub async fn clinic_at(&self, home: &str) -> (String, ClinicRecord) {
        let slug = home
            .trim_start_matches("/c/")
            .trim_end_matches('/')
            .to_owned();
        let record = self
            .app
            .control
            .clinic_by_slug(&Slug::parse(&slug).unwrap())
            .await
            .unwrap();
        (slug, record)
    }
}
