//! (ext) The team view's wire fields, served by an edge (`serve --from`):
//! each frame's `sources` list, each skill row's per-source breakdown
//! (`top_skills[].sources`) and each anomaly's `team_source`. A server that
//! reads one database never writes them, so its frames are unchanged.
//!
//! Owns these types, their encoding next to [`super::EncodedUpdate`]'s and
//! their tolerant parsing on the client side ([`TeamFrame`], read from the
//! slices of the one `metrics_update` parse, [`super::ServerMessage::parse`]:
//! `MetricsUpdate::team`). No I/O.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

/// One source of the team, as the frame's `sources` list shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SourceInfo {
    /// The publisher's `--source` name.
    #[serde(default)]
    pub source: String,
    /// The publisher's own time of its latest snapshot (RFC 3339).
    #[serde(default)]
    pub updated_at: String,
    /// No snapshot for 3 of the publisher's intervals; its figures still count
    /// until the edge's `--source-ttl`.
    #[serde(default)]
    pub stale: bool,
}

/// One source's share of one skill (`top_skills[].sources[]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SourceShare {
    #[serde(default)]
    pub source: String,
    #[serde(default)]
    pub total_invocations: u64,
    #[serde(default)]
    pub completion_rate: f64,
    #[serde(default)]
    pub avg_duration_seconds: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub invocations_1h: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub invocations_24h: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_invoked_at: Option<String>,
}

/// What an edge adds to a merged snapshot, consulted when a frame is
/// encoded (once per group and tick, never per client).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TeamExt {
    /// Every source held, by name.
    pub sources: Vec<SourceInfo>,
    /// Skill name → its per-source breakdown, by source name.
    pub breakdown: HashMap<String, Vec<SourceShare>>,
    /// (skill, detected_at, anomaly_type) → the sources of anomalies with
    /// that key, in the snapshot's anomaly order: the n-th such anomaly of
    /// a view came from the n-th source (identical rows from two sources
    /// are told apart by their order).
    pub anomaly_sources: HashMap<(String, String, String), Vec<String>>,
}

impl TeamExt {
    /// Number of sources and of stale ones.
    pub fn counts(&self) -> (usize, usize) {
        (
            self.sources.len(),
            self.sources.iter().filter(|s| s.stale).count(),
        )
    }
}

/// Hands out each anomaly's `team_source` while a view is encoded.
pub(crate) struct AnomalyTagger<'a> {
    ext: &'a TeamExt,
    used: HashMap<(&'a str, &'a str, &'a str), usize>,
}

impl<'a> AnomalyTagger<'a> {
    pub(crate) fn new(ext: &'a TeamExt) -> Self {
        Self {
            ext,
            used: HashMap::new(),
        }
    }

    pub(crate) fn tag(&mut self, a: &'a super::Anomaly) -> Option<&'a str> {
        let key = (
            a.skill_name.clone(),
            a.detected_at.clone(),
            a.anomaly_type.clone(),
        );
        let list = self.ext.anomaly_sources.get(&key)?;
        let n = self
            .used
            .entry((&a.skill_name, &a.detected_at, &a.anomaly_type))
            .or_insert(0);
        let out = list.get(*n).or(list.last()).map(String::as_str);
        *n += 1;
        out
    }
}

/// The team fields of a received `metrics_update`, parsed with it into
/// [`super::MetricsUpdate::team`] (tolerant: anything missing is empty).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct TeamFrame {
    /// `None` when the server is not an edge.
    #[serde(default)]
    pub sources: Option<Vec<SourceInfo>>,
    #[serde(default)]
    data: TeamData,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
struct TeamData {
    #[serde(default)]
    top_skills: Vec<TeamSkillRow>,
    #[serde(default)]
    anomalies: Vec<TeamAnomalyRow>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
struct TeamSkillRow {
    #[serde(default)]
    skill_name: String,
    #[serde(default)]
    sources: Option<Vec<SourceShare>>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
struct TeamAnomalyRow {
    #[serde(default)]
    skill_name: String,
    #[serde(default)]
    detected_at: String,
    #[serde(default)]
    anomaly_type: String,
    #[serde(default)]
    team_source: Option<String>,
}

impl TeamFrame {
    /// The team fields of a `metrics_update` from an edge, read by
    /// [`super::ServerMessage::parse`] from the frame's own slices: its
    /// `sources` list and its `data.top_skills` / `data.anomalies` arrays
    /// (absent or `null`: empty). Row by row, as the rest of the frame:
    /// a bad row (a wrong type, a `null` where a value belongs)
    /// is dropped, not the team view of the whole frame.
    pub(super) fn from_rows(
        sources: &RawValue,
        top_skills: Option<&RawValue>,
        anomalies: Option<&RawValue>,
    ) -> Self {
        // What was dropped is reported by the main parse of the same rows.
        let mut report = super::RowReport::default();
        let sources = super::parse_rows(
            Some(sources),
            super::MAX_TOP_SKILLS,
            "sources",
            |s: &SourceInfo| &s.source,
            &mut report,
        );
        let top_skills = super::parse_rows(
            top_skills,
            super::MAX_TOP_SKILLS,
            "top_skills",
            |s: &TeamSkillRow| &s.skill_name,
            &mut report,
        );
        let anomalies = super::parse_rows(
            anomalies,
            super::MAX_ANOMALIES,
            "anomalies",
            |a: &TeamAnomalyRow| &a.skill_name,
            &mut report,
        );
        Self {
            sources: Some(sources),
            data: TeamData {
                top_skills,
                anomalies,
            },
        }
    }

    /// Skill name → its per-source breakdown.
    pub fn breakdown(&self) -> HashMap<String, Vec<SourceShare>> {
        self.data
            .top_skills
            .iter()
            .filter_map(|s| Some((s.skill_name.clone(), s.sources.clone()?)))
            .collect()
    }

    /// Each anomaly's `team_source`, in the frame's order.
    pub fn anomaly_sources(&self) -> Vec<Option<String>> {
        self.data
            .anomalies
            .iter()
            .map(|a| a.team_source.clone())
            .collect()
    }

    /// The `team_source` of the frame's `nth` anomaly (from 0) with `a`'s
    /// skill, detection time and type (the last one when there are fewer):
    /// identical rows from two sources are told apart by their order, as
    /// the edge tags them.
    pub fn source_of(&self, a: &super::Anomaly, nth: usize) -> Option<&str> {
        let same = self.data.anomalies.iter().filter(|r| {
            r.skill_name == a.skill_name
                && r.detected_at == a.detected_at
                && r.anomaly_type == a.anomaly_type
        });
        let mut found = None;
        for (i, r) in same.enumerate() {
            found = Some(r);
            if i == nth {
                break;
            }
        }
        found?.team_source.as_deref()
    }

    /// One skill's per-source breakdown.
    pub fn skill_sources(&self, name: &str) -> Option<&[SourceShare]> {
        self.data
            .top_skills
            .iter()
            .find(|s| s.skill_name == name)?
            .sources
            .as_deref()
    }

    /// Number of sources and of stale ones.
    pub fn counts(&self) -> (usize, usize) {
        let list = self.sources.as_deref().unwrap_or_default();
        (list.len(), list.iter().filter(|s| s.stale).count())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The team fields as the client's one parse of the frame reads them.
    fn parse(text: &str) -> Option<TeamFrame> {
        match super::super::ServerMessage::parse(text) {
            Ok(super::super::ServerMessage::MetricsUpdate(u)) => u.team.map(|t| *t),
            other => panic!("not an update: {other:?}"),
        }
    }

    #[test]
    fn frame_without_sources_is_not_a_team_frame() {
        assert_eq!(
            parse(r#"{"type":"metrics_update","data":{"top_skills":[]}}"#),
            None
        );
        let t = parse(
            r#"{"type":"metrics_update","data":{"top_skills":[{"skill_name":"a","sources":[{"source":"x","total_invocations":3,"completion_rate":50.0,"avg_duration_seconds":null}]}],"anomalies":[{"skill_name":"a","team_source":"x"},{}]},"sources":[{"source":"x","updated_at":"2026-01-01T00:00:00Z","stale":true}]}"#,
        )
        .unwrap();
        assert!(t.sources.as_ref().unwrap()[0].stale);
        assert_eq!(t.breakdown()["a"][0].total_invocations, 3);
        assert_eq!(t.anomaly_sources(), vec![Some("x".to_string()), None]);
    }

    #[test]
    fn a_repeated_sources_costs_the_team_view_not_the_frame() {
        let text = r#"{"type":"metrics_update","sources":[],"data":{"top_skills":[{"skill_name":"a","total_invocations":1,"completion_rate":100.0}]},"sources":[{"source":"x"}]}"#;
        let Ok(super::super::ServerMessage::MetricsUpdate(u)) =
            super::super::ServerMessage::parse(text)
        else {
            panic!("the update must survive a repeated `sources`");
        };
        assert_eq!(u.data.top_skills.len(), 1);
        assert_eq!(u.team, None);
        // A repeated field of the update itself still fails the frame.
        assert!(
            super::super::ServerMessage::parse(r#"{"type":"metrics_update","seq":1,"seq":2}"#)
                .is_err()
        );
    }

    #[test]
    fn a_bad_row_drops_that_row_not_the_team_view() {
        let t = parse(
            r#"{"type":"metrics_update","data":{"top_skills":[{"skill_name":5},{"skill_name":"a","sources":[{"source":"x","total_invocations":3,"completion_rate":50.0}]}],"anomalies":[{"skill_name":"a","team_source":7},{"skill_name":"a","team_source":"x"}]},"sources":[{"source":"x","stale":true},{"source":"y","stale":null}]}"#,
        )
        .expect("the good rows still make a team view");
        assert_eq!(t.counts(), (1, 1), "the bad source row only is dropped");
        assert_eq!(t.breakdown()["a"][0].source, "x");
        assert_eq!(t.anomaly_sources(), vec![Some("x".to_string())]);
        assert_eq!(
            parse(r#"{"type":"metrics_update","data":null,"sources":[]}"#).map(|t| t.counts()),
            Some((0, 0))
        );
    }
}
