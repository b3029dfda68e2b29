//! `skillmon watch --json` / `--once` as a user runs them: the real binary
//! against a real `skillmon serve` on a temp DB, and against a tiny
//! session-buddy-like server (compat frames only).

use crate::support;

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;
use support::*;

/// `watch URL --once` and the whitespace-separated `flags`.
fn once_args<'a>(url: &'a str, flags: &'a str) -> Vec<&'a str> {
    ["watch", url, "--once"]
        .into_iter()
        .chain(flags.split_whitespace())
        .collect()
}

fn assert_matches_db(frame: &Value, db: &[(String, u64, f64, Option<f64>)]) {
    let top = frame["data"]["top_skills"].as_array().expect("top_skills");
    assert_eq!(top.len(), db.len(), "{frame}");
    for (row, (name, total, rate, avg)) in top.iter().zip(db) {
        assert_eq!(row["skill_name"], Value::from(name.as_str()));
        assert_eq!(row["total_invocations"].as_u64(), Some(*total), "{name}");
        assert_eq!(row["completion_rate"].as_f64(), Some(*rate), "{name}");
        assert_eq!(row["avg_duration_seconds"].as_f64(), *avg, "{name}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn once_json_equals_the_database() {
    let db = make_db();
    let server = serve(&db.path, WATCH_INTERVAL).await;
    let out = run_ok(db.dir.path(), &["watch", &server.url(), "--once", "--json"]).await;
    let text = String::from_utf8(out.stdout).expect("utf8");
    assert_eq!(text.lines().count(), 1, "{text}");
    let v: Value = serde_json::from_str(text.trim()).expect("one JSON object");
    assert_eq!(v["type"], "metrics_update");
    assert!(
        v["received_at"]
            .as_str()
            .is_some_and(|s| skillmon::protocol::parse_timestamp(s).is_some())
    );
    assert!(v["seq"].as_u64().is_some());
    let expected = db_metrics(&db.path);
    assert_eq!(expected.len(), 3);
    assert_matches_db(&v, &expected);
    let anomalies = v["data"]["anomalies"].as_array().expect("anomalies");
    assert_eq!(anomalies[0]["skill_name"], "mypy");
    assert_eq!(anomalies[0]["deviation_score"].as_f64(), Some(-2.5));
    server.stop().await.expect("stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn once_table_shows_the_database_values() {
    let db = make_db();
    let server = serve(&db.path, WATCH_INTERVAL).await;
    let out = run_ok(db.dir.path(), &["watch", &server.url(), "--once"]).await;
    let text = String::from_utf8(out.stdout).expect("utf8");
    let lines: Vec<&str> = text.lines().collect();
    let header = lines
        .iter()
        .position(|l| l.contains("SKILL"))
        .expect("header");
    for (i, (name, total, rate, avg)) in db_metrics(&db.path).iter().enumerate() {
        let cols: Vec<&str> = lines[header + 1 + i].split_whitespace().collect();
        assert_eq!(cols[0], (i + 1).to_string());
        assert_eq!(cols[1], name);
        assert_eq!(cols[2], total.to_string());
        assert_eq!(cols[3], format!("{rate:.1}%"));
        let avg = avg.map_or_else(|| "-".into(), |a| format!("{a:.2}s"));
        assert_eq!(cols[4], avg);
    }
    assert!(text.contains("ANOMALY"), "{text}");
    assert!(
        text.lines()
            .any(|l| l.starts_with("drop") && l.contains("mypy") && l.contains("-2.5")),
        "{text}"
    );
    server.stop().await.expect("stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_stream_prints_one_line_per_update() {
    let db = make_db();
    let server = serve(&db.path, WATCH_INTERVAL).await;
    let mut c = command(db.dir.path());
    // stdout is a pipe, not a terminal: JSON lines even without --json.
    c.args(["watch", &server.url(), "--skill", "mypy"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let lines = tokio::task::spawn_blocking(move || {
        let mut child = Spawned::spawn(&mut c);
        let stdout = child.stdout.take().expect("stdout");
        let lines: Vec<String> = BufReader::new(stdout)
            .lines()
            .take(3)
            .map(|l| l.expect("line"))
            .collect();
        let _ = child.kill();
        let _ = child.wait();
        lines
    })
    .await
    .expect("join");
    assert_eq!(lines.len(), 3);
    let mut seqs = vec![];
    for l in &lines {
        let v: Value = serde_json::from_str(l).expect("json line");
        assert_eq!(v["type"], "metrics_update");
        assert!(v["received_at"].is_string());
        // Only the subscribed skill: the unfiltered picture sent before the
        // confirmation is never printed.
        let top = v["data"]["top_skills"].as_array().expect("top");
        assert_eq!(top.len(), 1, "{l}");
        let expected: Vec<_> = db_metrics(&db.path)
            .into_iter()
            .filter(|r| r.0 == "mypy")
            .collect();
        assert_matches_db(&v, &expected);
        assert_eq!(top[0]["avg_duration_seconds"], Value::Null);
        seqs.push(v["seq"].as_u64().expect("seq"));
    }
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
    server.stop().await.expect("stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn once_fails_clearly_when_nothing_listens() {
    let dir = tempfile::tempdir().expect("tempdir");
    // A port that was free a moment ago.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("port")
        .port();
    let url = format!("ws://127.0.0.1:{port}");
    let out = run_fails(dir.path(), &["watch", &url, "--once"]).await;
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cannot get a snapshot"), "{err}");
    assert!(out.stdout.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_url_and_bad_config_are_named() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = run_fails(dir.path(), &["watch", "http://localhost:1", "--once"]).await;
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a WebSocket URL"));

    let cfg = dir.path().join("bad.toml");
    std::fs::write(&cfg, "url = \"ws://x:1\"\nskills = \"mypy\"\n").expect("write");
    let cfg_arg = cfg.to_str().expect("a UTF-8 temp path");
    let out = run_fails(
        dir.path(),
        &["watch", "--print-config", "--config", cfg_arg],
    )
    .await;
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("bad.toml") && err.contains("line 2") && err.contains("skills"),
        "{err}"
    );

    std::fs::write(&cfg, "[keys]\nfreeze = \"q\"\n").expect("write");
    let mut c = command(dir.path());
    c.args(["watch", "--print-config"])
        .env("SKILLMON_CONFIG", &cfg);
    let out = output(c).await;
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("bound to both"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn print_config_shows_precedence() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg_dir = dir.path().join("config").join("skillmon");
    std::fs::create_dir_all(&cfg_dir).expect("mkdir");
    std::fs::write(
        cfg_dir.join("config.toml"),
        "url = \"ws://file:1\"\nskills = [\"a\"]\ntheme = \"light\"\n[keys]\nfreeze = [\"F\", \"x\"]\n",
    )
    .expect("write");
    let mut c = command(dir.path());
    c.args(["watch", "--print-config", "--skill", "b"])
        .env("SKILLMON_URL", "ws://env:2");
    let out = output(c).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("config.toml"), "{text}");
    assert!(text.contains("url = \"ws://env:2\"  # env"), "{text}");
    assert!(text.contains("skills = [\"b\"]  # flag"), "{text}");
    assert!(text.contains("theme = \"light\"  # file"), "{text}");
    assert!(text.contains("freeze = [\"F\", \"x\"]"), "{text}");

    let mut c = command(dir.path());
    c.args(["watch", "--print-config", "ws://flag:3"])
        .env("SKILLMON_URL", "ws://env:2")
        .env("NO_COLOR", "1");
    let out = output(c).await;
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("url = \"ws://flag:3\"  # flag"),
        "a flag over a set variable is a flag: {text}"
    );
    assert!(text.contains("theme = \"mono\""), "{text}");
}

// ---- session-buddy compatibility ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compat_once_json_and_table_against_session_buddy() {
    let sb = session_buddy(Duration::from_millis(300)).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let out = run_ok(dir.path(), &["watch", &sb.url, "--once", "--json"]).await;
    let v: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(
        v["data"]["top_skills"][0]["completion_rate"].as_f64(),
        Some(93.33333333333333)
    );
    assert_eq!(
        v["data"]["top_skills"][1]["skill_name"],
        "caf\u{e9}-\u{1f680}"
    );
    assert!(v.get("seq").is_none());
    assert!(v["received_at"].is_string());

    let out = run_ok(dir.path(), &["watch", &sb.url, "--once"]).await;
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("caf\u{e9}-\u{1f680}"), "{text}");
    assert!(
        text.lines()
            .any(|l| l.contains("pytest-run") && l.contains("93.3%") && l.contains("6.34s")),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compat_filtered_subscription_and_missing_skill() {
    let sb = session_buddy(Duration::from_millis(200)).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let args = once_args(&sb.url, "--json --skill pytest-run");
    let out = run_ok(dir.path(), &args).await;
    let v: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(v["data"]["top_skills"].as_array().map(Vec::len), Some(1));
    assert_eq!(v["data"]["anomalies"], serde_json::json!([]));
    let sent = sb
        .received
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone();
    let subs: Vec<Value> = sent
        .iter()
        .filter_map(|s| serde_json::from_str::<Value>(s).ok())
        .filter(|v| v["type"] == "subscribe")
        .collect();
    assert_eq!(
        subs,
        vec![serde_json::json!({"type": "subscribe", "skill": "pytest-run"})]
    );

    // A skill outside the top 10 gets no frame at all: a clear timeout.
    let args = once_args(&sb.url, "--skill nope --timeout 700ms");
    let out = run_in(dir.path(), &args).await;
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no metrics_update for nope"), "{err}");
}

/// session-buddy ignores `skills: [...]` and sends every skill: `--once`
/// still shows only the skills asked for.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compat_multi_skill_once_shows_only_the_asked_skills() {
    let sb = session_buddy(Duration::from_millis(200)).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let args = once_args(&sb.url, "--skill pytest-run --skill mypy");
    let out = run_ok(dir.path(), &args).await;
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("pytest-run"), "{text}");
    // The server also sends café-🚀, which was not asked for.
    assert!(SB_SKILLS.iter().any(|s| s.0 == "caf\u{e9}-\u{1f680}"));
    assert!(!text.contains("caf\u{e9}"), "not asked for: {text}");
}

/// `--once` leaves with a close frame (1000), not a dropped socket.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn once_closes_the_connection_with_1000() {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("ws://{}", listener.local_addr().expect("addr"));
    let server = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.expect("accept");
        let mut ws = tokio_tungstenite::accept_async(tcp)
            .await
            .expect("handshake");
        let hello = r#"{"type": "connected", "message": "hi", "authenticated": false, "timestamp": "2026-11-22T02:39:04Z"}"#;
        ws.send(Message::text(hello)).await.expect("send");
        ws.send(Message::text(python_update(SB_SKILLS, true)))
            .await
            .expect("send");
        // The client's answer to the update: its close frame.
        while let Some(Ok(msg)) = ws.next().await {
            if let Message::Close(frame) = msg {
                return frame.map(|f| u16::from(f.code));
            }
        }
        None
    });
    let dir = tempfile::tempdir().expect("tempdir");
    run_ok(dir.path(), &["watch", &url, "--once"]).await;
    let code = tokio::time::timeout(Duration::from_secs(10), server)
        .await
        .expect("the server saw the client leave")
        .expect("server task");
    assert_eq!(code, Some(1000));
}
