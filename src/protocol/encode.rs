//! The server's side of `metrics_update`: the wire shapes (implemented,
//! ext and documented-API names side by side) and [`EncodedUpdate`], a frame
//! serialized once per group with each session's `seq` spliced in.

#[allow(clippy::wildcard_imports)]
use super::*;

/// The `data` of a `metrics_update` as the server writes it.
#[derive(Serialize)]
pub(super) struct WireData<'a> {
    top_skills: Vec<WireSkill<'a>>,
    anomalies: Vec<WireAnomaly<'a>>,
}

impl<'a> WireData<'a> {
    pub(super) fn new(data: &'a MetricsData, team: Option<&'a team::TeamExt>) -> Self {
        let mut top_skills: Vec<WireSkill<'a>> =
            data.top_skills.iter().map(WireSkill::new).collect();
        let mut anomalies: Vec<WireAnomaly<'a>> =
            data.anomalies.iter().map(WireAnomaly::new).collect();
        if let Some(ext) = team {
            for row in &mut top_skills {
                row.sources = ext.breakdown.get(row.skill_name).map(Vec::as_slice);
            }
            let mut tagger = team::AnomalyTagger::new(ext);
            for (row, a) in anomalies.iter_mut().zip(&data.anomalies) {
                row.team_source = tagger.tag(a);
            }
        }
        Self {
            top_skills,
            anomalies,
        }
    }
}

/// One `top_skills` row on the wire: the implemented (compat) fields, the
/// ext ones when known, then the documented API's names for the same facts
/// (always present, `null` when unknown).
#[derive(Serialize)]
pub(super) struct WireSkill<'a> {
    skill_name: &'a str,
    total_invocations: u64,
    completion_rate: f64,
    avg_duration_seconds: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    invocations_1h: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    invocations_24h: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    last_invoked_at: Option<&'a str>,
    /// = `total_invocations`.
    invocation_count: u64,
    /// Completed invocations: `total_invocations × completion_rate / 100`,
    /// rounded (exact, since the rate is computed from these counts).
    completed_count: u64,
    /// = `avg_duration_seconds`.
    avg_duration: Option<f64>,
    /// = `last_invoked_at`, `null` when unknown.
    last_invocation_at: Option<&'a str>,
    /// (ext, edge only) this skill's figures per source.
    #[serde(skip_serializing_if = "Option::is_none")]
    sources: Option<&'a [team::SourceShare]>,
}

impl<'a> WireSkill<'a> {
    pub(super) fn new(s: &'a SkillStat) -> Self {
        let last = s.last_invoked_at.as_deref();
        Self {
            skill_name: &s.skill_name,
            total_invocations: s.total_invocations,
            completion_rate: s.completion_rate,
            avg_duration_seconds: s.avg_duration_seconds,
            invocations_1h: s.invocations_1h,
            invocations_24h: s.invocations_24h,
            last_invoked_at: last,
            invocation_count: s.total_invocations,
            completed_count: completed_count(s.total_invocations, s.completion_rate),
            avg_duration: s.avg_duration_seconds,
            last_invocation_at: last,
            sources: None,
        }
    }
}

/// Completed invocations recovered from a total and a percentage.
pub fn completed_count(total: u64, completion_rate_pct: f64) -> u64 {
    let c = (total as f64 * completion_rate_pct / 100.0).round();
    if c.is_finite() && c > 0.0 {
        (c as u64).min(total)
    } else {
        0
    }
}

/// One `anomalies` row on the wire: `baseline_value` and `observed_value`
/// always present (`null` when unknown), as the documented API shows them.
#[derive(Serialize)]
pub(super) struct WireAnomaly<'a> {
    skill_name: &'a str,
    detected_at: &'a str,
    anomaly_type: &'a str,
    deviation_score: Option<f64>,
    baseline_value: Option<f64>,
    observed_value: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    source: Option<&'a str>,
    /// (ext, edge only) the team source (publisher) it came from.
    #[serde(skip_serializing_if = "Option::is_none")]
    team_source: Option<&'a str>,
}

impl<'a> WireAnomaly<'a> {
    pub(super) fn new(a: &'a Anomaly) -> Self {
        Self {
            skill_name: &a.skill_name,
            detected_at: &a.detected_at,
            anomaly_type: &a.anomaly_type,
            deviation_score: a.deviation_score,
            baseline_value: a.baseline_value,
            observed_value: a.observed_value,
            source: a.source.as_deref(),
            team_source: None,
        }
    }
}

/// The fixed start of every encoded `metrics_update`; `seq` is spliced in
/// right after it.
pub(super) const UPDATE_PREFIX: &str = r#"{"type":"metrics_update","#;

/// A `metrics_update` serialized once and shared by every session of a
/// subscription group; each session writes its own `seq` between the two
/// [`seq_parts`](Self::seq_parts), never copying or re-serializing the body.
#[derive(Debug, Clone)]
pub struct EncodedUpdate {
    /// `{"type":"metrics_update","timestamp":...,"data":{...}}`
    json: std::sync::Arc<str>,
}

impl EncodedUpdate {
    /// Encode borrowing the data (no clone of the rows), with the
    /// documented API's field names next to the implemented ones (see
    /// [`WireSkill`]): built here, once per group and tick, never per client.
    pub fn from_parts(timestamp: &str, data: &MetricsData) -> Self {
        Self::from_parts_team(timestamp, data, None)
    }

    /// [`Self::from_parts`] plus, at an edge, the team fields
    /// ([`team`]): the frame's `sources`, each row's breakdown and each
    /// anomaly's `team_source`.
    pub fn from_parts_team(
        timestamp: &str,
        data: &MetricsData,
        team: Option<&team::TeamExt>,
    ) -> Self {
        #[derive(Serialize)]
        struct Borrowed<'a> {
            r#type: &'static str,
            timestamp: &'a str,
            data: WireData<'a>,
            #[serde(skip_serializing_if = "Option::is_none")]
            sources: Option<&'a [team::SourceInfo]>,
        }
        let json = serde_json::to_string(&Borrowed {
            r#type: "metrics_update",
            timestamp,
            data: WireData::new(data, team),
            sources: team.map(|t| t.sources.as_slice()),
        })
        .unwrap_or_default();
        Self::from_message_json(json)
    }

    pub(super) fn from_message_json(json: String) -> Self {
        debug_assert!(json.starts_with(UPDATE_PREFIX));
        Self { json: json.into() }
    }

    /// The frame without `seq` (what session-buddy would send).
    pub fn without_seq(&self) -> &str {
        &self.json
    }

    /// The frame split where a session's `"seq":N,` goes: the fixed start
    /// (`{"type":"metrics_update",`) and the rest. The server writes the
    /// two around its `seq` without building the whole frame per client.
    /// The start is empty (no `seq` to add) should the frame not begin as
    /// encoded frames do.
    pub fn seq_parts(&self) -> (&'static str, &str) {
        match self.json.strip_prefix(UPDATE_PREFIX) {
            Some(rest) => (UPDATE_PREFIX, rest),
            None => ("", &self.json),
        }
    }

    /// The frame with `"seq":N` as its second field (as it is, should it
    /// not start as encoded frames do).
    pub fn with_seq(&self, seq: u64) -> String {
        match self.seq_parts() {
            ("", rest) => rest.to_owned(),
            (start, rest) => format!("{start}\"seq\":{seq},{rest}"),
        }
    }
}
