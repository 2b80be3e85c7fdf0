//! Attachments through Ward's whole router (session, CSRF, multipart, sniffing, the
//! quota, encryption, the `file://` store, the audit log): upload and download
//! throughput of large files, the process's peak resident memory while each runs (it
//! must not grow with the file's size: files stream), and the time to show a patient
//! page listing 200 attachments.
//!
//! Run it with `cargo run --release -p ward-bench --bin attachments`; `--help` lists the
//! knobs.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Request, StatusCode, header};
use bytes::Bytes;
use clap::Parser;
use futures::StreamExt as _;
use tower::ServiceExt as _;
use ward_bench::Samples;
use ward_control::passwords::{PasswordHasher, Pepper};
use ward_control::{MasterKeySource, Platform};
use ward_core::{Clock, Email, Role, SystemClock};

/// Measures attachment upload, download and listing.
#[derive(Debug, Parser)]
#[command(name = "attachments")]
struct Opts {
    /// File sizes to send, in MiB (each is uploaded, then downloaded).
    #[arg(long, value_delimiter = ',', default_values_t = [5u64, 20])]
    sizes: Vec<u64>,
    /// Rounds per size (the best and the median are printed).
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Attachments on the patient whose page is timed.
    #[arg(long, default_value_t = 200)]
    listed: usize,
    /// Times the patient page is fetched.
    #[arg(long, default_value_t = 20)]
    list_runs: usize,
    /// Where the scratch data directory goes.
    #[arg(long, default_value = "bench-out")]
    dir: PathBuf,
}

#[expect(clippy::print_stdout, reason = "a benchmark prints its numbers")]
fn say(line: impl std::fmt::Display) {
    println!("{line}");
}

const MIB: u64 = 1024 * 1024;
/// The benchmark's targets.
const TARGET_MIBS: f64 = 25.0;
const TARGET_RSS_GROWTH_MIB: f64 = 16.0;
const TARGET_LIST_MS: f64 = 150.0;

/// A line of `/proc/self/status`, in bytes.
fn status_bytes(key: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with(key))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// Samples the resident set every 2 ms while `f` runs; returns its output and the
/// highest sample (and the kernel's own peak, reset before, when it can be).
async fn peak_rss<F: std::future::Future>(f: F) -> (F::Output, u64, Option<u64>) {
    // Writing 5 resets VmHWM to the current RSS (Linux 4.0 and later).
    let reset = std::fs::write("/proc/self/clear_refs", "5").is_ok();
    let stop = Arc::new(AtomicBool::new(false));
    let peak = Arc::new(AtomicU64::new(status_bytes("VmRSS:").unwrap_or(0)));
    let sampler = {
        let (stop, peak) = (stop.clone(), peak.clone());
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                if let Some(rss) = status_bytes("VmRSS:") {
                    peak.fetch_max(rss, Ordering::Relaxed);
                }
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        })
    };
    let out = f.await;
    stop.store(true, Ordering::Relaxed);
    let _ = sampler.await;
    let hwm = if reset { status_bytes("VmHWM:") } else { None };
    (out, peak.load(Ordering::Relaxed), hwm)
}

fn mib(n: u64) -> f64 {
    n as f64 / MIB as f64
}

struct Client {
    router: axum::Router,
    cookie: String,
}

impl Client {
    async fn send(&self, mut req: Request<Body>) -> anyhow::Result<axum::response::Response> {
        req.headers_mut()
            .insert(header::COOKIE, self.cookie.parse()?);
        req.extensions_mut()
            .insert(ConnectInfo(SocketAddr::from(([127, 0, 0, 1], 40_000))));
        Ok(self.router.clone().oneshot(req).await?)
    }

    async fn get_text(&self, path: &str) -> anyhow::Result<(StatusCode, String)> {
        let r = self.send(Request::get(path).body(Body::empty())?).await?;
        let status = r.status();
        let mut body = r.into_body().into_data_stream();
        let mut out = Vec::new();
        while let Some(piece) = body.next().await {
            out.extend_from_slice(&piece?);
        }
        Ok((status, String::from_utf8_lossy(&out).into_owned()))
    }

    /// The patient page's upload action and a fresh upload key.
    async fn upload_form(&self, patient: &str) -> anyhow::Result<(String, String)> {
        let (status, page) = self.get_text(patient).await?;
        anyhow::ensure!(status == StatusCode::OK, "the patient page: {status}");
        let form = page
            .find("enctype=\"multipart/form-data\"")
            .context("no upload form")?;
        let start = page[..form].rfind("action=\"").context("no action")? + 8;
        let end = page[start..].find('"').context("no action end")? + start;
        let action = page[start..end].replace("&amp;", "&");
        let marker = "name=\"upload_key\" value=\"";
        let k = page.find(marker).context("no upload key")? + marker.len();
        let key = page[k..k + 32].to_owned();
        Ok((action, key))
    }

    /// Uploads one generated PDF of `size` bytes, streamed in 64 KiB pieces: nothing
    /// holds the whole file.
    async fn upload(&self, patient: &str, size: u64) -> anyhow::Result<Duration> {
        let (action, key) = self.upload_form(patient).await?;
        let boundary = "----WardBenchBoundary";
        let head = format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"upload_key\"\r\n\r\n{key}\r\n\
             --{boundary}\r\nContent-Disposition: form-data; name=\"title\"\r\n\r\nBench report\r\n\
             --{boundary}\r\nContent-Disposition: form-data; name=\"kind\"\r\n\r\nlab_report\r\n\
             --{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"r.pdf\"\r\n\
             Content-Type: application/pdf\r\n\r\n%PDF-1.4\n"
        );
        let tail = format!("\r\n--{boundary}--\r\n");
        let piece = 64 * 1024u64;
        let body_len = size.saturating_sub(9);
        let pieces = body_len.div_ceil(piece);
        let pattern: Bytes = (0..piece).map(|i| (i * 31 % 251) as u8).collect();
        let file = futures::stream::iter(0..pieces).map(move |i| {
            let n = if i + 1 == pieces {
                body_len - i * piece
            } else {
                piece
            };
            Ok::<_, std::convert::Infallible>(pattern.slice(..usize::try_from(n).unwrap_or(0)))
        });
        let body = futures::stream::once(async move { Ok(Bytes::from(head)) })
            .chain(file)
            .chain(futures::stream::once(async move { Ok(Bytes::from(tail)) }));
        let req = Request::post(&action)
            .header(
                header::CONTENT_TYPE,
                format!("multipart/form-data; boundary={boundary}"),
            )
            .body(Body::from_stream(body))?;
        let t0 = Instant::now();
        let r = self.send(req).await?;
        let took = t0.elapsed();
        anyhow::ensure!(
            r.status() == StatusCode::SEE_OTHER,
            "the upload answered {}",
            r.status()
        );
        Ok(took)
    }

    /// Downloads `path`, counting the bytes as they stream.
    async fn download(&self, path: &str) -> anyhow::Result<(Duration, u64)> {
        let t0 = Instant::now();
        let r = self.send(Request::get(path).body(Body::empty())?).await?;
        anyhow::ensure!(r.status() == StatusCode::OK, "download: {}", r.status());
        let mut body = r.into_body().into_data_stream();
        let mut n = 0u64;
        while let Some(piece) = body.next().await {
            n += piece?.len() as u64;
        }
        Ok((t0.elapsed(), n))
    }
}

/// The newest attachment's id on the patient page.
fn newest_attachment(page: &str) -> Option<i64> {
    let at = page.find("/attachments/")? + "/attachments/".len();
    let end = page[at..].find(|c: char| !c.is_ascii_digit())? + at;
    page[at..end].parse().ok()
}

#[tokio::main(flavor = "multi_thread")]
async fn main() -> anyhow::Result<()> {
    // The memory settings `ward serve` runs with, so the figures are the server's.
    ward_tenancy::memory::small_pages()?;
    let opts = Opts::parse();
    ward_bench::log_to_stderr("warn");
    std::fs::create_dir_all(&opts.dir)?;
    let dir = tempfile::tempdir_in(&opts.dir)?;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let platform = Platform::open(
        ward_tenancy::StoreConfig::new(dir.path()),
        MasterKeySource::Configured("cd".repeat(32)),
        clock.clone(),
    )
    .await?;
    let hasher = PasswordHasher::new(Pepper::from_bytes([9; 32]), 4, 2)?;
    let hash = hasher.hash("bench password 123").await?;
    let control = platform.control.clone();
    let clinic = control
        .create_clinic(
            "Bench Clinic",
            None,
            &platform.tenants,
            &ward_core::Actor::Operator,
        )
        .await?;
    let tenant = platform.tenants.get(clinic.id).await?;
    tenant
        .with(|conn| {
            for p in 1..=2i64 {
                conn.execute(
                    "INSERT INTO patients (id, number, full_name, sex, phone, phone_digits, address, created_at, updated_at)
                     VALUES (?1, ?1, ?2, 'female', '98450 12345', '9845012345', '12 Lake Road', '2026-01-01T00:00:00.000Z', '2026-01-01T00:00:00.000Z')",
                    ward_tenancy::sql::params![p, format!("Bench patient {p}")],
                )?;
            }
            Ok::<_, ward_tenancy::sql::Error>(())
        })
        .await?;
    let email = Email::parse("owner@bench.example").map_err(anyhow::Error::msg)?;
    let user = control
        .create_user(&email, "Bench Owner", &hash)
        .await?
        .context("user exists")?;
    control.mark_email_verified(&user.id).await?;
    control
        .add_membership(&user.id, clinic.id, Role::Owner)
        .await?;
    let token = control.create_session(&user.id, None, None).await?;

    let max_mb = opts.sizes.iter().copied().max().unwrap_or(20) + 1;
    let app = ward_bench::bench_web(
        &platform,
        clock.clone(),
        &dir.path().join("attachments"),
        max_mb,
    )?;
    let client = Client {
        router: ward_web::router(app),
        cookie: format!("ward_session={token}"),
    };
    let base = format!("/c/{}/patients", clinic.slug);
    let big = format!("{base}/1");

    say("attachments through the router (file:// store, release build expected)");
    say(format_args!(
        "targets: upload and download ≥ {TARGET_MIBS} MiB/s; peak RSS growth during a transfer ≤ {TARGET_RSS_GROWTH_MIB} MiB and not growing with the size; a patient with {} files listed in ≤ {TARGET_LIST_MS} ms (median)",
        opts.listed
    ));
    // One small upload first, so first-use allocations are not counted.
    client.upload(&big, 64 * 1024).await?;
    let mut growth = Vec::new();
    for &size_mib in &opts.sizes {
        let size = size_mib * MIB;
        let mut up = Samples::with_capacity(opts.rounds);
        let mut down = Samples::with_capacity(opts.rounds);
        let mut up_peak = 0u64;
        let mut down_peak = 0u64;
        let before = status_bytes("VmRSS:").unwrap_or(0);
        for _ in 0..opts.rounds {
            let (took, peak, hwm) = peak_rss(client.upload(&big, size)).await;
            up.push(took?);
            up_peak = up_peak.max(peak).max(hwm.unwrap_or(0));
            let (_, page) = client.get_text(&big).await?;
            let id = newest_attachment(&page).context("no attachment listed")?;
            let url = format!("{big}/attachments/{id}/download");
            let (got, peak, hwm) = peak_rss(client.download(&url)).await;
            let (took, n) = got?;
            anyhow::ensure!(n == size, "downloaded {n} bytes of {size}");
            down.push(took);
            down_peak = down_peak.max(peak).max(hwm.unwrap_or(0));
        }
        let rate = |d: Duration| mib(size) / d.as_secs_f64();
        let up_best = rate(up.percentile(0.0));
        let up_med = rate(up.p50());
        let down_best = rate(down.percentile(0.0));
        let down_med = rate(down.p50());
        let g_up = mib(up_peak.saturating_sub(before));
        let g_down = mib(down_peak.saturating_sub(before));
        growth.push((size_mib, g_up.max(g_down)));
        say(format_args!(
            "{size_mib:>3} MiB upload:   median {up_med:7.1} MiB/s, best {up_best:7.1} MiB/s (target ≥ {TARGET_MIBS}) {}",
            if up_med >= TARGET_MIBS {
                "ok"
            } else {
                "MISSED"
            }
        ));
        say(format_args!(
            "{size_mib:>3} MiB download: median {down_med:7.1} MiB/s, best {down_best:7.1} MiB/s (target ≥ {TARGET_MIBS}) {}",
            if down_med >= TARGET_MIBS {
                "ok"
            } else {
                "MISSED"
            }
        ));
        say(format_args!(
            "{size_mib:>3} MiB peak RSS: {:.1} MiB during uploads, {:.1} MiB during downloads (RSS before: {:.1} MiB; growth {g_up:.1} / {g_down:.1} MiB, target ≤ {TARGET_RSS_GROWTH_MIB}) {}",
            mib(up_peak),
            mib(down_peak),
            mib(before),
            if g_up.max(g_down) <= TARGET_RSS_GROWTH_MIB {
                "ok"
            } else {
                "MISSED"
            }
        ));
    }
    if let (Some(first), Some(last)) = (growth.first(), growth.last())
        && growth.len() > 1
    {
        say(format_args!(
            "RSS growth {:.1} MiB at {} MiB vs {:.1} MiB at {} MiB: {}",
            first.1,
            first.0,
            last.1,
            last.0,
            if last.1 <= first.1 + 4.0 {
                "does not grow with the file's size"
            } else {
                "GROWS with the file's size"
            }
        ));
    }

    // The export with files of everything uploaded so far, written to a file: each file
    // is streamed through, so memory must not grow with the archive's size.
    let header = ward_app::exports::header(
        &control,
        clinic.id,
        ward_core::Actor::Operator.to_string(),
        clock.now(),
    )
    .await?;
    let archive_path = dir.path().join("bench-archive.zip");
    let out = std::io::BufWriter::new(std::fs::File::create(&archive_path)?);
    let store = ward_bench::bench_store(&dir.path().join("attachments"), max_mb)?;
    let before = status_bytes("VmRSS:").unwrap_or(0);
    let t0 = Instant::now();
    let (written, peak, hwm) = peak_rss(ward_app::archive::write_archive(
        &tenant, &header, &store, out,
    ))
    .await;
    let took = t0.elapsed();
    let (summary, mut out) = written.map_err(|e| anyhow::anyhow!("the archive: {e}"))?;
    std::io::Write::flush(&mut out)?;
    drop(out);
    let archive_bytes = std::fs::metadata(&archive_path)?.len();
    let file_bytes: i64 = tenant
        .with(|conn| {
            conn.first_row_now("SELECT coalesce(sum(size), 0) FROM attachments", ())?
                .map_or(Ok(0), |r| r.get::<i64>(0))
        })
        .await?;
    let file_mib = mib(u64::try_from(file_bytes).unwrap_or(0));
    let growth = mib(peak.max(hwm.unwrap_or(0)).saturating_sub(before));
    say(format_args!(
        "export with files: {} files, {file_mib:.1} MiB of files ({:.1} MiB deflated) in {:.2} s ({:.1} MiB/s of files); RSS growth {growth:.1} MiB (target ≤ {TARGET_RSS_GROWTH_MIB}) {}",
        summary.files,
        mib(archive_bytes),
        took.as_secs_f64(),
        file_mib / took.as_secs_f64(),
        if growth <= TARGET_RSS_GROWTH_MIB {
            "ok"
        } else {
            "MISSED"
        }
    ));
    std::fs::remove_file(&archive_path)?;

    // A patient with `listed` small files, sent 20 to an upload.
    let listed = format!("{base}/2");
    let pdf = b"%PDF-1.4\n% bench\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n";
    let t0 = Instant::now();
    let mut left = opts.listed;
    while left > 0 {
        let n = left.min(20);
        let (action, key) = client.upload_form(&listed).await?;
        let boundary = "----WardBenchList";
        let mut body = format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"upload_key\"\r\n\r\n{key}\r\n\
             --{boundary}\r\nContent-Disposition: form-data; name=\"title\"\r\n\r\nBench\r\n\
             --{boundary}\r\nContent-Disposition: form-data; name=\"kind\"\r\n\r\nconsent\r\n"
        )
        .into_bytes();
        for i in 0..n {
            body.extend_from_slice(
                format!("--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"f{i}.pdf\"\r\nContent-Type: application/pdf\r\n\r\n").as_bytes(),
            );
            body.extend_from_slice(pdf);
            body.extend_from_slice(b"\r\n");
        }
        body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
        let r = client
            .send(
                Request::post(&action)
                    .header(
                        header::CONTENT_TYPE,
                        format!("multipart/form-data; boundary={boundary}"),
                    )
                    .body(Body::from(body))?,
            )
            .await?;
        anyhow::ensure!(r.status() == StatusCode::SEE_OTHER, "batch: {}", r.status());
        left -= n;
    }
    say(format_args!(
        "uploaded {} small files in {:.2} s",
        opts.listed,
        t0.elapsed().as_secs_f64()
    ));
    let mut list = Samples::with_capacity(opts.list_runs);
    for _ in 0..opts.list_runs {
        let t0 = Instant::now();
        let (status, page) = client.get_text(&listed).await?;
        list.push(t0.elapsed());
        anyhow::ensure!(status == StatusCode::OK, "the patient page: {status}");
        anyhow::ensure!(
            page.matches("/download\"").count() == opts.listed,
            "the page does not list {} files",
            opts.listed
        );
    }
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let p50 = ms(list.p50());
    say(format_args!(
        "patient page with {} attachments: median {p50:.1} ms, p99 {:.1} ms (target ≤ {TARGET_LIST_MS} ms) {}",
        opts.listed,
        ms(list.p99()),
        if p50 <= TARGET_LIST_MS {
            "ok"
        } else {
            "MISSED"
        }
    ));
    Ok(())
}
