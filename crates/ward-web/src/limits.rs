//! Abuse limits: per client address (tower-governor, on the account POSTs) and per email
//! address (checked in the handlers, so the address typed cannot be sprayed from many
//! clients either).

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use governor::{DefaultKeyedRateLimiter, Quota};
use tower_governor::GovernorError;
use tower_governor::governor::GovernorConfigBuilder;

use crate::client_ip::{ClientKey, TrustedProxy};
use crate::views::pages;

/// Keyed limiters for the account flows, by email address.
#[derive(Clone)]
pub struct EmailLimits {
    /// Sign-in attempts per address.
    pub login: Arc<DefaultKeyedRateLimiter<String>>,
    /// Signups per address.
    pub signup: Arc<DefaultKeyedRateLimiter<String>>,
    /// Reset and verification mails per address.
    pub mail: Arc<DefaultKeyedRateLimiter<String>>,
    /// Signups per client address (on top of the per-address limit of every account
    /// form): a few an hour.
    pub signup_per_address: Arc<DefaultKeyedRateLimiter<String>>,
    /// A signup form sent back sooner than this after it was shown is refused: no person
    /// reads and fills it that fast.
    pub signup_min_fill: chrono::TimeDelta,
}

impl EmailLimits {
    /// The defaults with `per_hour` signups per client address and `min_fill_secs`.
    pub fn with_signup(per_hour: u32, min_fill_secs: i64) -> Self {
        let every = Duration::from_secs(3600 / u64::from(per_hour.max(1)));
        Self {
            signup_per_address: Arc::new(DefaultKeyedRateLimiter::keyed(quota(per_hour, every))),
            signup_min_fill: chrono::TimeDelta::seconds(min_fill_secs),
            ..Self::default()
        }
    }
}

fn quota(burst: u32, every: Duration) -> Quota {
    let burst = NonZeroU32::new(burst).unwrap_or(NonZeroU32::MIN);
    Quota::with_period(every)
        .unwrap_or_else(|| Quota::per_minute(NonZeroU32::MIN))
        .allow_burst(burst)
}

impl Default for EmailLimits {
    fn default() -> Self {
        Self {
            // 10 at once, then one every 30 s.
            login: Arc::new(DefaultKeyedRateLimiter::keyed(quota(
                10,
                Duration::from_secs(30),
            ))),
            // 3 at once, then one every 20 minutes.
            signup: Arc::new(DefaultKeyedRateLimiter::keyed(quota(
                3,
                Duration::from_secs(1200),
            ))),
            mail: Arc::new(DefaultKeyedRateLimiter::keyed(quota(
                3,
                Duration::from_secs(1200),
            ))),
            // 5 at once, then one every 12 minutes.
            signup_per_address: Arc::new(DefaultKeyedRateLimiter::keyed(quota(
                5,
                Duration::from_secs(720),
            ))),
            signup_min_fill: chrono::TimeDelta::seconds(3),
        }
    }
}

impl EmailLimits {
    /// Drops state for keys that are back to full allowance (bounded memory).
    pub fn housekeeping(&self) {
        self.login.retain_recent();
        self.signup.retain_recent();
        self.mail.retain_recent();
        self.signup_per_address.retain_recent();
    }
}

/// Checks `limiter` for `email`; `Err(seconds)` to wait when over the limit.
pub fn check(limiter: &DefaultKeyedRateLimiter<String>, email: &str) -> Result<(), u64> {
    limiter
        .check_key(&email.to_lowercase())
        .map_err(|not_until| {
            let wait = not_until.wait_time_from(governor::clock::Clock::now(
                &governor::clock::DefaultClock::default(),
            ));
            wait.as_secs().max(1)
        })
}

/// The page shown when a limit is hit.
pub fn too_many(wait_secs: u64) -> Response {
    let mut r = (
        StatusCode::TOO_MANY_REQUESTS,
        pages::too_many_requests(wait_secs),
    )
        .into_response();
    if let Ok(v) = HeaderValue::from_str(&wait_secs.to_string()) {
        r.headers_mut().insert(header::RETRY_AFTER, v);
    }
    r
}

/// Per-address limit settings.
#[derive(Debug, Clone, Copy)]
pub struct IpLimit {
    /// Requests allowed at once.
    pub burst: u32,
    /// One more allowed every this long.
    pub replenish: Duration,
}

impl Default for IpLimit {
    fn default() -> Self {
        Self {
            burst: 20,
            replenish: Duration::from_secs(3),
        }
    }
}

/// Wraps `routes` (the account POSTs) in a per-client-address limit. Limited requests
/// get the 429 page with Retry-After; no limiter error becomes a 500.
pub fn per_ip<S: Clone + Send + Sync + 'static>(
    routes: Router<S>,
    proxy: TrustedProxy,
    limit: IpLimit,
) -> Router<S> {
    let config = GovernorConfigBuilder::default()
        .key_extractor(ClientKey(proxy))
        .period(limit.replenish)
        .burst_size(limit.burst.max(1))
        .methods(vec![Method::POST])
        .finish();
    let Some(config) = config else {
        tracing::error!("invalid rate limit settings; per-address limits are off");
        return routes;
    };
    let limiter = config.limiter().clone();
    // Forget idle addresses now and then so the table cannot grow without bound.
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(60));
        loop {
            tick.tick().await;
            limiter.retain_recent();
        }
    });
    let layer =
        tower_governor::GovernorLayer::new(config).error_handler(|e: GovernorError| match e {
            GovernorError::TooManyRequests { wait_time, .. } => too_many(wait_time.max(1)),
            GovernorError::UnableToExtractKey | GovernorError::Other { .. } => too_many(60),
        });
    routes.layer(layer)
}
