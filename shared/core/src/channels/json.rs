//! What every channel's parser needs from JSON: typed payloads with the failing path named,
//! and amounts in any notation, bounded.

use std::str::FromStr;

use rust_decimal::Decimal;
use serde::Deserialize;

use crate::error::ParseError;

/// JSON into a raw payload type; the error names the JSON path that failed.
pub(crate) fn from_json<'a, T: Deserialize<'a>>(body: &'a [u8]) -> Result<T, ParseError> {
    let deserializer = &mut serde_json::Deserializer::from_slice(body);
    serde_path_to_error::deserialize(deserializer).map_err(|e| {
        let path = e.path().to_string();
        let field = if path == "." { "body".to_owned() } else { path };
        ParseError::new(field, e.into_inner().to_string())
    })
}

/// An amount as a channel writes it (`"12.50"`, `12.5`, `1.25e1`), bounded: 10^15 is beyond
/// any sum a shop charges, and the bound keeps every product of an amount and a quantity (a
/// u32) inside a decimal's range, where arithmetic cannot overflow (a panic input could reach).
pub(crate) fn amount(text: &str, field: &str) -> Result<Decimal, ParseError> {
    let trimmed = text.trim();
    let amount = Decimal::from_str(trimmed)
        .or_else(|_| Decimal::from_scientific(trimmed))
        .map_err(|_| ParseError::new(field, format!("{text:?} is not an amount")))?;
    if amount.abs() > Decimal::from(1_000_000_000_000_000_u64) {
        return Err(ParseError::new(
            field,
            format!("{text:?} is beyond any amount a shop charges"),
        ));
    }
    Ok(amount)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_are_read_in_every_notation_and_refused_beyond_any_sum_a_shop_charges() {
        assert_eq!(amount(" 12.50 ", "price").ok(), Some(Decimal::new(1250, 2)));
        assert_eq!(amount("1.25e1", "price").ok(), Some(Decimal::new(125, 1)));
        assert_eq!(
            amount("-1000000000000000", "price").ok(),
            Some(Decimal::from(-1_000_000_000_000_000_i64))
        );
        let beyond = amount("79228162514264337593543950", "line_items[0].price")
            .err()
            .map(|e| e.to_string());
        assert!(
            beyond.as_deref().is_some_and(
                |e| e.contains("line_items[0].price") && e.contains("beyond any amount")
            ),
            "{beyond:?}"
        );
        let not = amount("12,50", "price").err().map(|e| e.to_string());
        assert!(
            not.as_deref().is_some_and(|e| e.contains("not an amount")),
            "{not:?}"
        );
        // The largest amount allowed times the largest quantity stays inside a decimal.
        let most = Decimal::from(1_000_000_000_000_000_u64);
        assert!(most.checked_mul(Decimal::from(u32::MAX)).is_some());
    }
}
