//! Identifiers and small values that are valid by construction: once one exists, no code
//! downstream re-checks it.

use std::fmt;

use rust_decimal::{Decimal, RoundingStrategy};
use serde::{Deserialize, Serialize};

use crate::error::ParseError;

macro_rules! string_newtype {
    ($name:ident) => {
        impl $name {
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }
        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }
        impl TryFrom<String> for $name {
            type Error = ParseError;
            fn try_from(value: String) -> Result<Self, ParseError> {
                Self::parse(&value)
            }
        }
        impl From<$name> for String {
            fn from(value: $name) -> String {
                value.0
            }
        }
    };
}

/// A channel's id in the config: lower-case letters, digits and dashes, 1 to 40 long. It
/// appears in queue group ids, table keys and ERP references, so it must stay plain.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ChannelId(String);
string_newtype!(ChannelId);

impl ChannelId {
    pub fn parse(value: &str) -> Result<Self, ParseError> {
        let ok = !value.is_empty()
            && value.len() <= 40
            && value
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if ok {
            Ok(Self(value.to_owned()))
        } else {
            Err(ParseError::new(
                "channel id",
                format!("{value:?} must be 1-40 characters of a-z, 0-9 and '-'"),
            ))
        }
    }
}

/// A stock-keeping unit as the ERP or a channel knows it: trimmed, non-empty, no control
/// characters, at most 100 characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Sku(String);
string_newtype!(Sku);

impl Sku {
    pub fn parse(value: &str) -> Result<Self, ParseError> {
        let trimmed = value.trim();
        if trimmed.is_empty() {
            return Err(ParseError::new("sku", "is empty"));
        }
        if trimmed.chars().count() > 100 || trimmed.chars().any(char::is_control) {
            return Err(ParseError::new(
                "sku",
                format!("{trimmed:?} is longer than 100 characters or holds control characters"),
            ));
        }
        Ok(Self(trimmed.to_owned()))
    }
}

/// An order's id in its channel (Shopify's numeric order id, WooCommerce's post id).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ExternalOrderId(String);
string_newtype!(ExternalOrderId);

impl ExternalOrderId {
    pub fn parse(value: &str) -> Result<Self, ParseError> {
        let ok = !value.is_empty()
            && value.len() <= 64
            && value
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if ok {
            Ok(Self(value.to_owned()))
        } else {
            Err(ParseError::new(
                "order id",
                format!("{value:?} must be 1-64 characters of letters, digits, '-' and '_'"),
            ))
        }
    }
}

/// An e-mail address, normalised (trimmed, lower-cased) so that it can be used to match
/// customers across systems that store it with different case.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Email(String);
string_newtype!(Email);

impl Email {
    pub fn parse(value: &str) -> Result<Self, ParseError> {
        let normalised = value.trim().to_lowercase();
        let valid = match normalised.split_once('@') {
            Some((local, domain)) => {
                !local.is_empty()
                    && !domain.is_empty()
                    && !domain.contains('@')
                    && domain.contains('.')
                    && !normalised
                        .chars()
                        .any(|c| c.is_whitespace() || c.is_control())
                    && normalised.len() <= 254
            }
            None => false,
        };
        if valid {
            Ok(Self(normalised))
        } else {
            Err(ParseError::new(
                "email",
                format!("{value:?} is not an e-mail address"),
            ))
        }
    }
}

/// ISO 4217 currency code, upper case.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct CurrencyCode(String);
string_newtype!(CurrencyCode);

impl CurrencyCode {
    /// A code the `iso_currency` crate's ISO 4217 table lists with a minor unit: metals and
    /// the like, which have none, are refused, and so are codes outside ISO 4217 that some
    /// shops offer (WooCommerce's IRT, GGP, BTC...), as their minor unit is nobody's standard.
    pub fn parse(value: &str) -> Result<Self, ParseError> {
        let currency = (value.len() == 3 && value.bytes().all(|b| b.is_ascii_uppercase()))
            .then(|| iso_currency::Currency::from_code(value))
            .flatten()
            .ok_or_else(|| {
                ParseError::new(
                    "currency",
                    format!("{value:?} is not a currency ISO 4217 lists, such as GBP"),
                )
            })?;
        if currency.exponent().is_none() {
            return Err(ParseError::new(
                "currency",
                format!(
                    "{value} has no minor unit in ISO 4217 (a fund or a metal): no shop sells in it"
                ),
            ));
        }
        Ok(Self(value.to_owned()))
    }

    /// The digits after the decimal point of the currency's minor unit (ISO 4217's "Minor
    /// unit" column): 0 for JPY, 3 for KWD, 2 for most.
    pub fn minor_units(&self) -> u32 {
        iso_currency::Currency::from_code(&self.0)
            .and_then(|c| c.exponent())
            .map_or(2, u32::from)
    }

    /// An amount to the currency's minor unit, half away from zero (as prices and invoices are
    /// rounded), written with exactly that many decimals.
    pub fn round(&self, amount: Decimal) -> Decimal {
        let mut rounded = amount
            .round_dp_with_strategy(self.minor_units(), RoundingStrategy::MidpointAwayFromZero);
        rounded.rescale(self.minor_units());
        rounded
    }

    /// An amount cut down (towards zero) to the currency's minor unit.
    pub fn truncate(&self, amount: Decimal) -> Decimal {
        let mut cut = amount.round_dp_with_strategy(self.minor_units(), RoundingStrategy::ToZero);
        cut.rescale(self.minor_units());
        cut
    }
}

/// ISO 3166-1 alpha-2 country code, upper case.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct CountryCode(String);
string_newtype!(CountryCode);

impl CountryCode {
    pub fn parse(value: &str) -> Result<Self, ParseError> {
        let upper = value.trim().to_ascii_uppercase();
        if upper.len() == 2 && upper.bytes().all(|b| b.is_ascii_uppercase()) {
            Ok(Self(upper))
        } else {
            Err(ParseError::new(
                "country_code",
                format!("{value:?} is not an ISO 3166 alpha-2 code such as GB"),
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn currencies_have_iso_4217_minor_units_and_round_half_away_from_zero() {
        let code = |c: &str| CurrencyCode::parse(c).unwrap_or_else(|e| panic!("{e}"));
        let dec = |d: &str| d.parse::<Decimal>().unwrap_or_else(|e| panic!("{e}"));
        for (currency, units) in [
            ("JPY", 0),
            ("KRW", 0),
            ("VND", 0),
            ("GBP", 2),
            ("KWD", 3),
            ("BHD", 3),
        ] {
            assert_eq!(code(currency).minor_units(), units, "{currency}");
        }
        assert_eq!(code("GBP").round(dec("2.485")).to_string(), "2.49");
        assert_eq!(code("GBP").round(dec("-2.485")).to_string(), "-2.49");
        assert_eq!(code("GBP").round(dec("3")).to_string(), "3.00");
        assert_eq!(code("JPY").round(dec("333.5")).to_string(), "334");
        assert_eq!(code("KWD").round(dec("0.1255")).to_string(), "0.126");
        assert_eq!(code("JPY").truncate(dec("333.9")).to_string(), "333");
        let unknown = CurrencyCode::parse("ABC")
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(unknown.contains("\"ABC\""), "{unknown}");
        let metal = CurrencyCode::parse("XAU")
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(metal.contains("no minor unit"), "{metal}");
    }

    #[test]
    fn email_is_normalised_for_matching() {
        let email =
            Email::parse("  Bob.Norman@Mail.Example.COM ").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(email.as_str(), "bob.norman@mail.example.com");
    }

    #[test]
    fn invalid_values_name_the_field() {
        let err = Email::parse("not-an-address").err().map(|e| e.to_string());
        assert_eq!(
            err.as_deref(),
            Some("email: \"not-an-address\" is not an e-mail address")
        );
        assert!(ChannelId::parse("UK Shop").is_err());
        assert!(Sku::parse("   ").is_err());
        assert!(CurrencyCode::parse("gbp").is_err());
        assert!(CountryCode::parse("gb").is_ok());
    }
}
