//! Reconnect delays: exponential backoff with jitter (250 ms doubling to
//! 10 s, each delay drawn between half and all of the current step). Pure
//! apart from its seed.

use std::time::Duration;

/// Exponential backoff with "equal jitter".
#[derive(Debug, Clone)]
pub struct Backoff {
    base: Duration,
    max: Duration,
    step: Duration,
    rng: u64,
}

impl Default for Backoff {
    fn default() -> Self {
        Self::new(
            Duration::from_millis(250),
            Duration::from_secs(10),
            random_seed(),
        )
    }
}

fn random_seed() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(0x5eed);
    h.finish() | 1
}

impl Backoff {
    pub fn new(base: Duration, max: Duration, seed: u64) -> Self {
        Self {
            base,
            max,
            step: base,
            rng: seed | 1,
        }
    }

    /// After a connection that worked: start again from the base delay.
    pub fn reset(&mut self) {
        self.step = self.base;
    }

    /// The next delay: uniform in [step/2, step], then the step doubles.
    pub fn next_delay(&mut self) -> Duration {
        // xorshift64*
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        let r = self.rng.wrapping_mul(0x2545_f491_4f6c_dd1d);
        let frac = (r >> 11) as f64 / (1u64 << 53) as f64;
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
        let mut b = Backoff::new(Duration::from_millis(250), Duration::from_secs(10), 42);
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
    }
}
