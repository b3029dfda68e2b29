//! Builders shared by the app and view unit tests: fixed times, key
//! events, skill stats and feed events. Test-only; owns no assertions.

use chrono::{DateTime, Utc};
use crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyEventState, KeyModifiers};

use crate::client::FeedEvent;
use crate::protocol::{Anomaly, Connected, MetricsData, MetricsUpdate, SkillStat};
use crate::tui::app::Event;

pub fn t0() -> DateTime<Utc> {
    crate::protocol::parse_timestamp("2026-11-22T03:00:00Z").unwrap_or_default()
}

pub fn secs(n: i64) -> DateTime<Utc> {
    t0() + chrono::Duration::seconds(n)
}

pub fn key(code: KeyCode) -> Event {
    Event::Key(KeyEvent {
        code,
        modifiers: KeyModifiers::NONE,
        kind: KeyEventKind::Press,
        state: KeyEventState::NONE,
    })
}

pub fn ch(c: char) -> Event {
    key(KeyCode::Char(c))
}

pub fn stat(name: &str, total: u64, rate: f64, dur: Option<f64>) -> SkillStat {
    SkillStat {
        skill_name: name.into(),
        total_invocations: total,
        completion_rate: rate,
        avg_duration_seconds: dur,
        invocations_1h: None,
        invocations_24h: None,
        last_invoked_at: None,
    }
}

pub fn connected(at: DateTime<Utc>, interval_ms: Option<u64>) -> Event {
    Event::Feed(FeedEvent::Connected {
        info: Connected {
            message: "hi".into(),
            authenticated: false,
            timestamp: None,
            server: Some("skillmon/0.1.0".into()),
            protocol: Some(1),
            interval_ms,
            session_id: None,
        },
        ext: false,
        at,
    })
}

pub fn update(
    at: DateTime<Utc>,
    seq: Option<u64>,
    skills: Vec<SkillStat>,
    anomalies: Vec<Anomaly>,
) -> Event {
    Event::Feed(FeedEvent::Update {
        update: MetricsUpdate {
            seq,
            timestamp: None,
            data: MetricsData {
                top_skills: skills,
                anomalies,
            },
            rows: crate::protocol::RowReport::default(),
            team: None,
        },
        raw: tokio_tungstenite::tungstenite::Utf8Bytes::default(),
        at,
    })
}

/// [`connected`] to a server that took `skillmon.v1` (history offered).
pub fn connected_ext(at: DateTime<Utc>) -> Event {
    let mut e = connected(at, Some(1000));
    if let Event::Feed(FeedEvent::Connected { ext, .. }) = &mut e {
        *ext = true;
    }
    e
}

/// A `history` frame of `window` whose last bucket holds `now`: per skill,
/// bucket `i` (oldest 0) has `inv(i)` invocations, 80 % completed, an
/// average of `1 + i % 4` s; `anomalies` are (skill, type, detected_at).
pub fn history(
    window: crate::protocol::HistoryWindow,
    now: DateTime<Utc>,
    skills: &[&str],
    inv: impl Fn(usize) -> u64,
    anomalies: &[(&str, &str, DateTime<Utc>)],
) -> Event {
    use crate::protocol::{
        History, HistoryAnomaly, HistoryBucket, SkillHistory, format_bucket_start,
    };
    let first = window.first_bucket_start(now.timestamp() as f64);
    let secs = window.bucket_seconds();
    let skills = skills
        .iter()
        .map(|name| SkillHistory {
            skill_name: (*name).into(),
            buckets: (0..window.buckets())
                .map(|i| {
                    let n = inv(i);
                    HistoryBucket {
                        start: format_bucket_start(first + i as i64 * secs),
                        invocations: n,
                        completed: n * 4 / 5,
                        avg_duration: (n > 0).then_some(1.0 + (i % 4) as f64),
                    }
                })
                .collect(),
            anomalies: anomalies
                .iter()
                .filter(|a| a.0 == *name)
                .map(|(_, kind, at)| HistoryAnomaly {
                    detected_at: crate::protocol::format_timestamp(*at),
                    anomaly_type: (*kind).into(),
                    deviation_score: Some(-3.0),
                    source: Some("live".into()),
                })
                .collect(),
        })
        .collect();
    Event::Feed(FeedEvent::History {
        history: History {
            window,
            bucket_seconds: secs,
            start: format_bucket_start(first),
            timestamp: Some(crate::protocol::format_timestamp(now)),
            skills,
        },
        raw: Default::default(),
        at: now,
    })
}
