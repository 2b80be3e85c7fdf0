//! An app over a real data directory in a temporary folder, driven with `oneshot`.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, Response, StatusCode};
use http_body_util::BodyExt as _;
use tempfile::TempDir;
use tower::ServiceExt as _;
use ward_app::App;
use ward_control::{ClinicRecord, MasterKeySource, Platform};
use ward_core::{Clock, ManualClock, parse_time};
use ward_tenancy::StoreConfig;
use ward_web::{Web, WebConfig};

/// A platform and the app serving it.
pub struct TestApp {
    /// Keeps the data directory alive.
    pub dir: TempDir,
    /// The opened data directory.
    pub platform: Platform,
    /// The app handed to the router.
    pub app: Arc<Web>,
}

impl TestApp {
    /// An app served over plain http (no public URL).
    pub async fn new() -> Self {
        Self::with_public_url(None).await
    }

    /// An app whose public URL is `url`.
    pub async fn with_public_url(url: Option<&str>) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let clock: Arc<dyn Clock> = Arc::new(ManualClock::new(
            parse_time("2025-03-01T09:00:00.000Z").unwrap(),
        ));
        let platform = Platform::open(
            StoreConfig::new(dir.path().join("data")),
            MasterKeySource::Configured("42".repeat(32)),
            clock.clone(),
        )
        .await
        .unwrap();
        let core = App::build(
            &platform,
            ward_app::Config {
                mail: ward_app::MailSetup::InMemory,
                hashing: ward_app::Hashing {
                    pepper: ward_control::passwords::Pepper::from_bytes([5; 32]),
                    previous: None,
                    cost: 4,
                    parallel: 1,
                },
                session_policy: ward_control::SessionPolicy::default(),
                settings: WebConfig {
                    public_url: url.map(str::to_owned),
                    base_url: url.unwrap_or("http://ward.test").to_owned(),
                    version: "9.9.9-test".to_owned(),
                    retention_days: 90,
                    owner_second_factor_grace: chrono::TimeDelta::days(365),
                },
                clock,
                read_audit: Default::default(),
            },
        )
        .unwrap();
        let app = Web::new(
            Arc::new(core),
            ward_web::WebOptions {
                trusted_proxy: ward_web::TrustedProxy::None,
                ip_limit: ward_web::limits::IpLimit::default(),
                email_limits: ward_web::limits::EmailLimits::with_signup(100_000, 0),
                attachments: ward_web::attachments::AttachmentStore::from_url(
                    &format!("file://{}", dir.path().join("attachments").display()),
                    25,
                )
                .unwrap(),
            },
        );
        Self { dir, platform, app }
    }

    /// Creates a clinic.
    pub async fn clinic(&self, name: &str) -> ClinicRecord {
        self.platform
            .control
            .create_clinic(name, None, &self.platform.tenants, "test")
            .await
            .unwrap()
    }

    /// Overwrites a clinic's file with garbage and makes the store find out.
    pub async fn break_clinic(&self, clinic: &ClinicRecord) {
        let store = &self.platform.tenants;
        store.evict(clinic.id).await;
        // Closing the last handle checkpoints the WAL into the file.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while store.is_open(clinic.id) {
            assert!(
                std::time::Instant::now() < deadline,
                "the clinic did not close"
            );
            store.run_pending().await;
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        std::fs::write(store.path_of(clinic.id), vec![0x5a; 8192]).unwrap();
        assert!(store.get(clinic.id).await.is_err());
    }

    /// Sends a GET for `path` through the whole router.
    pub async fn get(&self, path: &str) -> Response<Body> {
        ward_web::router(self.app.clone())
            .oneshot(Request::get(path).body(Body::empty()).unwrap())
            .await
            .unwrap()
    }

    /// GET `path` and its body as text.
    pub async fn get_text(&self, path: &str) -> (StatusCode, String) {
        let response = self.get(path).await;
        let status = response.status();
        (status, body_text(response).await)
    }
}

/// A response's body as text.
pub async fn body_text(response: Response<Body>) -> String {
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    String::from_utf8(bytes.to_vec()).unwrap()
}
