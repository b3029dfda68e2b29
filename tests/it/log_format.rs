//! `--log-format json`: the real `serve`, `watch --log-file` and
//! `demo` write one JSON object per line, and a session's lines carry its
//! span's fields (session id, peer), for log shippers.

use crate::support;

use std::ffi::OsStr;
use std::sync::mpsc;

use serde_json::Value;
use support::{Client, DEADLINE, make_db, spawn_logging, spawn_logging_at, terminate};
use tokio_tungstenite::MaybeTlsStream;

/// The next stderr line, parsed: every line must be one JSON object.
fn next_object(lines: &mpsc::Receiver<String>) -> Value {
    let line = lines.recv_timeout(DEADLINE).expect("a log line in time");
    parse_object(&line)
}

fn parse_object(line: &str) -> Value {
    let v: Value = serde_json::from_str(line)
        .unwrap_or_else(|e| panic!("not one JSON object per line ({e}): {line:?}"));
    assert!(v.is_object(), "{line:?}");
    assert!(
        v["level"].is_string() && v["timestamp"].is_string(),
        "{line:?}"
    );
    v
}

/// The first `listening on ws://…` URL among JSON lines.
fn listening_url(lines: &mpsc::Receiver<String>) -> String {
    loop {
        let v = next_object(lines);
        if let Some(rest) = v["message"]
            .as_str()
            .and_then(|m| m.split("listening on ").nth(1))
        {
            return rest.split_whitespace().next().expect("url").to_owned();
        }
    }
}

/// The span named `session` that a line was logged in, if any.
fn session_span(v: &Value) -> Option<&Value> {
    v["spans"]
        .as_array()?
        .iter()
        .find(|s| s["name"] == "session")
}

#[tokio::test]
async fn serve_json_lines_carry_the_sessions_fields() {
    let home = tempfile::tempdir().expect("home");
    let db = make_db();
    let args = [
        OsStr::new("serve"),
        OsStr::new("--port"),
        OsStr::new("0"),
        OsStr::new("--log-format"),
        OsStr::new("json"),
        OsStr::new("--db"),
        db.path.as_os_str(),
    ];
    // `connected` / `disconnected` are debug lines (a flood at info).
    let (child, lines) = spawn_logging_at(home.path(), &args, "info,skillmon=debug");
    let url = listening_url(&lines);
    let (client, _) = Client::connect(&url).await;
    let MaybeTlsStream::Plain(tcp) = client.ws.get_ref() else {
        panic!("a plain ws:// connection")
    };
    let local = tcp.local_addr().expect("local addr").to_string();
    let connected = loop {
        let v = next_object(&lines);
        if v["message"] == "connected" {
            break v;
        }
    };
    let span = session_span(&connected).unwrap_or_else(|| panic!("no session span: {connected}"));
    assert!(
        span["session"].as_str().is_some_and(|s| !s.is_empty()),
        "{connected}"
    );
    assert_eq!(span["peer"], local.as_str(), "{connected}");
    assert_eq!(connected["span"]["name"], "session", "{connected}");
    drop(client);
    let status = terminate(child);
    assert!(status.success(), "{status:?}");
    // Every line to the end, the disconnect and the shutdown too.
    let rest: Vec<Value> = lines.try_iter().map(|l| parse_object(&l)).collect();
    assert!(
        rest.iter().any(|v| v["message"]
            .as_str()
            .is_some_and(|m| m.contains("shutting down"))),
        "{rest:?}"
    );
}

#[tokio::test]
async fn watch_log_file_and_demo_follow_the_log_format() {
    let home = tempfile::tempdir().expect("home");
    let db = make_db();
    let server = support::serve(&db.path, support::WATCH_INTERVAL).await;
    let log = home.path().join("watch.log");
    // The env var, as a service manager would set it.
    let mut c = support::command(home.path());
    c.env("SKILLMON_LOG_FORMAT", "json")
        .arg("watch")
        .arg("--once")
        .arg("--json")
        .arg("--log-file")
        .arg(&log)
        .arg(server.url());
    let out = support::output(c).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::fs::read_to_string(&log).expect("the log file");
    let objects: Vec<Value> = text.lines().map(parse_object).collect();
    assert!(
        objects.iter().any(|v| v["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("skillmon watch"))),
        "{text}"
    );

    // demo --serve-only: its log lines are JSON; its one line for people
    // (where it serves) stays text.
    let args = [
        "demo",
        "--serve-only",
        "--port",
        "0",
        "--log-format",
        "json",
    ]
    .map(OsStr::new);
    let (child, lines) = spawn_logging(home.path(), &args);
    let mut logged = false;
    loop {
        let line = lines.recv_timeout(DEADLINE).expect("demo start-up lines");
        if line.starts_with("skillmon demo: serving") {
            break;
        }
        let v = parse_object(&line);
        logged |= v["message"]
            .as_str()
            .is_some_and(|m| m.contains("listening on ws://127.0.0.1:"));
    }
    assert!(logged, "the demo server's start is logged as JSON");
    assert!(terminate(child).success());
    for line in lines.try_iter() {
        parse_object(&line);
    }
    server.stop().await.expect("stop");
}
