//! `skillmon bench` at a server's door (issue 18): a per-address refusal is
//! reported with the server's limit and the flag that lifts it, and the
//! token file is read with the same cap as `watch` and `serve`.

use crate::support;

use support::*;

/// `skillmon bench ARGS` (clean environment, own home) off the runtime.
async fn bench(home: &std::path::Path, args: &[&str]) -> std::process::Output {
    let mut cmd = command(home);
    cmd.arg("bench").args(args).env("SKILLMON_LOG", "warn");
    output(cmd).await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_per_address_refusal_says_the_limit_and_how_to_lift_it() {
    let (db, _conn) = TestDb::seeded();
    let mut cfg = config(&db.path, SHORT_INTERVAL, 10);
    cfg.net.max_connections_per_ip = 3;
    let server = start(cfg).await;
    let home = tempfile::tempdir().unwrap();
    let out = bench(
        home.path(),
        &[
            &server.url(),
            "--clients",
            "5",
            "--retries",
            "0",
            "--duration",
            "500ms",
            "--warmup",
            "100ms",
            "--grace",
            "100ms",
        ],
    )
    .await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains(
            "the server allows 3 connections per address; rerun serve with --max-connections-per-ip 5"
        ),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_token_file_larger_than_a_token_is_refused_unread() {
    let home = tempfile::tempdir().unwrap();
    let big = home.path().join("token");
    std::fs::write(&big, "a".repeat(1 << 20)).unwrap();
    let out = bench(
        home.path(),
        &["ws://127.0.0.1:9/ws", "--token-file", big.to_str().unwrap()],
    )
    .await;
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("larger than 16 KiB"), "{err}");
    assert!(!err.contains("aaaa"), "the content is never echoed: {err}");
}
