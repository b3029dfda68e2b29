//! The wire protocol both roles share (the contract is `docs/PROTOCOL.md`).
//!
//! Owns the typed messages in both directions, their JSON encoding and the
//! tolerant parsing rules: unknown fields are ignored everywhere, unknown
//! server frame types parse to [`ServerMessage::Unknown`], and client frames
//! are classified into the exact `error` codes the server answers with.
//! It does no I/O.

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;

mod client;
mod encode;
mod history;
mod rows;
pub use client::*;
pub use encode::*;
pub use history::{
    History, HistoryAnomaly, HistoryBucket, HistoryWindow, MAX_HISTORY_SKILLS, SkillHistory,
    format_bucket_start,
};
pub use rows::*;
pub mod team;

/// Protocol revision announced in the `connected` frame (ext).
pub const PROTOCOL_VERSION: u32 = 1;

/// The WebSocket subprotocol (`Sec-WebSocket-Protocol`) a client offers to
/// get the extensions that change frame order (the first picture right
/// after `connected`). A server that echoes it is a skillmon server.
pub const SUBPROTOCOL: &str = "skillmon.v1";

/// Whether a `Sec-WebSocket-Protocol` request header value (a comma
/// separated list) offers [`SUBPROTOCOL`]. Tokens are case-sensitive.
pub fn offers_subprotocol(header: &str) -> bool {
    header.split(',').any(|t| t.trim() == SUBPROTOCOL)
}

/// Longest skill name a client may subscribe to.
pub const MAX_SKILL_NAME_LEN: usize = 256;
/// Most skills one `subscribe` may list.
pub const MAX_SKILLS_PER_SUBSCRIPTION: usize = 64;

/// One row of `top_skills`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SkillStat {
    #[serde(default, deserialize_with = "null_as_default")]
    pub skill_name: String,
    #[serde(deserialize_with = "null_as_default")]
    pub total_invocations: u64,
    /// Percentage 0..100, not a fraction.
    #[serde(deserialize_with = "null_as_default")]
    pub completion_rate: f64,
    /// `null` until one invocation completed.
    #[serde(default)]
    pub avg_duration_seconds: Option<f64>,
    /// (ext) invocations in the last hour.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub invocations_1h: Option<u64>,
    /// (ext) invocations in the last 24 hours.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub invocations_24h: Option<u64>,
    /// (ext) when the skill was last invoked, as the writer stored it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_invoked_at: Option<String>,
}

/// One row of `anomalies`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Anomaly {
    // session-buddy serves its table rows unfiltered: a NULL column must
    // not cost the whole frame.
    #[serde(default, deserialize_with = "null_as_default")]
    pub skill_name: String,
    /// As stored, e.g. `2026-11-22 02:33:54`; any RFC 3339-ish form.
    #[serde(default, deserialize_with = "null_as_default")]
    pub detected_at: String,
    #[serde(default, deserialize_with = "null_as_default")]
    pub anomaly_type: String,
    /// Always present on the wire (compat), may be `null`.
    #[serde(default)]
    pub deviation_score: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub baseline_value: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_value: Option<f64>,
    /// (ext) `"table"` or `"live"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
}

/// The `data` object of a `metrics_update`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MetricsData {
    #[serde(default, deserialize_with = "null_as_default")]
    pub top_skills: Vec<SkillStat>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub anomalies: Vec<Anomaly>,
}

impl MetricsData {
    /// Keep only the rows and anomalies of `sub`'s skills (a no-op for all).
    /// A client applies it because session-buddy ignores `skills: [...]`
    /// and sends every skill.
    pub fn retain_subscribed(&mut self, sub: &Subscription) {
        if let Subscription::Skills(_) = sub {
            self.top_skills.retain(|s| sub.includes(&s.skill_name));
            self.anomalies.retain(|a| sub.includes(&a.skill_name));
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Connected {
    #[serde(default)]
    pub message: String,
    #[serde(default)]
    pub authenticated: bool,
    #[serde(default)]
    pub timestamp: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetricsUpdate {
    /// (ext) strictly increasing per connection; a jump means updates were skipped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seq: Option<u64>,
    #[serde(default)]
    pub timestamp: Option<String>,
    #[serde(default)]
    pub data: MetricsData,
    /// What the tolerant parse ([`ServerMessage::parse`]) left out; never on
    /// the wire.
    #[serde(skip)]
    pub rows: RowReport,
    /// (team) The frame's team fields when the server is an edge, parsed
    /// with the rest by [`ServerMessage::parse`]; `None` from a single
    /// server or session-buddy. Never serialized from here. Boxed: most
    /// servers are not edges, and every feed event carries this struct.
    #[serde(skip)]
    pub team: Option<Box<team::TeamFrame>>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SubscriptionConfirmed {
    /// Echo of the request's `skill` as given (string, null or "").
    #[serde(default)]
    pub skill: Value,
    /// (ext) the skills now subscribed to; empty means all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skills: Option<Vec<String>>,
    #[serde(default)]
    pub timestamp: Option<String>,
    /// (documented API) the one subscribed skill, `null` for all (or several).
    #[serde(default)]
    pub skill_name: Option<String>,
    /// (documented API) what the subscription now is, in words.
    #[serde(default)]
    pub message: String,
}

impl SubscriptionConfirmed {
    /// The reply to a `subscribe`: `echo` is the request's `skill` as given.
    pub fn new(echo: Value, subscription: &Subscription, timestamp: String) -> Self {
        let names = subscription.skills();
        let skill_name = match names {
            [one] => Some(one.clone()),
            _ => None,
        };
        let message = match names {
            [] => "Subscribed to updates for all skills".to_owned(),
            [one] => format!("Subscribed to updates for {one}"),
            many => format!("Subscribed to updates for {} skills", many.len()),
        };
        Self {
            skill: echo,
            skills: Some(names.to_vec()),
            timestamp: Some(timestamp),
            skill_name,
            message,
        }
    }
}

/// The `data` of a `metrics_response` (documented API): one skill's
/// current figures. Unlike `top_skills`, `completion_rate` here is a
/// fraction 0..1, as session-buddy's API document shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SkillMetrics {
    #[serde(default, deserialize_with = "null_as_default")]
    pub skill_name: String,
    #[serde(default, deserialize_with = "null_as_default")]
    pub total_invocations: u64,
    /// Fraction 0..1 (the documented API), not a percentage.
    #[serde(default, deserialize_with = "null_as_default")]
    pub completion_rate: f64,
    #[serde(default)]
    pub avg_duration_seconds: Option<f64>,
    #[serde(default)]
    pub last_invocation_at: Option<String>,
}

impl SkillMetrics {
    pub fn from_stat(s: &SkillStat) -> Self {
        Self {
            skill_name: s.skill_name.clone(),
            total_invocations: s.total_invocations,
            completion_rate: s.completion_rate / 100.0,
            avg_duration_seconds: s.avg_duration_seconds,
            last_invocation_at: s.last_invoked_at.clone(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetricsResponse {
    pub data: SkillMetrics,
    #[serde(default)]
    pub timestamp: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Pong {
    /// (ext) echo of the ping's `id`; absent from session-buddy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<Value>,
}

/// Machine-readable reason of an `error` frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    InvalidJson,
    NotAnObject,
    UnknownType,
    BadRequest,
    RateLimited,
    UnknownSkill,
    /// A code this build does not know, or none (the documented API's
    /// `error` frames carry only `message`).
    #[default]
    #[serde(other)]
    Other,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorFrame {
    /// (ext) always sent by skillmon; absent from the documented API's frames.
    #[serde(default)]
    pub code: ErrorCode,
    /// Always present and non-empty from skillmon: what was wrong and how
    /// to fix it.
    #[serde(default)]
    pub message: String,
}

/// Every frame a server sends.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerMessage {
    Connected(Connected),
    MetricsUpdate(MetricsUpdate),
    SubscriptionConfirmed(SubscriptionConfirmed),
    Pong(Pong),
    Error(ErrorFrame),
    /// (documented API) the reply to `get_metrics`.
    MetricsResponse(MetricsResponse),
    /// (ext) the reply to `history`; never sent unless asked.
    History(History),
    /// A type this build does not know; clients ignore it.
    #[serde(other)]
    Unknown,
}

impl ServerMessage {
    /// Parse one text frame from a server. Errors only on non-JSON or a
    /// frame without a string `type`; unknown types are `Unknown`.
    ///
    /// A `metrics_update` degrades by row, not by frame: each row of
    /// `top_skills` and `anomalies` is parsed on its own, a row with a bad
    /// value (a number out of range, a wrong type) is left out and counted
    /// in [`MetricsUpdate::rows`], and at most [`MAX_TOP_SKILLS`] /
    /// [`MAX_ANOMALIES`] rows are kept (the first ones: the protocol sends
    /// the top skills by rank and anomalies newest first); a bad `seq` or
    /// `timestamp` reads as absent.
    pub fn parse(text: &str) -> Result<Self, serde_json::Error> {
        #[derive(Deserialize)]
        struct Head<'a> {
            #[serde(rename = "type", borrow, default)]
            ty: Option<std::borrow::Cow<'a, str>>,
        }
        if let Ok(Head { ty: Some(t) }) = serde_json::from_str::<Head>(text)
            && t == "metrics_update"
        {
            return parse_update(text).map(ServerMessage::MetricsUpdate);
        }
        serde_json::from_str(text)
    }

    /// Encode as one JSON text frame.
    pub fn encode(&self) -> String {
        // Serializing these plain structs cannot fail (no maps with non-string keys).
        serde_json::to_string(self).unwrap_or_default()
    }
}

pub(crate) fn null_as_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// Parse any RFC 3339 / ISO 8601 timestamp the protocol or the DB may carry:
/// `Z` or `+00:00`, `T` or a space, with or without fraction; a form without
/// offset is taken as UTC (SQLite's `datetime('now')` writes those).
pub fn parse_timestamp(s: &str) -> Option<chrono::DateTime<chrono::Utc>> {
    use chrono::{DateTime, NaiveDateTime, Utc};
    let s = s.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Some(t.with_timezone(&Utc));
    }
    let with_t = s.replacen(' ', "T", 1);
    if let Ok(t) = DateTime::parse_from_rfc3339(&with_t) {
        return Some(t.with_timezone(&Utc));
    }
    for fmt in ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%dT%H:%M"] {
        if let Ok(t) = NaiveDateTime::parse_from_str(&with_t, fmt) {
            return Some(t.and_utc());
        }
    }
    None
}

/// Now, in session-buddy's timestamp form (`...+00:00`, microseconds).
pub fn now_timestamp() -> String {
    format_timestamp(chrono::Utc::now())
}

pub fn format_timestamp(t: chrono::DateTime<chrono::Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Micros, false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    // Python's json.dumps output: ", " and ": " separators, \u escapes.
    const PY_UPDATE: &str = r#"{"type": "metrics_update", "timestamp": "2026-11-22T02:39:05.295129+00:00", "data": {"top_skills": [{"skill_name": "pytest-run", "total_invocations": 30, "completion_rate": 93.33333333333333, "avg_duration_seconds": 6.34}, {"skill_name": "caf\u00e9-\ud83d\ude80", "total_invocations": 2, "completion_rate": 0.0, "avg_duration_seconds": null}], "anomalies": [{"skill_name": "mypy", "detected_at": "2026-11-22 02:33:54", "anomaly_type": "drop", "deviation_score": -2.7}]}}"#;

    #[test]
    fn parses_python_formatted_update() {
        let ServerMessage::MetricsUpdate(u) = ServerMessage::parse(PY_UPDATE).unwrap() else {
            panic!("not an update")
        };
        assert_eq!(u.seq, None);
        assert_eq!(u.data.top_skills.len(), 2);
        assert_eq!(u.data.top_skills[0].completion_rate, 93.33333333333333);
        assert_eq!(u.data.top_skills[1].skill_name, "café-🚀");
        assert_eq!(u.data.top_skills[1].avg_duration_seconds, None);
        assert_eq!(u.data.anomalies[0].deviation_score, Some(-2.7));
        assert_eq!(u.data.anomalies[0].source, None);
        assert!(parse_timestamp(u.timestamp.as_deref().unwrap()).is_some());
    }

    #[test]
    fn parses_every_sample_frame() {
        let samples = [
            r#"{"type": "connected", "message": "Connected to Session Buddy real-time metrics", "authenticated": false, "timestamp": "2026-11-22T02:39:04.515314+00:00"}"#,
            r#"{"type": "subscription_confirmed", "skill": "pytest-run", "timestamp": "2026-11-22T02:39:04Z"}"#,
            r#"{"type": "subscription_confirmed", "skill": null, "timestamp": "2026-11-22T02:39:04Z"}"#,
            r#"{"type": "pong"}"#,
            r#"{"type": "pong", "id": 7}"#,
            r#"{"type": "error", "code": "invalid_json", "message": "expected value at line 1 column 1"}"#,
        ];
        let parsed: Vec<_> = samples
            .iter()
            .map(|s| ServerMessage::parse(s).unwrap())
            .collect();
        assert!(matches!(&parsed[0], ServerMessage::Connected(c) if !c.authenticated));
        assert!(
            matches!(&parsed[1], ServerMessage::SubscriptionConfirmed(c) if c.skill == json!("pytest-run"))
        );
        assert!(matches!(&parsed[2], ServerMessage::SubscriptionConfirmed(c) if c.skill.is_null()));
        assert_eq!(parsed[3], ServerMessage::Pong(Pong { id: None }));
        assert_eq!(parsed[4], ServerMessage::Pong(Pong { id: Some(json!(7)) }));
        assert!(matches!(&parsed[5], ServerMessage::Error(e) if e.code == ErrorCode::InvalidJson));
    }

    #[test]
    fn null_columns_from_session_buddy_do_not_cost_the_frame() {
        let text = r#"{"type": "metrics_update", "timestamp": "2026-11-22T02:39:05Z", "data": {"top_skills": [{"skill_name": "a", "total_invocations": 1, "completion_rate": null, "avg_duration_seconds": null}], "anomalies": [{"skill_name": null, "detected_at": null, "anomaly_type": null, "deviation_score": null}]}}"#;
        let ServerMessage::MetricsUpdate(u) = ServerMessage::parse(text).unwrap() else {
            panic!("not an update")
        };
        assert_eq!(u.data.top_skills[0].completion_rate, 0.0);
        assert_eq!(u.data.anomalies[0].anomaly_type, "");
    }

    #[test]
    fn one_bad_row_costs_only_itself() {
        // Out of range (1e400, -1 for a u64), wrong types: those rows go,
        // the good ones stay, in order.
        let text = r#"{"type":"metrics_update","seq":"x","timestamp":7,"data":{"top_skills":[
            {"skill_name":"good-1","total_invocations":1,"completion_rate":50.0,"avg_duration_seconds":null},
            {"skill_name":"huge","total_invocations":1,"completion_rate":1e400,"avg_duration_seconds":null},
            {"skill_name":"neg","total_invocations":-1,"completion_rate":1.0,"avg_duration_seconds":null},
            {"skill_name":["not","a","name"],"total_invocations":1,"completion_rate":1.0},
            "not a row",
            {"skill_name":"NAME","total_invocations":1,"completion_rate":1.0},
            {"skill_name":"good-2","total_invocations":2,"completion_rate":1.0,"avg_duration_seconds":1.5}
        ],"anomalies":[{"skill_name":"a","detected_at":"t","anomaly_type":"spike","deviation_score":"high"},
                       {"skill_name":"b","detected_at":"t","anomaly_type":"spike","deviation_score":3.5}]}}"#;
        let text = text.replace("NAME", &"n".repeat(MAX_ROW_NAME_BYTES + 1));
        let ServerMessage::MetricsUpdate(u) = ServerMessage::parse(&text).unwrap() else {
            panic!("not an update")
        };
        let names: Vec<&str> = u
            .data
            .top_skills
            .iter()
            .map(|s| s.skill_name.as_str())
            .collect();
        assert_eq!(names, ["good-1", "good-2"]);
        assert_eq!(u.data.anomalies.len(), 1);
        assert_eq!(u.data.anomalies[0].skill_name, "b");
        assert_eq!(u.rows.rejected, 6);
        assert_eq!(u.rows.over_cap, 0);
        let why = u.rows.first_error.unwrap();
        assert!(why.starts_with("top_skills[1] dropped"), "{why}");
        assert_eq!((u.seq, u.timestamp), (None, None));
    }

    #[test]
    fn rows_beyond_the_cap_are_counted_not_kept() {
        let row = r#"{"skill_name":"s","total_invocations":1,"completion_rate":1.0,"avg_duration_seconds":null}"#;
        let rows = vec![row; MAX_TOP_SKILLS + 5].join(",");
        let text = format!(
            r#"{{"type":"metrics_update","data":{{"top_skills":[{rows}],"anomalies":"oops"}}}}"#
        );
        let ServerMessage::MetricsUpdate(u) = ServerMessage::parse(&text).unwrap() else {
            panic!("not an update")
        };
        assert_eq!(u.data.top_skills.len(), MAX_TOP_SKILLS);
        assert_eq!(u.rows.over_cap, 5);
        // `anomalies` of the wrong type: one rejected "row", the skills stay.
        assert_eq!(u.rows.rejected, 1);
        // Broken JSON is still an error for the whole frame.
        assert!(ServerMessage::parse(r#"{"type":"metrics_update","data":{"#).is_err());
        // A bad `data` costs its rows, not the frame.
        let ServerMessage::MetricsUpdate(u) =
            ServerMessage::parse(r#"{"type":"metrics_update","seq":4,"data":"x"}"#).unwrap()
        else {
            panic!("not an update")
        };
        assert_eq!((u.seq, u.rows.rejected), (Some(4), 1));
    }

    #[test]
    fn retain_subscribed_keeps_only_the_asked_skills() {
        let ServerMessage::MetricsUpdate(u) = ServerMessage::parse(PY_UPDATE).unwrap() else {
            panic!("not an update")
        };
        let mut all = u.data.clone();
        all.retain_subscribed(&Subscription::All);
        assert_eq!(all, u.data);
        let mut some = u.data.clone();
        some.retain_subscribed(&Subscription::from_names(["pytest-run", "nope"]));
        let names: Vec<_> = some
            .top_skills
            .iter()
            .map(|s| s.skill_name.as_str())
            .collect();
        assert_eq!(names, ["pytest-run"]);
        assert!(some.anomalies.is_empty(), "mypy's anomaly is not asked for");
    }

    #[test]
    fn unknown_type_and_fields_are_tolerated() {
        assert_eq!(
            ServerMessage::parse(r#"{"type":"future_thing","x":1}"#).unwrap(),
            ServerMessage::Unknown
        );
        let m = ServerMessage::parse(
            r#"{"type":"connected","message":"hi","authenticated":true,"timestamp":null,"extra":[1]}"#,
        )
        .unwrap();
        assert!(matches!(m, ServerMessage::Connected(c) if c.authenticated));
        let m =
            ServerMessage::parse(r#"{"type":"error","code":"brand_new","message":"x"}"#).unwrap();
        assert!(matches!(m, ServerMessage::Error(e) if e.code == ErrorCode::Other));
    }

    #[test]
    fn server_messages_round_trip() {
        let msgs = vec![
            ServerMessage::Connected(Connected {
                message: "Connected to skillmon".into(),
                authenticated: false,
                timestamp: Some(now_timestamp()),
                server: Some("skillmon/0.1.0".into()),
                protocol: Some(1),
                interval_ms: Some(1000),
                session_id: Some("s1".into()),
            }),
            ServerMessage::MetricsUpdate(MetricsUpdate {
                seq: Some(3),
                timestamp: Some(now_timestamp()),
                data: MetricsData {
                    top_skills: vec![SkillStat {
                        skill_name: "ruff-check".into(),
                        total_invocations: 4,
                        completion_rate: 75.0,
                        avg_duration_seconds: None,
                        invocations_1h: Some(1),
                        invocations_24h: Some(4),
                        last_invoked_at: Some("2026-11-22T01:00:00Z".into()),
                    }],
                    anomalies: vec![Anomaly {
                        skill_name: "mypy".into(),
                        detected_at: "2026-11-22 02:33:54".into(),
                        anomaly_type: "spike".into(),
                        deviation_score: None,
                        baseline_value: Some(0.5),
                        observed_value: Some(0.9),
                        source: Some("table".into()),
                    }],
                },
                rows: RowReport::default(),
                team: None,
            }),
            ServerMessage::SubscriptionConfirmed(SubscriptionConfirmed::new(
                json!(""),
                &Subscription::All,
                now_timestamp(),
            )),
            ServerMessage::MetricsResponse(MetricsResponse {
                data: SkillMetrics {
                    skill_name: "mypy".into(),
                    total_invocations: 4,
                    completion_rate: 0.75,
                    avg_duration_seconds: Some(1.5),
                    last_invocation_at: None,
                },
                timestamp: Some(now_timestamp()),
            }),
            ServerMessage::Pong(Pong {
                id: Some(json!("abc")),
            }),
            ServerMessage::Error(ErrorFrame {
                code: ErrorCode::RateLimited,
                message: "slow down".into(),
            }),
        ];
        for m in msgs {
            let text = m.encode();
            assert_eq!(ServerMessage::parse(&text).unwrap(), m, "{text}");
        }
    }

    #[test]
    fn compat_fields_are_always_present() {
        // deviation_score and avg_duration_seconds are nullable, never omitted.
        let data = MetricsData {
            top_skills: vec![SkillStat {
                skill_name: "a".into(),
                total_invocations: 1,
                completion_rate: 0.0,
                avg_duration_seconds: None,
                invocations_1h: None,
                invocations_24h: None,
                last_invoked_at: None,
            }],
            anomalies: vec![Anomaly {
                skill_name: "a".into(),
                detected_at: "x".into(),
                anomaly_type: "drop".into(),
                deviation_score: None,
                baseline_value: None,
                observed_value: None,
                source: None,
            }],
        };
        let v: Value =
            serde_json::from_str(EncodedUpdate::from_parts("t", &data).without_seq()).unwrap();
        assert_eq!(
            v["data"]["top_skills"][0]["avg_duration_seconds"],
            Value::Null
        );
        assert!(
            v["data"]["top_skills"][0]
                .as_object()
                .unwrap()
                .contains_key("avg_duration_seconds")
        );
        assert!(
            v["data"]["anomalies"][0]
                .as_object()
                .unwrap()
                .contains_key("deviation_score")
        );
        assert!(
            !v["data"]["anomalies"][0]
                .as_object()
                .unwrap()
                .contains_key("source")
        );
    }

    #[test]
    fn seq_splice_is_valid_json_equal_to_the_body() {
        let data = MetricsData::default();
        let enc = EncodedUpdate::from_parts("2026-11-22T02:39:05.295129+00:00", &data);
        assert!(enc.without_seq().starts_with(UPDATE_PREFIX));
        let with: Value = serde_json::from_str(&enc.with_seq(42)).unwrap();
        let without: Value = serde_json::from_str(enc.without_seq()).unwrap();
        assert_eq!(with["seq"], json!(42));
        let mut stripped = with.clone();
        stripped.as_object_mut().unwrap().remove("seq");
        assert_eq!(stripped, without);
        assert_eq!(with["type"], json!("metrics_update"));
    }

    #[test]
    fn client_subscribe_forms() {
        let sub = |s: &str| ClientMessage::parse(s).unwrap();
        assert_eq!(
            sub(r#"{"type": "subscribe", "skill": "pytest-run"}"#),
            ClientMessage::Subscribe {
                subscription: Subscription::Skills(vec!["pytest-run".into()]),
                echo: json!("pytest-run")
            }
        );
        for (text, echo) in [
            (r#"{"type":"subscribe","skill":null}"#, json!(null)),
            (r#"{"type":"subscribe"}"#, json!(null)),
            (r#"{"type":"subscribe","skill":""}"#, json!("")),
        ] {
            assert_eq!(
                sub(text),
                ClientMessage::Subscribe {
                    subscription: Subscription::All,
                    echo
                }
            );
        }
        assert_eq!(
            sub(r#"{"type":"subscribe","skill_name":"mypy"}"#),
            ClientMessage::Subscribe {
                subscription: Subscription::Skills(vec!["mypy".into()]),
                echo: json!("mypy")
            }
        );
        assert_eq!(
            sub(r#"{"type":"subscribe","skills":["b","a","b"]}"#),
            ClientMessage::Subscribe {
                subscription: Subscription::Skills(vec!["a".into(), "b".into()]),
                echo: json!(null)
            }
        );
        assert_eq!(sub(r#"{"type":"unsubscribe"}"#), ClientMessage::Unsubscribe);
        assert_eq!(
            sub(r#"{"type":"ping","id":7}"#),
            ClientMessage::Ping { id: Some(json!(7)) }
        );
        assert_eq!(
            sub(r#"{"token":"abc"}"#),
            ClientMessage::Auth {
                token: "abc".into()
            }
        );
    }

    #[test]
    fn client_errors_have_the_right_codes() {
        let code = |s: &str| ClientMessage::parse(s).unwrap_err().code;
        assert_eq!(code("not json"), ErrorCode::InvalidJson);
        assert_eq!(code(""), ErrorCode::InvalidJson);
        assert_eq!(code("[1,2]"), ErrorCode::NotAnObject);
        assert_eq!(code("\"subscribe\""), ErrorCode::NotAnObject);
        assert_eq!(code(r#"{"type":"Subscribe"}"#), ErrorCode::UnknownType);
        assert_eq!(code(r#"{"type":"explode"}"#), ErrorCode::UnknownType);
        assert_eq!(code(r#"{"type":5}"#), ErrorCode::BadRequest);
        assert_eq!(code(r#"{"skill":"x"}"#), ErrorCode::BadRequest);
        assert_eq!(
            code(r#"{"type":"subscribe","skill":5}"#),
            ErrorCode::BadRequest
        );
        assert_eq!(
            code(r#"{"type":"subscribe","skills":"a"}"#),
            ErrorCode::BadRequest
        );
        assert_eq!(
            code(r#"{"type":"subscribe","skills":[1]}"#),
            ErrorCode::BadRequest
        );
        let long = format!(r#"{{"type":"subscribe","skill":"{}"}}"#, "x".repeat(300));
        assert_eq!(code(&long), ErrorCode::BadRequest);
    }

    #[test]
    fn client_messages_round_trip() {
        for m in [
            ClientMessage::Subscribe {
                subscription: Subscription::Skills(vec!["a".into()]),
                echo: json!("a"),
            },
            ClientMessage::Subscribe {
                subscription: Subscription::Skills(vec!["a".into(), "b".into()]),
                echo: json!(null),
            },
            ClientMessage::Subscribe {
                subscription: Subscription::All,
                echo: json!(null),
            },
            ClientMessage::Unsubscribe,
            ClientMessage::Ping { id: Some(json!(1)) },
            ClientMessage::Ping { id: None },
            ClientMessage::Auth { token: "t".into() },
            ClientMessage::GetMetrics { skill: "a".into() },
        ] {
            assert_eq!(ClientMessage::parse(&m.encode()).unwrap(), m);
        }
    }

    #[test]
    fn subprotocol_offers() {
        assert!(offers_subprotocol("skillmon.v1"));
        assert!(offers_subprotocol("chat, skillmon.v1"));
        assert!(offers_subprotocol(" skillmon.v1 ,x"));
        assert!(!offers_subprotocol("skillmon.v2, chat"));
        assert!(!offers_subprotocol("Skillmon.V1"));
        assert!(!offers_subprotocol(""));
    }

    #[test]
    fn documented_names_ride_next_to_the_implemented_ones() {
        let data = MetricsData {
            top_skills: vec![SkillStat {
                skill_name: "a".into(),
                total_invocations: 3,
                completion_rate: 200.0 / 3.0,
                avg_duration_seconds: Some(3.0),
                invocations_1h: None,
                invocations_24h: None,
                last_invoked_at: Some("2026-11-22T01:00:00Z".into()),
            }],
            anomalies: vec![Anomaly {
                skill_name: "a".into(),
                detected_at: "x".into(),
                anomaly_type: "drop".into(),
                deviation_score: Some(-2.5),
                baseline_value: None,
                observed_value: Some(0.25),
                source: None,
            }],
        };
        let v: Value =
            serde_json::from_str(EncodedUpdate::from_parts("t", &data).without_seq()).unwrap();
        let row = &v["data"]["top_skills"][0];
        assert_eq!(row["invocation_count"], 3);
        assert_eq!(row["completed_count"], 2);
        assert_eq!(row["avg_duration"], 3.0);
        assert_eq!(row["last_invocation_at"], "2026-11-22T01:00:00Z");
        assert_eq!(row["last_invoked_at"], "2026-11-22T01:00:00Z");
        let an = &v["data"]["anomalies"][0];
        assert!(an.as_object().unwrap().contains_key("baseline_value"));
        assert_eq!(an["baseline_value"], Value::Null);
        assert_eq!(an["observed_value"], 0.25);
        // And the frame still parses into the implemented fields.
        let ServerMessage::MetricsUpdate(u) = ServerMessage::parse(&v.to_string()).unwrap() else {
            panic!("not an update")
        };
        assert_eq!(u.data, data);
    }

    #[test]
    fn completed_count_is_recovered_exactly() {
        for total in 1..200u64 {
            for done in 0..=total {
                let pct = done as f64 / total as f64 * 100.0;
                assert_eq!(completed_count(total, pct), done, "{done}/{total}");
            }
        }
        assert_eq!(completed_count(0, 0.0), 0);
        assert_eq!(completed_count(5, f64::NAN), 0);
        assert_eq!(completed_count(5, 500.0), 5);
    }

    #[test]
    fn get_metrics_forms_and_documented_errors() {
        let parse = |s: &str| ClientMessage::parse(s);
        assert_eq!(
            parse(r#"{"type":"get_metrics","skill_name":"mypy"}"#).unwrap(),
            ClientMessage::GetMetrics {
                skill: "mypy".into()
            }
        );
        assert_eq!(
            parse(r#"{"type":"get_metrics","skill":"mypy"}"#).unwrap(),
            ClientMessage::GetMetrics {
                skill: "mypy".into()
            }
        );
        for bad in [
            r#"{"type":"get_metrics"}"#,
            r#"{"type":"get_metrics","skill_name":null}"#,
            r#"{"type":"get_metrics","skill_name":""}"#,
            r#"{"type":"get_metrics","skill_name":5}"#,
        ] {
            let e = parse(bad).unwrap_err();
            assert_eq!(e.code, ErrorCode::BadRequest, "{bad}");
            assert!(e.message.contains("skill"), "{bad}: {}", e.message);
        }
        // A documented-API error frame (no code) still parses.
        let m =
            ServerMessage::parse(r#"{"type":"error","message":"Invalid skill name: x"}"#).unwrap();
        assert!(
            matches!(m, ServerMessage::Error(e) if e.code == ErrorCode::Other && e.message.contains('x'))
        );
        let c =
            SubscriptionConfirmed::new(json!("a"), &Subscription::from_names(["a"]), "t".into());
        assert_eq!(c.skill_name.as_deref(), Some("a"));
        assert!(c.message.contains('a'));
        let c = SubscriptionConfirmed::new(json!(null), &Subscription::All, "t".into());
        assert_eq!(c.skill_name, None);
        assert!(c.message.contains("all skills"));
    }

    #[test]
    fn timestamps_in_every_form() {
        let want = parse_timestamp("2026-11-22T02:39:05+00:00").unwrap();
        for s in [
            "2026-11-22T02:39:05Z",
            "2026-11-22T02:39:05+00:00",
            "2026-11-22 02:39:05",
            "2026-11-22T02:39:05",
            "2026-11-22 02:39:05+00:00",
            "2026-11-22T03:39:05+01:00",
        ] {
            assert_eq!(parse_timestamp(s), Some(want), "{s}");
        }
        let frac = parse_timestamp("2026-11-22T02:39:05.295129+00:00").unwrap();
        assert_eq!(frac.timestamp_subsec_micros(), 295129);
        assert_eq!(
            parse_timestamp("2026-11-22 02:39:05.5Z")
                .unwrap()
                .timestamp_subsec_millis(),
            500
        );
        assert_eq!(parse_timestamp("garbage"), None);
        let now = now_timestamp();
        assert!(now.ends_with("+00:00"), "{now}");
        assert!(parse_timestamp(&now).is_some());
    }
}
