//! Helpers shared by Ward's benchmark programs: timing samples, percentiles, process
//! statistics. The programs themselves are in `src/bin/`.

use std::path::Path;
use std::time::Duration;

/// The allocator `ward serve` runs with, so the figures are the server's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// A set of timings.
#[derive(Debug, Default)]
pub struct Samples(Vec<Duration>);

impl Samples {
    /// Room for `n` samples.
    pub fn with_capacity(n: usize) -> Self {
        Self(Vec::with_capacity(n))
    }

    /// Adds one timing.
    pub fn push(&mut self, d: Duration) {
        self.0.push(d);
    }

    /// The `p`th percentile (0–100), nearest rank; zero when empty.
    pub fn percentile(&mut self, p: f64) -> Duration {
        if self.0.is_empty() {
            return Duration::ZERO;
        }
        self.0.sort_unstable();
        let rank = ((p / 100.0) * self.0.len() as f64).ceil() as usize;
        self.0[rank.clamp(1, self.0.len()) - 1]
    }

    /// How many timings.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Adds every timing of `other`.
    pub fn extend(&mut self, other: Samples) {
        self.0.extend(other.0);
    }

    /// Median.
    pub fn p50(&mut self) -> Duration {
        self.percentile(50.0)
    }

    /// 99th percentile.
    pub fn p99(&mut self) -> Duration {
        self.percentile(99.0)
    }
}

/// A duration in microseconds, for printing.
pub fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

/// This process's resident set size in bytes (Linux), or `None` elsewhere.
pub fn rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// How many file descriptors this process has open (Linux), or `None` elsewhere.
pub fn open_fds() -> Option<usize> {
    Some(std::fs::read_dir("/proc/self/fd").ok()?.count())
}

/// Total size of the files directly in `dir` whose names end with `suffix`, and their count.
pub fn dir_size(dir: &Path, suffix: &str) -> std::io::Result<(u64, usize)> {
    let mut total = 0;
    let mut count = 0;
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        if entry.file_name().to_string_lossy().ends_with(suffix) {
            total += entry.metadata()?.len();
            count += 1;
        }
    }
    Ok((total, count))
}

/// Sends the log to stderr, `level` and above only: a benchmark's stdout is its table
/// and its log is for explaining failures.
pub fn log_to_stderr(level: &str) {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(level))
        .with_writer(std::io::stderr)
        .init();
}

/// The benchmarks' replica: the test S3 server's bucket under a fresh prefix when
/// `WARD_TEST_S3_ENDPOINT` is set (scripts/s3-test-server), else `<dir>/replica`.
pub fn bench_replica(dir: &Path) -> anyhow::Result<ward_replica::Target> {
    use ward_replica::Target;
    let Ok(endpoint) = std::env::var("WARD_TEST_S3_ENDPOINT") else {
        return Ok(Target::from_url(&format!(
            "file://{}",
            std::path::absolute(dir.join("replica"))?.display()
        ))?);
    };
    let var = |k: &str| std::env::var(k).unwrap_or_default();
    let url = format!(
        "s3://{}/bench-{}",
        var("WARD_TEST_S3_BUCKET"),
        uuid::Uuid::now_v7()
    );
    Ok(Target::from_url_with(
        &url,
        &[
            ("aws_endpoint", endpoint.as_str()),
            ("aws_allow_http", "true"),
            ("aws_access_key_id", var("WARD_TEST_S3_KEY").as_str()),
            ("aws_secret_access_key", var("WARD_TEST_S3_SECRET").as_str()),
            ("aws_region", "us-east-1"),
        ],
    )?)
}

/// The benchmarks' attachment store: `file://<attachments_dir>`, files of at most
/// `max_mb` MiB.
pub fn bench_store(
    attachments_dir: &Path,
    max_mb: u64,
) -> anyhow::Result<ward_web::attachments::AttachmentStore> {
    ward_web::attachments::AttachmentStore::from_url(
        &format!("file://{}", attachments_dir.display()),
        max_mb,
    )
    .map_err(anyhow::Error::msg)
}

/// The web app the page benchmarks serve: built as `ward serve` builds it, with mail
/// kept in memory, fast password hashing, no rate limits and owners inside the
/// second-factor grace (the benchmarks measure pages, not enrolment); attachments go
/// to `attachments_dir`, at most `max_mb` each.
pub fn bench_web(
    platform: &ward_control::Platform,
    clock: std::sync::Arc<dyn ward_core::Clock>,
    attachments_dir: &Path,
    max_mb: u64,
) -> anyhow::Result<std::sync::Arc<ward_web::Web>> {
    let attachments = bench_store(attachments_dir, max_mb)?;
    let app = ward_app::App::build(
        platform,
        ward_app::Config {
            mail: ward_app::MailSetup::InMemory,
            hashing: ward_app::Hashing {
                pepper: ward_control::passwords::Pepper::from_bytes([9; 32]),
                previous: None,
                cost: 4,
                parallel: 2,
            },
            session_policy: ward_control::SessionPolicy::default(),
            settings: ward_app::Settings {
                retention_days: 90,
                owner_second_factor_grace: chrono::TimeDelta::days(36_500),
                public_url: None,
                base_url: "http://bench".into(),
                version: "bench".into(),
            },
            clock,
            read_audit: Default::default(),
            attachment_files: Some(std::sync::Arc::new(attachments.clone())),
        },
    )?;
    Ok(ward_web::Web::new(
        std::sync::Arc::new(app),
        ward_web::WebOptions {
            trusted_proxy: ward_web::TrustedProxy::None,
            ip_limit: ward_web::limits::IpLimit::default(),
            email_limits: ward_web::limits::EmailLimits::default(),
            attachments,
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_use_the_nearest_rank() {
        let mut s = Samples::default();
        for ms in (1..=100).rev() {
            s.push(Duration::from_millis(ms));
        }
        assert_eq!(s.p50(), Duration::from_millis(50));
        assert_eq!(s.p99(), Duration::from_millis(99));
        assert_eq!(s.percentile(100.0), Duration::from_millis(100));
        assert_eq!(Samples::default().p99(), Duration::ZERO);
    }
}
