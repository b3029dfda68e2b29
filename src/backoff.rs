//! Reconnect delays, the one rule both roles use: exponential backoff with
//! "equal jitter" (a base step doubling to a cap, each delay drawn between
//! half and all of the current step). `watch`'s feed uses 250 ms to 10 s and
//! resets only after a *stable* connection (see
//! [`crate::client::stable_after`]), so a server that accepts and closes
//! straight away sees the whole backoff; the team view's Redis links use
//! 250 ms to [`crate::team::BACKOFF_CAP`]. Pure apart from its seed: the
//! jitter comes from a `fastrand::Rng`, seeded at random, or by a test.
//! Owns no clock and no I/O; must not know who reconnects.

use std::time::Duration;

/// Exponential backoff with "equal jitter".
#[derive(Debug, Clone)]
pub(crate) struct Backoff {
    base: Duration,
    max: Duration,
    step: Duration,
    rng: fastrand::Rng,
}

impl Backoff {
    /// `base` doubling up to `max`, jitter seeded at random.
    pub(crate) fn new(base: Duration, max: Duration) -> Self {
        Self::with_rng(base, max, fastrand::Rng::new())
    }

    /// Jitter drawn from a generator seeded with `seed` (deterministic, for tests).
    #[cfg(test)]
    pub(crate) fn seeded(base: Duration, max: Duration, seed: u64) -> Self {
        Self::with_rng(base, max, fastrand::Rng::with_seed(seed))
    }

    fn with_rng(base: Duration, max: Duration, rng: fastrand::Rng) -> Self {
        Self {
            base,
            max,
            step: base,
            rng,
        }
    }

    /// After a connection that worked: start again from the base delay.
    pub(crate) fn reset(&mut self) {
        self.step = self.base;
    }

    /// The next delay: uniform in [step/2, step], then the step doubles.
    pub(crate) fn next_delay(&mut self) -> Duration {
        let frac = self.rng.f64(); // uniform in [0, 1)
        let step = self.step;
        self.step = (self.step * 2).min(self.max);
        step.mul_f64(0.5 + 0.5 * frac)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_with_jitter_up_to_the_cap_and_resets() {
        let mut b = Backoff::seeded(Duration::from_millis(250), Duration::from_secs(10), 42);
        let mut steps = vec![];
        for _ in 0..10 {
            steps.push(b.next_delay());
        }
        let caps = [
            250u64, 500, 1000, 2000, 4000, 8000, 10000, 10000, 10000, 10000,
        ];
        for (d, cap) in steps.iter().zip(caps) {
            let cap = Duration::from_millis(cap);
            assert!(*d <= cap && *d >= cap / 2, "{d:?} vs {cap:?}");
        }
        b.reset();
        assert!(b.next_delay() <= Duration::from_millis(250));
        // The same seed draws the same jitter.
        let mut again = Backoff::seeded(Duration::from_millis(250), Duration::from_secs(10), 42);
        let replay: Vec<_> = (0..10).map(|_| again.next_delay()).collect();
        assert_eq!(replay, steps);
    }
}
