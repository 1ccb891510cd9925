//! Identifiers and value types, parsed once at the boundary so raw strings
//! and integers never reach a service ("parse, don't validate").

use std::fmt;

use serde::{Deserialize, Serialize};

/// A value from outside did not parse into a domain type.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {what}: {reason}")]
pub struct ParseError {
    /// Which type was being parsed.
    pub what: &'static str,
    /// Why the input was refused, in words a client can act on.
    pub reason: String,
}

impl ParseError {
    fn new(what: &'static str, reason: impl Into<String>) -> Self {
        Self {
            what,
            reason: reason.into(),
        }
    }
}

macro_rules! row_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub i64);

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }
    };
}

row_id!(
    /// Our own key of a user row (not the Telegram id, which could change
    /// owner semantics if we ever support other messengers).
    UserId
);
row_id!(
    /// Key of a persona row.
    PersonaId
);
row_id!(
    /// Key of a dialog (one user with one persona).
    DialogId
);
row_id!(
    /// Key of a stored chat message; increases with arrival, so it orders a dialog.
    MessageId
);
row_id!(
    /// Key of a payment row.
    PaymentId
);
row_id!(
    /// Key of a subscription period.
    SubscriptionId
);
row_id!(
    /// Key of a broadcast.
    BroadcastId
);
row_id!(
    /// Key of a pinned memory or summary.
    MemoryId
);

/// A Telegram user id: always positive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "i64", into = "i64")]
pub struct TelegramUserId(i64);

impl TelegramUserId {
    /// The raw id, for the Bot API.
    pub fn get(self) -> i64 {
        self.0
    }
}

impl TryFrom<i64> for TelegramUserId {
    type Error = ParseError;
    fn try_from(v: i64) -> Result<Self, ParseError> {
        if v > 0 {
            Ok(Self(v))
        } else {
            Err(ParseError::new("Telegram user id", "must be positive"))
        }
    }
}

impl From<TelegramUserId> for i64 {
    fn from(v: TelegramUserId) -> i64 {
        v.0
    }
}

impl fmt::Display for TelegramUserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// Telegram's `update_id`: non-negative, unique per bot; the deduplication key
/// of inbound updates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "i64", into = "i64")]
pub struct UpdateId(i64);

impl UpdateId {
    /// The raw id.
    pub fn get(self) -> i64 {
        self.0
    }
}

impl TryFrom<i64> for UpdateId {
    type Error = ParseError;
    fn try_from(v: i64) -> Result<Self, ParseError> {
        if v >= 0 {
            Ok(Self(v))
        } else {
            Err(ParseError::new("update_id", "must not be negative"))
        }
    }
}

impl From<UpdateId> for i64 {
    fn from(v: UpdateId) -> i64 {
        v.0
    }
}

/// A persona's stable, URL- and deep-link-safe name: 1-64 characters of
/// `a-z`, `0-9`, `-` and `_` (Telegram's `/start` payload alphabet, lower case).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct PersonaSlug(String);

impl PersonaSlug {
    /// Parses a slug, refusing anything outside the alphabet.
    pub fn parse(s: &str) -> Result<Self, ParseError> {
        if s.is_empty() || s.len() > 64 {
            return Err(ParseError::new("persona slug", "must be 1-64 characters"));
        }
        if !s
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
        {
            return Err(ParseError::new(
                "persona slug",
                "may hold only a-z, 0-9, '-' and '_'",
            ));
        }
        Ok(Self(s.to_owned()))
    }

    /// Derives a slug from a display name ("Anna Karenina" -> "anna-karenina").
    /// Characters outside the alphabet are dropped; an empty result becomes "persona".
    pub fn from_name(name: &str) -> Self {
        let mut out = String::new();
        for c in name.chars().flat_map(char::to_lowercase) {
            if c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' {
                out.push(c);
            } else if (c == '-' || c.is_whitespace()) && !out.ends_with('-') && !out.is_empty() {
                out.push('-');
            }
            if out.len() >= 64 {
                break;
            }
        }
        let trimmed = out.trim_end_matches('-');
        if trimmed.is_empty() {
            Self("persona".to_owned())
        } else {
            Self(trimmed.to_owned())
        }
    }

    /// The slug as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for PersonaSlug {
    type Error = ParseError;
    fn try_from(s: String) -> Result<Self, ParseError> {
        Self::parse(&s)
    }
}

impl From<PersonaSlug> for String {
    fn from(v: PersonaSlug) -> String {
        v.0
    }
}

impl fmt::Display for PersonaSlug {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Currencies we take money in. Telegram Stars are `XTR`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Currency {
    /// Telegram Stars; the minor unit is one star.
    #[serde(rename = "XTR")]
    Xtr,
    /// Russian rouble; the minor unit is the kopeck.
    #[serde(rename = "RUB")]
    Rub,
}

impl Currency {
    /// ISO-4217-style code (`XTR` as Telegram names Stars).
    pub fn code(self) -> &'static str {
        match self {
            Self::Xtr => "XTR",
            Self::Rub => "RUB",
        }
    }

    /// Parses a currency code.
    pub fn parse(s: &str) -> Result<Self, ParseError> {
        match s {
            "XTR" => Ok(Self::Xtr),
            "RUB" => Ok(Self::Rub),
            other => Err(ParseError::new(
                "currency",
                format!("{other:?} is not XTR or RUB"),
            )),
        }
    }
}

/// An amount of money in integer minor units (kopecks, single stars): never a float.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Money {
    /// The amount in the currency's minor unit.
    pub minor: i64,
    /// The currency.
    pub currency: Currency,
}

impl Money {
    /// A non-negative amount.
    pub fn new(minor: i64, currency: Currency) -> Result<Self, ParseError> {
        if minor < 0 {
            return Err(ParseError::new("amount", "must not be negative"));
        }
        Ok(Self { minor, currency })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slug_parse_accepts_alphabet_and_refuses_the_rest() {
        assert!(PersonaSlug::parse("anna_k-2").is_ok());
        assert!(PersonaSlug::parse("").is_err());
        assert!(PersonaSlug::parse("Anna").is_err());
        assert!(PersonaSlug::parse("a b").is_err());
        assert!(PersonaSlug::parse(&"a".repeat(65)).is_err());
    }

    #[test]
    fn slug_from_name_is_always_valid() {
        assert_eq!(
            PersonaSlug::from_name("Anna Karenina").as_str(),
            "anna-karenina"
        );
        assert_eq!(PersonaSlug::from_name("  --Лиза  ").as_str(), "persona");
        assert_eq!(PersonaSlug::from_name("R2 - D2!").as_str(), "r2-d2");
        let long = PersonaSlug::from_name(&"x".repeat(200));
        assert!(PersonaSlug::parse(long.as_str()).is_ok());
    }

    #[test]
    fn telegram_ids_must_be_positive() {
        assert!(TelegramUserId::try_from(0).is_err());
        assert_eq!(TelegramUserId::try_from(42).map(i64::from), Ok(42));
        assert!(UpdateId::try_from(-1).is_err());
        assert!(UpdateId::try_from(0).is_ok());
    }

    #[test]
    fn money_refuses_negative_amounts() {
        assert!(Money::new(-1, Currency::Rub).is_err());
        assert_eq!(Money::new(9900, Currency::Rub).map(|m| m.minor), Ok(9900));
        assert_eq!(Currency::parse("XTR"), Ok(Currency::Xtr));
        assert!(Currency::parse("usd").is_err());
    }
}
