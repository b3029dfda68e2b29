//! The feed (connection supervisor) against real servers: reconnect with
//! resubscription after `serve` restarts, no retry on an auth failure,
//! retry on "try later", and round-trip times from session-buddy's bare pong.

use crate::support;

use std::time::Duration;

use futures_util::SinkExt;
use skillmon::client::{Feed, FeedEvent};
use skillmon::protocol::Subscription;
use support::*;
use tokio::sync::mpsc::Receiver;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

/// The next event matching `pred`, skipping others; fails after 10 s.
async fn next_matching(
    rx: &mut Receiver<FeedEvent>,
    what: &str,
    pred: impl Fn(&FeedEvent) -> bool,
) -> FeedEvent {
    let wait = async {
        loop {
            match rx.recv().await {
                Some(ev) if pred(&ev) => return ev,
                Some(_) => continue,
                None => panic!("feed ended while waiting for {what}"),
            }
        }
    };
    match tokio::time::timeout(Duration::from_secs(10), wait).await {
        Ok(ev) => ev,
        Err(tokio::time::error::Elapsed { .. }) => panic!("no {what} within 10 s"),
    }
}

fn update_skills(ev: &FeedEvent) -> Option<Vec<String>> {
    match ev {
        FeedEvent::Update { update, .. } => Some(
            update
                .data
                .top_skills
                .iter()
                .map(|s| s.skill_name.clone())
                .collect(),
        ),
        _ => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconnects_after_serve_restarts_and_resubscribes() {
    let db = make_db();
    let server = serve(&db.path, WATCH_INTERVAL).await;
    let addr = server.addr;
    let (feed, mut rx) = Feed::spawn(server.url(), Subscription::from_names(["mypy"]));
    next_matching(&mut rx, "connected", |e| {
        matches!(e, FeedEvent::Connected { .. })
    })
    .await;
    // Every update the feed lets through is for the subscription only.
    let ev = next_matching(&mut rx, "an update", |e| update_skills(e).is_some()).await;
    assert_eq!(update_skills(&ev), Some(vec!["mypy".to_string()]));
    let ev = next_matching(&mut rx, "a pong", |e| matches!(e, FeedEvent::Pong { .. })).await;
    assert!(matches!(ev, FeedEvent::Pong { rtt: Some(_), .. }), "{ev:?}");

    server.stop().await.expect("stop");
    let ev = next_matching(&mut rx, "the 1001 close", |e| {
        matches!(e, FeedEvent::Disconnected { .. })
    })
    .await;
    assert!(
        matches!(
            ev,
            FeedEvent::Disconnected {
                code: Some(1001),
                ..
            }
        ),
        "{ev:?}"
    );

    // Same address again: the feed must find it by itself.
    let listener = tokio::net::TcpListener::bind(addr).await.expect("rebind");
    let config = skillmon::server::ServeConfig {
        interval: Duration::from_millis(200),
        ..skillmon::server::ServeConfig::new(&db.path)
    };
    let server = skillmon::server::start(listener, config)
        .await
        .expect("restart");
    next_matching(&mut rx, "reconnected", |e| {
        matches!(e, FeedEvent::Connected { .. })
    })
    .await;
    for _ in 0..3 {
        let ev = next_matching(&mut rx, "an update", |e| update_skills(e).is_some()).await;
        assert_eq!(update_skills(&ev), Some(vec!["mypy".to_string()]));
    }
    drop(feed);
    server.stop().await.expect("stop");
}

/// A server that accepts the upgrade and closes at once with `code`.
async fn closing_server(code: u16, reason: &'static str) -> (String, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("ws://{}", listener.local_addr().expect("addr"));
    let task = tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let Ok(mut ws) = tokio_tungstenite::accept_async(stream).await else {
                    return;
                };
                let _ = ws
                    .send(Message::Close(Some(CloseFrame {
                        code: CloseCode::from(code),
                        reason: reason.into(),
                    })))
                    .await;
                // Let the close handshake finish.
                use futures_util::StreamExt;
                while let Some(Ok(_)) = ws.next().await {}
            });
        }
    });
    (url, task)
}

/// A feed on a [`closing_server`]: the feed, its events, the server task and
/// the first `Failed` or `Disconnected` event.
async fn feed_closed_with(
    code: u16,
    reason: &'static str,
) -> (
    Feed,
    Receiver<FeedEvent>,
    tokio::task::JoinHandle<()>,
    FeedEvent,
) {
    let (url, task) = closing_server(code, reason).await;
    let (feed, mut rx) = Feed::spawn(url, Subscription::All);
    let ev = next_matching(&mut rx, "the failure or disconnect", |e| {
        matches!(e, FeedEvent::Failed { .. } | FeedEvent::Disconnected { .. })
    })
    .await;
    (feed, rx, task, ev)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_failure_is_final() {
    let (_feed, mut rx, task, ev) = feed_closed_with(4001, "Authentication failed").await;
    match ev {
        FeedEvent::Failed { code, reason, .. } => {
            assert_eq!(code, Some(4001));
            // The server's reason, then the fix.
            assert!(reason.starts_with("Authentication failed; "), "{reason}");
            assert!(
                reason.contains("pass --token-file or set SKILLMON_TOKEN"),
                "{reason}"
            );
        }
        other => panic!("retried a 4001: {other:?}"),
    }
    // The feed has ended: the channel closes, no new attempt.
    let end = tokio::time::timeout(Duration::from_secs(10), rx.recv()).await;
    assert!(matches!(end, Ok(None)), "{end:?}");
    task.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn try_later_is_retried() {
    let (_feed, mut rx, task, ev) = feed_closed_with(1013, "overloaded").await;
    match ev {
        FeedEvent::Disconnected { code, retry_in, .. } => {
            assert_eq!(code, Some(1013));
            assert!(retry_in <= Duration::from_millis(250), "{retry_in:?}");
        }
        other => panic!("{other:?}"),
    }
    next_matching(&mut rx, "attempt 2", |e| {
        matches!(e, FeedEvent::Connecting { attempt: 2, .. })
    })
    .await;
    task.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bare_pong_from_session_buddy_gives_a_round_trip_time() {
    let sb = session_buddy(Duration::from_millis(200)).await;
    let (_feed, mut rx) = Feed::spawn(sb.url.clone(), Subscription::All);
    let ev = next_matching(&mut rx, "a pong", |e| matches!(e, FeedEvent::Pong { .. })).await;
    assert!(matches!(ev, FeedEvent::Pong { rtt: Some(_), .. }), "{ev:?}");
    let ev = next_matching(&mut rx, "an update", |e| update_skills(e).is_some()).await;
    if let FeedEvent::Update { update, .. } = ev {
        assert_eq!(update.seq, None);
        assert_eq!(update.data.anomalies.len(), 1);
    }
}

/// `watch` offers permessage-deflate by default. A `serve` that agrees
/// sends compressed frames (after the first, each against the previous
/// one), which the feed inflates to exactly the database's values as they
/// change, at a fraction of the bytes on the wire; a `serve --compression
/// off` declines, and the same feed reads its plain frames.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deflate_server_and_one_that_declines_both_feed_the_dashboard() {
    use serde_json::Value;
    use skillmon::deflate::Compression;
    for compression in [Compression::Deflate, Compression::Off] {
        let (db, conn) = TestDb::seeded();
        let mut cfg = config(&db.path, WATCH_INTERVAL, 10);
        cfg.net.compression = compression;
        let server = start(cfg).await;
        let (feed, mut rx) = Feed::spawn(server.url(), Subscription::All);
        let (mut updates, mut changes, mut stale, mut last_seq) = (0, 0, 0, 0u64);
        let mut want = db_metrics(&db.path);
        while updates < 12 {
            let ev = next_matching(&mut rx, "an update", |e| {
                assert!(
                    !matches!(
                        e,
                        FeedEvent::Ignored { .. } | FeedEvent::Disconnected { .. }
                    ),
                    "{compression}: {e:?}"
                );
                matches!(e, FeedEvent::Update { .. })
            })
            .await;
            let FeedEvent::Update { raw, .. } = ev else {
                unreachable!()
            };
            // The frame as inflated is the JSON the server wrote.
            let v: Value = serde_json::from_str(raw.as_str()).expect("an inflated frame is JSON");
            let seq = v["seq"].as_u64().expect("seq");
            assert!(seq > last_seq, "{compression}: seq {seq} after {last_seq}");
            last_seq = seq;
            let got: Vec<(String, u64)> = v["data"]["top_skills"]
                .as_array()
                .expect("top_skills")
                .iter()
                .map(|r| {
                    let name = r["skill_name"].as_str().expect("name").to_string();
                    (name, r["total_invocations"].as_u64().expect("total"))
                })
                .collect();
            let now: Vec<(String, u64)> = want.iter().map(|r| (r.0.clone(), r.1)).collect();
            if got != now {
                // Written after the server's last read: the next one has it.
                stale += 1;
                assert!(stale < 20, "{compression}: {got:?}, not {now:?}");
                continue;
            }
            updates += 1;
            if updates % 3 == 0 {
                // A change the next frames must carry, compressed against
                // frames that did not have it.
                invoke(&conn, "pytest-run", true, Some(1.0));
                want = db_metrics(&db.path);
                changes += 1;
            }
        }
        assert_eq!(changes, 4);
        let t = feed.traffic.snapshot();
        assert!(t.received > 0, "{compression}: {t:?}");
        match compression {
            Compression::Deflate => {
                assert!(t.deflate, "{t:?}");
                assert_eq!(t.inflated, t.received, "{t:?}");
                assert!(t.wire > 0 && t.wire * 4 < t.inflated, "{t:?}");
            }
            Compression::Off => {
                assert!(!t.deflate, "{t:?}");
                assert_eq!((t.wire, t.inflated), (0, 0), "{t:?}");
            }
        }
        drop(feed);
        server.stop().await.expect("stop");
    }
}

/// A server whose permessage-deflate answer RFC 7692 does not allow (a
/// window size out of range; an extension nobody offered) fails the feed
/// for good, naming the answer and the way around it; `--compression off`
/// then connects (the server answers nothing to no offer).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_extension_answer_is_final_and_names_compression_off() {
    use skillmon::client::ConnectOptions;
    use skillmon::deflate::Compression;
    use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};
    for answer in [
        "permessage-deflate; server_max_window_bits=99",
        "x-webkit-deflate-frame",
    ] {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!("ws://{}", listener.local_addr().expect("addr"));
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(async move {
                    // Answers the extension only to a client that offered one.
                    #[allow(clippy::result_large_err)] // tungstenite's callback type
                    let cb = |req: &Request, mut resp: Response| {
                        if req.headers().contains_key("Sec-WebSocket-Extensions") {
                            resp.headers_mut()
                                .insert("Sec-WebSocket-Extensions", answer.parse().expect("value"));
                        }
                        Ok(resp)
                    };
                    let Ok(mut ws) = tokio_tungstenite::accept_hdr_async(stream, cb).await else {
                        return;
                    };
                    let hello = r#"{"type":"connected","message":"hi","authenticated":false}"#;
                    let _ = ws.send(Message::text(hello)).await;
                    use futures_util::StreamExt;
                    while let Some(Ok(_)) = ws.next().await {}
                });
            }
        });
        let (_feed, mut rx) = Feed::spawn(url.clone(), Subscription::All);
        let ev = next_matching(&mut rx, "the failure", |e| {
            matches!(e, FeedEvent::Failed { .. } | FeedEvent::Disconnected { .. })
        })
        .await;
        let FeedEvent::Failed { reason, .. } = ev else {
            panic!("retried a broken extension answer: {ev:?}");
        };
        assert!(reason.contains("--compression off"), "{reason}");
        assert!(reason.contains("server"), "{reason}");
        let opts = ConnectOptions {
            compression: Compression::Off,
            ..ConnectOptions::default()
        };
        let (_feed, mut rx) = Feed::spawn_with(url, Subscription::All, opts);
        next_matching(&mut rx, "connected without compression", |e| {
            assert!(!matches!(e, FeedEvent::Failed { .. }), "{e:?}");
            matches!(e, FeedEvent::Connected { .. })
        })
        .await;
        task.abort();
    }
}
