//! The data reducer: each `metrics_update` becomes table rows (rank and
//! change since the previous update) plus a bounded per-skill history for
//! the sparklines and the detail charts. Pure; owns no connection state.

use std::collections::{HashMap, VecDeque};

use chrono::{DateTime, Utc};

use crate::protocol::{Anomaly, SkillStat};

/// Points of per-skill history kept for sparklines and charts.
pub const HISTORY_LEN: usize = 240;

/// One row of the top-skills table.
#[derive(Debug, Clone, PartialEq)]
pub struct SkillRow {
    /// 1-based position in the server's list.
    pub rank: usize,
    pub stat: SkillStat,
    /// Change of `total_invocations` since the previous update.
    pub delta: Option<i64>,
}

/// One sample of a skill's history.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub at: DateTime<Utc>,
    pub total: u64,
    pub completion: f64,
    pub duration: Option<f64>,
}

/// The data the screen shows; cloned aside when frozen.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DataView {
    pub rows: Vec<SkillRow>,
    pub anomalies: Vec<Anomaly>,
    pub updated_at: Option<DateTime<Utc>>,
    pub updates: u64,
    pub history: HashMap<String, VecDeque<Sample>>,
}

/// Fold one update into `view`: new rows, deltas, history, counters.
pub(super) fn apply_update(
    view: &mut DataView,
    skills: Vec<SkillStat>,
    anomalies: Vec<Anomaly>,
    at: DateTime<Utc>,
) {
    let prev: HashMap<&str, u64> = view
        .rows
        .iter()
        .map(|r| (r.stat.skill_name.as_str(), r.stat.total_invocations))
        .collect();
    let rows: Vec<SkillRow> = skills
        .into_iter()
        .enumerate()
        .map(|(i, stat)| {
            let delta = prev.get(stat.skill_name.as_str()).map(|p| {
                let d = i128::from(stat.total_invocations) - i128::from(*p);
                d.clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64
            });
            SkillRow {
                rank: i + 1,
                stat,
                delta,
            }
        })
        .collect();
    for r in &rows {
        let h = view.history.entry(r.stat.skill_name.clone()).or_default();
        h.push_back(Sample {
            at,
            total: r.stat.total_invocations,
            completion: r.stat.completion_rate,
            duration: r.stat.avg_duration_seconds,
        });
        while h.len() > HISTORY_LEN {
            h.pop_front();
        }
    }
    // Forget skills gone for a long time so memory stays bounded.
    if view.history.len() > 1000 {
        let keep: std::collections::HashSet<&str> =
            rows.iter().map(|r| r.stat.skill_name.as_str()).collect();
        view.history.retain(|k, _| keep.contains(k.as_str()));
    }
    view.rows = rows;
    view.anomalies = anomalies;
    view.updated_at = Some(at);
    view.updates += 1;
}
