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

/// The file `ward keys rotate-pepper` keeps the previous pepper in.
pub const PREVIOUS_PEPPER_FILE: &str = "pepper.key.previous";

/// The pepper a stored hash names (`p<id>:` in front of the bcrypt text), or `None` for a
/// hash made before peppers were named (under the pepper in force before the first
/// rotation).
pub(crate) fn split_hash(stored: &str) -> (Option<&str>, &str) {
    match stored.strip_prefix('p').and_then(|r| r.split_once(':')) {
        Some((id, rest)) if id.len() == 8 && id.bytes().all(|b| b.is_ascii_hexdigit()) => {
            (Some(id), rest)
        }
        _ => (None, stored),
    }
}

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

    /// The previous pepper, kept after `ward keys rotate-pepper` so that hashes made
    /// under it verify until each user's next sign-in: `WARD_PEPPER_PREVIOUS`, or
    /// `<data>/pepper.key.previous` if it exists.
    pub fn load_previous(
        data_dir: &Path,
        configured: Option<&str>,
    ) -> Result<Option<Self>, ControlError> {
        let (hex, origin) = match configured {
            Some(h) => (h.trim().to_owned(), "WARD_PEPPER_PREVIOUS".to_owned()),
            None => {
                let path = data_dir.join(PREVIOUS_PEPPER_FILE);
                match std::fs::read_to_string(&path) {
                    Ok(text) => (text.trim().to_owned(), path.display().to_string()),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
                    Err(e) => {
                        return Err(ControlError::Invalid(format!(
                            "cannot read {}: {e}",
                            path.display()
                        )));
                    }
                }
            }
        };
        let mut k = [0u8; 32];
        hex::decode_to_slice(&hex, &mut k).map_err(|_| {
            ControlError::Invalid(format!(
                "{origin}: the pepper must be 64 hexadecimal characters"
            ))
        })?;
        Ok(Some(Self(k)))
    }

    /// A short, non-secret name for this pepper (8 hex characters derived from it),
    /// written in front of every hash made with it.
    pub fn id(&self) -> String {
        #[expect(clippy::expect_used, reason = "HMAC accepts keys of any length")]
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.0).expect("any key length");
        mac.update(b"ward pepper id");
        hex::encode(&mac.finalize().into_bytes()[..4])
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
    /// The pepper before the last rotation: hashes that name it still verify.
    previous: Option<Pepper>,
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
            previous: None,
            cost,
            permits: Arc::new(Semaphore::new(parallel.max(1))),
            dummy: Arc::new(dummy),
        })
    }

    /// Also verifies hashes made under `previous` (the pepper before a rotation).
    pub fn with_previous(mut self, previous: Option<Pepper>) -> Self {
        self.previous = previous;
        self
    }

    /// Whether `stored` was made under another pepper than the current one, so that it
    /// should be replaced by a fresh hash at the next successful sign-in.
    pub fn needs_rehash(&self, stored: &str) -> bool {
        split_hash(stored).0 != Some(self.pepper.id().as_str())
    }

    /// Whether `stored` verifies with the current pepper or the previous one; with
    /// neither it is left behind by two rotations (or was never Ward's).
    pub fn pepper_known(&self, stored: &str) -> bool {
        self.pepper_of(stored).is_some()
    }

    /// The pepper `stored` was made with, if this hasher has it.
    fn pepper_of<'a>(&'a self, stored: &'a str) -> Option<(&'a Pepper, &'a str)> {
        let (id, hash) = split_hash(stored);
        match id {
            Some(id) if id == self.pepper.id() => Some((&self.pepper, hash)),
            Some(id) => self
                .previous
                .as_ref()
                .filter(|p| p.id() == id)
                .map(|p| (p, hash)),
            None => Some((self.previous.as_ref().unwrap_or(&self.pepper), hash)),
        }
    }

    /// The cost in use.
    pub fn cost(&self) -> u32 {
        self.cost
    }

    /// Hashes a new password.
    pub async fn hash(&self, password: &str) -> Result<String, ControlError> {
        let pre = self.pepper.prehash(password);
        let cost = self.cost;
        let id = self.pepper.id();
        self.run(move || bcrypt::hash(pre, cost).map(|h| format!("p{id}:{h}")))
            .await
    }

    /// Whether `password` matches `hash`; with `None` (unknown user) it checks against a
    /// dummy hash and returns false, taking the same time.
    pub async fn verify(&self, password: &str, hash: Option<&str>) -> bool {
        // A hash under a pepper no longer kept is checked against the dummy, so that it
        // takes the same time and fails.
        let (pre, hash, real) = match hash.map(|h| (h, self.pepper_of(h))) {
            Some((_, Some((pepper, h)))) => (pepper.prehash(password), h.to_owned(), true),
            _ => (
                self.pepper.prehash(password),
                self.dummy.as_ref().clone(),
                false,
            ),
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

    #[tokio::test]
    async fn after_a_rotation_old_hashes_verify_until_rehashed_and_not_after_two() {
        let first = Pepper::from_bytes([7; 32]);
        let second = Pepper::from_bytes([8; 32]);
        let third = Pepper::from_bytes([9; 32]);
        let before = PasswordHasher::new(first.clone(), 4, 1).unwrap();
        let old = before.hash("correct horse battery").await.unwrap();
        assert!(old.starts_with(&format!("p{}:$2", first.id())), "{old}");
        assert!(!before.needs_rehash(&old));
        // A hash from before peppers were named is under the first pepper.
        let legacy = old.split_once(':').unwrap().1.to_owned();
        assert!(before.verify("correct horse battery", Some(&legacy)).await);
        assert!(before.needs_rehash(&legacy));

        let after = PasswordHasher::new(second.clone(), 4, 1)
            .unwrap()
            .with_previous(Some(first.clone()));
        for h in [&old, &legacy] {
            assert!(after.verify("correct horse battery", Some(h)).await);
            assert!(!after.verify("wrong horse battery", Some(h)).await);
            assert!(after.needs_rehash(h));
        }
        let fresh = after.hash("correct horse battery").await.unwrap();
        assert!(!after.needs_rehash(&fresh));
        assert!(after.verify("correct horse battery", Some(&fresh)).await);

        // Without the previous pepper, or two rotations on, the old hash does not verify.
        let forgot = PasswordHasher::new(second, 4, 1).unwrap();
        assert!(!forgot.verify("correct horse battery", Some(&old)).await);
        let twice = PasswordHasher::new(third, 4, 1)
            .unwrap()
            .with_previous(Some(Pepper::from_bytes([8; 32])));
        assert!(!twice.pepper_known(&old));
        assert!(!twice.verify("correct horse battery", Some(&old)).await);
        assert!(twice.verify("correct horse battery", Some(&fresh)).await);
    }

    #[test]
    fn weak_passwords_are_refused_with_a_reason() {
        assert!(check_new_password("short").is_err());
        assert!(check_new_password("Password123").is_err());
        assert!(check_new_password("zzzzzzzzzzzz").is_err());
        assert!(check_new_password("correct horse battery staple").is_ok());
    }
}
