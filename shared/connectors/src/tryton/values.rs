//! Tryton's JSON values as its REST API sends and takes them: ids, text, Booleans, decimals,
//! dates and datetimes.

use rust_decimal::Decimal;
use serde_json::{Value, json};
use std::str::FromStr;

pub(super) fn text_of(value: &Value, field: &str) -> Option<String> {
    value.get(field).and_then(Value::as_str).map(str::to_owned)
}

pub(super) fn id_of(value: &Value, field: &str) -> Option<i64> {
    let field = value.get(field)?;
    field
        .as_i64()
        .or_else(|| field.get("id").and_then(Value::as_i64))
}

/// Tryton sends decimals as `{"__class__": "Decimal", "decimal": "1.50"}` and floats as numbers.
/// A Boolean field: `true`, or 1 where the database (SQLite) stores it as a number.
pub(super) fn bool_of(value: &Value) -> bool {
    value.as_bool().unwrap_or(false) || value.as_i64() == Some(1)
}

pub(super) fn decimal_of(value: &Value) -> Option<Decimal> {
    match value {
        Value::Number(n) => Decimal::from_str(&n.to_string()).ok(),
        Value::String(s) => Decimal::from_str(s).ok(),
        Value::Object(o) => o
            .get("decimal")
            .and_then(Value::as_str)
            .and_then(|d| Decimal::from_str(d).ok()),
        _ => None,
    }
}

/// Tryton's JSON for a datetime: naive, in UTC (as Tryton stores its change stamps).
pub(super) fn datetime_value(at: time::OffsetDateTime) -> Value {
    let at = at.to_offset(time::UtcOffset::UTC);
    json!({"__class__": "datetime", "year": at.year(), "month": u8::from(at.month()), "day": at.day(),
           "hour": at.hour(), "minute": at.minute(), "second": at.second(), "microsecond": at.microsecond()})
}

fn datetime_of(value: &Value) -> Option<time::OffsetDateTime> {
    let part = |name: &str| value.get(name).and_then(Value::as_i64);
    let date = time::Date::from_calendar_date(
        i32::try_from(part("year")?).ok()?,
        time::Month::try_from(u8::try_from(part("month")?).ok()?).ok()?,
        u8::try_from(part("day")?).ok()?,
    )
    .ok()?;
    let clock = time::Time::from_hms_micro(
        u8::try_from(part("hour")?).ok()?,
        u8::try_from(part("minute")?).ok()?,
        u8::try_from(part("second")?).ok()?,
        u32::try_from(part("microsecond").unwrap_or(0)).ok()?,
    )
    .ok()?;
    Some(time::PrimitiveDateTime::new(date, clock).assume_utc())
}

/// The later of a record's creation and last change.
pub(super) fn stamp_of(row: &Value) -> Option<time::OffsetDateTime> {
    [
        datetime_of(&row["create_date"]),
        datetime_of(&row["write_date"]),
    ]
    .into_iter()
    .flatten()
    .max()
}

pub(super) fn date_value(date: time::Date) -> Value {
    json!({"__class__": "date", "year": date.year(), "month": u8::from(date.month()), "day": date.day()})
}
