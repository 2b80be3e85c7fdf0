//! A second factor: a time-based code from an authenticator app (RFC 6238: HMAC-SHA1,
//! six digits, 30-second steps, one step of drift either way) and ten one-time recovery
//! codes for a lost phone.
//!
//! - A secret counts only once a first code from it was typed (`confirmed_at`).
//! - No code works twice: the newest accepted step is stored and a code for it or an
//!   earlier one is refused as replayed, so a code seen over a shoulder is worthless.
//! - Recovery codes are 80 random bits each, shown once and stored as SHA-256; using one
//!   marks it used in the same statement that checks it.

use chrono::{DateTime, Utc};
use rand::Rng as _;
use rand::RngCore as _;
use sha2::{Digest as _, Sha256};
use totp_rs::{Builder, Totp};
use ward_core::{format_time, parse_time};
use ward_tenancy::db::first_row;

use crate::{ControlError, ControlPlane, User};

/// How many recovery codes a user gets.
pub const RECOVERY_CODE_COUNT: usize = 10;
/// The name printed beside the account in authenticator apps.
const ISSUER: &str = "Ward";
/// Letters and digits that cannot be mistaken for one another.
const RECOVERY_ALPHABET: &[u8] = b"23456789abcdefghjkmnpqrstuvwxyz";
/// 16 symbols of 31: just under 80 bits.
const RECOVERY_LEN: usize = 16;
/// The platform fact from which existing owners' grace is counted.
const OWNERS_SINCE: &str = "owner_second_factor_since";

/// An unfinished enrolment: what the user's app needs.
#[derive(Debug, Clone)]
pub struct Enrolment {
    /// The secret in base32, for typing into an app by hand.
    pub secret_base32: String,
    /// The `otpauth://` address the QR code carries.
    pub otpauth_url: String,
}

/// What a typed code turned out to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FactorCheck {
    /// A current authenticator code, now used.
    Totp,
    /// A recovery code, now used; `left` remain unused.
    Recovery {
        /// Unused recovery codes remaining.
        left: usize,
    },
    /// A correct authenticator code that was already used (or an older one).
    Replayed,
    /// Not a valid code.
    Wrong,
    /// The user has no confirmed second factor.
    NotEnrolled,
}

impl FactorCheck {
    /// Whether the code proves the second factor.
    pub fn passed(self) -> bool {
        matches!(self, Self::Totp | Self::Recovery { .. })
    }
}

fn totp(secret: Vec<u8>, account: &str) -> Result<Totp, ControlError> {
    let builder = Builder::new().with_secret(secret).with_issuer(Some(ISSUER));
    // An address cannot hold a colon, but if one ever did the app would only lose the label.
    let builder = if account.contains(':') {
        builder
    } else {
        builder.with_account_name(account)
    };
    builder
        .build()
        .map_err(|e| ControlError::Invalid(format!("a second-factor secret is unusable: {e}")))
}

fn enrolment(secret: Vec<u8>, account: &str) -> Result<Enrolment, ControlError> {
    let t = totp(secret, account)?;
    Ok(Enrolment {
        secret_base32: t.secret().to_base32(),
        otpauth_url: t
            .to_url()
            .map_err(|e| ControlError::Invalid(format!("cannot describe the secret: {e}")))?,
    })
}

/// Digits only, spaces and dashes removed; lowercase for recovery codes.
fn normalise(code: &str) -> String {
    code.chars()
        .filter(|c| !c.is_whitespace() && *c != '-')
        .flat_map(char::to_lowercase)
        .collect()
}

fn recovery_hash(normalised: &str) -> Vec<u8> {
    Sha256::digest(normalised.as_bytes()).to_vec()
}

/// A fresh recovery code, shown as four groups of four.
fn new_recovery_code() -> String {
    let mut rng = rand::rngs::OsRng;
    let raw: String = (0..RECOVERY_LEN)
        .map(|_| char::from(RECOVERY_ALPHABET[rng.gen_range(0..RECOVERY_ALPHABET.len())]))
        .collect();
    raw.as_bytes()
        .chunks(4)
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect::<Vec<_>>()
        .join("-")
}

fn unix_seconds(t: DateTime<Utc>) -> u64 {
    u64::try_from(t.timestamp()).unwrap_or(0)
}

impl ControlPlane {
    /// Whether the user has a confirmed second factor.
    pub async fn second_factor_enrolled(&self, user_id: &str) -> Result<bool, ControlError> {
        let user = user_id.to_owned();
        self.with(|conn| async move {
            Ok(first_row(
                &conn,
                "SELECT 1 FROM totp_factors WHERE user_id = ?1 AND confirmed_at IS NOT NULL",
                [user],
            )?
            .is_some())
        })
        .await
    }

    /// Starts (or restarts) enrolment with a fresh secret. `Ok(None)` if the user already
    /// has a confirmed factor: it must be removed first.
    pub async fn begin_totp(&self, user: &User) -> Result<Option<Enrolment>, ControlError> {
        let mut secret = vec![0u8; 20];
        rand::rngs::OsRng.fill_bytes(&mut secret);
        let (id, now, stored) = (
            user.id.clone(),
            format_time(self.clock.now()),
            secret.clone(),
        );
        let written = self.execute(
            "INSERT INTO totp_factors (user_id, secret, created_at) VALUES (?1, ?2, ?3)
                     ON CONFLICT (user_id) DO UPDATE SET secret = excluded.secret, created_at = excluded.created_at, last_step = 0
                     WHERE confirmed_at IS NULL",
            ward_tenancy::sql::params![id, stored, now],
        )
        .await?;
        if written == 0 {
            return Ok(None);
        }
        enrolment(secret, &user.email).map(Some)
    }

    /// The unfinished enrolment, if there is one (to show the same secret again).
    pub async fn pending_totp(&self, user: &User) -> Result<Option<Enrolment>, ControlError> {
        let id = user.id.clone();
        let secret: Option<Vec<u8>> = self
            .query_row(
                "SELECT secret FROM totp_factors WHERE user_id = ?1 AND confirmed_at IS NULL",
                [id],
                |row| Ok(row.get(0)?),
            )
            .await?;
        secret.map(|s| enrolment(s, &user.email)).transpose()
    }

    /// Finishes enrolment if `code` is a current code of the pending secret: the factor
    /// counts from now, and the returned recovery codes (shown once) replace any old
    /// ones. `Ok(None)` for a wrong code or no pending enrolment.
    pub async fn confirm_totp(
        &self,
        user: &User,
        code: &str,
    ) -> Result<Option<Vec<String>>, ControlError> {
        let code = normalise(code);
        let now = self.clock.now();
        let (id, account) = (user.id.clone(), user.email.clone());
        let codes: Vec<String> = (0..RECOVERY_CODE_COUNT)
            .map(|_| new_recovery_code())
            .collect();
        let hashes: Vec<Vec<u8>> = codes.iter().map(|c| recovery_hash(&normalise(c))).collect();
        let confirmed = self
            .transaction(|conn| async move {
                let Some(row) = first_row(
                    &conn,
                    "SELECT secret FROM totp_factors WHERE user_id = ?1 AND confirmed_at IS NULL",
                    [id.clone()],
                )?
                else {
                    return Ok(false);
                };
                let secret: Vec<u8> = row.get(0)?;
                drop(row);
                let Some(step) = totp(secret, &account)?.check(&code, unix_seconds(now)) else {
                    return Ok(false);
                };
                let at = format_time(now);
                conn.execute(
                    "UPDATE totp_factors SET confirmed_at = ?2, last_step = ?3 WHERE user_id = ?1",
                    ward_tenancy::sql::params![id.clone(), at.clone(), i64::try_from(step).unwrap_or(i64::MAX)],
                )
                .await?;
                conn.execute("DELETE FROM recovery_codes WHERE user_id = ?1", [id.clone()])
                    .await?;
                for hash in hashes {
                    conn.execute(
                        "INSERT INTO recovery_codes (user_id, code_hash, created_at) VALUES (?1, ?2, ?3)",
                        ward_tenancy::sql::params![id.clone(), hash, at.clone()],
                    )
                    .await?;
                }
                Ok(true)
            })
            .await?;
        if confirmed {
            // Sessions carry whether their user has a factor.
            let _sessions = self.cache.sessions_changing();
        }
        Ok(confirmed.then_some(codes))
    }

    /// Checks a typed code, an authenticator code or a recovery code, and uses it up.
    pub async fn check_second_factor(
        &self,
        user: &User,
        code: &str,
    ) -> Result<FactorCheck, ControlError> {
        let code = normalise(code);
        let now = self.clock.now();
        let (id, account) = (user.id.clone(), user.email.clone());
        self.transaction(|conn| async move {
            let Some(row) = first_row(
                &conn,
                "SELECT secret, last_step FROM totp_factors WHERE user_id = ?1 AND confirmed_at IS NOT NULL",
                [id.clone()],
            )?
            else {
                return Ok(FactorCheck::NotEnrolled);
            };
            let (secret, last_step): (Vec<u8>, i64) = (row.get(0)?, row.get(1)?);
            drop(row);
            if code.len() == 6 && code.bytes().all(|b| b.is_ascii_digit()) {
                let Some(step) = totp(secret, &account)?.check(&code, unix_seconds(now)) else {
                    return Ok(FactorCheck::Wrong);
                };
                let step = i64::try_from(step).unwrap_or(i64::MAX);
                if step <= last_step {
                    return Ok(FactorCheck::Replayed);
                }
                conn.execute(
                    "UPDATE totp_factors SET last_step = ?2 WHERE user_id = ?1",
                    ward_tenancy::sql::params![id, step],
                )
                .await?;
                return Ok(FactorCheck::Totp);
            }
            if code.len() != RECOVERY_LEN {
                return Ok(FactorCheck::Wrong);
            }
            let used = conn
                .execute(
                    "UPDATE recovery_codes SET used_at = ?3 WHERE user_id = ?1 AND code_hash = ?2 AND used_at IS NULL",
                    ward_tenancy::sql::params![id.clone(), recovery_hash(&code), format_time(now)],
                )
                .await?;
            if used == 0 {
                return Ok(FactorCheck::Wrong);
            }
            let left = first_row(
                &conn,
                "SELECT count(*) FROM recovery_codes WHERE user_id = ?1 AND used_at IS NULL",
                [id],
            )?
            .map(|r| r.get::<i64>(0))
            .transpose()?
            .unwrap_or(0);
            Ok(FactorCheck::Recovery {
                left: usize::try_from(left).unwrap_or(0),
            })
        })
        .await
    }

    /// How many unused recovery codes the user has.
    pub async fn recovery_codes_left(&self, user_id: &str) -> Result<usize, ControlError> {
        let id = user_id.to_owned();
        let n: Option<i64> = self
            .query_row(
                "SELECT count(*) FROM recovery_codes WHERE user_id = ?1 AND used_at IS NULL",
                [id],
                |row| Ok(row.get(0)?),
            )
            .await?;
        Ok(usize::try_from(n.unwrap_or(0)).unwrap_or(0))
    }

    /// Removes the user's second factor and recovery codes; false if there was none.
    /// Every session of the user loses its second-factor mark.
    pub async fn remove_second_factor(&self, user_id: &str) -> Result<bool, ControlError> {
        let _sessions = self.cache.sessions_changing();
        let id = user_id.to_owned();
        self.transaction(|conn| async move {
            let n = conn
                .execute("DELETE FROM totp_factors WHERE user_id = ?1", [id.clone()])
                .await?;
            conn.execute(
                "DELETE FROM recovery_codes WHERE user_id = ?1",
                [id.clone()],
            )
            .await?;
            conn.execute(
                "UPDATE sessions SET second_factor_at = NULL WHERE user_id = ?1",
                [id],
            )
            .await?;
            Ok(n > 0)
        })
        .await
    }

    /// Records that the session's user just proved who they are again: the password,
    /// and the second factor when `second_factor`.
    pub async fn mark_reauthenticated(
        &self,
        session_id: &str,
        second_factor: bool,
    ) -> Result<(), ControlError> {
        let Ok(hash) = hex::decode(session_id) else {
            return Ok(());
        };
        let _sessions = self.cache.sessions_changing();
        let now = format_time(self.clock.now());
        self.execute(
            "UPDATE sessions SET authenticated_at = ?2,
                        second_factor_at = CASE WHEN ?3 THEN ?2 ELSE second_factor_at END
                 WHERE token_hash = ?1",
            ward_tenancy::sql::params![hash, now, second_factor],
        )
        .await?;
        Ok(())
    }

    /// Refused codes (wrong or replayed, auth-log kind `kind`) since `since`: for the
    /// user, and from the address `ip`.
    pub async fn failed_codes_since(
        &self,
        kind: &str,
        user_id: &str,
        ip: Option<&str>,
        since: DateTime<Utc>,
    ) -> Result<(u64, u64), ControlError> {
        let (kind, user, ip, since) = (
            kind.to_owned(),
            user_id.to_owned(),
            ip.map(str::to_owned),
            format_time(since),
        );
        self.with(|conn| async move {
            let count = |row: Option<ward_tenancy::sql::Row>| -> Result<u64, ControlError> {
                Ok(match row {
                    Some(r) => r.get::<u64>(0)?,
                    None => 0,
                })
            };
            let by_user = count(first_row(
                &conn,
                "SELECT count(*) FROM auth_events WHERE user_id = ?1 AND kind = ?2 AND outcome IN ('failed', 'replayed') AND at >= ?3",
                [user, kind.clone(), since.clone()],
            )?)?;
            let by_ip = match ip {
                Some(ip) => count(first_row(
                    &conn,
                    "SELECT count(*) FROM auth_events WHERE ip = ?1 AND kind = ?2 AND outcome IN ('failed', 'replayed') AND at >= ?3",
                    [ip, kind, since],
                )?)?,
                None => 0,
            };
            Ok((by_user, by_ip))
        })
        .await
    }

    /// When owners were first required to have a second factor on this installation:
    /// written the first time it is asked, then fixed (and kept in memory).
    pub async fn owners_second_factor_since(&self) -> Result<DateTime<Utc>, ControlError> {
        self.owners_since
            .get_or_try_init(|| self.read_owners_since())
            .await
            .copied()
    }

    async fn read_owners_since(&self) -> Result<DateTime<Utc>, ControlError> {
        let now = format_time(self.clock.now());
        let value = self
            .with(|conn| async move {
                conn.execute(
                    "INSERT INTO platform_facts (name, value) VALUES (?1, ?2) ON CONFLICT (name) DO NOTHING",
                    [OWNERS_SINCE.to_owned(), now],
                )
                .await?;
                let row = first_row(
                    &conn,
                    "SELECT value FROM platform_facts WHERE name = ?1",
                    [OWNERS_SINCE.to_owned()],
                )?;
                Ok::<_, ControlError>(match row {
                    Some(r) => Some(r.get::<String>(0)?),
                    None => None,
                })
            })
            .await?;
        value
            .as_deref()
            .and_then(parse_time)
            .ok_or_else(|| ControlError::Invalid("the platform holds an invalid time".into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recovery_codes_look_right_and_differ() {
        let a = new_recovery_code();
        let b = new_recovery_code();
        assert_ne!(a, b);
        assert_eq!(a.len(), 19, "{a}");
        assert_eq!(normalise(&a).len(), RECOVERY_LEN);
        assert!(
            normalise(&a)
                .bytes()
                .all(|c| RECOVERY_ALPHABET.contains(&c))
        );
        assert_eq!(normalise(" AB-cd 12 "), "abcd12");
    }

    #[test]
    fn codes_follow_rfc_6238() {
        // RFC 6238 appendix B, SHA-1, secret "12345678901234567890", T = 59 s.
        let t = totp(b"12345678901234567890".to_vec(), "a@example.com").unwrap();
        assert_eq!(t.generate(59).to_string(), "287082");
        assert_eq!(t.check("287082", 59), Some(1));
        assert_eq!(
            t.check("287082", 59 + 60),
            None,
            "two steps later it is stale"
        );
    }
}
