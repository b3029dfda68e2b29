//! The server's memory on screen (ext): `history` frames turned
//! into bounded per-skill series for the Trend column (1 h) and the detail
//! view (1 h and 24 h), extended by live updates, plus what to ask for and
//! when. Pure: the requests go out as [`FeedCommand::History`] through
//! the app's outbox, and times come from the frames and events.
//!
//! Bounds: at most [`MAX_SKILLS`] skills per window and the window's own
//! bucket count (≤ 96) per series, whatever a server sends.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};

use crate::client::FeedCommand;
use crate::protocol::{History, HistoryWindow, SkillStat, parse_timestamp};

/// Most skills kept per window (as many as one request may name).
pub const MAX_SKILLS: usize = crate::protocol::MAX_HISTORY_SKILLS;

/// Average durations at or above this (a year, in seconds) are dropped.
const MAX_DURATION: f64 = 365.0 * 86_400.0;

/// One bucket of a series.
#[derive(Debug, Clone, PartialEq)]
pub struct Bucket {
    pub start: DateTime<Utc>,
    pub invocations: u64,
    pub completed: u64,
    pub avg_duration: Option<f64>,
}

impl Bucket {
    /// Completion in percent; `None` for an empty bucket.
    pub fn completion(&self) -> Option<f64> {
        (self.invocations > 0).then(|| {
            (self.completed.min(self.invocations) as f64 / self.invocations as f64) * 100.0
        })
    }
}

/// An anomaly inside a series' window, for a chart marker.
#[derive(Debug, Clone, PartialEq)]
pub struct Marker {
    pub at: DateTime<Utc>,
    pub anomaly_type: String,
}

/// One skill's buckets in one window, oldest first.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    pub window: HistoryWindow,
    pub buckets: Vec<Bucket>,
    pub markers: Vec<Marker>,
    /// Arrival order, to evict the oldest series first.
    received: u64,
}

impl Series {
    /// Start of the first bucket and end of the last one.
    pub fn span(&self) -> Option<(DateTime<Utc>, DateTime<Utc>)> {
        let first = self.buckets.first()?.start;
        let last = self.buckets.last()?.start;
        Some((
            first,
            last + chrono::Duration::seconds(self.window.bucket_seconds()),
        ))
    }

    /// Invocations per bucket, oldest first.
    pub fn invocations(&self) -> Vec<u64> {
        self.buckets.iter().map(|b| b.invocations).collect()
    }

    /// Fold `n` invocations seen live at `at` into the bucket holding
    /// `at`, opening (empty) buckets as the window moves on.
    fn extend(&mut self, at: DateTime<Utc>, n: u64) {
        let secs = self.window.bucket_seconds();
        let count = self.window.buckets();
        let Some(last) = self.buckets.last().map(|b| b.start.timestamp()) else {
            return;
        };
        let aligned = self.window.bucket_of(at.timestamp() as f64) * secs;
        if aligned < last {
            // Older than the newest bucket: the server already counted it.
            return;
        }
        let empty = |t: i64| {
            DateTime::<Utc>::from_timestamp(t, 0).map(|start| Bucket {
                start,
                invocations: 0,
                completed: 0,
                avg_duration: None,
            })
        };
        if (aligned - last) / secs >= count as i64 {
            // Silent for longer than the window: all of it is empty now.
            self.buckets = (0..count as i64)
                .rev()
                .filter_map(|i| empty(aligned - i * secs))
                .collect();
        } else {
            let mut t = last + secs;
            while t <= aligned {
                self.buckets.extend(empty(t));
                t += secs;
            }
        }
        if let Some(b) = self.buckets.last_mut() {
            b.invocations = b.invocations.saturating_add(n);
        }
        if self.buckets.len() > count {
            self.buckets.drain(..self.buckets.len() - count);
        }
        if let Some(first) = self.buckets.first().map(|b| b.start) {
            self.markers.retain(|m| m.at >= first);
        }
    }
}

/// Whether the server offers history, what came back, and what to ask.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ServerHistory {
    /// `Some(true)` once connected to a server that took `skillmon.v1`;
    /// `Some(false)` for one that did not (session-buddy); `None` before.
    pub offered: Option<bool>,
    /// Ask for the Trend column's 1 h at the next update (its skills are
    /// the skills in view).
    pub trend_wanted: bool,
    /// Window → skill → series.
    pub series: BTreeMap<HistoryWindow, BTreeMap<String, Series>>,
    /// Frames received (orders series for eviction).
    pub frames: u64,
}

impl ServerHistory {
    pub fn offered(&self) -> bool {
        self.offered == Some(true)
    }

    pub fn get(&self, window: HistoryWindow, skill: &str) -> Option<&Series> {
        self.series.get(&window)?.get(skill)
    }

    /// A new connection: history when the server offers it.
    pub(super) fn connected(&mut self, ext: bool) {
        self.offered = Some(ext);
        self.trend_wanted = ext;
    }

    /// The request for the Trend column, if one is due: the 1 h of the
    /// skills of this update (at most [`MAX_SKILLS`]).
    pub(super) fn trend_request(&mut self, skills: &[SkillStat]) -> Option<FeedCommand> {
        if !self.trend_wanted || !self.offered() || skills.is_empty() {
            return None;
        }
        self.trend_wanted = false;
        let names = skills
            .iter()
            .take(MAX_SKILLS)
            .map(|s| s.skill_name.clone())
            .collect();
        Some(FeedCommand::History {
            skills: Some(names),
            window: HistoryWindow::Hour,
        })
    }

    /// The detail view's requests: both windows of one skill.
    pub(super) fn detail_requests(&self, skill: &str) -> Vec<FeedCommand> {
        if !self.offered() {
            return Vec::new();
        }
        [HistoryWindow::Hour, HistoryWindow::Day]
            .into_iter()
            .map(|window| FeedCommand::History {
                skills: Some(vec![skill.to_string()]),
                window,
            })
            .collect()
    }

    /// Keep a `history` frame (bounded).
    pub(super) fn receive(&mut self, h: History) {
        self.frames += 1;
        let received = self.frames;
        let window = h.window;
        let map = self.series.entry(window).or_default();
        for sk in h.skills.into_iter().take(MAX_SKILLS) {
            let mut buckets: Vec<Bucket> = sk
                .buckets
                .iter()
                .filter_map(|b| {
                    Some(Bucket {
                        start: parse_timestamp(&b.start)?,
                        invocations: b.invocations,
                        completed: b.completed,
                        // Beyond a year is no duration: a broken server.
                        avg_duration: b.avg_duration.filter(|d| (0.0..MAX_DURATION).contains(d)),
                    })
                })
                .collect();
            buckets.sort_by_key(|b| b.start);
            if buckets.len() > window.buckets() {
                buckets.drain(..buckets.len() - window.buckets());
            }
            let first = buckets.first().map(|b| b.start);
            let markers = sk
                .anomalies
                .iter()
                .take(window.buckets())
                .filter_map(|a| {
                    let at = parse_timestamp(&a.detected_at)?;
                    first.is_some_and(|f| at >= f).then(|| Marker {
                        at,
                        anomaly_type: a.anomaly_type.clone(),
                    })
                })
                .collect();
            map.insert(
                sk.skill_name,
                Series {
                    window,
                    buckets,
                    markers,
                    received,
                },
            );
        }
        while map.len() > MAX_SKILLS {
            let oldest = map
                .iter()
                .min_by_key(|(_, s)| s.received)
                .map(|(k, _)| k.clone());
            match oldest {
                Some(k) => map.remove(&k),
                None => break,
            };
        }
    }

    /// Live updates extend every series: the change of each skill's total
    /// since the previous update goes into the bucket of `at`.
    pub(super) fn extend(&mut self, deltas: &[(String, i64)], at: DateTime<Utc>) {
        for map in self.series.values_mut() {
            for (name, d) in deltas {
                if let (Some(s), Ok(n)) = (map.get_mut(name), u64::try_from(*d)) {
                    s.extend(at, n);
                }
            }
        }
    }
}
