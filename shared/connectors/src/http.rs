//! HTTP details shared by the connectors.

use std::time::Duration;

use reqwest::header::{HeaderMap, RETRY_AFTER};

/// Longest wait a `Retry-After` is taken at: a larger (or absurd) value is capped here.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);

/// `Retry-After` in seconds, whole or not (Shopify's REST answers `2.0`); an HTTP date is
/// ignored.
pub fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let seconds: f64 = headers
        .get(RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()?;
    (seconds.is_finite() && seconds >= 0.0)
        .then(|| Duration::from_secs_f64(seconds).min(MAX_RETRY_AFTER))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        if let Ok(value) = value.parse() {
            headers.insert(RETRY_AFTER, value);
        }
        headers
    }

    #[test]
    fn retry_after_reads_whole_and_fractional_seconds_and_ignores_dates() {
        assert_eq!(retry_after(&with("2")), Some(Duration::from_secs(2)));
        assert_eq!(retry_after(&with("2.0")), Some(Duration::from_secs(2)));
        assert_eq!(
            retry_after(&with(" 0.5 ")),
            Some(Duration::from_millis(500))
        );
        assert_eq!(retry_after(&with("Wed, 21 Oct 2015 07:28:00 GMT")), None);
        assert_eq!(retry_after(&with("-1")), None);
        assert_eq!(retry_after(&with("NaN")), None);
        assert_eq!(retry_after(&with("1e12")), Some(MAX_RETRY_AFTER));
        assert_eq!(retry_after(&HeaderMap::new()), None);
    }
}
