//! Key handling: the master key, per-clinic data keys and how one wraps the other.
//!
//! A clinic's 256-bit data key never touches the disk in the clear: the control plane
//! stores it sealed with XChaCha20-Poly1305 under the master key, with the clinic id as
//! associated data so a wrapped key copied onto another clinic's row does not open.
//! Destroying the wrapped key makes the clinic's file and every copy of it unreadable.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::Sha256;
use ward_core::ClinicId;
use zeroize::{Zeroize, ZeroizeOnDrop};

const WRAP_VERSION: u8 = 1;
const WRAP_AAD_PREFIX: &[u8] = b"ward data key v1:";

/// Why a key could not be used.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The configured master key is not 64 hexadecimal characters.
    #[error(
        "the master key must be 64 hexadecimal characters (32 bytes), e.g. from `openssl rand -hex 32`"
    )]
    BadMasterKey,
    /// A key file could not be read or written.
    #[error("could not use the key file {path}: {source}")]
    File {
        /// The key file.
        path: PathBuf,
        /// What the system said.
        source: std::io::Error,
    },
    /// A wrapped data key did not open: wrong master key, or the row was altered or moved.
    #[error("the data key of clinic {0} does not open with this master key")]
    Unwrap(ClinicId),
}

/// A 32-byte secret read from hex, zeroed on drop.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
struct Secret([u8; 32]);

impl Secret {
    fn random() -> Self {
        let mut k = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut k);
        Self(k)
    }

    fn from_hex(s: &str) -> Option<Self> {
        let mut k = [0u8; 32];
        hex::decode_to_slice(s.trim(), &mut k).ok()?;
        Some(Self(k))
    }
}

/// The key that wraps every clinic's data key.
#[derive(Clone)]
pub struct MasterKey(Secret);

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterKey(…)")
    }
}

impl MasterKey {
    /// Parses a key given as 64 hex characters (the `WARD_MASTER_KEY` form).
    pub fn from_hex(s: &str) -> Result<Self, KeyError> {
        Secret::from_hex(s).map(Self).ok_or(KeyError::BadMasterKey)
    }

    /// Reads `path`, or creates it with a fresh random key (mode 0600) when it does not
    /// exist. Returns whether it was generated, so the caller can say so.
    pub fn load_or_generate(path: &Path) -> Result<(Self, bool), KeyError> {
        let (hex, generated) = load_or_generate_secret(path)?;
        Ok((Self::from_hex(&hex)?, generated))
    }

    /// A fresh random key; for tests and tools.
    pub fn random() -> Self {
        Self(Secret::random())
    }

    /// A short, non-secret name for this key (16 hex characters derived from it), so
    /// that an operator can tell two keys apart without showing either.
    pub fn fingerprint(&self) -> String {
        hex::encode(&self.derive("ward master key fingerprint")[..8])
    }

    /// Writes this key as hex to the new file `path` (mode 0600) and syncs it.
    pub fn write_new(&self, path: &Path) -> Result<(), KeyError> {
        let io = |source| KeyError::File {
            path: path.to_owned(),
            source,
        };
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = options.open(path).map_err(io)?;
        let mut text = hex::encode(self.0.0);
        text.push('\n');
        let written = file
            .write_all(text.as_bytes())
            .and_then(|()| file.sync_all());
        text.zeroize();
        written.map_err(io)
    }

    /// A key for one purpose derived from this one (HMAC-SHA-256 with a label), so that
    /// one configured secret can key several things without reusing a key.
    pub fn derive(&self, label: &str) -> [u8; 32] {
        #[expect(clippy::expect_used, reason = "HMAC accepts keys of any length")]
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.0.0).expect("any key length");
        mac.update(label.as_bytes());
        mac.finalize().into_bytes().into()
    }

    /// Seals `key` for `clinic`.
    pub fn wrap(&self, clinic: ClinicId, key: &DataKey) -> Vec<u8> {
        let cipher = XChaCha20Poly1305::new((&self.0.0).into());
        let mut nonce = [0u8; 24];
        rand::rngs::OsRng.fill_bytes(&mut nonce);
        let aad = aad(clinic);
        #[expect(clippy::expect_used, reason = "encryption into a Vec cannot fail")]
        let sealed = cipher
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: &key.0.0,
                    aad: &aad,
                },
            )
            .expect("in-memory encryption");
        let mut out = Vec::with_capacity(1 + nonce.len() + sealed.len());
        out.push(WRAP_VERSION);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        out
    }

    /// Opens a key sealed by [`MasterKey::wrap`] for the same clinic.
    pub fn unwrap(&self, clinic: ClinicId, wrapped: &[u8]) -> Result<DataKey, KeyError> {
        let fail = || KeyError::Unwrap(clinic);
        let (&version, rest) = wrapped.split_first().ok_or_else(fail)?;
        if version != WRAP_VERSION || rest.len() < 24 {
            return Err(fail());
        }
        let (nonce, sealed) = rest.split_at(24);
        let cipher = XChaCha20Poly1305::new((&self.0.0).into());
        let mut plain = cipher
            .decrypt(
                XNonce::from_slice(nonce),
                Payload {
                    msg: sealed,
                    aad: &aad(clinic),
                },
            )
            .map_err(|_| fail())?;
        let key = <[u8; 32]>::try_from(plain.as_slice()).map_err(|_| fail());
        plain.zeroize();
        Ok(DataKey(Secret(key?)))
    }
}

fn aad(clinic: ClinicId) -> Vec<u8> {
    let mut aad = WRAP_AAD_PREFIX.to_vec();
    aad.extend_from_slice(clinic.as_uuid().as_bytes());
    aad
}

/// One database's encryption key.
#[derive(Clone)]
pub struct DataKey(Secret);

impl std::fmt::Debug for DataKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DataKey(…)")
    }
}

impl DataKey {
    /// A fresh random key.
    pub fn random() -> Self {
        Self(Secret::random())
    }

    /// A key given directly (e.g. one derived from the master key).
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(Secret(bytes))
    }

    pub(crate) fn bytes(&self) -> &[u8; 32] {
        &self.0.0
    }
}

/// Reads a hex secret from `path` or writes a new random one there with mode 0600.
/// Returns the hex text and whether it was generated.
pub fn load_or_generate_secret(path: &Path) -> Result<(String, bool), KeyError> {
    let io = |source| KeyError::File {
        path: path.to_owned(),
        source,
    };
    match std::fs::read_to_string(path) {
        Ok(text) => return Ok((text.trim().to_owned(), false)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io(e)),
    }
    let secret = Secret::random();
    let text = hex::encode(secret.0);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path).map_err(io)?;
    file.write_all(format!("{text}\n").as_bytes()).map_err(io)?;
    file.sync_all().map_err(io)?;
    Ok((text, true))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wrapped_key_opens_only_for_its_clinic_and_master() {
        let master = MasterKey::random();
        let clinic = ClinicId::new();
        let key = DataKey::random();
        let wrapped = master.wrap(clinic, &key);
        assert_eq!(
            master.unwrap(clinic, &wrapped).unwrap().bytes(),
            key.bytes()
        );
        assert!(master.unwrap(ClinicId::new(), &wrapped).is_err());
        assert!(MasterKey::random().unwrap(clinic, &wrapped).is_err());
        let mut tampered = wrapped.clone();
        *tampered.last_mut().unwrap() ^= 1;
        assert!(master.unwrap(clinic, &tampered).is_err());
        assert!(master.unwrap(clinic, &[]).is_err());
    }

    #[test]
    fn master_keys_parse_from_hex_only() {
        assert!(MasterKey::from_hex(&"ab".repeat(32)).is_ok());
        assert!(MasterKey::from_hex("abc").is_err());
        assert!(MasterKey::from_hex(&"zz".repeat(32)).is_err());
    }

    #[test]
    fn a_generated_key_file_is_private_and_stable() {
        let (_dir, path) = crate::test_files::temp_file("master.key");
        let (a, generated) = MasterKey::load_or_generate(&path).unwrap();
        assert!(generated);
        let (b, generated) = MasterKey::load_or_generate(&path).unwrap();
        assert!(!generated);
        assert_eq!(a.derive("x"), b.derive("x"));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }
}
