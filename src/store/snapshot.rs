//! A point-in-time picture of the skills database, and the per-subscription
//! view of it that goes on the wire. Plain data; no I/O.

use std::collections::HashMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};

use super::history::{AnomalyLog, Minutes};
use crate::protocol::{Anomaly, MetricsData, SkillStat, Subscription};

/// Anomalies older than this are not served.
pub(super) const ANOMALY_WINDOW_SECS: f64 = 3600.0;

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

/// Merge the table's rows with the live findings, newest first (the
/// protocol's order; equal times: strongest first). A live finding and a
/// table row of the same (skill, type) are one anomaly: the stronger is
/// kept. Table rows are never merged with each other: they are served as
/// the table holds them, as session-buddy does.
pub fn merge_anomalies(table: Vec<TimedAnomaly>, live: Vec<TimedAnomaly>) -> Vec<TimedAnomaly> {
    let key = |a: &TimedAnomaly| (a.anomaly.skill_name.clone(), a.anomaly.anomaly_type.clone());
    // The strongest table row per (skill, type), to weigh live findings against.
    let mut table_best: std::collections::HashMap<_, f64> = std::collections::HashMap::new();
    for a in &table {
        let e = table_best.entry(key(a)).or_insert(0.0);
        *e = e.max(a.strength());
    }
    let mut drop_table = std::collections::HashSet::new();
    let mut all = Vec::with_capacity(table.len() + live.len());
    for l in live {
        match table_best.get(&key(&l)) {
            Some(&t) if t >= l.strength() => {} // the table says it as strongly
            Some(_) => {
                drop_table.insert(key(&l));
                all.push(l);
            }
            None => all.push(l),
        }
    }
    all.extend(table.into_iter().filter(|a| !drop_table.contains(&key(a))));
    all.sort_by(|a, b| {
        b.at.total_cmp(&a.at)
            .then(b.strength().total_cmp(&a.strength()))
    });
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
    /// Skill name → index in `skills`, so a filtered view costs a lookup
    /// per subscribed name, not a scan of every skill.
    rank: HashMap<String, usize>,
    /// Skill name → indexes in `anomalies`, in order.
    anomalies_of: HashMap<String, Vec<usize>>,
    /// Skill name → its last day in one-minute buckets (for `history`).
    minutes: HashMap<String, Arc<Minutes>>,
    /// Anomalies served in the last day, cleared ones included (for `history`).
    anomaly_log: Arc<AnomalyLog>,
    /// (ext) At an edge (`crate::team`): the sources merged into this
    /// snapshot and each skill's per-source figures.
    team: Option<std::sync::Arc<crate::protocol::team::TeamExt>>,
}

impl Snapshot {
    pub fn empty() -> Self {
        Self::default()
    }

    pub fn new(skills: Vec<SkillStat>, anomalies: Vec<TimedAnomaly>) -> Self {
        let rank = skills
            .iter()
            .enumerate()
            .map(|(i, s)| (s.skill_name.clone(), i))
            .collect();
        let mut anomalies_of: HashMap<String, Vec<usize>> = HashMap::new();
        for (i, a) in anomalies.iter().enumerate() {
            anomalies_of
                .entry(a.anomaly.skill_name.clone())
                .or_default()
                .push(i);
        }
        Self {
            skills,
            anomalies,
            rank,
            anomalies_of,
            team: None,
            minutes: HashMap::new(),
            anomaly_log: Arc::default(),
        }
    }

    /// The same snapshot carrying an edge's team fields.
    pub fn with_team(mut self, team: crate::protocol::team::TeamExt) -> Self {
        self.team = Some(std::sync::Arc::new(team));
        self
    }

    /// The team fields, at an edge.
    pub fn team(&self) -> Option<&crate::protocol::team::TeamExt> {
        self.team.as_deref()
    }

    /// The same snapshot carrying the store's log of the day's anomalies.
    pub fn with_anomaly_log(mut self, log: Arc<AnomalyLog>) -> Self {
        self.anomaly_log = log;
        self
    }

    /// Anomalies served in the last day, including cleared ones.
    pub fn anomaly_log(&self) -> &AnomalyLog {
        &self.anomaly_log
    }

    /// The same snapshot carrying every skill's one-minute buckets.
    pub fn with_minutes(mut self, minutes: HashMap<String, Arc<Minutes>>) -> Self {
        self.minutes = minutes;
        self
    }

    /// One skill's buckets of the last day, if it has invocations in it.
    pub fn minutes(&self, skill: &str) -> Option<&Minutes> {
        self.minutes.get(skill).map(Arc::as_ref)
    }

    /// One skill's anomalies, newest first (expired ones included).
    pub fn anomalies_of(&self, skill: &str) -> impl Iterator<Item = &TimedAnomaly> {
        self.anomalies_of
            .get(skill)
            .into_iter()
            .flatten()
            .map(|&i| &self.anomalies[i])
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
            Subscription::Skills(names) => {
                // Rows in rank order, each found by name.
                let mut rows: Vec<usize> = names
                    .iter()
                    .filter_map(|n| self.rank.get(n))
                    .copied()
                    .collect();
                rows.sort_unstable();
                let mut found: Vec<usize> = names
                    .iter()
                    .filter_map(|n| self.anomalies_of.get(n))
                    .flatten()
                    .copied()
                    .filter(|&i| self.anomalies[i].expires >= now)
                    .collect();
                found.sort_unstable();
                MetricsData {
                    top_skills: rows.into_iter().map(|i| self.skills[i].clone()).collect(),
                    anomalies: found
                        .into_iter()
                        .take(top_n)
                        .map(|i| self.anomalies[i].anomaly.clone())
                        .collect(),
                }
            }
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
    fn merge_orders_newest_first_and_folds_live_into_table() {
        let score = |mut a: TimedAnomaly, z: Option<f64>, source: &str| {
            a.anomaly.deviation_score = z;
            a.anomaly.source = Some(source.into());
            a
        };
        // Table rows are kept as they are, duplicates included.
        let t1 = score(anomaly("x", 10.0), Some(-5.0), "table");
        let t2 = score(anomaly("y", 30.0), Some(-2.1), "table");
        let t3 = score(anomaly("y", 20.0), Some(-2.0), "table");
        // A stronger live finding replaces the table's rows of its kind; a
        // weaker one is dropped in favour of the table's.
        let l1 = score(anomaly("x", 40.0), Some(-6.0), "live");
        let l2 = score(anomaly("y", 50.0), Some(-1.0), "live");
        let l3 = score(anomaly("z", 5.0), None, "live");
        let merged = merge_anomalies(
            vec![t1, t2.clone(), t3.clone()],
            vec![l1.clone(), l2, l3.clone()],
        );
        assert_eq!(merged, vec![l1, t2, t3, l3], "newest first");
        // Newest first even when the older row is the stronger one.
        let old_strong = score(anomaly("p", 10.0), Some(-9.0), "table");
        let new_weak = score(anomaly("q", 20.0), Some(-2.0), "table");
        assert_eq!(
            merge_anomalies(vec![old_strong.clone(), new_weak.clone()], vec![]),
            vec![new_weak, old_strong]
        );
    }
}
