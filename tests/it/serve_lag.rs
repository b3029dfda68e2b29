//! Issue 18 §3: a reader that never reads is closed once it is more than
//! `--max-lag` bytes behind, the kernel's queue counted: long before the
//! loopback socket buffers (megabytes) fill and the write timeout could
//! fire. The other clients miss nothing, and a reply larger than the limit
//! (a `history`) is no reason to close.

use crate::support;

use std::time::Duration;

use serde_json::json;
use support::*;
use tokio::io::AsyncReadExt;

/// Skills with long names (rows of a few hundred bytes each) in most tests.
const SKILLS: usize = 100;
/// An interval the healthy client keeps up with on a busy machine.
const INTERVAL: Duration = Duration::from_millis(100);
/// Longer than any test here: a close must come from `--max-lag`.
const WRITE_TIMEOUT: Duration = Duration::from_secs(60);

fn seed_long_names(conn: &rusqlite::Connection, skills: usize) {
    conn.execute_batch("BEGIN").unwrap();
    for i in 0..skills {
        let name = format!("{i:04}-{}", "a-rather-long-skill-name-".repeat(8));
        for _ in 0..=(i % 3) {
            invoke(conn, &name, true, Some(1.0));
        }
    }
    conn.execute_batch("COMMIT").unwrap();
}

/// A server on [`seed_long_names`] serving the top `top`, `--max-lag
/// max_lag`, a write timeout that never fires in these tests.
async fn serve_lag(top: usize, max_lag: usize) -> (TestDb, skillmon::server::Handle) {
    let (db, conn) = TestDb::new();
    seed_long_names(&conn, SKILLS);
    let mut cfg = config(&db.path, INTERVAL, top);
    cfg.write_timeout = WRITE_TIMEOUT;
    cfg.net.max_lag = Some(max_lag);
    (db, start(cfg).await)
}

/// The next update of `c`, which must follow the last one without a gap.
async fn next_in_order(c: &mut Client) -> serde_json::Value {
    let last = c.last_seq;
    let u = c.next_update().await;
    if let Some(last) = last {
        assert_eq!(u["seq"], last + 1, "the healthy client missed an update");
    }
    u
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_that_never_reads_is_closed_with_1013_once_more_than_max_lag_behind() {
    const MAX_LAG: usize = 256 * 1024;
    let (_db, server) = serve_lag(SKILLS, MAX_LAG).await;
    let stats = server.stats();
    let (mut good, first) = Client::connect_and_update(&server.url()).await;
    let frame = first.to_string().len();
    assert!(frame > 10_000, "{frame} B frames");

    let raw = stuck_client(server.addr).await;
    // Each of the healthy client's updates is a tick. The stuck one falls a
    // frame behind per tick (its own receive buffer is 4 KiB): it must be
    // closed within about MAX_LAG / frame ticks, where today it is not
    // closed before its socket buffers (megabytes) fill and the write
    // timeout passes.
    let bound = 2 * (MAX_LAG / frame + 2) + 5;
    let mut ticks = 0;
    while stats.slow_clients() == 0 {
        assert!(
            ticks < bound,
            "a client {} behind was not closed within {ticks} ticks of {frame} B",
            ticks * frame
        );
        next_in_order(&mut good).await;
        ticks += 1;
    }
    eprintln!("closed after {ticks} ticks of {frame} B (bound {bound})");

    // Closed with a 1013 that went out, and counted as slow.
    assert_eq!(stats.slow_closes(), 1);
    assert_eq!(stats.slow_drops(), 0);
    let metrics = http_get(server.addr, "/metrics").await.body;
    for line in [
        "skillmon_slow_client_closes_total 1",
        "skillmon_slow_client_drops_total 0",
        "skillmon_closes_total{code=\"1013\"} 1",
    ] {
        assert!(metrics.lines().any(|l| l == line), "{line} in:\n{metrics}");
    }

    // What the stuck client finally reads: whole updates, then the 1013.
    let (texts, end) = read_to_close(raw).await;
    assert!(matches!(end, StreamEnd::Close(1013)), "{end:?}");
    assert!(texts >= 2, "{texts}");

    // The healthy client goes on without a gap.
    for _ in 0..3 {
        next_in_order(&mut good).await;
    }
    assert_eq!(stats.connections(), 1);
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_history_reply_larger_than_max_lag_is_no_reason_to_close() {
    const MAX_LAG: usize = 32 * 1024;
    // Tiny updates (top 1, well under 1 KB: dozens of ticks fit under the
    // limit however late this test's task runs), a big history (64 skills,
    // 24 h).
    let (_db, server) = serve_lag(1, MAX_LAG).await;
    let stats = server.stats();
    let (mut ticker, _) = Client::connect_and_update(&server.url()).await;

    // A client with a small receive buffer, so the reply waits in the
    // server's kernel queue while it does not read.
    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    sock.set_recv_buffer_size(4096).unwrap();
    let stream = sock.connect(server.addr).await.unwrap();
    let (ws, _) = tokio_tungstenite::client_async(
        server.url(),
        tokio_tungstenite::MaybeTlsStream::Plain(stream),
    )
    .await
    .unwrap();
    let mut asker = Client::from_ws(ws);
    asker.next_frame().await; // connected
    let skills: Vec<String> = (0..SKILLS.min(64))
        .map(|i| format!("{i:04}-{}", "a-rather-long-skill-name-".repeat(8)))
        .collect();
    asker
        .send_json(json!({"type": "history", "skills": skills, "window": "24h"}))
        .await;
    // It reads nothing for a few ticks (the other client's updates count
    // them): the reply and the updates after it wait in the kernel.
    for _ in 0..5 {
        ticker.next_update().await;
    }
    assert_eq!(stats.slow_clients(), 0, "closed for a reply it asked for");

    // Then it reads: the whole history, then updates, no close.
    let history = asker.next_of_type("history").await;
    let history_bytes = history.to_string().len();
    assert!(history_bytes > 2 * MAX_LAG, "{history_bytes} B history");
    for _ in 0..3 {
        asker.next_update().await;
    }
    assert_eq!(stats.slow_clients(), 0);
    assert_eq!(stats.connections(), 2);
    server.stop().await.unwrap();
}

#[tokio::test]
async fn max_lag_takes_a_human_size_and_refuses_others_naming_the_flag() {
    let home = tempfile::tempdir().unwrap();
    for bad in ["lots", "1KiB", "2048MiB"] {
        let out = run_fails(
            home.path(),
            &["serve", "--db", "/nonexistent.db", "--max-lag", bad],
        )
        .await;
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("--max-lag"), "{bad}: {err}");
    }
    let out = run_ok(home.path(), &["serve", "--help"]).await;
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(help.contains("--max-lag <SIZE>"), "{help}");
    assert!(help.contains("SKILLMON_MAX_LAG"), "{help}");
}

/// The write timeout's close, not `--max-lag`'s: with big frames (1,000
/// skills) the stuck client's socket buffers fill within a second and a
/// frame is cut short by the 300 ms write timeout. The client never gets
/// a 1013 then, and is not counted as one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_cut_off_without_a_close_frame_is_counted_as_dropped_not_as_a_1013() {
    let (db, conn) = TestDb::new();
    seed_long_names(&conn, 1000);
    let mut cfg = config(&db.path, SHORT_INTERVAL, 1000);
    cfg.write_timeout = Duration::from_millis(300);
    cfg.net.max_lag = Some(1 << 30);
    let server = start(cfg).await;
    let stats = server.stats();
    let (mut good, _) = Client::connect_and_update(&server.url()).await;
    let raw = stuck_client(server.addr).await;
    while stats.slow_clients() == 0 {
        good.next_update().await;
    }
    let (texts, end) = read_to_close(raw).await;
    let metrics = http_get(server.addr, "/metrics").await.body;
    let counted_1013 = metrics
        .lines()
        .any(|l| l == "skillmon_closes_total{code=\"1013\"} 1");
    eprintln!("{texts} whole frames, then {end:?}");
    match end {
        StreamEnd::Close(1013) => {
            assert_eq!((stats.slow_closes(), stats.slow_drops()), (1, 0));
            assert!(counted_1013, "{metrics}");
        }
        StreamEnd::Cut | StreamEnd::Clean => {
            assert_eq!((stats.slow_closes(), stats.slow_drops()), (0, 1));
            assert!(
                !counted_1013,
                "a 1013 counted that never went out:\n{metrics}"
            );
            assert!(
                metrics
                    .lines()
                    .any(|l| l == "skillmon_slow_client_drops_total 1"),
                "{metrics}"
            );
        }
        other @ StreamEnd::Close(_) => panic!("{other:?}"),
    }
    server.stop().await.unwrap();
}

/// Everything a raw client reads until the server ends the connection:
/// how many whole text frames, and how the stream ended.
async fn read_to_close(mut raw: tokio::net::TcpStream) -> (usize, StreamEnd) {
    let mut bytes = Vec::new();
    tokio::time::timeout(DEADLINE, raw.read_to_end(&mut bytes))
        .await
        .expect("the server ends the connection")
        .expect("read");
    ws_frames(&bytes)
}
