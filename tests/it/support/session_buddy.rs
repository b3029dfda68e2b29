//! A minimal session-buddy: compat frames only, for the `watch` tests.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::Message;

/// A minimal session-buddy: compat frames only. `connected` without
/// extensions, no snapshot on connect, an update every `interval` without
/// `seq` (Python's `", "` separators), a bare pong, silence on bad input,
/// `anomalies: []` and no frame at all for a filtered skill outside the
/// top 10. Records every text frame the clients send.
pub struct SessionBuddy {
    pub url: String,
    pub received: Arc<Mutex<Vec<String>>>,
    pub task: tokio::task::JoinHandle<()>,
}

impl Drop for SessionBuddy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Python's `json.dumps` escaping: every non-ASCII char as `\\uXXXX`.
pub fn py_escape(s: &str) -> String {
    s.encode_utf16()
        .map(|u| {
            if u < 0x80 {
                char::from(u as u8).to_string()
            } else {
                format!("\\u{u:04x}")
            }
        })
        .collect()
}

pub fn python_update(skills: &[(&str, u64, f64, Option<f64>)], anomalies: bool) -> String {
    let rows: Vec<String> = skills
        .iter()
        .map(|(n, t, c, d)| {
            format!(
                "{{\"skill_name\": \"{}\", \"total_invocations\": {t}, \"completion_rate\": {c:?}, \"avg_duration_seconds\": {}}}",
                py_escape(n),
                d.map_or_else(|| "null".into(), |d| format!("{d:?}"))
            )
        })
        .collect();
    let anomalies = if anomalies {
        "[{\"skill_name\": \"mypy\", \"detected_at\": \"2026-11-22 02:33:54\", \"anomaly_type\": \"drop\", \"deviation_score\": -2.7}]"
    } else {
        "[]"
    };
    format!(
        "{{\"type\": \"metrics_update\", \"timestamp\": \"2026-11-22T02:39:05.295129+00:00\", \"data\": {{\"top_skills\": [{}], \"anomalies\": {anomalies}}}}}",
        rows.join(", ")
    )
}

pub const SB_SKILLS: &[(&str, u64, f64, Option<f64>)] = &[
    ("pytest-run", 30, 93.33333333333333, Some(6.34)),
    ("caf\u{e9}-\u{1f680}", 2, 0.0, None),
];

pub async fn session_buddy(interval: Duration) -> SessionBuddy {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("ws://{}", listener.local_addr().expect("addr"));
    let received = Arc::new(Mutex::new(Vec::new()));
    let rec = received.clone();
    let task = tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let rec = rec.clone();
            tokio::spawn(async move {
                let Ok(ws) = tokio_tungstenite::accept_async(stream).await else {
                    return;
                };
                let (mut tx, mut rx) = ws.split();
                let hello = "{\"type\": \"connected\", \"message\": \"Connected to Session Buddy real-time metrics\", \"authenticated\": false, \"timestamp\": \"2026-11-22T02:39:04.515314+00:00\"}";
                if tx.send(Message::text(hello)).await.is_err() {
                    return;
                }
                let mut filter: Option<String> = None;
                let start = tokio::time::Instant::now() + interval;
                let mut tick = tokio::time::interval_at(start, interval);
                loop {
                    tokio::select! {
                        _ = tick.tick() => {
                            let frame = match &filter {
                                None => Some(python_update(SB_SKILLS, true)),
                                Some(f) => {
                                    let rows: Vec<_> = SB_SKILLS.iter().copied().filter(|s| s.0 == f).collect();
                                    (!rows.is_empty()).then(|| python_update(&rows, false))
                                }
                            };
                            if let Some(frame) = frame
                                && tx.send(Message::text(frame)).await.is_err()
                            {
                                return;
                            }
                        }
                        msg = rx.next() => {
                            let Some(Ok(Message::Text(t))) = msg else { return };
                            rec.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push(t.as_str().to_owned());
                            let Ok(v) = serde_json::from_str::<serde_json::Value>(t.as_str()) else { continue };
                            match v.get("type").and_then(|t| t.as_str()) {
                                Some("subscribe") => {
                                    let skill = v.get("skill").cloned().unwrap_or(serde_json::Value::Null);
                                    filter = skill.as_str().filter(|s| !s.is_empty()).map(str::to_owned);
                                    let reply = format!(
                                        "{{\"type\": \"subscription_confirmed\", \"skill\": {skill}, \"timestamp\": \"2026-11-22T02:39:04.6+00:00\"}}"
                                    );
                                    if tx.send(Message::text(reply)).await.is_err() {
                                        return;
                                    }
                                }
                                Some("ping")
                                    if tx.send(Message::text("{\"type\": \"pong\"}")).await.is_err() =>
                                {
                                    return;
                                }
                                _ => {}
                            }
                        }
                    }
                }
            });
        }
    });
    SessionBuddy {
        url,
        received,
        task,
    }
}
