//! What a publisher writes to Redis: its whole snapshot (every skill, not
//! only the top N, so edges rank after merging) with its name, the time
//! it was taken and its interval. The same JSON is the key's value and the
//! channel message. Pure data, no I/O.

use serde::{Deserialize, Serialize};

use crate::protocol::{Anomaly, SkillStat};
use crate::store::{Snapshot, TimedAnomaly};

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
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PayloadAnomaly {
    /// Detection time and end of serving, Unix seconds.
    pub at: f64,
    pub expires: f64,
    #[serde(flatten)]
    pub anomaly: Anomaly,
}

/// The figures of `snapshot` as a payload's body (skills and anomalies):
/// compared between ticks to publish only on change (or heartbeat).
pub fn body(snapshot: &Snapshot) -> (Vec<SkillStat>, Vec<PayloadAnomaly>) {
    (
        snapshot.skills.clone(),
        snapshot
            .anomalies
            .iter()
            .map(|a| PayloadAnomaly {
                at: a.at,
                expires: a.expires,
                anomaly: a.anomaly.clone(),
            })
            .collect(),
    )
}

impl SourcePayload {
    pub fn parse(text: &str) -> Result<Self, String> {
        let p: Self = serde_json::from_str(text).map_err(|e| e.to_string())?;
        if p.v != VERSION {
            return Err(format!(
                "payload version {} (this edge reads {VERSION})",
                p.v
            ));
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
        self.anomalies.iter().map(|a| TimedAnomaly {
            at: a.at,
            expires: a.expires,
            anomaly: a.anomaly.clone(),
        })
    }
}
