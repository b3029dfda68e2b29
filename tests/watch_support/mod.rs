//! Shared helpers for the `watch` integration tests: a real temp DB built
//! with the fixture, a real `skillmon serve` in-process, the real binary,
//! and a tiny session-buddy-like server.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use skillmon::store::fixture::{Invocation, create_db, insert_anomaly, insert_invocation};
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::Message;

pub const BIN: &str = env!("CARGO_BIN_EXE_skillmon");

/// A temp dir holding `skills.db` plus HOME/XDG dirs for the child process.
pub struct TestDb {
    pub dir: tempfile::TempDir,
    pub path: PathBuf,
}

/// (skill, completed?, duration) rows: pytest-run 4 uses (3 done), mypy 2
/// (none done: avg null), ruff-check 1.
pub fn make_db() -> TestDb {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("skills.db");
    let conn = create_db(&path).expect("create db");
    let now = chrono::Utc::now();
    let at = now.to_rfc3339();
    let rows: &[(&str, bool, Option<f64>)] = &[
        ("pytest-run", true, Some(6.5)),
        ("pytest-run", true, Some(3.25)),
        ("pytest-run", false, None),
        ("pytest-run", true, Some(1.0)),
        ("mypy", false, None),
        ("mypy", false, None),
        ("ruff-check", true, Some(0.5)),
    ];
    for (name, done, dur) in rows {
        insert_invocation(
            &conn,
            &Invocation {
                skill_name: name,
                invoked_at: &at,
                completed: *done,
                duration_seconds: *dur,
                session_id: "s1",
            },
        )
        .expect("insert");
    }
    let detected = now.format("%Y-%m-%d %H:%M:%S").to_string();
    insert_anomaly(&conn, "mypy", &detected, "drop", Some(-2.5)).expect("anomaly");
    TestDb { dir, path }
}

/// (name, total, completion %, avg duration) straight from `skill_metrics`.
pub fn db_metrics(path: &Path) -> Vec<(String, u64, f64, Option<f64>)> {
    let conn = rusqlite::Connection::open(path).expect("open");
    let mut st = conn
        .prepare(
            "SELECT skill_name, total_invocations, completion_rate, avg_duration_seconds
             FROM skill_metrics WHERE total_invocations > 0
             ORDER BY total_invocations DESC, skill_name",
        )
        .expect("prepare");
    st.query_map([], |r| {
        Ok((r.get(0)?, r.get::<_, i64>(1)? as u64, r.get(2)?, r.get(3)?))
    })
    .expect("query")
    .collect::<Result<_, _>>()
    .expect("rows")
}

/// Start `skillmon serve` in-process on 127.0.0.1:0.
pub async fn serve(db: &Path) -> skillmon::server::Handle {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let config = skillmon::server::ServeConfig {
        interval: Duration::from_millis(200),
        ..skillmon::server::ServeConfig::new(db)
    };
    skillmon::server::start(listener, config)
        .await
        .expect("start")
}

/// `skillmon` with a clean environment whose config and log dirs are in `home`.
pub fn command(home: &Path) -> Command {
    let mut c = Command::new(BIN);
    c.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", home)
        .env("XDG_CONFIG_HOME", home.join("config"))
        .env("XDG_DATA_HOME", home.join("data"));
    c
}

/// Run `skillmon ARGS` (config and logs under `home`) and insist it succeeds.
pub async fn run_ok(home: &Path, args: &[&str]) -> Output {
    let mut c = command(home);
    c.args(args);
    let out = output(c).await;
    assert!(
        out.status.success(),
        "skillmon {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Run to completion off the async runtime.
pub async fn output(mut c: Command) -> Output {
    tokio::task::spawn_blocking(move || c.output().expect("run skillmon"))
        .await
        .expect("join")
}

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
                d.map(|d| format!("{d:?}")).unwrap_or_else(|| "null".into())
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
                            rec.lock().unwrap_or_else(|p| p.into_inner()).push(t.as_str().to_owned());
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
