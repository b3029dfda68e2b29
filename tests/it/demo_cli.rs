//! The real `skillmon demo` binary: it builds its database, keeps writing
//! into it, serves it, and removes its files on exit; `--keep-db` and
//! `--generate` never overwrite a file.

use std::ffi::OsStr;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::mpsc;

use support::{
    DEADLINE, Spawned, Ws, command, next_parsed_update, send_lines, spawn_logging, terminate,
};

use crate::support;

/// Total invocations in the next update.
async fn next_total(ws: &mut Ws) -> u64 {
    let u = next_parsed_update(ws).await;
    u.data.top_skills.iter().map(|s| s.total_invocations).sum()
}

#[tokio::test]
async fn demo_writes_serves_and_removes_its_files() {
    let home = tempfile::tempdir().expect("home");
    let args = ["demo", "--serve-only", "--port", "0", "--interval", "100ms"].map(OsStr::new);
    let (child, lines) = spawn_logging(home.path(), &args);
    let (mut db, mut url) = (None::<PathBuf>, None::<String>);
    while db.is_none() || url.is_none() {
        let line = lines.recv_timeout(DEADLINE).expect("demo start-up lines");
        if let Some(rest) = line.split("demo database ").nth(1) {
            db = Some(PathBuf::from(rest.split(" with ").next().unwrap()));
        }
        if let Some(rest) = line.split("listening on ").nth(1) {
            url = Some(rest.split_whitespace().next().unwrap().to_owned());
        }
    }
    let db = db.unwrap();
    let dir = db.parent().unwrap().to_owned();
    assert!(db.exists(), "{db:?}");

    let (mut ws, _) = tokio_tungstenite::connect_async(url.unwrap())
        .await
        .unwrap();
    let first = next_total(&mut ws).await;
    assert!(first > 1000, "24 h of history is back-filled: {first}");
    // The writer keeps inserting: the totals grow (the timeline's quiet
    // period starts only 190 s in).
    let mut grew = false;
    for _ in 0..100 {
        if next_total(&mut ws).await > first {
            grew = true;
            break;
        }
    }
    assert!(grew, "no new invocations were written");

    let status = terminate(child);
    assert!(status.success(), "{status:?}");
    assert!(
        !dir.exists(),
        "the demo's temporary directory {dir:?} is removed"
    );
}

#[test]
fn keep_db_and_generate_never_overwrite() {
    let dir = tempfile::tempdir().unwrap();
    let mine = dir.path().join("mine.db");
    std::fs::write(&mine, b"precious").unwrap();
    for args in [
        vec!["demo", "--serve-only", "--port", "0", "--keep-db"],
        vec!["demo", "--generate"],
    ] {
        let out = command(dir.path()).args(&args).arg(&mine).output().unwrap();
        assert!(!out.status.success(), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("already exists"), "{args:?}: {err}");
        assert_eq!(std::fs::read(&mine).unwrap(), b"precious");
    }
}

#[test]
fn demo_json_prints_updates_and_cleans_up_on_sigterm() {
    let home = tempfile::tempdir().expect("home");
    let mut child = Spawned::spawn(
        command(home.path())
            .args(["demo", "--json", "--interval", "100ms"])
            .env("SKILLMON_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped()),
    );
    let (tx, lines) = mpsc::channel::<(bool, String)>();
    send_lines(child.stdout.take().unwrap(), tx.clone(), |l| (true, l));
    send_lines(child.stderr.take().unwrap(), tx, |l| (false, l));
    let (mut db, mut updates) = (None::<PathBuf>, 0);
    while db.is_none() || updates < 3 {
        let (is_stdout, line) = lines.recv_timeout(DEADLINE).expect("demo output");
        if is_stdout {
            let v: serde_json::Value = serde_json::from_str(&line).expect("one JSON object a line");
            assert_eq!(v["type"], "metrics_update", "{line}");
            assert!(v["received_at"].is_string(), "{line}");
            assert!(!v["data"]["top_skills"].as_array().unwrap().is_empty());
            updates += 1;
        } else if let Some(rest) = line.split("; database ").nth(1) {
            db = Some(PathBuf::from(rest.trim()));
        }
    }
    let dir = db.unwrap().parent().unwrap().to_owned();
    assert!(dir.exists());
    let status = terminate(child);
    assert!(status.success(), "{status:?}");
    assert!(!dir.exists(), "{dir:?} removed");
}
