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
        },
        raw: tokio_tungstenite::tungstenite::Utf8Bytes::default(),
        at,
    })
}
