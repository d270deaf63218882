//! When a failed delivery is tried again, and when it is given up: exponential backoff with
//! jitter, for at least the retry window (24 h by default) from its first attempt. Pure: the
//! caller passes the clock and the jitter.

use sf_persistence::events::deliveries::AfterFailure;
use std::time::Duration;

/// The waits after the first failures, in units of the first wait: with the default 5 s,
/// 5 s, 30 s, 2 min, 10 min, 30 min, 1 h. Past them, between half the longest wait and the
/// longest (1 to 2 h by default).
const STEPS: [u32; 6] = [1, 6, 24, 120, 360, 720];

#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// The wait after the first failure (`WEBHOOK_RETRY_FIRST_MS`).
    pub first: Duration,
    /// The longest wait (`WEBHOOK_RETRY_MAX_MS`).
    pub longest: Duration,
    /// How long after its first attempt a delivery is still tried (`WEBHOOK_RETRY_FOR_SECS`).
    pub retry_for: Duration,
}

impl RetryPolicy {
    /// After a failed attempt of a delivery already tried `attempts_before` times, first at
    /// `first_attempt_ms` (`None`: this was its first), failing at `now_ms`. `jitter` is in
    /// `[0, 1)`: it spreads the retries of many deliveries (±20 % on the steps).
    pub fn after_failure(
        &self,
        attempts_before: u32,
        first_attempt_ms: Option<i64>,
        now_ms: i64,
        jitter: f64,
    ) -> AfterFailure {
        let first_ms = first_attempt_ms.unwrap_or(now_ms);
        let tried_for = Duration::from_millis(now_ms.saturating_sub(first_ms).max(0) as u64);
        if tried_for >= self.retry_for {
            return AfterFailure::GiveUp;
        }
        let jitter = jitter.clamp(0.0, 1.0);
        let wait = match STEPS.get(attempts_before as usize) {
            Some(&step) => self
                .first
                .saturating_mul(step)
                .mul_f64(0.8 + 0.4 * jitter)
                .min(self.longest),
            None => self.longest.mul_f64(0.5 + 0.5 * jitter),
        };
        AfterFailure::RetryIn(wait.max(Duration::from_millis(1)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: u64 = 3600;

    fn policy() -> RetryPolicy {
        RetryPolicy {
            first: Duration::from_secs(5),
            longest: Duration::from_secs(2 * HOUR),
            retry_for: Duration::from_secs(24 * HOUR),
        }
    }

    fn wait(p: &RetryPolicy, attempts: u32, jitter: f64) -> Duration {
        match p.after_failure(attempts, Some(0), 1000, jitter) {
            AfterFailure::RetryIn(d) => d,
            AfterFailure::GiveUp => panic!("gave up"),
        }
    }

    #[test]
    fn waits_grow_from_5_s_to_1_h_then_1_to_2_h() {
        let p = policy();
        let mid: Vec<u64> = (0..6).map(|n| wait(&p, n, 0.5).as_secs()).collect();
        assert_eq!(mid, [5, 30, 120, 600, 1800, 3600]);
        for n in 6..40 {
            let low = wait(&p, n, 0.0).as_secs();
            let high = wait(&p, n, 0.999_999).as_secs();
            assert!(low >= HOUR && high <= 2 * HOUR, "{n}: {low}..{high}");
        }
    }

    #[test]
    fn jitter_spreads_a_step_by_a_fifth_either_way() {
        let p = policy();
        assert_eq!(wait(&p, 1, 0.0), Duration::from_secs(24));
        assert_eq!(wait(&p, 1, 1.0), Duration::from_secs(36));
    }

    #[test]
    fn a_delivery_is_tried_for_the_whole_window_then_given_up() {
        let p = policy();
        let day_ms = 24 * HOUR as i64 * 1000;
        assert!(matches!(
            p.after_failure(30, Some(0), day_ms - 1, 0.5),
            AfterFailure::RetryIn(_)
        ));
        assert_eq!(
            p.after_failure(30, Some(0), day_ms, 0.5),
            AfterFailure::GiveUp
        );
        // A first attempt starts the window.
        assert!(matches!(
            p.after_failure(0, None, day_ms * 5, 0.5),
            AfterFailure::RetryIn(_)
        ));
    }

    #[test]
    fn at_the_longest_waits_a_day_still_holds_fifteen_attempts() {
        let p = policy();
        let (mut t, mut n) = (0i64, 0u32);
        while let AfterFailure::RetryIn(d) = p.after_failure(n, Some(0), t, 0.999) {
            t += d.as_millis() as i64;
            n += 1;
        }
        assert!(n >= 15, "{n} attempts");
        assert!(t >= 24 * HOUR as i64 * 1000);
    }
}
