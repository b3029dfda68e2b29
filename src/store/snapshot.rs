//! A point-in-time picture of the skills database, and the per-subscription
//! view of it that goes on the wire. Plain data; no I/O.

use chrono::{DateTime, Utc};

use crate::protocol::{Anomaly, MetricsData, SkillStat, Subscription};

/// Anomalies older than this are not served.
pub const ANOMALY_WINDOW_SECS: f64 = 3600.0;

/// An anomaly with its detection time as Unix seconds, for ordering and
/// windowing.
#[derive(Debug, Clone, PartialEq)]
pub struct TimedAnomaly {
    pub at: f64,
    /// Served while `now <= expires` (a table row for an hour after
    /// detection; a live finding until the data no longer shows it).
    pub expires: f64,
    pub anomaly: Anomaly,
}

impl TimedAnomaly {
    /// A row read from `skill_anomalies`, served for an hour.
    pub fn from_table(at: f64, anomaly: Anomaly) -> Self {
        Self {
            at,
            expires: at + ANOMALY_WINDOW_SECS,
            anomaly,
        }
    }

    fn strength(&self) -> f64 {
        self.anomaly.deviation_score.map_or(0.0, f64::abs)
    }
}

/// Merge anomalies from several sources: one per (skill, type), the
/// strongest kept; ordered strongest first, then newest first.
pub fn merge_anomalies(mut all: Vec<TimedAnomaly>) -> Vec<TimedAnomaly> {
    all.sort_by(|a, b| {
        b.strength()
            .total_cmp(&a.strength())
            .then(b.at.total_cmp(&a.at))
    });
    let mut seen = std::collections::HashSet::new();
    all.retain(|a| seen.insert((a.anomaly.skill_name.clone(), a.anomaly.anomaly_type.clone())));
    all
}

/// Everything the database said at one moment.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Snapshot {
    /// Every skill with at least one invocation, ranked by
    /// `total_invocations` descending, then name.
    pub skills: Vec<SkillStat>,
    /// Unresolved anomalies of the last hour (as of the read), newest first.
    pub anomalies: Vec<TimedAnomaly>,
}

impl Snapshot {
    pub fn empty() -> Self {
        Self::default()
    }

    pub fn new(skills: Vec<SkillStat>, anomalies: Vec<TimedAnomaly>) -> Self {
        Self { skills, anomalies }
    }

    pub fn is_empty(&self) -> bool {
        self.skills.is_empty() && self.anomalies.is_empty()
    }

    /// What a client with `sub` receives now: at most `top_n` skills and
    /// `top_n` anomalies. A filtered subscription gets its skills' rows even
    /// outside the top N and its skills' anomalies.
    pub fn view(&self, sub: &Subscription, top_n: usize, now: DateTime<Utc>) -> MetricsData {
        let now = now.timestamp_millis() as f64 / 1000.0;
        let recent = self.anomalies.iter().filter(|a| a.expires >= now);
        match sub {
            Subscription::All => MetricsData {
                top_skills: self.skills.iter().take(top_n).cloned().collect(),
                anomalies: recent.take(top_n).map(|a| a.anomaly.clone()).collect(),
            },
            Subscription::Skills(_) => MetricsData {
                top_skills: self
                    .skills
                    .iter()
                    .filter(|s| sub.includes(&s.skill_name))
                    .take(top_n.max(sub.skills().len()))
                    .cloned()
                    .collect(),
                anomalies: recent
                    .filter(|a| sub.includes(&a.anomaly.skill_name))
                    .take(top_n)
                    .map(|a| a.anomaly.clone())
                    .collect(),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn skill(name: &str, n: u64) -> SkillStat {
        SkillStat {
            skill_name: name.into(),
            total_invocations: n,
            completion_rate: 50.0,
            avg_duration_seconds: None,
            invocations_1h: None,
            invocations_24h: None,
            last_invoked_at: None,
        }
    }

    fn anomaly(name: &str, at: f64) -> TimedAnomaly {
        TimedAnomaly::from_table(
            at,
            Anomaly {
                skill_name: name.into(),
                detected_at: at.to_string(),
                anomaly_type: "drop".into(),
                deviation_score: Some(-2.5),
                baseline_value: None,
                observed_value: None,
                source: Some("table".into()),
            },
        )
    }

    #[test]
    fn views_cut_and_filter() {
        let now = Utc::now();
        let t = now.timestamp() as f64;
        let snap = Snapshot::new(
            (0..20)
                .map(|i| skill(&format!("s{i:02}"), 100 - i))
                .collect(),
            vec![
                anomaly("s19", t - 10.0),
                anomaly("s00", t - 20.0),
                anomaly("s00", t - 4000.0),
            ],
        );
        let all = snap.view(&Subscription::All, 10, now);
        assert_eq!(all.top_skills.len(), 10);
        assert_eq!(all.top_skills[0].skill_name, "s00");
        assert_eq!(
            all.anomalies.len(),
            2,
            "the 4000 s old one is out of the window"
        );

        let one = snap.view(&Subscription::from_names(["s19"]), 10, now);
        assert_eq!(
            one.top_skills.len(),
            1,
            "outside the top 10 but still served"
        );
        assert_eq!(one.top_skills[0].skill_name, "s19");
        assert_eq!(one.anomalies.len(), 1);

        let two = snap.view(&Subscription::from_names(["s00", "nope"]), 10, now);
        assert_eq!(two.top_skills.len(), 1);
        assert_eq!(two.anomalies.len(), 1);

        let none = snap.view(&Subscription::from_names(["nope"]), 10, now);
        assert!(none.top_skills.is_empty() && none.anomalies.is_empty());
    }

    #[test]
    fn merge_keeps_the_strongest_per_skill_and_type() {
        let mut a = anomaly("x", 10.0);
        a.anomaly.deviation_score = Some(-2.1);
        let mut b = anomaly("x", 20.0);
        b.anomaly.deviation_score = Some(-3.5);
        b.anomaly.source = Some("live".into());
        let mut c = anomaly("y", 30.0);
        c.anomaly.deviation_score = None;
        let mut d = anomaly("z", 40.0);
        d.anomaly.deviation_score = Some(2.1);
        let merged = merge_anomalies(vec![a, b.clone(), c, d]);
        let names: Vec<_> = merged
            .iter()
            .map(|m| m.anomaly.skill_name.as_str())
            .collect();
        assert_eq!(
            names,
            ["x", "z", "y"],
            "strongest first, equal strength newest first"
        );
        assert_eq!(merged[0], b);
    }
}
