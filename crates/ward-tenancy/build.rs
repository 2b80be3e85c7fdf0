//! Embeds `migrations/control/*.sql` and `migrations/tenant/*.sql` into the binary, in
//! file-name order, so adding a numbered file is all a new migration takes.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?).join("../../migrations");
    let mut out = String::new();
    for (konst, dir) in [("CONTROL", "control"), ("TENANT", "tenant")] {
        let dir = root.join(dir);
        println!("cargo:rerun-if-changed={}", dir.display());
        writeln!(
            out,
            "/// Embedded from `migrations/{}/`.",
            dir.file_name().and_then(|n| n.to_str()).unwrap_or_default()
        )?;
        writeln!(out, "pub const {konst}: &[Migration] = &[")?;
        for (version, name, path) in scan(&dir)? {
            println!("cargo:rerun-if-changed={}", path.display());
            writeln!(
                out,
                "    Migration {{ version: {version}, name: {name:?}, sql: include_str!({:?}) }},",
                path.canonicalize()?
            )?;
        }
        writeln!(out, "];")?;
    }
    std::fs::write(
        PathBuf::from(std::env::var("OUT_DIR")?).join("migrations.rs"),
        out,
    )?;
    Ok(())
}

/// `NNNN_name.sql` files, sorted; anything else in the folder is an error.
type Found = Vec<(u32, String, PathBuf)>;

fn scan(dir: &Path) -> Result<Found, Box<dyn std::error::Error>> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let file = path
            .file_name()
            .and_then(|n| n.to_str())
            .ok_or("non-UTF-8 migration name")?;
        let stem = file
            .strip_suffix(".sql")
            .ok_or_else(|| format!("{file}: migrations end in .sql"))?;
        let (num, name) = stem
            .split_once('_')
            .ok_or_else(|| format!("{file}: name it NNNN_what.sql"))?;
        found.push((num.parse::<u32>()?, name.to_owned(), path));
    }
    found.sort();
    for (i, (version, _, path)) in found.iter().enumerate() {
        if *version as usize != i + 1 {
            return Err(format!(
                "{}: migrations must be numbered 1, 2, 3… without gaps",
                path.display()
            )
            .into());
        }
    }
    Ok(found)
}
