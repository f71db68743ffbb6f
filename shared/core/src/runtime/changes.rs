//! Prompt refreshes after changes made in the ERP itself (receipts, adjustments, returns,
//! cancelled sales, new prices or rates): a frequent, cheap poll of the ERP's change stamps
//! since a cursor kept in the state store, so real-time channels need not wait for the
//! full scheduled run.

use std::time::Duration;

use time::OffsetDateTime;

/// Re-read this far behind the cursor: a transaction that commits late carries a stamp
/// from before the previous poll. Refreshing twice is harmless (only differences are sent).
pub const OVERLAP: Duration = Duration::from_secs(120);

/// How far back the very first poll looks, before any cursor exists.
pub const FIRST_LOOK_BACK: Duration = Duration::from_secs(600);

/// Cursor names in the state store.
pub const STOCK_CURSOR: &str = "stock-changes";
pub const PRICE_CURSOR: &str = "price-changes";

/// Where a poll starts reading: the cursor less the overlap, or a short look-back at first.
pub fn window_start(cursor: Option<OffsetDateTime>, now: OffsetDateTime) -> OffsetDateTime {
    match cursor {
        Some(cursor) => cursor - OVERLAP,
        None => now - FIRST_LOOK_BACK,
    }
}

/// The cursor after a poll whose changes were all applied: the latest stamp seen, never
/// moving backwards; the window's start when nothing was ever seen.
pub fn next_cursor(
    cursor: Option<OffsetDateTime>,
    latest: Option<OffsetDateTime>,
    start: OffsetDateTime,
) -> OffsetDateTime {
    [cursor, latest]
        .into_iter()
        .flatten()
        .max()
        .unwrap_or(start)
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn the_window_overlaps_the_cursor_and_the_first_poll_looks_back() {
        let now = datetime!(2026-11-29 12:00 UTC);
        assert_eq!(
            window_start(Some(datetime!(2026-11-29 11:59 UTC)), now),
            datetime!(2026-11-29 11:57 UTC)
        );
        assert_eq!(window_start(None, now), datetime!(2026-11-29 11:50 UTC));
    }

    #[test]
    fn the_cursor_never_moves_backwards() {
        let start = datetime!(2026-11-29 11:50 UTC);
        let cursor = datetime!(2026-11-29 11:59 UTC);
        // The overlap re-reads a change older than the cursor: the cursor stays.
        assert_eq!(
            next_cursor(Some(cursor), Some(datetime!(2026-11-29 11:58 UTC)), start),
            cursor
        );
        assert_eq!(
            next_cursor(Some(cursor), Some(datetime!(2026-11-29 12:01 UTC)), start),
            datetime!(2026-11-29 12:01 UTC)
        );
        assert_eq!(next_cursor(None, None, start), start);
    }
}
