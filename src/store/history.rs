//! (ext) Histories: a skill's last hour or day in wall-clock-aligned
//! buckets, cut from the in-memory day (`activity`), never from a query.
//!
//! Owns [`Minutes`] (one skill's invocations in one-minute buckets, kept by
//! `activity` as samples arrive and shared with each [`Snapshot`]) and
//! [`build`], which turns a snapshot into the `history` frame's data at any
//! `now`. A 15-minute bucket is the sum of its 15 one-minute buckets, since
//! both are aligned to the UTC clock. Also owns [`AnomalyLog`]: every
//! anomaly the store served in the last day, so a chart can mark an
//! incident that has since cleared. Pure data; no I/O, no clock.

use std::collections::HashMap;
use std::sync::Arc;

use crate::protocol::{
    History, HistoryAnomaly, HistoryBucket, HistoryWindow, SkillHistory, format_bucket_start,
    format_timestamp,
};

use super::anomaly::{DAY, Sample};
use super::{Snapshot, TimedAnomaly};

/// Most anomalies remembered per skill (the oldest go first).
const MAX_LOGGED_PER_SKILL: usize = 512;

/// Every anomaly served in the last day, per skill, oldest first: live
/// findings after they clear, table rows after their hour. Shared with the
/// snapshots; copied only when an anomaly is new or ages out.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AnomalyLog(HashMap<String, Vec<TimedAnomaly>>);

impl AnomalyLog {
    /// One skill's logged anomalies, oldest first.
    pub fn of(&self, skill: &str) -> &[TimedAnomaly] {
        self.0.get(skill).map_or(&[], Vec::as_slice)
    }

    /// Add the anomalies of `served` not logged yet (same skill, type and
    /// `detected_at`) and forget those detected more than a day before `now`.
    pub fn record(log: &mut Arc<AnomalyLog>, served: &[TimedAnomaly], now: f64) {
        let same = |a: &TimedAnomaly, b: &TimedAnomaly| {
            a.anomaly.anomaly_type == b.anomaly.anomaly_type
                && a.anomaly.detected_at == b.anomaly.detected_at
        };
        for a in served {
            let known = log.of(&a.anomaly.skill_name).iter().any(|l| same(l, a));
            if !known {
                let v = Arc::make_mut(log)
                    .0
                    .entry(a.anomaly.skill_name.clone())
                    .or_default();
                if v.len() >= MAX_LOGGED_PER_SKILL {
                    v.remove(0);
                }
                v.push(a.clone());
            }
        }
        let cutoff = now - DAY;
        if log.0.values().any(|v| v.iter().any(|a| a.at < cutoff)) {
            Arc::make_mut(log).0.retain(|_, v| {
                v.retain(|a| a.at >= cutoff);
                !v.is_empty()
            });
        }
    }
}

/// Anomalies of any skills in any order (an edge's union of its sources'
/// logs): grouped per skill, oldest first, the newest
/// `MAX_LOGGED_PER_SKILL` kept.
impl FromIterator<TimedAnomaly> for AnomalyLog {
    fn from_iter<I: IntoIterator<Item = TimedAnomaly>>(iter: I) -> Self {
        let mut map: HashMap<String, Vec<TimedAnomaly>> = HashMap::new();
        for a in iter {
            map.entry(a.anomaly.skill_name.clone()).or_default().push(a);
        }
        for v in map.values_mut() {
            v.sort_by(|a, b| a.at.total_cmp(&b.at));
            let excess = v.len().saturating_sub(MAX_LOGGED_PER_SKILL);
            v.drain(..excess);
        }
        Self(map)
    }
}

const MINUTE: i64 = 60;

/// What one bucket counts.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Counts {
    pub invocations: u32,
    pub completed: u32,
    /// Completed invocations that have a duration.
    pub timed: u32,
    /// Sum of their durations, in seconds.
    pub duration_sum: f64,
}

impl Counts {
    fn add(&mut self, s: &Sample) {
        self.invocations += 1;
        if s.completed {
            self.completed += 1;
            if let Some(d) = s.duration.filter(|d| d.is_finite()) {
                self.timed += 1;
                self.duration_sum += d;
            }
        }
    }

    /// Saturating: at an edge the counts come from other processes.
    fn merge(&mut self, o: &Counts) {
        self.invocations = self.invocations.saturating_add(o.invocations);
        self.completed = self.completed.saturating_add(o.completed);
        self.timed = self.timed.saturating_add(o.timed);
        self.duration_sum += o.duration_sum;
    }

    /// Mean duration of the completed invocations (to the millisecond), or
    /// `None` when none has a duration.
    pub fn avg_duration(&self) -> Option<f64> {
        (self.timed > 0).then(|| round3(self.duration_sum / f64::from(self.timed)))
    }
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// One skill's invocations in one-minute buckets: (minute index = Unix
/// seconds / 60, counts), sorted by minute, only non-empty minutes.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Minutes(Vec<(i64, Counts)>);

impl Minutes {
    /// Count one sample in its minute (usually the last one: rows arrive
    /// roughly in time order).
    pub fn add(&mut self, s: &Sample) {
        let m = (s.t / MINUTE as f64).floor() as i64;
        match self.0.last_mut() {
            Some((last, c)) if *last == m => c.add(s),
            Some((last, _)) if *last > m => match self.0.binary_search_by_key(&m, |(k, _)| *k) {
                Ok(i) => self.0[i].1.add(s),
                Err(i) => {
                    let mut c = Counts::default();
                    c.add(s);
                    self.0.insert(i, (m, c));
                }
            },
            _ => {
                let mut c = Counts::default();
                c.add(s);
                self.0.push((m, c));
            }
        }
    }

    /// The non-empty minutes, oldest first: (minute index, counts).
    pub fn iter(&self) -> impl Iterator<Item = &(i64, Counts)> {
        self.0.iter()
    }

    pub fn first_minute(&self) -> Option<i64> {
        self.0.first().map(|(m, _)| *m)
    }

    /// Drop the minutes before `minute`.
    pub fn trim_before(&mut self, minute: i64) {
        let keep = self.0.partition_point(|(m, _)| *m < minute);
        self.0.drain(..keep);
    }

    /// Non-empty minutes held.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The window's buckets ending with the one holding `now`: exactly
    /// `window.buckets()` counts, oldest first.
    pub fn buckets(&self, window: HistoryWindow, now: f64) -> Vec<Counts> {
        let n = window.buckets();
        let size = window.bucket_seconds();
        let first = window.first_bucket_start(now);
        let end = first + n as i64 * size;
        let mut out = vec![Counts::default(); n];
        let from = self.0.partition_point(|(m, _)| m * MINUTE < first);
        for (m, c) in &self.0[from..] {
            let t = m * MINUTE;
            if t >= end {
                break;
            }
            out[((t - first) / size) as usize].merge(c);
        }
        out
    }
}

/// Minutes in any order; counts of the same minute add up (an edge sums
/// its sources' minutes this way).
impl FromIterator<(i64, Counts)> for Minutes {
    fn from_iter<I: IntoIterator<Item = (i64, Counts)>>(iter: I) -> Self {
        let mut v: Vec<(i64, Counts)> = iter.into_iter().collect();
        v.sort_by_key(|(m, _)| *m);
        let mut out: Vec<(i64, Counts)> = Vec::with_capacity(v.len());
        for (m, c) in v {
            match out.last_mut() {
                Some((last, sum)) if *last == m => sum.merge(&c),
                _ => out.push((m, c)),
            }
        }
        Self(out)
    }
}

/// The `history` frame's data for `skills` at `now` (Unix seconds), from
/// `snapshot`: each skill's buckets (all zero for a skill without
/// invocations) and its anomalies detected inside the window (newest first,
/// whether or not still served in `metrics_update`). Skills are listed in
/// the order given.
pub fn build(snapshot: &Snapshot, skills: &[String], window: HistoryWindow, now: f64) -> History {
    let first = window.first_bucket_start(now);
    let size = window.bucket_seconds();
    let starts: Vec<String> = (0..window.buckets() as i64)
        .map(|i| format_bucket_start(first + i * size))
        .collect();
    let skills = skills
        .iter()
        .map(|name| {
            let counts = match snapshot.minutes(name) {
                Some(m) => m.buckets(window, now),
                None => vec![Counts::default(); window.buckets()],
            };
            let buckets = counts
                .iter()
                .zip(&starts)
                .map(|(c, start)| HistoryBucket {
                    start: start.clone(),
                    invocations: u64::from(c.invocations),
                    completed: u64::from(c.completed),
                    avg_duration: c.avg_duration(),
                })
                .collect();
            // Served now, then logged earlier (cleared since), newest first.
            let mut found: Vec<&TimedAnomaly> = Vec::new();
            for a in snapshot
                .anomalies_of(name)
                .chain(snapshot.anomaly_log().of(name))
            {
                let dup = found.iter().any(|f| {
                    f.anomaly.anomaly_type == a.anomaly.anomaly_type
                        && f.anomaly.detected_at == a.anomaly.detected_at
                });
                if !dup && a.at >= first as f64 && a.at <= now {
                    found.push(a);
                }
            }
            found.sort_by(|a, b| b.at.total_cmp(&a.at));
            let anomalies = found
                .into_iter()
                .map(|a| HistoryAnomaly {
                    detected_at: a.anomaly.detected_at.clone(),
                    anomaly_type: a.anomaly.anomaly_type.clone(),
                    deviation_score: a.anomaly.deviation_score,
                    source: a.anomaly.source.clone(),
                })
                .collect();
            SkillHistory {
                skill_name: name.clone(),
                buckets,
                anomalies,
            }
        })
        .collect();
    History {
        window,
        bucket_seconds: size,
        start: starts.first().cloned().unwrap_or_default(),
        timestamp: chrono::DateTime::from_timestamp_micros((now * 1e6) as i64)
            .map(format_timestamp),
        skills,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(t: f64, completed: bool, duration: Option<f64>) -> Sample {
        Sample {
            t,
            completed,
            duration,
        }
    }

    #[test]
    fn minutes_stay_sorted_whatever_the_arrival_order() {
        let mut m = Minutes::default();
        for t in [600.0, 59.0, 0.0, 601.0, 120.0, 61.0] {
            m.add(&sample(t, true, Some(1.0)));
        }
        let keys: Vec<i64> = m.0.iter().map(|(k, _)| *k).collect();
        assert_eq!(keys, [0, 1, 2, 10]);
        assert_eq!(m.0[0].1.invocations, 2);
        m.trim_before(2);
        assert_eq!(m.first_minute(), Some(2));
        assert_eq!(m.len(), 2);
    }

    #[test]
    fn buckets_sum_minutes_and_average_completed_durations() {
        let mut m = Minutes::default();
        // now = 10:07:30 on some day; quarter 10:00..10:15 is the last bucket.
        let day_start = 1_796_000_000 / 86_400 * 86_400;
        let now = (day_start + 10 * 3600 + 7 * 60 + 30) as f64;
        let q = (day_start + 10 * 3600) as f64;
        m.add(&sample(q + 1.0, true, Some(1.0)));
        m.add(&sample(q + 400.0, true, Some(2.0)));
        m.add(&sample(q + 401.0, false, Some(9.0)));
        m.add(&sample(q - 1.0, true, None));
        let day = m.buckets(HistoryWindow::Day, now);
        assert_eq!(day.len(), 96);
        let last = day[95];
        assert_eq!((last.invocations, last.completed), (3, 2));
        assert_eq!(last.avg_duration(), Some(1.5));
        assert_eq!(day[94].invocations, 1);
        assert_eq!(day[94].avg_duration(), None);
        let hour = m.buckets(HistoryWindow::Hour, now);
        assert_eq!(hour.len(), 60);
        assert_eq!(hour[59].invocations, 0, "10:07 is empty");
        assert_eq!(hour[59 - 7].invocations, 1, "10:00");
        assert_eq!(hour[59 - 1].invocations, 2, "10:06");
        assert_eq!(hour[59 - 8].invocations, 1, "09:59");
    }
}
