//! A scheduled run's deadline: the run stops cleanly before its function times out, says it is
//! incomplete, and the next run resumes (each run compares with what the channel shows and
//! skips what is done).

use std::time::{Duration, Instant, SystemTime};

/// Time kept in hand before the deadline: one more write (and a throttle wait) fits in it.
pub const STOP_MARGIN: Duration = Duration::from_secs(20);

/// True when a run with this deadline must stop now; none: no limit.
pub fn time_to_stop(deadline: Option<Instant>) -> bool {
    deadline.is_some_and(|deadline| Instant::now() + STOP_MARGIN >= deadline)
}

/// The invocation's deadline, if it gave one: one already past is none (a local runtime's
/// invocation carries 0).
pub fn given(deadline: Option<SystemTime>) -> Option<SystemTime> {
    deadline.filter(|d| *d > SystemTime::now())
}

/// The time a run keeps in hand before `deadline`: `wanted`, but at most a quarter of what is
/// left when the run starts (a short local invocation still does work).
pub fn margin(deadline: Option<SystemTime>, wanted: Duration) -> Duration {
    deadline
        .and_then(|deadline| deadline.duration_since(SystemTime::now()).ok())
        .map_or(wanted, |left| wanted.min(left / 4))
}

/// Whether `deadline` leaves at least `margin`; none: no limit.
pub fn leaves(deadline: Option<SystemTime>, margin: Duration) -> bool {
    deadline.is_none_or(|deadline| {
        deadline
            .duration_since(SystemTime::now())
            .is_ok_and(|left| left >= margin)
    })
}

/// A scheduled invocation's deadline as a run's limit. A local runtime (`cargo lambda watch`)
/// sends minutes after the epoch: that is no deadline. Any other, even one already past (a
/// skewed clock), is kept: the run then stops at once rather than running without a limit.
pub fn of_invocation(deadline: SystemTime) -> Option<Instant> {
    let local_marker = deadline
        .duration_since(SystemTime::UNIX_EPOCH)
        .is_ok_and(|since| since < Duration::from_secs(24 * 3600));
    if local_marker {
        None
    } else {
        monotonic(deadline)
    }
}

/// The runtime's wall-clock deadline as a monotonic instant; one already passed is now (the
/// run stops at once rather than running without a limit).
pub fn monotonic(deadline: SystemTime) -> Option<Instant> {
    let left = deadline
        .duration_since(SystemTime::now())
        .unwrap_or(Duration::ZERO);
    Some(Instant::now() + left)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_stops_within_the_margin_and_never_without_a_deadline() {
        assert!(!time_to_stop(None));
        assert!(time_to_stop(Some(Instant::now() + STOP_MARGIN / 2)));
        assert!(!time_to_stop(Some(Instant::now() + STOP_MARGIN * 3)));
        let passed = monotonic(SystemTime::now() - Duration::from_secs(1));
        assert!(passed.is_some() && time_to_stop(passed));
    }

    #[test]
    fn a_local_runtime_s_epoch_deadline_is_none_and_any_other_past_one_stops_the_run() {
        // cargo lambda watch: 600,000 ms after the epoch.
        let local = SystemTime::UNIX_EPOCH + Duration::from_millis(600_000);
        assert_eq!(of_invocation(local), None);
        let skewed = of_invocation(SystemTime::now() - Duration::from_secs(5));
        assert!(skewed.is_some() && time_to_stop(skewed));
        let ahead = of_invocation(SystemTime::now() + STOP_MARGIN * 3);
        assert!(ahead.is_some() && !time_to_stop(ahead));
    }
}
