//! Password hashing: bcrypt over an HMAC-SHA-256 pre-hash keyed with a server pepper.
//!
//! bcrypt alone silently ignores every byte past the 72nd; the pre-hash makes the whole
//! passphrase count (and makes a leaked table useless without the pepper). Hashing is
//! deliberately slow, so it runs on blocking threads behind a cap of about one per core,
//! and the async workers keep serving pages while logins are checked.

use std::path::Path;
use std::sync::Arc;

use hmac::{Hmac, Mac};
use sha2::Sha256;
use tokio::sync::Semaphore;
use ward_tenancy::keys::load_or_generate_secret;

use crate::ControlError;

/// The bcrypt cost Ward runs with; never lower in production.
pub const PRODUCTION_COST: u32 = 12;
// The build fails if someone lowers it.
const _: () = assert!(PRODUCTION_COST >= 12);
/// Shortest password accepted.
pub const MIN_LENGTH: usize = 10;
/// Longest password accepted (characters); far beyond any passphrase, short enough that
/// a request cannot make hashing expensive.
pub const MAX_LENGTH: usize = 1_024;

/// The most common passwords of at least [`MIN_LENGTH`] characters, refused outright.
const COMMON: &[&str] = &[
    "1234567890",
    "12345678910",
    "123456789a",
    "1q2w3e4r5t",
    "1qaz2wsx3edc",
    "abcdefghij",
    "aaaaaaaaaa",
    "password12",
    "password123",
    "password1234",
    "passw0rd123",
    "qwertyuiop",
    "qwerty1234",
    "qwerty12345",
    "qwertyuiop123",
    "iloveyou12",
    "iloveyou123",
    "0987654321",
    "1111111111",
    "0000000000",
    "987654321a",
    "letmein123",
    "welcome123",
    "welcome1234",
    "football123",
    "baseball123",
    "sunshine123",
    "princess123",
    "dragon1234",
    "monkey1234",
    "superman123",
    "trustno1234",
    "changeme123",
    "administrator",
    "admin12345",
    "adminadmin",
    "zaq12wsxcv",
    "asdfghjkl1",
    "asdfghjkl;",
    "zxcvbnm123",
    "michael123",
    "charlie123",
    "password!1",
    "p@ssw0rd123",
    "passwordpassword",
    "1234567890a",
    "abc1234567",
    "abcd123456",
    "a123456789",
    "q1w2e3r4t5",
    "1q2w3e4r5t6y",
    "123123123123",
    "1234512345",
    "5555555555",
    "7777777777",
    "9999999999",
    "qazwsxedcrfv",
    "computer123",
    "internet123",
    "doctor1234",
    "clinic1234",
    "hospital123",
    "wardward12",
];

/// The server secret mixed into every password hash.
#[derive(Clone)]
pub struct Pepper([u8; 32]);

impl std::fmt::Debug for Pepper {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Pepper(…)")
    }
}

impl Pepper {
    /// The configured pepper (`WARD_PEPPER`, 64 hex characters), or `<data>/pepper.key`,
    /// generated beside the master key on first use.
    pub fn load(data_dir: &Path, configured: Option<&str>) -> Result<Self, ControlError> {
        let (hex, origin) = match configured {
            Some(h) => (h.trim().to_owned(), "WARD_PEPPER".to_owned()),
            None => {
                let path = data_dir.join("pepper.key");
                let (hex, generated) = load_or_generate_secret(&path)
                    .map_err(|e| ControlError::Invalid(e.to_string()))?;
                if generated {
                    tracing::warn!(path = %path.display(), "generated a new password pepper; back it up with the master key, and set WARD_PEPPER in production");
                }
                (hex, path.display().to_string())
            }
        };
        let mut k = [0u8; 32];
        hex::decode_to_slice(&hex, &mut k).map_err(|_| {
            ControlError::Invalid(format!(
                "{origin}: the pepper must be 64 hexadecimal characters"
            ))
        })?;
        Ok(Self(k))
    }

    /// A fixed pepper; for tests.
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    fn prehash(&self, password: &str) -> String {
        #[expect(clippy::expect_used, reason = "HMAC accepts keys of any length")]
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.0).expect("any key length");
        mac.update(password.as_bytes());
        // 64 hex characters: under bcrypt's 72-byte limit, no NUL bytes.
        hex::encode(mac.finalize().into_bytes())
    }
}

/// Why a new password was refused; the text is shown next to the field.
pub fn check_new_password(password: &str) -> Result<(), &'static str> {
    let n = password.chars().count();
    if n < MIN_LENGTH {
        return Err(
            "Use at least 10 characters. A few unrelated words make a strong, memorable password.",
        );
    }
    if n > MAX_LENGTH {
        return Err("That password is too long (at most 1,024 characters).");
    }
    let lower = password.to_lowercase();
    if COMMON.contains(&lower.as_str())
        || lower
            .chars()
            .all(|c| c == lower.chars().next().unwrap_or(' '))
    {
        return Err(
            "That password is one of the most commonly used ones. Choose something less predictable.",
        );
    }
    Ok(())
}

/// Hashes and verifies passwords off the async workers, a bounded number at a time.
#[derive(Clone)]
pub struct PasswordHasher {
    pepper: Pepper,
    cost: u32,
    permits: Arc<Semaphore>,
    /// A hash of a random password, verified against when the email is unknown so that
    /// both cases take the same time.
    dummy: Arc<String>,
}

impl std::fmt::Debug for PasswordHasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PasswordHasher")
            .field("cost", &self.cost)
            .finish_non_exhaustive()
    }
}

impl PasswordHasher {
    /// A hasher at bcrypt `cost` (use [`PRODUCTION_COST`]; tests may go lower), running at
    /// most `parallel` hashes at once.
    pub fn new(pepper: Pepper, cost: u32, parallel: usize) -> Result<Self, ControlError> {
        let dummy = bcrypt::hash(pepper.prehash("not a real password, only for timing"), cost)
            .map_err(|e| ControlError::Invalid(format!("bcrypt: {e}")))?;
        Ok(Self {
            pepper,
            cost,
            permits: Arc::new(Semaphore::new(parallel.max(1))),
            dummy: Arc::new(dummy),
        })
    }

    /// The cost in use.
    pub fn cost(&self) -> u32 {
        self.cost
    }

    /// Hashes a new password.
    pub async fn hash(&self, password: &str) -> Result<String, ControlError> {
        let pre = self.pepper.prehash(password);
        let cost = self.cost;
        self.run(move || bcrypt::hash(pre, cost)).await
    }

    /// Whether `password` matches `hash`; with `None` (unknown user) it checks against a
    /// dummy hash and returns false, taking the same time.
    pub async fn verify(&self, password: &str, hash: Option<&str>) -> bool {
        let pre = self.pepper.prehash(password);
        let (hash, real) = match hash {
            Some(h) => (h.to_owned(), true),
            None => (self.dummy.as_ref().clone(), false),
        };
        let ok = self
            .run(move || bcrypt::verify(pre, &hash))
            .await
            .unwrap_or(false);
        ok && real
    }

    async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> Result<T, bcrypt::BcryptError> + Send + 'static,
    ) -> Result<T, ControlError> {
        let _permit = self
            .permits
            .acquire()
            .await
            .map_err(|_| ControlError::Invalid("password hashing is shut down".into()))?;
        tokio::task::spawn_blocking(f)
            .await
            .map_err(|e| ControlError::Invalid(format!("password hashing failed: {e}")))?
            .map_err(|e| ControlError::Invalid(format!("bcrypt: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hasher() -> PasswordHasher {
        PasswordHasher::new(Pepper::from_bytes([7; 32]), 4, 2).unwrap()
    }

    #[tokio::test]
    async fn passwords_equal_in_their_first_72_bytes_do_not_verify_each_other() {
        let h = hasher();
        let a = format!("{}{}", "x".repeat(72), "tail-one");
        let b = format!("{}{}", "x".repeat(72), "tail-two");
        let hash = h.hash(&a).await.unwrap();
        assert!(h.verify(&a, Some(&hash)).await);
        assert!(!h.verify(&b, Some(&hash)).await);
    }

    #[tokio::test]
    async fn long_multibyte_passphrases_are_accepted_and_count_in_full() {
        let h = hasher();
        let pass: String = "ñá€漢字".chars().cycle().take(64).collect();
        assert!(check_new_password(&pass).is_ok());
        let hash = h.hash(&pass).await.unwrap();
        assert!(h.verify(&pass, Some(&hash)).await);
        let shorter: String = pass.chars().take(63).collect();
        assert!(!h.verify(&shorter, Some(&hash)).await);
    }

    #[tokio::test]
    async fn an_unknown_user_never_verifies() {
        assert!(!hasher().verify("whatever-password", None).await);
    }

    #[tokio::test]
    async fn a_different_pepper_does_not_verify() {
        let a = hasher();
        let b = PasswordHasher::new(Pepper::from_bytes([8; 32]), 4, 1).unwrap();
        let hash = a.hash("correct horse battery").await.unwrap();
        assert!(!b.verify("correct horse battery", Some(&hash)).await);
    }

    #[test]
    fn weak_passwords_are_refused_with_a_reason() {
        assert!(check_new_password("short").is_err());
        assert!(check_new_password("Password123").is_err());
        assert!(check_new_password("zzzzzzzzzzzz").is_err());
        assert!(check_new_password("correct horse battery staple").is_ok());
    }
}
