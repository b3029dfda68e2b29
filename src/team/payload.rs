//! What a publisher writes to Redis: its whole snapshot (every skill, not
//! only the top N, so edges rank after merging) with its name, the time
//! it was taken and its interval. The same JSON is the key's value and the
//! channel message. Pure data, no I/O.
//!
//! For `history` at an edge it also carries each skill's one-minute buckets
//! of the last day and the day's anomaly log, so `history` works at an
//! edge; both are serde-defaulted, so an older publisher's payload (without
//! them) still parses.

use crate::error::InvalidValue;
use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer, Serialize};

use crate::protocol::{Anomaly, SkillStat};
use crate::store::history::Counts;
use crate::store::{Snapshot, TimedAnomaly};

/// A payload carries the history of at most this many skills (the top by
/// rank): beyond it the others' minutes are left out (the publisher logs
/// it once): at most 1,000 × 1,440 minute rows (~33 MB of JSON).
pub const MAX_HISTORY_SKILLS: usize = 1000;

/// A day, in seconds: the history a payload carries.
const DAY_SECS: f64 = 86_400.0;

/// Payload format revision; an edge ignores other versions.
pub const VERSION: u32 = 1;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SourcePayload {
    pub v: u32,
    pub source: String,
    /// Random per publisher process: a restart is a new instance of the
    /// same source (it replaces the old one; never counted twice).
    pub instance: u64,
    /// Increases with every payload of one instance.
    pub seq: u64,
    /// The publisher's clock, Unix milliseconds.
    pub updated_at_ms: i64,
    /// The publisher writes at least this often.
    pub interval_ms: u64,
    pub skills: Vec<SkillStat>,
    pub anomalies: Vec<PayloadAnomaly>,
    /// Skill → its non-empty minutes of the last 24 h, oldest first (the
    /// first [`MAX_HISTORY_SKILLS`] skills by rank only).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub minutes: BTreeMap<String, Vec<MinuteRow>>,
    /// Every anomaly served in the last 24 h, cleared ones included (the
    /// same skills as `minutes`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub anomaly_log: Vec<PayloadAnomaly>,
}

/// One non-empty minute, as a JSON array to keep the payload small:
/// `[minute (Unix seconds / 60), invocations, completed, completed with a
/// duration, sum of those durations in seconds]`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct MinuteRow(pub i64, pub u32, pub u32, pub u32, pub f64);

impl MinuteRow {
    fn of(minute: i64, c: &Counts) -> Self {
        Self(minute, c.invocations, c.completed, c.timed, c.duration_sum)
    }

    /// The counts, made consistent (a payload is input): completed ≤
    /// invocations, timed ≤ completed, a duration sum that is a finite,
    /// non-negative number (else no durations).
    pub fn counts(&self) -> (i64, Counts) {
        let Self(minute, invocations, completed, timed, sum) = *self;
        let completed = completed.min(invocations);
        let (timed, duration_sum) = if sum.is_finite() && sum >= 0.0 {
            (timed.min(completed), sum)
        } else {
            (0, 0.0)
        };
        (
            minute,
            Counts {
                invocations,
                completed,
                timed,
                duration_sum,
            },
        )
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PayloadAnomaly {
    /// Detection time and end of serving, Unix seconds.
    pub at: f64,
    /// A live finding is served until it clears: `f64::INFINITY`, which
    /// JSON writes as `null` (read back as infinity).
    #[serde(deserialize_with = "forever_if_null")]
    pub expires: f64,
    #[serde(flatten)]
    pub anomaly: Anomaly,
}

fn forever_if_null<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::INFINITY))
}

fn payload_anomaly(a: &TimedAnomaly) -> PayloadAnomaly {
    PayloadAnomaly {
        at: a.at,
        expires: a.expires,
        anomaly: a.anomaly.clone(),
    }
}

/// What a payload carries for `history`.
pub struct HistoryBody {
    pub minutes: BTreeMap<String, Vec<MinuteRow>>,
    pub anomaly_log: Vec<PayloadAnomaly>,
    /// Skills left out beyond [`MAX_HISTORY_SKILLS`].
    pub left_out: usize,
}

/// The history of `snapshot` as of `now` (Unix seconds): the last 24 h of
/// minutes and logged anomalies of its first [`MAX_HISTORY_SKILLS`] skills.
pub fn history_body(snapshot: &Snapshot, now: f64) -> HistoryBody {
    let cutoff = now - DAY_SECS;
    let first_minute = (cutoff / 60.0).floor() as i64;
    let mut minutes = BTreeMap::new();
    let mut anomaly_log = Vec::new();
    for s in snapshot.skills.iter().take(MAX_HISTORY_SKILLS) {
        let name = &s.skill_name;
        if let Some(m) = snapshot.minutes(name) {
            let rows: Vec<MinuteRow> = m
                .iter()
                .filter(|(minute, _)| *minute >= first_minute)
                .map(|(minute, c)| MinuteRow::of(*minute, c))
                .collect();
            if !rows.is_empty() {
                minutes.insert(name.clone(), rows);
            }
        }
        anomaly_log.extend(
            snapshot
                .anomaly_log()
                .of(name)
                .iter()
                .filter(|a| a.at >= cutoff)
                .map(payload_anomaly),
        );
    }
    HistoryBody {
        minutes,
        anomaly_log,
        left_out: snapshot.skills.len().saturating_sub(MAX_HISTORY_SKILLS),
    }
}

/// The figures of `snapshot` as a payload's body (skills and anomalies):
/// compared between ticks to publish only on change (or heartbeat).
pub fn body(snapshot: &Snapshot) -> (Vec<SkillStat>, Vec<PayloadAnomaly>) {
    (
        snapshot.skills.clone(),
        snapshot.anomalies.iter().map(payload_anomaly).collect(),
    )
}

impl SourcePayload {
    pub fn parse(text: &str) -> Result<Self, InvalidValue> {
        let p: Self = serde_json::from_str(text).map_err(|e| e.to_string())?;
        if p.v != VERSION {
            return Err(InvalidValue(format!(
                "payload version {} (this edge reads {VERSION})",
                p.v
            )));
        }
        super::validate_source(&p.source)?;
        Ok(p)
    }

    /// Whether `self` is newer than `other` (same source): a later time,
    /// or the same instance with a higher `seq`.
    pub fn newer_than(&self, other: &Self) -> bool {
        if self.instance == other.instance {
            self.seq > other.seq
        } else {
            self.updated_at_ms >= other.updated_at_ms
        }
    }

    pub(crate) fn timed_anomalies(&self) -> impl Iterator<Item = TimedAnomaly> + '_ {
        self.anomalies.iter().map(PayloadAnomaly::timed)
    }

    /// The anomalies of the day's log, as the store holds them.
    pub(crate) fn logged_anomalies(&self) -> impl Iterator<Item = TimedAnomaly> + '_ {
        self.anomaly_log.iter().map(PayloadAnomaly::timed)
    }
}

impl PayloadAnomaly {
    fn timed(&self) -> TimedAnomaly {
        TimedAnomaly {
            at: self.at,
            expires: self.expires,
            anomaly: self.anomaly.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_older_payload_without_history_still_parses() {
        let old = r#"{"v":1,"source":"a","instance":1,"seq":1,"updated_at_ms":0,
            "interval_ms":1000,"skills":[],"anomalies":[]}"#;
        let p = SourcePayload::parse(old).unwrap();
        assert!(p.minutes.is_empty() && p.anomaly_log.is_empty());
        let text = serde_json::to_string(&p).unwrap();
        assert!(!text.contains("minutes") && !text.contains("anomaly_log"));
    }

    #[test]
    fn a_live_finding_and_minutes_survive_the_round_trip() {
        let anomaly = PayloadAnomaly {
            at: 1.0,
            expires: f64::INFINITY,
            anomaly: Anomaly {
                skill_name: "a".into(),
                detected_at: "2026-01-01 00:00:00".into(),
                anomaly_type: "spike".into(),
                deviation_score: None,
                baseline_value: None,
                observed_value: None,
                source: Some("live".into()),
            },
        };
        let p = SourcePayload {
            v: VERSION,
            source: "a".into(),
            instance: 1,
            seq: 1,
            updated_at_ms: 0,
            interval_ms: 1000,
            skills: vec![],
            anomalies: vec![anomaly.clone()],
            minutes: BTreeMap::from([("a".into(), vec![MinuteRow(5, 2, 1, 1, 0.5)])]),
            anomaly_log: vec![anomaly],
        };
        let text = serde_json::to_string(&p).unwrap();
        assert!(
            text.contains(r#""minutes":{"a":[[5,2,1,1,0.5]]}"#),
            "{text}"
        );
        assert_eq!(SourcePayload::parse(&text).unwrap(), p, "{text}");
    }
}
