//! Live anomaly detection and real time windows, computed from the
//! invocations of the last 24 hours held in memory. Pure functions; no I/O.
//!
//! The completion rule is session-buddy's z-score rule (which session-buddy
//! defines but never serves): per skill, completion as 0/1 per invocation;
//! baseline = invocations from 24 h ago up to 1 h ago (needs ≥ 5), mean and
//! sample standard deviation; current = the last hour (needs ≥ 2);
//! z = (current mean − baseline mean) / std, skipped when std = 0; reported
//! when |z| ≥ threshold as `performance_spike` (z > 0) or `performance_drop`
//! (z < 0). The duration rule applies the same windows to the durations of
//! completed invocations and reports `duration_spike` when z ≥ threshold.
//!
//! Completion baseline/observed values are percentages (like
//! `completion_rate`); duration ones are seconds.

/// Seconds in the "current" window.
pub const HOUR: f64 = 3600.0;
/// Seconds in the whole window (baseline + current).
pub const DAY: f64 = 86_400.0;
/// Fewest baseline samples for a verdict.
pub const MIN_BASELINE: usize = 5;
/// Fewest current samples for a verdict.
pub const MIN_CURRENT: usize = 2;
/// Default |z| at which an anomaly is reported.
pub const DEFAULT_THRESHOLD: f64 = 2.0;

/// One invocation, as much of it as the rules need.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    /// Unix seconds.
    pub t: f64,
    pub completed: bool,
    pub duration: Option<f64>,
}

/// The kinds of live anomaly.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, strum::IntoStaticStr)]
#[strum(serialize_all = "snake_case")]
pub enum Kind {
    PerformanceDrop,
    PerformanceSpike,
    DurationSpike,
}

impl Kind {
    /// The wire's `anomaly_type` (`performance_drop`, …).
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

/// A live finding for one skill.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Finding {
    pub kind: Kind,
    pub baseline: f64,
    pub observed: f64,
    pub z: f64,
}

/// Counts of one skill's samples over the windows ending at `now`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Windows {
    pub last_hour: u64,
    pub last_day: u64,
}

pub fn windows(samples: &[Sample], now: f64) -> Windows {
    let mut w = Windows::default();
    for s in samples {
        if s.t >= now - DAY {
            w.last_day += 1;
            if s.t >= now - HOUR {
                w.last_hour += 1;
            }
        }
    }
    w
}

/// Running mean and sample variance (Welford), so huge baselines stay exact.
#[derive(Debug, Default, Clone, Copy)]
struct Moments {
    n: usize,
    mean: f64,
    m2: f64,
}

impl Moments {
    fn push(&mut self, x: f64) {
        self.n += 1;
        let d = x - self.mean;
        self.mean += d / self.n as f64;
        self.m2 += d * (x - self.mean);
    }

    fn sample_std(&self) -> f64 {
        if self.n < 2 {
            0.0
        } else {
            (self.m2 / (self.n - 1) as f64).sqrt()
        }
    }
}

/// z of `current` against `baseline`, or None below the sample minimums or
/// when the baseline does not vary.
fn z_score(baseline: &Moments, current: &Moments) -> Option<f64> {
    if baseline.n < MIN_BASELINE || current.n < MIN_CURRENT {
        return None;
    }
    let std = baseline.sample_std();
    // A baseline of identical values has std 0 (or a rounding residue).
    if std.is_nan() || std <= 1e-12 {
        return None;
    }
    Some((current.mean - baseline.mean) / std)
}

/// Both rules for one skill's samples at `now`.
pub fn detect(samples: &[Sample], now: f64, threshold: f64) -> Vec<Finding> {
    let (mut base_c, mut cur_c, mut base_d, mut cur_d) = Default::default();
    for s in samples {
        if s.t < now - DAY {
            continue;
        }
        let current = s.t >= now - HOUR;
        let c = if s.completed { 1.0 } else { 0.0 };
        let (mc, md): (&mut Moments, &mut Moments) = if current {
            (&mut cur_c, &mut cur_d)
        } else {
            (&mut base_c, &mut base_d)
        };
        mc.push(c);
        if s.completed
            && let Some(d) = s.duration.filter(|d| d.is_finite())
        {
            md.push(d);
        }
    }
    let mut out = Vec::new();
    if let Some(z) = z_score(&base_c, &cur_c)
        && z.abs() >= threshold
    {
        out.push(Finding {
            kind: if z > 0.0 {
                Kind::PerformanceSpike
            } else {
                Kind::PerformanceDrop
            },
            baseline: base_c.mean * 100.0,
            observed: cur_c.mean * 100.0,
            z,
        });
    }
    if let Some(z) = z_score(&base_d, &cur_d)
        && z >= threshold
    {
        out.push(Finding {
            kind: Kind::DurationSpike,
            baseline: base_d.mean,
            observed: cur_d.mean,
            z,
        });
    }
    out
}

/// The earliest time after `now` at which one of `samples` leaves a window
/// (so windows and findings can change without new data), if any.
pub fn next_expiry(samples: &[Sample], now: f64) -> Option<f64> {
    samples
        .iter()
        .flat_map(|s| [s.t + HOUR, s.t + DAY])
        .filter(|&e| e > now)
        .min_by(f64::total_cmp)
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: f64 = 1_800_000_000.0;

    fn at(ago: f64, completed: bool, duration: Option<f64>) -> Sample {
        Sample {
            t: NOW - ago,
            completed,
            duration,
        }
    }

    /// `n` baseline samples spread over 2..20 h ago, completion pattern from `f`.
    fn baseline(n: usize, f: impl Fn(usize) -> (bool, Option<f64>)) -> Vec<Sample> {
        (0..n)
            .map(|i| {
                let (c, d) = f(i);
                at(2.0 * HOUR + i as f64 * 60.0, c, d)
            })
            .collect()
    }

    #[test]
    fn completion_drop() {
        // 90% completion in the baseline, 0% in the last hour.
        let mut s = baseline(20, |i| (i % 10 != 0, Some(1.0)));
        s.push(at(60.0, false, None));
        s.push(at(120.0, false, None));
        s.push(at(180.0, false, None));
        let f = detect(&s, NOW, 2.0);
        assert_eq!(f.len(), 1, "{f:?}");
        assert_eq!(f[0].kind, Kind::PerformanceDrop);
        assert!((f[0].baseline - 90.0).abs() < 1e-9);
        assert_eq!(f[0].observed, 0.0);
        // mean 0.9, sample std sqrt(0.09*20/19) = 0.3078; z = -0.9/0.3078
        assert!((f[0].z - (-0.9 / (0.09f64 * 20.0 / 19.0).sqrt())).abs() < 1e-9);
    }

    #[test]
    fn completion_spike() {
        let mut s = baseline(20, |i| (i % 10 == 0, None)); // 10 %
        s.push(at(60.0, true, Some(1.0)));
        s.push(at(70.0, true, Some(1.0)));
        let f = detect(&s, NOW, 2.0);
        assert_eq!(f.len(), 1, "{f:?}");
        assert_eq!(f[0].kind, Kind::PerformanceSpike);
        assert!(f[0].z > 2.0);
    }

    #[test]
    fn below_the_sample_minimums() {
        // 4 baseline samples: no verdict however extreme.
        let mut s = baseline(4, |i| (i != 0, Some(1.0)));
        s.extend([at(60.0, false, None), at(70.0, false, None)]);
        assert!(detect(&s, NOW, 2.0).is_empty());
        // Enough baseline, one current sample: no verdict.
        let mut s = baseline(20, |i| (i % 10 != 0, Some(1.0)));
        s.push(at(60.0, false, None));
        assert!(detect(&s, NOW, 2.0).is_empty());
    }

    #[test]
    fn zero_std_is_skipped() {
        // Every baseline invocation completed: std = 0, no z.
        let mut s = baseline(20, |_| (true, Some(2.0)));
        s.extend([at(60.0, false, None), at(70.0, false, None)]);
        assert!(detect(&s, NOW, 2.0).is_empty());
    }

    #[test]
    fn only_failures() {
        // A skill that never completes: std 0 on completion, no durations.
        let mut s = baseline(30, |_| (false, None));
        s.extend([at(60.0, false, None), at(70.0, false, None)]);
        assert!(detect(&s, NOW, 2.0).is_empty());
        assert_eq!(
            windows(&s, NOW),
            Windows {
                last_hour: 2,
                last_day: 32
            }
        );
    }

    #[test]
    fn duration_spike() {
        // Durations 1.0/2.0 alternating in the baseline; 10 s now.
        let mut s = baseline(20, |i| (true, Some(1.0 + (i % 2) as f64)));
        s.extend([at(60.0, true, Some(10.0)), at(70.0, true, Some(12.0))]);
        let f = detect(&s, NOW, 2.0);
        assert_eq!(f.len(), 1, "{f:?}");
        assert_eq!(f[0].kind, Kind::DurationSpike);
        assert_eq!(f[0].baseline, 1.5);
        assert_eq!(f[0].observed, 11.0);
        // Faster than usual is not a spike.
        let mut s = baseline(20, |i| (true, Some(10.0 + (i % 2) as f64)));
        s.extend([at(60.0, true, Some(0.1)), at(70.0, true, Some(0.1))]);
        assert!(detect(&s, NOW, 2.0).is_empty());
    }

    #[test]
    fn threshold_is_respected() {
        let mut s = baseline(20, |i| (i % 2 == 0, None)); // 50 %, std ~0.51
        s.extend([at(60.0, false, None), at(70.0, false, None)]); // z ~ -0.97
        assert!(detect(&s, NOW, 2.0).is_empty());
        assert_eq!(detect(&s, NOW, 0.9).len(), 1);
    }

    #[test]
    fn windows_at_their_boundaries() {
        let s = [
            at(HOUR, true, None),         // exactly 1 h ago: in the hour
            at(HOUR + 0.001, true, None), // just outside the hour
            at(DAY, true, None),          // exactly 24 h ago: in the day
            at(DAY + 0.001, true, None),  // outside
            at(0.0, true, None),
        ];
        assert_eq!(
            windows(&s, NOW),
            Windows {
                last_hour: 2,
                last_day: 4
            }
        );
        // The sample at `now` leaves the hour first.
        assert_eq!(next_expiry(&s, NOW), Some(NOW + HOUR));
        assert_eq!(next_expiry(&s[..4], NOW), Some(s[1].t + DAY));
    }

    #[test]
    fn old_samples_are_ignored() {
        let mut s: Vec<Sample> = (0..50)
            .map(|i| at(DAY + 10.0 + i as f64, true, Some(1.0)))
            .collect();
        s.extend([at(60.0, false, None), at(70.0, false, None)]);
        assert!(detect(&s, NOW, 2.0).is_empty(), "no baseline inside 24 h");
    }
}
