//! `skillmon watch` and issue 9 as a script uses it: `--once
//! --fail-on-anomaly` exit codes and `--once --json --history`, the real
//! binary against a real `skillmon serve` on a temp DB (and a closed port).

mod support;

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
