//! Issue 13: session-buddy's own clients work against `skillmon serve`
//! unchanged, on real sockets.
//!
//! - A client following session-buddy's reference client
//!   (`examples/websocket_client_example.py`) exactly: receive `connected`,
//!   send one request, treat the very next frame as its reply. Repeated a few
//!   hundred times: the order must hold every time, not usually.
//! - A client that offers `skillmon.v1` gets the extension order: the first
//!   picture right after `connected`, before any tick and before the reply
//!   to anything it sent.
//! - A client written from session-buddy's API document (`get_metrics`,
//!   `metrics_response`, the documented field names).
//!
//! Ordering is asserted with a 30 s interval (no tick can interleave) and,
//! where a tick is the thing under test, by publishing on the hub by hand.

use crate::support;

use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt as _, StreamExt as _};
use serde_json::{Value, json};
use skillmon::protocol::{SUBPROTOCOL, SkillStat, parse_timestamp};
use skillmon::store::Snapshot;
use support::*;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
use tokio_tungstenite::tungstenite::protocol::Role;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// How many times each order is checked.
const REPEAT: usize = 300;

/// Connect exactly as `websockets.connect(uri)` does: no subprotocol.
/// Asserts the server echoed none.
async fn connect_plain(url: &str) -> Ws {
    let (ws, resp) = tokio::time::timeout(DEADLINE, tokio_tungstenite::connect_async(url))
        .await
        .expect("connect timed out")
        .expect("connect");
    assert!(
        resp.headers().get("Sec-WebSocket-Protocol").is_none(),
        "no subprotocol offered, none may be echoed: {resp:?}"
    );
    ws
}

/// Connect offering `skillmon.v1`; tungstenite fails the handshake unless
/// the server echoes it.
async fn connect_ext(url: &str) -> Ws {
    let mut req = url.into_client_request().unwrap();
    req.headers_mut()
        .insert("Sec-WebSocket-Protocol", SUBPROTOCOL.parse().unwrap());
    let (ws, resp) = tokio::time::timeout(DEADLINE, tokio_tungstenite::connect_async(req))
        .await
        .expect("connect timed out")
        .expect("connect");
    assert_eq!(
        resp.headers()
            .get("Sec-WebSocket-Protocol")
            .and_then(|v| v.to_str().ok()),
        Some(SUBPROTOCOL)
    );
    ws
}

/// `json.loads(await websocket.recv())`: the next text frame.
async fn recv(ws: &mut Ws) -> Value {
    loop {
        let msg = tokio::time::timeout(DEADLINE, ws.next())
            .await
            .expect("no frame within the deadline")
            .expect("stream ended")
            .expect("socket error");
        match msg {
            Message::Text(t) => return serde_json::from_str(t.as_str()).expect("JSON frame"),
            Message::Ping(_) | Message::Pong(_) => continue,
            other => panic!("expected a text frame, got {other:?}"),
        }
    }
}

/// `await websocket.send(json.dumps(v))`.
async fn send(ws: &mut Ws, v: Value) {
    ws.send(Message::text(v.to_string())).await.expect("send");
}

async fn bye(mut ws: Ws) {
    let _ = ws.close(None).await;
}

/// A WebSocket handshake written by hand, so any `Sec-WebSocket-Protocol`
/// offer can be made and the response head read as sent (tungstenite's own
/// client refuses a response that declines an offer). Returns the response
/// head and the socket as a client stream.
async fn raw_handshake(server: &skillmon::server::Handle, protocols: &str) -> (String, Ws) {
    let mut s = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    let req = format!(
        "GET /ws HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
         Sec-WebSocket-Protocol: {protocols}\r\n\r\n",
        server.addr
    );
    s.write_all(req.as_bytes()).await.unwrap();
    // Byte by byte: the `connected` frame follows the head at once and must
    // stay in the socket for the WebSocket reader.
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let b = tokio::time::timeout(DEADLINE, s.read_u8())
            .await
            .expect("response head timed out")
            .expect("read response head");
        head.push(b);
    }
    let head = String::from_utf8(head).unwrap();
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    let ws = WebSocketStream::from_raw_socket(MaybeTlsStream::Plain(s), Role::Client, None).await;
    (head, ws)
}

fn protocol_header(head: &str) -> Option<String> {
    head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim()
            .eq_ignore_ascii_case("sec-websocket-protocol")
            .then(|| v.trim().to_owned())
    })
}

fn ticks(server: &skillmon::server::Handle) -> u64 {
    server.shared.stats.ticks()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reference_ping_test_gets_pong_as_the_very_next_frame_every_time() {
    let (server, _db, _conn) = serve_seeded(LONG_INTERVAL).await;
    for i in 0..REPEAT {
        let mut ws = connect_plain(&server.url()).await;
        // "Receive welcome message"
        let hello = recv(&mut ws).await;
        assert_eq!(hello["type"], "connected", "run {i}: {hello}");
        // "Send ping" / "Receive pong"
        send(&mut ws, json!({"type": "ping"})).await;
        let reply = recv(&mut ws).await;
        assert_eq!(
            reply["type"], "pong",
            "run {i}: the frame after ping: {reply}"
        );
        assert!(
            reply.get("id").is_none(),
            "no id asked, none echoed: {reply}"
        );
        bye(ws).await;
    }
    // Every first picture waited for a tick that never came.
    assert_eq!(ticks(&server), 1, "no tick ran during the test");
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reference_subscribe_flows_get_subscription_confirmed_next_every_time() {
    let (server, _db, _conn) = serve_seeded(LONG_INTERVAL).await;
    let forms = [
        (json!({"type": "subscribe", "skill": null}), None),
        (
            json!({"type": "subscribe", "skill": "alpha"}),
            Some("alpha"),
        ),
        (
            json!({"type": "subscribe", "skill_name": "alpha"}),
            Some("alpha"),
        ),
    ];
    for i in 0..REPEAT {
        let (msg, skill) = &forms[i % forms.len()];
        let mut ws = connect_plain(&server.url()).await;
        let hello = recv(&mut ws).await;
        assert_eq!(hello["type"], "connected", "run {i}: {hello}");
        send(&mut ws, msg.clone()).await;
        // "Receive confirmation"
        let confirmed = recv(&mut ws).await;
        assert_eq!(
            confirmed["type"], "subscription_confirmed",
            "run {i}: the frame after {msg}: {confirmed}"
        );
        assert_eq!(
            confirmed["skill"],
            msg.get("skill").cloned().unwrap_or(json!(skill))
        );
        assert_eq!(confirmed["skill_name"], json!(skill));
        let words = confirmed["message"].as_str().expect("message");
        assert!(words.contains(skill.unwrap_or("all skills")), "{words}");
        // The first picture may follow the reply at once, for the new subscription.
        let first = recv(&mut ws).await;
        assert_eq!(first["type"], "metrics_update", "run {i}: {first}");
        match skill {
            Some(s) => assert_eq!(names(&first), [*s]),
            None => assert_eq!(names(&first), ["gamma", "alpha", "beta", "delta"]),
        }
        bye(ws).await;
    }
    assert_eq!(ticks(&server), 1, "no tick ran during the test");
    server.stop().await.unwrap();
}

/// `unsubscribe` has no reply (session-buddy): a compat client that sends it
/// after a subscription and then pings must get `pong` as the very next
/// frame, not an unasked-for `metrics_update` in between.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compat_unsubscribe_puts_nothing_before_the_next_reply() {
    let (server, _db, _conn) = serve_seeded(LONG_INTERVAL).await;
    for i in 0..50 {
        let mut ws = connect_plain(&server.url()).await;
        assert_eq!(recv(&mut ws).await["type"], "connected");
        send(&mut ws, json!({"type": "subscribe", "skill": "alpha"})).await;
        assert_eq!(recv(&mut ws).await["type"], "subscription_confirmed");
        assert_eq!(recv(&mut ws).await["type"], "metrics_update");
        send(&mut ws, json!({"type": "unsubscribe"})).await;
        send(&mut ws, json!({"type": "ping"})).await;
        let next = recv(&mut ws).await;
        assert_eq!(
            next["type"], "pong",
            "run {i}: the frame after unsubscribe + ping: {next}"
        );
        bye(ws).await;
    }
    assert_eq!(ticks(&server), 1, "no tick ran during the test");
    server.stop().await.unwrap();
}

/// A compat client that asks nothing gets nothing until a tick, then that
/// tick's frame. The tick is a hand-made publish with a marker skill, so the
/// frame is known to be the tick's and not the snapshot current at connect.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_compat_client_gets_its_first_update_at_the_first_tick() {
    let (server, _db, _conn) = serve_seeded(LONG_INTERVAL).await;
    for i in 0..REPEAT {
        let mut ws = connect_plain(&server.url()).await;
        let hello = recv(&mut ws).await;
        assert_eq!(hello["type"], "connected", "run {i}: {hello}");
        let marker = format!("tick-{i}");
        server.shared.hub.publish(Arc::new(Snapshot::new(
            vec![SkillStat {
                skill_name: marker.clone(),
                total_invocations: 1,
                completion_rate: 100.0,
                avg_duration_seconds: Some(1.0),
                invocations_1h: None,
                invocations_24h: None,
                last_invoked_at: None,
            }],
            vec![],
        )));
        let first = recv(&mut ws).await;
        assert_eq!(first["type"], "metrics_update", "run {i}: {first}");
        assert_eq!(
            names(&first),
            [marker],
            "run {i}: the first update must be the tick's, not the picture at connect"
        );
        bye(ws).await;
    }
    server.stop().await.unwrap();
}

/// The same with the server's own tick loop: the first update a silent
/// compat client sees was sent by a tick (the server counts one tick at
/// start, before any client; a real tick makes it 2).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_compat_client_first_update_comes_from_a_real_tick() {
    let (server, db, _conn) = serve_seeded(Duration::from_millis(300)).await;
    let mut ws = connect_plain(&server.url()).await;
    assert_eq!(recv(&mut ws).await["type"], "connected");
    let first = recv(&mut ws).await;
    assert_eq!(first["type"], "metrics_update", "{first}");
    assert!(ticks(&server) >= 2, "the first update came before any tick");
    assert_eq!(compat_top(&first), expected_top(&db.path, 10));
    bye(ws).await;
    server.stop().await.unwrap();
}

/// An ext client's first picture comes right after `connected`: before the
/// first tick (30 s away) and before the reply to a ping it sent at once,
/// i.e. the server sends it without waiting for anything.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ext_client_gets_its_first_picture_right_after_connected() {
    let (server, db, _conn) = serve_seeded(LONG_INTERVAL).await;
    let mut worst = Duration::ZERO;
    for i in 0..REPEAT / 3 {
        let mut ws = connect_ext(&server.url()).await;
        let hello = recv(&mut ws).await;
        let at = std::time::Instant::now();
        assert_eq!(hello["type"], "connected", "run {i}: {hello}");
        send(&mut ws, json!({"type": "ping", "id": i})).await;
        let first = recv(&mut ws).await;
        worst = worst.max(at.elapsed());
        assert_eq!(first["type"], "metrics_update", "run {i}: {first}");
        assert_eq!(compat_top(&first), expected_top(&db.path, 10));
        assert!(first["seq"].is_u64());
        let pong = recv(&mut ws).await;
        assert_eq!(pong, json!({"type": "pong", "id": i}));
        bye(ws).await;
    }
    assert_eq!(
        ticks(&server),
        1,
        "every first picture came before any tick"
    );
    eprintln!("ext: worst connected -> metrics_update gap {worst:?}");
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_an_offer_of_skillmon_v1_is_echoed() {
    let (server, _db, _conn) = serve_seeded(LONG_INTERVAL).await;

    // Unknown subprotocols only: compat, nothing echoed, session-buddy's order.
    let (head, ws) = raw_handshake(&server, "chat, superchat").await;
    assert_eq!(protocol_header(&head), None, "{head}");
    let mut c = Client::from_ws(ws);
    assert_eq!(c.next_frame().await["type"], "connected");
    c.send_json(json!({"type": "ping"})).await;
    assert_eq!(c.next_frame().await["type"], "pong");

    // skillmon.v1 among others: exactly it is echoed, ext order.
    let (head, ws) = raw_handshake(&server, "chat, skillmon.v1").await;
    assert_eq!(
        protocol_header(&head).as_deref(),
        Some(SUBPROTOCOL),
        "{head}"
    );
    let mut c = Client::from_ws(ws);
    assert_eq!(c.next_frame().await["type"], "connected");
    assert_eq!(c.next_frame().await["type"], "metrics_update");

    // Case matters: `Skillmon.V1` is another protocol.
    let (head, _ws) = raw_handshake(&server, "Skillmon.V1").await;
    assert_eq!(protocol_header(&head), None, "{head}");
    server.stop().await.unwrap();
}

/// A client written from session-buddy's API document: `get_metrics`,
/// `metrics_response` with a 0–1 `completion_rate`, documented row names,
/// `baseline_value` / `observed_value`, `error` frames with a `message`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn documented_api_client_gets_what_the_document_promises() {
    let (db, conn) = TestDb::seeded();
    let recent = ts_ago(5 * 60, "%Y-%m-%dT%H:%M:%SZ");
    conn.execute(
        "INSERT INTO skill_anomalies
           (skill_name, detected_at, anomaly_type, baseline_value, observed_value, deviation_score)
         VALUES ('delta', ?1, 'performance_drop', 0.85, 0.62, -2.3)",
        [&recent],
    )
    .unwrap();
    let server = serve(&db.path, LONG_INTERVAL).await;
    let mut ws = connect_plain(&server.url()).await;
    assert_eq!(recv(&mut ws).await["type"], "connected");

    // get_metrics for a known skill: the very next frame is its answer.
    send(
        &mut ws,
        json!({"type": "get_metrics", "skill_name": "alpha"}),
    )
    .await;
    let resp = recv(&mut ws).await;
    assert_eq!(resp["type"], "metrics_response", "{resp}");
    let d = &resp["data"];
    assert_eq!(d["skill_name"], "alpha");
    assert_eq!(d["total_invocations"], 3);
    let rate = d["completion_rate"].as_f64().unwrap();
    assert!((rate - 2.0 / 3.0).abs() < 1e-12, "a 0-1 fraction: {rate}");
    assert_eq!(d["avg_duration_seconds"], 3.0);
    assert!(parse_timestamp(d["last_invocation_at"].as_str().unwrap()).is_some());

    // An unknown skill: an error whose message names it.
    send(
        &mut ws,
        json!({"type": "get_metrics", "skill_name": "no-such-skill"}),
    )
    .await;
    let err = recv(&mut ws).await;
    assert_eq!(err["type"], "error", "{err}");
    assert!(
        err["message"].as_str().unwrap().contains("no-such-skill"),
        "{err}"
    );

    // Every error frame has a message.
    for bad in [
        "not json",
        "[1]",
        r#"{"type":"explode"}"#,
        r#"{"type":"get_metrics"}"#,
    ] {
        ws.send(Message::text(bad)).await.unwrap();
        let err = recv(&mut ws).await;
        assert_eq!(err["type"], "error", "{bad}: {err}");
        assert!(
            err["message"].as_str().is_some_and(|m| !m.is_empty()),
            "{bad}: {err}"
        );
    }

    // Subscribe the documented way, then read the documented names.
    send(&mut ws, json!({"type": "subscribe", "skill_name": null})).await;
    let confirmed = recv(&mut ws).await;
    assert_eq!(confirmed["type"], "subscription_confirmed");
    assert_eq!(confirmed["skill_name"], Value::Null);
    assert!(confirmed["message"].as_str().is_some_and(|m| !m.is_empty()));
    let update = recv(&mut ws).await;
    assert_eq!(update["type"], "metrics_update");
    let rows = update["data"]["top_skills"].as_array().unwrap();
    assert_eq!(rows.len(), 4);
    let db_conn = rusqlite::Connection::open(&db.path).unwrap();
    for row in rows {
        let name = row["skill_name"].as_str().unwrap();
        let (completed, last): (i64, String) = db_conn
            .query_row(
                "SELECT completed_invocations, last_invoked FROM skill_metrics WHERE skill_name = ?1",
                [name],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap();
        assert_eq!(row["invocation_count"], row["total_invocations"], "{row}");
        assert_eq!(row["completed_count"], completed, "{row}");
        assert_eq!(row["avg_duration"], row["avg_duration_seconds"], "{row}");
        assert_eq!(row["last_invocation_at"], json!(last), "{row}");
    }
    let anomalies = update["data"]["anomalies"].as_array().unwrap();
    let a = anomalies
        .iter()
        .find(|a| a["skill_name"] == "delta")
        .expect("the table anomaly");
    assert_eq!(a["baseline_value"], 0.85);
    assert_eq!(a["observed_value"], 0.62);
    assert_eq!(a["deviation_score"], -2.3);
    assert_eq!(a["anomaly_type"], "performance_drop");
    bye(ws).await;
    server.stop().await.unwrap();
}

/// The documented `get_metrics` works on an ext connection too, and a skill
/// outside the top N is still known.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_metrics_reaches_beyond_the_top_n() {
    let (db, _conn) = TestDb::seeded();
    let server = start(config(&db.path, LONG_INTERVAL, 1)).await;
    let (mut c, _) = Client::connect(&server.url()).await;
    let first = c.next_update().await;
    assert_eq!(names(&first), ["gamma"]);
    c.send_json(json!({"type": "get_metrics", "skill": "delta"}))
        .await;
    let resp = c.next_of_type("metrics_response").await;
    assert_eq!(resp["data"]["skill_name"], "delta");
    assert_eq!(resp["data"]["total_invocations"], 3);
    server.stop().await.unwrap();
}

/// The next feed event that is not `Connecting`/`Pong`, within the deadline.
async fn next_feed_event(
    rx: &mut tokio::sync::mpsc::Receiver<skillmon::client::FeedEvent>,
) -> skillmon::client::FeedEvent {
    use skillmon::client::FeedEvent;
    loop {
        let ev = tokio::time::timeout(DEADLINE, rx.recv())
            .await
            .expect("no feed event within the deadline")
            .expect("feed ended");
        match ev {
            FeedEvent::Connecting { .. } | FeedEvent::Pong { .. } => continue,
            other => return other,
        }
    }
}

/// `watch` offers `skillmon.v1` to `serve` and keeps its instant first
/// picture: the update right after `connected` cannot be a tick (30 s).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_feed_negotiates_and_gets_its_first_picture_at_once() {
    use skillmon::client::{Feed, FeedEvent};
    let (server, _db, _conn) = serve_seeded(LONG_INTERVAL).await;
    let (feed, mut rx) = Feed::spawn(server.url(), skillmon::protocol::Subscription::All);
    assert!(matches!(
        next_feed_event(&mut rx).await,
        FeedEvent::Connected { .. }
    ));
    match next_feed_event(&mut rx).await {
        FeedEvent::Update { update, .. } => assert_eq!(update.data.top_skills.len(), 4),
        other => panic!("expected the first picture at once, got {other:?}"),
    }
    assert_eq!(ticks(&server), 1, "the picture came before any tick");
    feed.close(rx).await;
    server.stop().await.unwrap();
}

/// `watch` accepts `WS://` / `WSS://` (schemes are case-insensitive, RFC
/// 3986), so the upgrade it writes must too, not fail it as a bad URL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_feed_connects_with_an_upper_case_scheme() {
    use skillmon::client::{Feed, FeedEvent};
    let (server, _db, _conn) = serve_seeded(LONG_INTERVAL).await;
    let url = server.url().replacen("ws://", "WS://", 1);
    assert!(url.starts_with("WS://"), "{url}");
    let (feed, mut rx) = Feed::spawn(url, skillmon::protocol::Subscription::All);
    match next_feed_event(&mut rx).await {
        FeedEvent::Connected { .. } => {}
        other => panic!("expected connected, got {other:?}"),
    }
    assert!(matches!(
        next_feed_event(&mut rx).await,
        FeedEvent::Update { .. }
    ));
    feed.close(rx).await;
    server.stop().await.unwrap();
}

/// Against a server that does not echo `skillmon.v1` (session-buddy's
/// `websockets` server), `watch` connects as before, on the first
/// connection, and gets the server's frames.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_feed_works_against_a_server_that_declines_the_subprotocol() {
    use skillmon::client::{Feed, FeedEvent};
    use std::sync::Mutex;
    use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let offers: Arc<Mutex<Vec<Option<String>>>> = Arc::default();
    let seen = offers.clone();
    let fake = tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let seen = seen.clone();
            tokio::spawn(async move {
                #[allow(clippy::result_large_err)] // tungstenite's callback type
                let record = |req: &Request, resp: Response| {
                    let offer = req
                        .headers()
                        .get("Sec-WebSocket-Protocol")
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_owned);
                    seen.lock().unwrap().push(offer);
                    Ok(resp) // never echoes: session-buddy configures no subprotocols
                };
                let Ok(mut ws) = tokio_tungstenite::accept_hdr_async(stream, record).await else {
                    return;
                };
                let hello = r#"{"type": "connected", "message": "Connected to Session Buddy real-time metrics", "authenticated": false, "timestamp": "2026-11-22T02:39:04.515314+00:00"}"#;
                let update = r#"{"type": "metrics_update", "timestamp": "2026-11-22T02:39:05.295129+00:00", "data": {"top_skills": [{"skill_name": "pytest-run", "total_invocations": 30, "completion_rate": 93.33333333333333, "avg_duration_seconds": 6.34}], "anomalies": []}}"#;
                if ws.send(Message::text(hello)).await.is_err()
                    || ws.send(Message::text(update)).await.is_err()
                {
                    return;
                }
                while let Some(Ok(_)) = ws.next().await {}
            });
        }
    });
    let (feed, mut rx) = Feed::spawn(
        format!("ws://{addr}"),
        skillmon::protocol::Subscription::All,
    );
    assert!(matches!(
        next_feed_event(&mut rx).await,
        FeedEvent::Connected { .. }
    ));
    match next_feed_event(&mut rx).await {
        FeedEvent::Update { update, .. } => {
            assert_eq!(update.data.top_skills[0].skill_name, "pytest-run");
        }
        other => panic!("expected the update, got {other:?}"),
    }
    assert_eq!(
        *offers.lock().unwrap(),
        [Some(SUBPROTOCOL.to_owned())],
        "one connection: the declined offer costs no reconnect"
    );
    feed.close(rx).await;
    fake.abort();
}

/// The hand-written `ws://` upgrade (with the offer) still reports a refused
/// upgrade as final, naming the status, as tungstenite's did.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_feed_reports_a_refused_upgrade_as_final() {
    use skillmon::client::{Feed, FeedEvent};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let fake = tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf).await;
            let _ = s
                .write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")
                .await;
        }
    });
    let (feed, mut rx) = Feed::spawn(
        format!("ws://{addr}/nope"),
        skillmon::protocol::Subscription::All,
    );
    match next_feed_event(&mut rx).await {
        FeedEvent::Failed { code, reason, .. } => {
            assert_eq!(code, None);
            assert!(reason.contains("404"), "{reason}");
        }
        other => panic!("expected a final failure, got {other:?}"),
    }
    feed.close(rx).await;
    fake.abort();
}
