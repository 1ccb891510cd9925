//! Conversions between stored column values and domain values: timestamps
//! as integer microseconds, JSON as text, enums and ids parsed on the way
//! out so a bad stored value is reported as `Corrupt` rather than trusted.

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde::de::DeserializeOwned;
use sqlx::sqlite::SqliteRow;
use sqlx::{Decode, Row, Sqlite, Type};
use vitte_domain::ids::ParseError;
use vitte_domain::ports::StoreError;

use crate::error::db_err;

/// Microseconds in a day, for grants measured in days.
pub(crate) const MICROS_PER_DAY: i64 = 86_400_000_000;

/// A timestamp as stored: microseconds since the Unix epoch (the precision
/// the domain's clocks keep).
pub(crate) fn micros(t: DateTime<Utc>) -> i64 {
    t.timestamp_micros()
}

/// An optional timestamp as stored.
pub(crate) fn opt_micros(t: Option<DateTime<Utc>>) -> Option<i64> {
    t.map(micros)
}

/// A stored timestamp back as a point in time.
pub(crate) fn from_micros(column: &str, v: i64) -> Result<DateTime<Utc>, StoreError> {
    DateTime::from_timestamp_micros(v)
        .ok_or_else(|| StoreError::Corrupt(format!("{column} = {v} is not a valid timestamp")))
}

/// Reads a column.
pub(crate) fn col<'r, T>(row: &'r SqliteRow, column: &str) -> Result<T, StoreError>
where
    T: Decode<'r, Sqlite> + Type<Sqlite>,
{
    row.try_get(column).map_err(db_err)
}

/// Reads a timestamp column.
pub(crate) fn time_col(row: &SqliteRow, column: &str) -> Result<DateTime<Utc>, StoreError> {
    from_micros(column, col(row, column)?)
}

/// Reads a nullable timestamp column.
pub(crate) fn opt_time_col(
    row: &SqliteRow,
    column: &str,
) -> Result<Option<DateTime<Utc>>, StoreError> {
    col::<Option<i64>>(row, column)?
        .map(|v| from_micros(column, v))
        .transpose()
}

/// Reads a text column and parses it into a domain type.
pub(crate) fn parsed_col<T>(
    row: &SqliteRow,
    column: &str,
    parse: impl FnOnce(&str) -> Result<T, ParseError>,
) -> Result<T, StoreError> {
    let text: String = col(row, column)?;
    parse(&text).map_err(corrupt)
}

/// A stored value that does not parse into its domain type.
pub(crate) fn corrupt(e: ParseError) -> StoreError {
    StoreError::Corrupt(e.to_string())
}

/// Reads a JSON text column.
pub(crate) fn json_col<T: DeserializeOwned>(
    row: &SqliteRow,
    column: &str,
) -> Result<T, StoreError> {
    let text: String = col(row, column)?;
    serde_json::from_str(&text)
        .map_err(|e| StoreError::Corrupt(format!("{column} is not the expected JSON: {e}")))
}

/// A value as JSON text for storing.
pub(crate) fn to_json<T: Serialize + ?Sized>(value: &T) -> Result<String, StoreError> {
    // Domain values always serialise; a failure would be a bug in a type.
    serde_json::to_string(value).map_err(|e| StoreError::Backend(Box::new(e)))
}

/// `now` plus `days`, as stored; `None` when the result is out of range.
pub(crate) fn plus_days(start: i64, days: i64) -> Option<i64> {
    days.checked_mul(MICROS_PER_DAY)
        .and_then(|d| start.checked_add(d))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_round_trip_through_micros() {
        let t = DateTime::from_timestamp(1_700_000_000, 123_456_000).expect("valid");
        assert_eq!(from_micros("t", micros(t)).ok(), Some(t));
        let before_epoch = DateTime::from_timestamp(-5, 250_000_000).expect("valid");
        assert_eq!(
            from_micros("t", micros(before_epoch)).ok(),
            Some(before_epoch)
        );
    }

    #[test]
    fn micros_order_like_the_times_they_encode() {
        let a = DateTime::from_timestamp(1_700_000_000, 999_999_000).expect("valid");
        let b = DateTime::from_timestamp(1_700_000_001, 0).expect("valid");
        assert!(micros(a) < micros(b));
    }

    #[test]
    fn out_of_range_values_are_corrupt() {
        assert!(matches!(
            from_micros("t", i64::MAX),
            Err(StoreError::Corrupt(_))
        ));
        assert_eq!(plus_days(i64::MAX - 1, 1), None);
        assert_eq!(plus_days(0, 2), Some(2 * MICROS_PER_DAY));
    }
}
