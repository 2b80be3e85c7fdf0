//! The same app without a browser: bare requests through the whole router, and the
//! platform underneath it.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, Response, StatusCode};
use tower::ServiceExt as _;
use ward_control::{ClinicRecord, Platform};
use ward_web::Web;

use super::{Opened, Options, body_text, open};

/// A platform and the app serving it.
pub struct Direct {
    /// Keeps the data directory alive.
    pub dir: Arc<tempfile::TempDir>,
    /// The opened data directory.
    pub platform: Platform,
    /// The app handed to the router.
    pub app: Arc<Web>,
}

impl Direct {
    /// An app served over plain http (no public URL).
    pub async fn new() -> Self {
        Self::with_public_url(None).await
    }

    /// An app whose public URL is `url`.
    pub async fn with_public_url(url: Option<&str>) -> Self {
        let Opened {
            dir, platform, app, ..
        } = open(Options {
            public_url: url.map(str::to_owned),
            version: "9.9.9-test",
            ..Options::default()
        })
        .await;
        Self { dir, platform, app }
    }

    /// GETs `path`, which must answer `status` with a body of the type `kind` (a prefix
    /// of its `Content-Type`); returns the body.
    pub async fn answer(&self, path: &str, status: StatusCode, kind: &str) -> String {
        let response = self.get(path).await;
        assert_eq!(response.status(), status, "{path}");
        let content_type = response.headers()[axum::http::header::CONTENT_TYPE]
            .to_str()
            .unwrap();
        assert!(content_type.starts_with(kind), "{path}: {content_type}");
        body_text(response).await
    }

    /// Creates a clinic.
    pub async fn clinic(&self, name: &str) -> ClinicRecord {
        ward_testkit::create_clinic(&self.platform, name).await
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
