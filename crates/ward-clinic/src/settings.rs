//! The clinic's own settings: letterhead, timezone, currency. Stored in the clinic's
//! `settings` table (key, value), so they travel with its data in backups and exports.

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use serde::Serialize;
use ward_tenancy::Db;

use crate::ClinicError;
use crate::audit::{self, Action, Actor, Diff, Entry};

/// A currency: ISO 4217 code and how many minor units it has (amounts are stored as
/// integers of minor units, never as floats).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Currency {
    /// ISO 4217 code.
    pub code: &'static str,
    /// Digits after the decimal point.
    pub minor_units: u8,
    /// Symbol shown before amounts.
    pub symbol: &'static str,
}

/// The currencies a clinic can choose.
pub const CURRENCIES: &[Currency] = &[
    Currency {
        code: "INR",
        minor_units: 2,
        symbol: "₹",
    },
    Currency {
        code: "USD",
        minor_units: 2,
        symbol: "$",
    },
    Currency {
        code: "EUR",
        minor_units: 2,
        symbol: "€",
    },
    Currency {
        code: "GBP",
        minor_units: 2,
        symbol: "£",
    },
    Currency {
        code: "KES",
        minor_units: 2,
        symbol: "KSh ",
    },
    Currency {
        code: "NGN",
        minor_units: 2,
        symbol: "₦",
    },
    Currency {
        code: "PKR",
        minor_units: 2,
        symbol: "Rs ",
    },
    Currency {
        code: "BDT",
        minor_units: 2,
        symbol: "৳",
    },
    Currency {
        code: "LKR",
        minor_units: 2,
        symbol: "Rs ",
    },
    Currency {
        code: "NPR",
        minor_units: 2,
        symbol: "Rs ",
    },
    Currency {
        code: "IDR",
        minor_units: 2,
        symbol: "Rp ",
    },
    Currency {
        code: "PHP",
        minor_units: 2,
        symbol: "₱",
    },
    Currency {
        code: "AED",
        minor_units: 2,
        symbol: "AED ",
    },
    Currency {
        code: "JPY",
        minor_units: 0,
        symbol: "¥",
    },
];

impl Currency {
    /// The currency with ISO code `code`.
    pub fn parse(code: &str) -> Option<Self> {
        CURRENCIES
            .iter()
            .copied()
            .find(|c| c.code.eq_ignore_ascii_case(code.trim()))
    }

    /// Formats an amount of minor units, e.g. `₹1,250.50`.
    pub fn format(&self, minor: i64) -> String {
        let negative = minor < 0;
        let minor = minor.unsigned_abs();
        let scale = 10u64.pow(u32::from(self.minor_units));
        let (whole, frac) = (minor / scale, minor % scale);
        let digits = whole.to_string();
        let mut grouped = String::new();
        for (i, c) in digits.chars().enumerate() {
            if i > 0 && (digits.len() - i) % 3 == 0 {
                grouped.push(',');
            }
            grouped.push(c);
        }
        let sign = if negative { "-" } else { "" };
        if self.minor_units == 0 {
            format!("{sign}{}{grouped}", self.symbol)
        } else {
            format!(
                "{sign}{}{grouped}.{frac:0width$}",
                self.symbol,
                width = usize::from(self.minor_units)
            )
        }
    }

    /// Writes an amount of minor units as a person would type it, without symbol or
    /// grouping (`1250.50`), so [`Currency::parse_amount`] reads it back unchanged.
    pub fn format_plain(&self, minor: i64) -> String {
        let sign = if minor < 0 { "-" } else { "" };
        let minor = minor.unsigned_abs();
        let scale = 10u64.pow(u32::from(self.minor_units));
        let (whole, frac) = (minor / scale, minor % scale);
        if self.minor_units == 0 {
            format!("{sign}{whole}")
        } else {
            format!(
                "{sign}{whole}.{frac:0width$}",
                width = usize::from(self.minor_units)
            )
        }
    }

    /// Parses an amount typed by a person ("1250", "1,250.5") into minor units.
    pub fn parse_amount(&self, typed: &str) -> Option<i64> {
        let cleaned: String = typed
            .trim()
            .trim_start_matches(self.symbol.trim())
            .chars()
            .filter(|c| *c != ',' && *c != ' ')
            .collect();
        let (whole, frac) = cleaned.split_once('.').unwrap_or((&cleaned, ""));
        if whole.is_empty() && frac.is_empty() {
            return None;
        }
        if !whole.chars().all(|c| c.is_ascii_digit())
            || !frac.chars().all(|c| c.is_ascii_digit())
            || frac.len() > usize::from(self.minor_units)
        {
            return None;
        }
        let whole: i64 = if whole.is_empty() {
            0
        } else {
            whole.parse().ok()?
        };
        let scale = 10i64.pow(u32::from(self.minor_units));
        let frac: i64 = if frac.is_empty() {
            0
        } else {
            format!("{frac:0<width$}", width = usize::from(self.minor_units))
                .parse()
                .ok()?
        };
        whole.checked_mul(scale)?.checked_add(frac)
    }
}

/// The clinic's settings.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ClinicSettings {
    /// Postal address, on the letterhead.
    pub address: String,
    /// Phone number, on the letterhead.
    pub phone: String,
    /// Where the clinic is: dates and times are shown in this zone, stored in UTC.
    #[serde(serialize_with = "serialize_tz")]
    pub timezone: Tz,
    /// The clinic's currency.
    pub currency: Currency,
    /// A line under the name on prescriptions and receipts (qualifications, hours…).
    pub letterhead: String,
}

fn serialize_tz<S: serde::Serializer>(tz: &Tz, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(tz.name())
}

impl Default for ClinicSettings {
    fn default() -> Self {
        Self {
            address: String::new(),
            phone: String::new(),
            timezone: Tz::UTC,
            currency: CURRENCIES[0],
            letterhead: String::new(),
        }
    }
}

impl ClinicSettings {
    /// `t` in the clinic's timezone.
    pub fn local(&self, t: DateTime<Utc>) -> DateTime<Tz> {
        t.with_timezone(&self.timezone)
    }

    /// Formats an amount in the clinic's currency.
    pub fn money(&self, minor: i64) -> String {
        self.currency.format(minor)
    }

    fn pairs(&self) -> [(&'static str, String); 5] {
        [
            ("address", self.address.clone()),
            ("phone", self.phone.clone()),
            ("timezone", self.timezone.name().to_owned()),
            ("currency", self.currency.code.to_owned()),
            ("letterhead", self.letterhead.clone()),
        ]
    }
}

/// Parses a timezone name (IANA, e.g. `Asia/Kolkata`).
pub fn parse_timezone(name: &str) -> Result<Tz, ClinicError> {
    name.trim().parse::<Tz>().map_err(|_| {
        ClinicError::invalid(
            "timezone",
            "Choose a timezone from the list, e.g. Asia/Kolkata.",
        )
    })
}

/// Every timezone name a clinic can choose (IANA), for a select list.
pub fn timezone_names() -> impl Iterator<Item = &'static str> {
    chrono_tz::TZ_VARIANTS.iter().map(|tz| tz.name())
}

/// The clinic's settings (defaults for anything never set).
pub fn load(conn: &Db) -> Result<ClinicSettings, ClinicError> {
    let mut s = ClinicSettings::default();
    let pairs = conn.rows("SELECT key, value FROM settings", (), |row| {
        Ok::<_, ClinicError>((row.get::<String>(0)?, row.get::<String>(1)?))
    })?;
    for (key, value) in pairs {
        match key.as_str() {
            "address" => s.address = value,
            "phone" => s.phone = value,
            "timezone" => s.timezone = value.parse().unwrap_or(Tz::UTC),
            "currency" => s.currency = Currency::parse(&value).unwrap_or(CURRENCIES[0]),
            "letterhead" => s.letterhead = value,
            _ => {}
        }
    }
    Ok(s)
}

/// Saves `new` over the current settings, with an audit row listing what changed.
pub fn save(
    conn: &Db,
    new: &ClinicSettings,
    actor: Actor,
    ip: Option<&str>,
    at: DateTime<Utc>,
) -> Result<(), ClinicError> {
    for (field, value) in [
        ("address", &new.address),
        ("phone", &new.phone),
        ("letterhead", &new.letterhead),
    ] {
        if value.chars().count() > 300 {
            return Err(ClinicError::invalid(field, "At most 300 characters."));
        }
    }
    let new = new.clone();
    let ip = ip.map(str::to_owned);
    audit::in_transaction(conn, |tx| {
        let old = load(&tx)?;
        let mut diff = Diff::new();
        for ((key, before), (_, after)) in old.pairs().into_iter().zip(new.pairs()) {
            if before != after {
                diff.add(key, before, after.clone());
                tx.execute(
                    "INSERT INTO settings (key, value) VALUES (?1, ?2) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                    [key.to_owned(), after],
                )?;
            }
        }
        if diff.is_empty() {
            return Ok(());
        }
        let mut entry = Entry::new(at, actor, Action::Update)
            .entity("settings", "clinic")
            .diff(diff);
        if let Some(ip) = ip {
            entry = entry.ip(ip);
        }
        audit::record(&tx, &entry)?;
        Ok::<_, ClinicError>(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_are_formatted_and_parsed_in_minor_units() {
        let inr = Currency::parse("inr").unwrap();
        assert_eq!(inr.format(125_050), "₹1,250.50");
        assert_eq!(inr.format(5), "₹0.05");
        assert_eq!(inr.format(-100), "-₹1.00");
        assert_eq!(inr.parse_amount("1,250.5"), Some(125_050));
        assert_eq!(inr.parse_amount("₹ 300"), Some(30_000));
        assert_eq!(inr.parse_amount(".75"), Some(75));
        for bad in ["", "abc", "1.234", "-5", "1e3", "9999999999999999999"] {
            assert_eq!(inr.parse_amount(bad), None, "{bad:?}");
        }
        let jpy = Currency::parse("JPY").unwrap();
        assert_eq!(jpy.format(1_500_000), "¥1,500,000");
        assert_eq!(jpy.parse_amount("1.5"), None);
    }

    #[test]
    fn timezones_parse_by_iana_name() {
        assert_eq!(
            parse_timezone("Asia/Kolkata").unwrap().name(),
            "Asia/Kolkata"
        );
        assert!(parse_timezone("Mars/Olympus").is_err());
    }
}
