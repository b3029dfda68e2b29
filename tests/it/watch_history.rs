//! `skillmon watch` and issue 9 as a script uses it: `--once
//! --fail-on-anomaly` exit codes and `--once --json --history`, the real
//! binary against a real `skillmon serve` on a temp DB (and a closed port).

use crate::support;

use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fail_on_anomaly_exit_codes() {
    // An anomaly in the snapshot: exit 3, the table still printed.
    let db = make_db();
    let server = serve(&db.path, WATCH_INTERVAL).await;
    let url = server.url();
    let out = run_in(
        db.dir.path(),
        &["watch", &url, "--once", "--fail-on-anomaly"],
    )
    .await;
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("ANOMALY") && text.contains("mypy"), "{text}");
    // Without the flag the same snapshot exits 0.
    run_ok(db.dir.path(), &["watch", &url, "--once"]).await;
    server.stop().await.expect("stop");

    // No anomaly: exit 0 with the flag.
    let (quiet, conn) = TestDb::new();
    invoke(&conn, "ruff-check", true, Some(0.5));
    let server = serve(&quiet.path, WATCH_INTERVAL).await;
    let url = server.url();
    let out = run_in(
        quiet.dir.path(),
        &["watch", &url, "--once", "--json", "--fail-on-anomaly"],
    )
    .await;
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value =
        serde_json::from_str(String::from_utf8_lossy(&out.stdout).trim()).expect("one object");
    assert_eq!(v["data"]["anomalies"], serde_json::json!([]));
    server.stop().await.expect("stop");

    // No snapshot at all: exit 1, whatever the flag.
    let out = run_in(
        quiet.dir.path(),
        &[
            "watch",
            &url,
            "--once",
            "--fail-on-anomaly",
            "--timeout",
            "2s",
        ],
    )
    .await;
    assert_eq!(out.status.code(), Some(1));

    // The flag only means something with --once.
    let out = run_in(quiet.dir.path(), &["watch", &url, "--fail-on-anomaly"]).await;
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--once"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn once_json_history_24h_includes_the_frame() {
    let db = make_db();
    let server = serve(&db.path, WATCH_INTERVAL).await;
    let out = run_ok(
        db.dir.path(),
        &[
            "watch",
            &server.url(),
            "--once",
            "--json",
            "--history",
            "24h",
        ],
    )
    .await;
    let text = String::from_utf8(out.stdout).expect("utf8");
    assert_eq!(text.lines().count(), 1, "{text}");
    let v: serde_json::Value = serde_json::from_str(text.trim()).expect("one JSON object");
    assert_eq!(v["type"], "metrics_update");
    let h = &v["history"];
    assert_eq!(h["type"], "history", "{h}");
    assert_eq!(h["window"], "24h");
    assert_eq!(h["bucket_seconds"], 900);
    assert!(h["received_at"].is_string(), "{h}");
    // One series per skill of the snapshot, 96 buckets each, whose counts
    // add up to the database's (everything was written just now).
    let series = h["skills"].as_array().expect("skills");
    let mut names: Vec<&str> = series
        .iter()
        .filter_map(|s| s["skill_name"].as_str())
        .collect();
    names.sort_unstable();
    assert_eq!(names, ["mypy", "pytest-run", "ruff-check"]);
    for s in series {
        let buckets = s["buckets"].as_array().expect("buckets");
        assert_eq!(buckets.len(), 96, "{s}");
        let total: u64 = buckets
            .iter()
            .filter_map(|b| b["invocations"].as_u64())
            .sum();
        let want = db_metrics(&db.path)
            .into_iter()
            .find(|m| m.0 == s["skill_name"].as_str().unwrap_or_default())
            .map(|m| m.1);
        assert_eq!(Some(total), want, "{s}");
    }
    let mypy = series
        .iter()
        .find(|s| s["skill_name"] == "mypy")
        .expect("mypy");
    assert_eq!(mypy["anomalies"][0]["anomaly_type"], "drop", "{mypy}");
    server.stop().await.expect("stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_against_session_buddy_is_null_and_never_asked() {
    let sb = session_buddy(std::time::Duration::from_millis(200)).await;
    let home = tempfile::tempdir().expect("tempdir");
    let out = run_ok(
        home.path(),
        &["watch", &sb.url, "--once", "--json", "--history", "1h"],
    )
    .await;
    let v: serde_json::Value =
        serde_json::from_str(String::from_utf8_lossy(&out.stdout).trim()).expect("one object");
    assert_eq!(v["type"], "metrics_update");
    assert!(v["history"].is_null(), "{v}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("does not offer history"), "{err}");
    let sent = sb
        .received
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone();
    assert!(sent.iter().all(|m| !m.contains("\"history\"")), "{sent:?}");

    // --history needs --once --json; a window other than 1h / 24h is named.
    let out = run_in(
        home.path(),
        &["watch", &sb.url, "--once", "--history", "1h"],
    )
    .await;
    assert!(!out.status.success());
    let out = run_in(
        home.path(),
        &["watch", &sb.url, "--once", "--json", "--history", "7d"],
    )
    .await;
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("[possible values: 1h, 24h]"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bell_comes_from_the_flag_or_the_config_file() {
    let home = tempfile::tempdir().expect("tempdir");
    let out = run_ok(home.path(), &["watch", "--print-config"]).await;
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("bell = false  # default"), "{text}");
    assert!(text.contains("seen = [\"a\"]"), "{text}");
    assert!(text.contains("window = [\"w\"]"), "{text}");
    let out = run_ok(home.path(), &["watch", "--print-config", "--bell"]).await;
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("bell = true  # flag"), "{text}");
    let cfg = home.path().join("c.toml");
    std::fs::write(&cfg, "bell = true\n").expect("write");
    let cfg_arg = cfg.to_str().expect("a UTF-8 temp path");
    let out = run_ok(
        home.path(),
        &["watch", "--print-config", "--config", cfg_arg],
    )
    .await;
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("bell = true  # file"), "{text}");
}
