//! A client that never reads must not delay the others, and is closed once
//! a frame cannot be written within the write timeout. Big frames (1000
//! skills with long names, top 1000) and a short interval fill the socket
//! buffers quickly.

use crate::support;

use std::time::Duration;

use support::*;

const SKILLS: usize = 1000;

fn seed_many(conn: &rusqlite::Connection) {
    conn.execute_batch("BEGIN").unwrap();
    for i in 0..SKILLS {
        let name = format!("{i:04}-{}", "a-rather-long-skill-name-".repeat(8));
        for _ in 0..=(i % 3) {
            invoke(conn, &name, true, Some(1.0));
        }
    }
    conn.execute_batch("COMMIT").unwrap();
}

/// A server on the [`seed_many`] data, every skill served, a short interval
/// and the given write timeout.
async fn serve_many(write_timeout: Duration) -> (TestDb, skillmon::server::Handle) {
    let (db, conn) = TestDb::new();
    seed_many(&conn);
    let mut cfg = config(&db.path, SHORT_INTERVAL, SKILLS);
    cfg.write_timeout = write_timeout;
    let server = start(cfg).await;
    (db, server)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_reads_does_not_delay_the_others_and_is_closed() {
    let (_db, server) = serve_many(Duration::from_millis(500)).await;
    let stats = server.stats();

    let (mut good, first) = Client::connect_and_update(&server.url()).await;
    assert_eq!(names(&first).len(), SKILLS);
    let frame_bytes = first.to_string().len();
    assert!(frame_bytes > 200_000, "{frame_bytes}");

    // Two kinds of stuck peer: raw TCP after the handshake, and a
    // tungstenite client that is simply never polled again.
    let raw = stuck_client(server.addr).await;
    let (unpolled, _) = tokio_tungstenite::connect_async(server.url())
        .await
        .unwrap();
    assert_eq!(stats.connections(), 3);

    // The good client keeps getting updates while the stuck ones are
    // being timed out; each of its updates is a point to look at the counters.
    let mut while_stuck = 0;
    while stats.slow_clients() < 2 {
        let u = good.next_update().await;
        assert_eq!(names(&u).len(), SKILLS);
        while_stuck += 1;
    }
    assert!(
        while_stuck >= 5,
        "the good client got only {while_stuck} updates while the others were stuck"
    );
    while stats.connections() > 1 {
        good.next_update().await;
    }
    // And it keeps going afterwards.
    for _ in 0..3 {
        good.next_update().await;
    }
    let pong = good.ping(serde_json::json!("still-here")).await;
    assert_eq!(pong["id"], "still-here");
    eprintln!(
        "frame {frame_bytes} B; good client: {while_stuck} updates while stuck, {} seen, last seq {:?}; skipped total {}",
        good.updates_seen,
        good.last_seq,
        stats.skipped()
    );
    // What the raw client finally reads is whole frames, then either a
    // 1013 close or the end in the middle of the last frame: never a close
    // frame written into a text frame that had started.
    let texts = read_until_timed_out(raw).await;
    assert!(texts >= 1, "{texts} text frames");
    drop(unpolled);
    server.stop().await.unwrap();
}

/// A client that stops reading long enough to be timed out, then reads
/// again at once: the server may finish the frame it had started and then
/// close with 1013, or drop the connection inside that frame, but a close
/// frame must never land inside a text frame.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_timed_out_mid_frame_never_gets_a_close_frame_inside_it() {
    let (_db, server) = serve_many(Duration::from_millis(500)).await;
    let stats = server.stats();
    let (mut good, _) = Client::connect_and_update(&server.url()).await;
    let raw = stuck_client(server.addr).await;
    while stats.slow_clients() < 1 {
        good.next_update().await;
    }
    read_until_timed_out(raw).await;
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_with_a_stuck_client_still_closes_the_others_with_1001() {
    // Longer than the shutdown grace: a stuck write must not outlive stop().
    let (_db, server) = serve_many(Duration::from_secs(30)).await;
    let stats = server.stats();

    let (mut good, _) = Client::connect_and_update(&server.url()).await;
    let raw = stuck_client(server.addr).await;
    // Wait until the stuck client takes no more frames: frames sent to
    // anyone but the good client stay flat over several of its updates
    // (give or take the frame in flight to the good client).
    let mut others = std::collections::VecDeque::new();
    let until = tokio::time::Instant::now() + DEADLINE;
    loop {
        assert!(
            tokio::time::Instant::now() < until,
            "never stuck: {others:?}"
        );
        good.next_update().await;
        let other = stats.frames_sent() as i64 - good.frames_seen as i64;
        others.push_back(other);
        if others.len() > 8 {
            others.pop_front();
            if others.back().unwrap() - others.front().unwrap() <= 1 {
                break;
            }
        }
    }
    let started = tokio::time::Instant::now();
    let stopping = tokio::spawn(server.stop());
    assert_eq!(good.close_code_within(Duration::from_secs(1)).await, 1001);
    tokio::time::timeout(DEADLINE, stopping)
        .await
        .expect("stop() resolves")
        .unwrap()
        .unwrap();
    eprintln!("stop took {:?}", started.elapsed());
    assert_eq!(
        stats.connections(),
        0,
        "every session ended by the time stop() resolved"
    );
    drop(raw);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_reader_skips_to_the_latest_update_and_stays_connected() {
    let (_db, server) = serve_many(Duration::from_secs(30)).await;
    let stats = server.stats();

    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    sock.set_recv_buffer_size(4096).unwrap();
    let stream = sock.connect(server.addr).await.unwrap();
    let stream = tokio_tungstenite::MaybeTlsStream::Plain(stream);
    let (ws, _) = tokio_tungstenite::client_async(server.url(), stream)
        .await
        .unwrap();
    let mut slow = Client::from_ws(ws);
    slow.next_frame().await; // connected
    // Read one update, then dawdle for several intervals (this sleep is the
    // slow consumer's behaviour, not synchronization), until the server has
    // skipped updates for it: seq jumps, latest wins, no queue builds up.
    let until = tokio::time::Instant::now() + DEADLINE;
    let mut prev = None;
    let mut jumped = false;
    while !jumped {
        assert!(tokio::time::Instant::now() < until, "never skipped");
        let u = slow.next_update().await;
        let seq = u["seq"].as_u64().unwrap();
        jumped = prev.is_some_and(|p| seq > p + 1);
        prev = Some(seq);
        tokio::time::sleep(SHORT_INTERVAL * 4).await;
    }
    assert!(stats.skipped() > 0);
    assert_eq!(stats.slow_clients(), 0, "slow but reading: kept");
    // Catching up: it reads at full speed again and gets a fresh update.
    slow.next_update().await;
    let pong = slow.ping(serde_json::json!("caught-up")).await;
    assert_eq!(pong["id"], "caught-up");
    server.stop().await.unwrap();
}
