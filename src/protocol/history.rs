//! (ext) The `history` request and frame: a skill's last hour or day in
//! fixed, wall-clock-aligned buckets, with its anomalies in that window
//! (`docs/PROTOCOL.md` § History).
//!
//! Owns the wire types of both directions and the bucket arithmetic both
//! roles agree on ([`HistoryWindow`]); the server builds the frame
//! (`store::history`), the dashboard draws it. No I/O.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{
    ClientError, ClientMessage, ErrorCode, MAX_SKILL_NAME_LEN, MAX_SKILLS_PER_SUBSCRIPTION,
    name_too_long, null_as_default,
};

/// Most skills one `history` request may name (as for `subscribe`).
pub const MAX_HISTORY_SKILLS: usize = MAX_SKILLS_PER_SUBSCRIPTION;

/// The span a `history` covers. On the wire and on the command line:
/// `1h` (60 one-minute buckets) or `24h` (96 fifteen-minute buckets).
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    strum::Display,
    strum::EnumString,
    strum::IntoStaticStr,
    strum::EnumIter,
    strum::EnumMessage,
)]
pub enum HistoryWindow {
    /// The last hour: 60 buckets of one minute.
    #[serde(rename = "1h")]
    #[strum(serialize = "1h")]
    Hour,
    /// The last day: 96 buckets of fifteen minutes.
    #[serde(rename = "24h")]
    #[strum(serialize = "24h")]
    Day,
}

impl HistoryWindow {
    /// Length of one bucket, in seconds.
    pub const fn bucket_seconds(self) -> i64 {
        match self {
            HistoryWindow::Hour => 60,
            HistoryWindow::Day => 900,
        }
    }

    /// Number of buckets in the window.
    pub const fn buckets(self) -> usize {
        match self {
            HistoryWindow::Hour => 60,
            HistoryWindow::Day => 96,
        }
    }

    /// Index (Unix seconds / bucket length, floored) of the bucket holding
    /// the instant `t` (Unix seconds). Buckets are aligned to the UTC wall
    /// clock, so two servers cut the same buckets.
    pub fn bucket_of(self, t: f64) -> i64 {
        (t / self.bucket_seconds() as f64).floor() as i64
    }

    /// Start (Unix seconds) of the window's first bucket when the last
    /// bucket is the one holding `now` (partial).
    pub fn first_bucket_start(self, now: f64) -> i64 {
        (self.bucket_of(now) - self.buckets() as i64 + 1) * self.bucket_seconds()
    }
}

/// One bucket of a skill's series.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HistoryBucket {
    /// The bucket's start, RFC 3339 UTC to the second (`2026-11-30T09:15:00Z`).
    #[serde(default, deserialize_with = "null_as_default")]
    pub start: String,
    /// Invocations that started in the bucket.
    #[serde(default, deserialize_with = "null_as_default")]
    pub invocations: u64,
    /// Of those, how many completed.
    #[serde(default, deserialize_with = "null_as_default")]
    pub completed: u64,
    /// Mean `duration_seconds` of the completed ones that have a duration;
    /// always present, `null` when there are none.
    #[serde(default)]
    pub avg_duration: Option<f64>,
}

/// One anomaly of a skill inside the window, for markers on a chart.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HistoryAnomaly {
    /// As in `metrics_update` (the table's text or a live finding's RFC 3339).
    #[serde(default, deserialize_with = "null_as_default")]
    pub detected_at: String,
    #[serde(default, deserialize_with = "null_as_default")]
    pub anomaly_type: String,
    /// Always present, may be `null`.
    #[serde(default)]
    pub deviation_score: Option<f64>,
    /// `"table"` or `"live"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
}

/// One skill's series: exactly [`HistoryWindow::buckets`] buckets, oldest
/// first (all zero for a skill the server does not know).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SkillHistory {
    #[serde(default, deserialize_with = "null_as_default")]
    pub skill_name: String,
    #[serde(default, deserialize_with = "null_as_default")]
    pub buckets: Vec<HistoryBucket>,
    /// Newest first, as in `metrics_update`.
    #[serde(default, deserialize_with = "null_as_default")]
    pub anomalies: Vec<HistoryAnomaly>,
}

/// The `history` frame: the reply to one `history` request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct History {
    pub window: HistoryWindow,
    /// Bucket length in seconds (60 or 900).
    pub bucket_seconds: i64,
    /// Start of the first bucket (RFC 3339 UTC); the last bucket holds `timestamp`.
    #[serde(default, deserialize_with = "null_as_default")]
    pub start: String,
    /// When the history was built (the server's clock).
    #[serde(default)]
    pub timestamp: Option<String>,
    /// One entry per requested skill, sorted by name.
    #[serde(default, deserialize_with = "null_as_default")]
    pub skills: Vec<SkillHistory>,
}

/// A bucket start as it goes on the wire.
pub fn format_bucket_start(unix_secs: i64) -> String {
    chrono::DateTime::from_timestamp(unix_secs, 0)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// `{"type":"history","skills":[...],"window":"1h"}`: the names are sorted
/// and deduplicated; none (absent, `null`, `[]`) means the client's current
/// subscription's visible skills.
pub(super) fn parse_history(
    obj: &serde_json::Map<String, Value>,
) -> Result<ClientMessage, ClientError> {
    let window = match obj.get("window") {
        Some(Value::String(w)) => w.parse::<HistoryWindow>().map_err(|_| {
            ClientError::new(
                ErrorCode::BadRequest,
                format!(
                    "unknown history window {:?}; use \"1h\" or \"24h\"",
                    crate::text::truncate_chars(w, 32)
                ),
            )
        })?,
        _ => {
            return Err(ClientError::new(
                ErrorCode::BadRequest,
                "history needs \"window\": \"1h\" or \"24h\"",
            ));
        }
    };
    let skills = match obj.get("skills") {
        None | Some(Value::Null) => None,
        Some(Value::Array(items)) => {
            if items.len() > MAX_HISTORY_SKILLS {
                return Err(ClientError::new(
                    ErrorCode::BadRequest,
                    format!(
                        "\"skills\" lists {} names; at most {MAX_HISTORY_SKILLS} per history request",
                        items.len()
                    ),
                ));
            }
            let mut names = Vec::with_capacity(items.len());
            for item in items {
                let Value::String(s) = item else {
                    return Err(ClientError::new(
                        ErrorCode::BadRequest,
                        "\"skills\" must be an array of strings",
                    ));
                };
                if s.len() > MAX_SKILL_NAME_LEN {
                    return Err(ClientError::new(ErrorCode::BadRequest, name_too_long(s)));
                }
                if !s.is_empty() {
                    names.push(s.clone());
                }
            }
            names.sort();
            names.dedup();
            (!names.is_empty()).then_some(names)
        }
        Some(_) => {
            return Err(ClientError::new(
                ErrorCode::BadRequest,
                "\"skills\" must be an array of strings",
            ));
        }
    };
    Ok(ClientMessage::History { skills, window })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::ServerMessage;
    use serde_json::json;

    #[test]
    fn windows_name_and_cut_buckets() {
        assert_eq!("1h".parse::<HistoryWindow>().unwrap(), HistoryWindow::Hour);
        assert_eq!("24h".parse::<HistoryWindow>().unwrap(), HistoryWindow::Day);
        assert!("2h".parse::<HistoryWindow>().is_err());
        assert_eq!(HistoryWindow::Day.to_string(), "24h");
        assert_eq!(json!(HistoryWindow::Hour), json!("1h"));
        // 2026-11-30T09:37:20Z
        let now = 1_796_031_440.0;
        assert_eq!(format_bucket_start(1_796_031_420), "2026-11-30T09:37:00Z");
        let h = HistoryWindow::Hour.first_bucket_start(now);
        assert_eq!(format_bucket_start(h), "2026-11-30T08:38:00Z");
        let d = HistoryWindow::Day.first_bucket_start(now);
        assert_eq!(format_bucket_start(d), "2026-11-29T09:45:00Z");
        // On an edge the new bucket is the last one.
        let edge = 1_796_031_420.0;
        assert_eq!(
            HistoryWindow::Hour.first_bucket_start(edge),
            1_796_031_420 - 59 * 60
        );
    }

    #[test]
    fn history_requests_parse() {
        let p = |s: &str| ClientMessage::parse(s);
        assert_eq!(
            p(r#"{"type":"history","skills":["b","a","b",""],"window":"24h"}"#).unwrap(),
            ClientMessage::History {
                skills: Some(vec!["a".into(), "b".into()]),
                window: HistoryWindow::Day
            }
        );
        for text in [
            r#"{"type":"history","window":"1h"}"#,
            r#"{"type":"history","skills":null,"window":"1h"}"#,
            r#"{"type":"history","skills":[],"window":"1h"}"#,
        ] {
            assert_eq!(
                p(text).unwrap(),
                ClientMessage::History {
                    skills: None,
                    window: HistoryWindow::Hour
                },
                "{text}"
            );
        }
        let names: Vec<String> = (0..65).map(|i| format!("s{i}")).collect();
        let too_many = json!({"type": "history", "skills": names, "window": "1h"}).to_string();
        let long = json!({"type": "history", "skills": ["x".repeat(300)], "window": "1h"});
        for bad in [
            too_many.as_str(),
            &long.to_string(),
            r#"{"type":"history","window":"7d"}"#,
            r#"{"type":"history","window":1}"#,
            r#"{"type":"history"}"#,
            r#"{"type":"history","skills":"a","window":"1h"}"#,
            r#"{"type":"history","skills":[1],"window":"1h"}"#,
        ] {
            let e = p(bad).unwrap_err();
            assert_eq!(e.code, ErrorCode::BadRequest, "{bad}");
            assert!(!e.message.is_empty());
        }
        for m in [
            ClientMessage::History {
                skills: None,
                window: HistoryWindow::Day,
            },
            ClientMessage::History {
                skills: Some(vec!["a".into(), "b".into()]),
                window: HistoryWindow::Hour,
            },
        ] {
            assert_eq!(ClientMessage::parse(&m.encode()).unwrap(), m);
        }
    }

    #[test]
    fn history_frame_round_trips_with_nulls_present() {
        let frame = ServerMessage::History(History {
            window: HistoryWindow::Hour,
            bucket_seconds: 60,
            start: format_bucket_start(1_796_027_880),
            timestamp: Some("2026-11-30T09:37:20.000000+00:00".into()),
            skills: vec![SkillHistory {
                skill_name: "mypy".into(),
                buckets: vec![
                    HistoryBucket {
                        start: format_bucket_start(1_796_027_880),
                        invocations: 0,
                        completed: 0,
                        avg_duration: None,
                    },
                    HistoryBucket {
                        start: format_bucket_start(1_796_027_940),
                        invocations: 3,
                        completed: 2,
                        avg_duration: Some(1.5),
                    },
                ],
                anomalies: vec![HistoryAnomaly {
                    detected_at: "2026-11-30 09:01:00".into(),
                    anomaly_type: "drop".into(),
                    deviation_score: None,
                    source: Some("table".into()),
                }],
            }],
        });
        let text = frame.encode();
        let v: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["type"], "history");
        assert_eq!(v["window"], "1h");
        let b0 = &v["skills"][0]["buckets"][0];
        assert!(b0.as_object().unwrap().contains_key("avg_duration"));
        assert!(
            v["skills"][0]["anomalies"][0]
                .as_object()
                .unwrap()
                .contains_key("deviation_score")
        );
        assert_eq!(ServerMessage::parse(&text).unwrap(), frame);
    }
}
