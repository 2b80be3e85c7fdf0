//! Patient search on a large register: builds an encrypted clinic database with
//! `--patients` patients (50,000 by default) of realistic names and phone numbers, then
//! times `ward_clinic::patients::search` for each kind of query, warm, as a page would
//! run it. Prints p50 / p99 / max per query and the worst of all.

use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::Parser;
use ward_bench::{Samples, us};
use ward_clinic::patients;
use ward_tenancy::db::{self, Durability};
use ward_tenancy::sql::params;
use ward_tenancy::{DataKey, migrations};

#[derive(Parser)]
struct Args {
    /// Patients in the register.
    #[arg(long, default_value_t = 50_000)]
    patients: usize,
    /// Timed runs of each query.
    #[arg(long, default_value_t = 200)]
    runs: usize,
}

const FIRST: &[&str] = &[
    "Aarav", "Aditi", "Amit", "Ananya", "Anil", "Anjali", "Arjun", "Asha", "Deepa", "Divya",
    "Farah", "Gaurav", "Geeta", "Hari", "Imran", "Isha", "Kavya", "Kiran", "Lakshmi", "Manoj",
    "Meena", "Mohan", "Nandini", "Neha", "Nikhil", "Pooja", "Priya", "Rahul", "Rajesh", "Ravi",
    "Rekha", "Rohan", "Sanjay", "Sara", "Shreya", "Sita", "Sunil", "Suresh", "Tara", "Uma",
    "Varun", "Vijay", "Yusuf", "Zara", "Grace", "John", "Mary", "Peter", "Fatima", "Ahmed",
];
const LAST: &[&str] = &[
    "Rao",
    "Sharma",
    "Patel",
    "Iyer",
    "Nair",
    "Reddy",
    "Khan",
    "Singh",
    "Gupta",
    "Das",
    "Menon",
    "Joshi",
    "Kulkarni",
    "Desai",
    "Shah",
    "Mehta",
    "Pillai",
    "Bose",
    "Chatterjee",
    "Banerjee",
    "Mukherjee",
    "Verma",
    "Mishra",
    "Pandey",
    "Yadav",
    "Naidu",
    "Hegde",
    "Shetty",
    "Fernandes",
    "D'Souza",
    "Thomas",
    "George",
    "Varghese",
    "Kurian",
    "Ali",
    "Hussain",
    "Qureshi",
    "Siddiqui",
    "Malik",
    "Chowdhury",
    "Ghosh",
    "Sen",
    "Dutta",
    "Roy",
    "Kapoor",
    "Malhotra",
    "Chopra",
    "Bhat",
    "Kamath",
    "Prabhu",
];

/// A small deterministic generator: the same register every run.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn pick<'a>(&mut self, from: &[&'a str]) -> &'a str {
        let i = usize::try_from(self.next() % from.len() as u64).unwrap_or(0);
        from[i]
    }
}

#[expect(clippy::print_stdout, reason = "a benchmark prints its numbers")]
fn say(line: impl std::fmt::Display) {
    println!("{line}");
}

fn main() -> anyhow::Result<()> {
    // The memory settings `ward serve` runs with, so the figures are the server's.
    ward_tenancy::memory::small_pages()?;
    let args = Args::parse();
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(run(args))
}

async fn run(args: Args) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("clinic.db");
    let key = DataKey::random();
    let opened = db::open(&path, &key, true, Durability::Normal).await?;
    let conn = ward_tenancy::Db::new(opened.conn.clone());
    ward_tenancy::migrate::migrate(&conn, migrations::TENANT)?;

    let started = Instant::now();
    let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
    let mut known_phone = String::new();
    conn.execute("BEGIN", ())?;
    for n in 1..=args.patients {
        let name = if rng.next().is_multiple_of(3) {
            format!("{} {} {}", rng.pick(FIRST), rng.pick(FIRST), rng.pick(LAST))
        } else {
            format!("{} {}", rng.pick(FIRST), rng.pick(LAST))
        };
        let phone = format!("9{:09}", rng.next() % 1_000_000_000);
        let shown = format!("+91 {} {}", &phone[..5], &phone[5..]);
        if n == args.patients / 2 {
            known_phone = phone.clone();
        }
        let digits = patients::digits(&shown);
        let rev: String = digits.chars().rev().collect();
        conn.execute(
            "INSERT INTO patients (number, full_name, sex, phone, phone_digits, phone_digits_rev, created_at, updated_at) \
             VALUES (?1, ?2, 'unknown', ?3, ?4, ?5, '2026-01-01T00:00:00.000Z', '2026-01-01T00:00:00.000Z')",
            params![n as i64, name.clone(), shown, digits, rev],
        )?;
        let id = conn.last_insert_rowid();
        for token in patients::name_tokens(&name) {
            conn.execute(
                "INSERT INTO patient_name_tokens (token, patient_id) VALUES (?1, ?2)",
                params![token, id],
            )?;
        }
    }
    conn.execute("COMMIT", ())?;
    say(format!(
        "register: {} patients built in {:.1} s",
        args.patients,
        started.elapsed().as_secs_f64()
    ));

    let queries = [
        "r".to_owned(),
        "ra".to_owned(),
        "priya".to_owned(),
        "priya sh".to_owned(),
        "sharma".to_owned(),
        "rao anil".to_owned(),
        "d'souza grace".to_owned(),
        "nobody-at-all".to_owned(),
        format!("{}", args.patients / 3),
        format!("#{}", args.patients / 3),
        known_phone.clone(),
        format!("+91 {}-{}", &known_phone[..5], &known_phone[5..]),
        known_phone[known_phone.len() - 6..].to_owned(),
        known_phone[..4].to_owned(),
    ];
    say(format!(
        "{:<24} {:>7} {:>10} {:>10} {:>10}",
        "query", "found", "p50 ms", "p99 ms", "max ms"
    ));
    let mut worst = Duration::ZERO;
    for q in &queries {
        let found = patients::search(&conn, q).context("search")?.len();
        let mut samples = Samples::with_capacity(args.runs);
        for _ in 0..args.runs {
            let t = Instant::now();
            let n = patients::search(&conn, q)?.len();
            samples.push(t.elapsed());
            anyhow::ensure!(n == found, "results changed between runs");
        }
        let max = samples.percentile(100.0);
        worst = worst.max(max);
        say(format!(
            "{:<24} {:>7} {:>10.2} {:>10.2} {:>10.2}",
            q,
            found,
            us(samples.p50()) / 1000.0,
            us(samples.p99()) / 1000.0,
            us(max) / 1000.0
        ));
    }
    say(format!(
        "worst single search: {:.2} ms (target ≤ 50 ms)",
        us(worst) / 1000.0
    ));
    Ok(())
}
