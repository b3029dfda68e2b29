//! Many sources' payloads → one team [`Snapshot`]. Pure; no I/O, no clock.
//!
//! Per skill: invocations and 1 h / 24 h counts add up; completion rate =
//! completed / invocations over all sources; average duration weighted by
//! completed invocations; `last_invoked_at` is the latest. Ranking (and so
//! the top N) comes after merging. Anomalies are the union, newest first,
//! each tagged with its source. Each skill keeps its per-source breakdown.
//! History: per skill, the sources' one-minute counts add up
//! minute by minute, and the day's anomaly log is the union of theirs.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use crate::protocol::team::{SourceInfo, SourceShare, TeamExt};
use crate::protocol::{SkillStat, completed_count, parse_timestamp};
use crate::store::history::{AnomalyLog, Counts, Minutes};
use crate::store::{Snapshot, TimedAnomaly};

use super::payload::SourcePayload;

/// One source as the merge sees it.
pub struct Input<'a> {
    pub payload: &'a SourcePayload,
    pub stale: bool,
}

#[derive(Default)]
struct Sum {
    total: u64,
    completed: u64,
    duration_weighted: f64,
    duration_weight: u64,
    h1: Option<u64>,
    h24: Option<u64>,
    last: Option<String>,
    shares: Vec<SourceShare>,
}

fn later(a: Option<String>, b: Option<&String>) -> Option<String> {
    match (a, b) {
        (None, b) => b.cloned(),
        (a, None) => a,
        (Some(a), Some(b)) => {
            let newer = match (parse_timestamp(&a), parse_timestamp(b)) {
                (Some(ta), Some(tb)) => tb > ta,
                _ => b.as_str() > a.as_str(),
            };
            Some(if newer { b.clone() } else { a })
        }
    }
}

fn add(a: Option<u64>, b: Option<u64>) -> Option<u64> {
    match (a, b) {
        (None, None) => None,
        // Saturating: a payload from Redis is input, not arithmetic we trust.
        (a, b) => Some(a.unwrap_or(0).saturating_add(b.unwrap_or(0))),
    }
}

/// Merge `inputs` (any order) into one team snapshot.
pub fn merge(inputs: &[Input<'_>]) -> Snapshot {
    let mut inputs: Vec<&Input<'_>> = inputs.iter().collect();
    inputs.sort_by(|a, b| a.payload.source.cmp(&b.payload.source));
    let mut sums: BTreeMap<&str, Sum> = BTreeMap::new();
    let mut anomalies: Vec<(TimedAnomaly, &str)> = Vec::new();
    let mut minutes: HashMap<&str, Vec<(i64, Counts)>> = HashMap::new();
    let mut log: Vec<TimedAnomaly> = Vec::new();
    for input in &inputs {
        let p = input.payload;
        for (name, rows) in &p.minutes {
            minutes
                .entry(name)
                .or_default()
                .extend(rows.iter().map(super::payload::MinuteRow::counts));
        }
        log.extend(p.logged_anomalies());
        for s in &p.skills {
            let sum = sums.entry(&s.skill_name).or_default();
            let completed = completed_count(s.total_invocations, s.completion_rate);
            sum.total = sum.total.saturating_add(s.total_invocations);
            sum.completed = sum.completed.saturating_add(completed);
            if let Some(avg) = s
                .avg_duration_seconds
                .filter(|a| a.is_finite() && completed > 0)
            {
                sum.duration_weighted += avg * completed as f64;
                sum.duration_weight = sum.duration_weight.saturating_add(completed);
            }
            sum.h1 = add(sum.h1, s.invocations_1h);
            sum.h24 = add(sum.h24, s.invocations_24h);
            sum.last = later(sum.last.take(), s.last_invoked_at.as_ref());
            sum.shares.push(SourceShare {
                source: p.source.clone(),
                total_invocations: s.total_invocations,
                completion_rate: s.completion_rate,
                avg_duration_seconds: s.avg_duration_seconds,
                invocations_1h: s.invocations_1h,
                invocations_24h: s.invocations_24h,
                last_invoked_at: s.last_invoked_at.clone(),
            });
        }
        anomalies.extend(p.timed_anomalies().map(|a| (a, p.source.as_str())));
    }
    let mut breakdown = HashMap::with_capacity(sums.len());
    let mut skills: Vec<SkillStat> = sums
        .into_iter()
        .map(|(name, sum)| {
            breakdown.insert(name.to_owned(), sum.shares);
            SkillStat {
                skill_name: name.to_owned(),
                total_invocations: sum.total,
                completion_rate: if sum.total == 0 {
                    0.0
                } else {
                    sum.completed as f64 * 100.0 / sum.total as f64
                },
                avg_duration_seconds: (sum.duration_weight > 0)
                    .then(|| sum.duration_weighted / sum.duration_weight as f64),
                invocations_1h: sum.h1,
                invocations_24h: sum.h24,
                last_invoked_at: sum.last,
            }
        })
        .collect();
    skills.sort_by(|a, b| {
        b.total_invocations
            .cmp(&a.total_invocations)
            .then_with(|| a.skill_name.cmp(&b.skill_name))
    });
    // Newest first (the protocol's order); a stable sort keeps source order
    // among equals.
    let strength = |a: &TimedAnomaly| a.anomaly.deviation_score.map_or(0.0, f64::abs);
    anomalies.sort_by(|(a, _), (b, _)| {
        b.at.total_cmp(&a.at)
            .then(strength(b).total_cmp(&strength(a)))
    });
    let mut anomaly_sources: HashMap<(String, String, String), Vec<String>> = HashMap::new();
    for (a, source) in &anomalies {
        anomaly_sources
            .entry((
                a.anomaly.skill_name.clone(),
                a.anomaly.detected_at.clone(),
                a.anomaly.anomaly_type.clone(),
            ))
            .or_default()
            .push((*source).to_owned());
    }
    let sources = inputs
        .iter()
        .map(|i| SourceInfo {
            source: i.payload.source.clone(),
            updated_at: chrono::DateTime::from_timestamp_millis(i.payload.updated_at_ms)
                .map(crate::protocol::format_timestamp)
                .unwrap_or_default(),
            stale: i.stale,
        })
        .collect();
    let minutes = minutes
        .into_iter()
        .map(|(name, rows)| {
            (
                name.to_owned(),
                Arc::new(rows.into_iter().collect::<Minutes>()),
            )
        })
        .collect();
    Snapshot::new(skills, anomalies.into_iter().map(|(a, _)| a).collect())
        .with_team(TeamExt {
            sources,
            breakdown,
            anomaly_sources,
        })
        .with_minutes(minutes)
        .with_anomaly_log(Arc::new(log.into_iter().collect::<AnomalyLog>()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{Anomaly, EncodedUpdate, Subscription};

    fn stat(name: &str, total: u64, rate: f64, avg: Option<f64>, last: &str) -> SkillStat {
        SkillStat {
            skill_name: name.into(),
            total_invocations: total,
            completion_rate: rate,
            avg_duration_seconds: avg,
            invocations_1h: Some(1),
            invocations_24h: Some(total),
            last_invoked_at: Some(last.into()),
        }
    }

    fn payload(source: &str, skills: Vec<SkillStat>, anomaly_at: f64) -> SourcePayload {
        SourcePayload {
            v: 1,
            source: source.into(),
            instance: 1,
            seq: 1,
            updated_at_ms: 1_700_000_000_000,
            interval_ms: 10_000,
            skills,
            anomalies: vec![super::super::payload::PayloadAnomaly {
                at: anomaly_at,
                expires: anomaly_at + 3600.0,
                anomaly: Anomaly {
                    skill_name: "a".into(),
                    detected_at: "2026-01-01 00:00:00".into(),
                    anomaly_type: "drop".into(),
                    deviation_score: Some(-3.0),
                    baseline_value: None,
                    observed_value: None,
                    source: Some("table".into()),
                },
            }],
            minutes: BTreeMap::new(),
            anomaly_log: vec![],
        }
    }

    #[test]
    fn figures_add_up_and_rank_after_merging() {
        let now = chrono::Utc::now().timestamp() as f64;
        let x = payload(
            "x",
            vec![
                stat("a", 10, 50.0, Some(2.0), "2026-01-01T10:00:00Z"),
                stat("b", 30, 100.0, Some(1.0), "2026-01-01T09:00:00Z"),
            ],
            now,
        );
        let y = payload(
            "y",
            vec![stat("a", 30, 100.0, Some(4.0), "2026-01-01 11:00:00")],
            now,
        );
        let snap = merge(&[
            Input {
                payload: &y,
                stale: true,
            },
            Input {
                payload: &x,
                stale: false,
            },
        ]);
        let a = &snap.skills[0];
        assert_eq!(a.skill_name, "a", "40 beats 30 only after merging");
        assert_eq!(a.total_invocations, 40);
        assert_eq!(a.completion_rate, 35.0 * 100.0 / 40.0);
        // (2.0 × 5 + 4.0 × 30) / 35
        assert!((a.avg_duration_seconds.unwrap() - 130.0 / 35.0).abs() < 1e-12);
        assert_eq!(a.invocations_1h, Some(2));
        assert_eq!(a.last_invoked_at.as_deref(), Some("2026-01-01 11:00:00"));
        let team = snap.team().unwrap();
        assert_eq!(team.counts(), (2, 1));
        assert_eq!(team.sources[0].source, "x");
        assert_eq!(team.breakdown["a"].len(), 2);
        assert_eq!(team.breakdown["b"][0].source, "x");
        assert_eq!(snap.anomalies.len(), 2, "the union, identical rows kept");

        let data = snap.view(&Subscription::All, 10, chrono::Utc::now());
        let frame = EncodedUpdate::from_parts_team("t", &data, snap.team());
        let v: serde_json::Value = serde_json::from_str(frame.without_seq()).unwrap();
        let tags: Vec<&str> = v["data"]["anomalies"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["team_source"].as_str().unwrap())
            .collect();
        assert_eq!(tags, ["x", "y"]);
        assert_eq!(v["data"]["anomalies"][0]["source"], "table");
        assert_eq!(v["sources"][1]["stale"], true);
        assert_eq!(v["data"]["top_skills"][0]["sources"][1]["source"], "y");
        assert_eq!(
            v["data"]["top_skills"][0]["sources"][1]["total_invocations"],
            30
        );
    }

    #[test]
    fn absurd_counts_from_a_source_saturate_instead_of_overflowing() {
        let now = chrono::Utc::now().timestamp() as f64;
        let big = u64::MAX / 2 + 1;
        let mut s = stat("a", big, 100.0, Some(1.0), "2026-01-01T10:00:00Z");
        s.invocations_1h = Some(big);
        let x = payload("x", vec![s.clone()], now);
        let y = payload("y", vec![s], now);
        let snap = merge(&[
            Input {
                payload: &x,
                stale: false,
            },
            Input {
                payload: &y,
                stale: false,
            },
        ]);
        let a = &snap.skills[0];
        assert_eq!(a.total_invocations, u64::MAX);
        assert_eq!(a.invocations_1h, Some(u64::MAX));
        assert_eq!(a.invocations_24h, Some(u64::MAX));
        assert!(a.completion_rate.is_finite() && a.completion_rate <= 100.0);
    }

    #[test]
    fn minutes_add_up_per_skill_and_the_anomaly_logs_unite() {
        use super::super::payload::MinuteRow;
        use crate::protocol::HistoryWindow;
        let now = chrono::Utc::now().timestamp() as f64;
        let m = (now / 60.0).floor() as i64;
        let mut x = payload("x", vec![stat("a", 3, 100.0, Some(1.0), "x")], now);
        x.minutes.insert(
            "a".into(),
            vec![MinuteRow(m - 2, 1, 1, 1, 2.0), MinuteRow(m, 2, 1, 1, 4.0)],
        );
        x.anomaly_log = x.anomalies.clone();
        let mut y = payload("y", vec![stat("a", 4, 50.0, Some(1.0), "x")], now - 60.0);
        y.anomalies[0].anomaly.detected_at = "2026-01-01 00:01:00".into();
        y.minutes.insert(
            "a".into(),
            // Same minute as x's last; a duration sum that is not a number
            // of seconds drops the durations, not the counts.
            vec![MinuteRow(m, 3, 9, 3, 6.0), MinuteRow(m - 1, 1, 0, 0, -1.0)],
        );
        y.minutes
            .insert("b".into(), vec![MinuteRow(m, u32::MAX, 0, 0, 0.0)]);
        let mut z = payload("z", vec![], now);
        z.minutes
            .insert("b".into(), vec![MinuteRow(m, 5, 0, 0, 0.0)]);
        y.anomaly_log = y.anomalies.clone();
        let snap = merge(&[
            Input {
                payload: &x,
                stale: false,
            },
            Input {
                payload: &y,
                stale: true,
            },
            Input {
                payload: &z,
                stale: false,
            },
        ]);
        let a: Vec<(i64, Counts)> = snap.minutes("a").unwrap().iter().copied().collect();
        assert_eq!(a.len(), 3);
        assert_eq!((a[0].0, a[0].1.invocations), (m - 2, 1));
        assert_eq!((a[1].0, a[1].1.invocations, a[1].1.timed), (m - 1, 1, 0));
        let last = a[2].1;
        assert_eq!(a[2].0, m);
        assert_eq!(
            (last.invocations, last.completed, last.timed),
            (5, 4, 4),
            "completed capped at invocations"
        );
        assert!((last.duration_sum - 10.0).abs() < 1e-12);
        let hour = snap.minutes("a").unwrap().buckets(HistoryWindow::Hour, now);
        assert_eq!(hour.iter().map(|c| c.invocations).sum::<u32>(), 7);
        assert_eq!(hour[59].avg_duration(), Some(2.5));
        let b = snap.minutes("b").unwrap().iter().next().unwrap().1;
        assert_eq!(b.invocations, u32::MAX, "saturates");
        let logged: Vec<&str> = snap
            .anomaly_log()
            .of("a")
            .iter()
            .map(|a| a.anomaly.detected_at.as_str())
            .collect();
        assert_eq!(
            logged,
            ["2026-01-01 00:01:00", "2026-01-01 00:00:00"],
            "both logs, oldest first (y's is older)"
        );
        let history = crate::store::history::build(&snap, &["a".into()], HistoryWindow::Day, now);
        assert_eq!(history.skills[0].anomalies.len(), 2, "one row per anomaly");
    }

    #[test]
    fn a_single_server_frame_has_no_team_fields() {
        let snap = Snapshot::new(vec![stat("a", 1, 0.0, None, "x")], vec![]);
        let data = snap.view(&Subscription::All, 10, chrono::Utc::now());
        let frame = EncodedUpdate::from_parts_team("t", &data, snap.team());
        assert!(!frame.without_seq().contains("sources"));
        assert!(!frame.without_seq().contains("team_source"));
    }
}
