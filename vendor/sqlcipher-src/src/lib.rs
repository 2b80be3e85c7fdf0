//! The SQLCipher amalgamation as C source for `libsqlite3-sys`'s bundled build.
//!
//! The same interface as the published `sqlcipher-src` crate for native builds; the
//! libtomcrypt provider is not kept (the build uses OpenSSL).

use std::path::Path;

/// SQLCipher release the amalgamation is generated from.
pub const SQLCIPHER_VERSION: &str = "4.20.0";

/// SQLite release that SQLCipher release is based on.
pub const SQLITE_VERSION: &str = "3.54.1";

/// SQLCipher amalgamation inside [`source_dir`].
pub const SOURCE_FILE: &str = "sqlcipher.c";

/// Public SQLCipher header inside [`source_dir`].
pub const HEADER_FILE: &str = "sqlite3.h";

/// Directory holding the sources, at the path this crate was compiled from.
#[must_use]
pub fn source_dir() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/sqlcipher"))
}
