//! `skillmon serve` over real sockets: the frames, their order, their values
//! against a real SQLite file, subscriptions, ping, seq, anomalies, bad input
//! and shutdown. Every frame a test receives also passes the per-connection
//! checks in `support::Client::check` (valid, known type, `connected` first,
//! `seq` strictly increasing).

use crate::support;

use std::time::Duration;

use futures_util::SinkExt as _;
use serde_json::{Value, json};
use skillmon::protocol::parse_timestamp;
use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connected_first_then_an_update_at_once() {
    let (db, _conn) = TestDb::seeded();
    // 30 s interval: an update within the deadline cannot be a tick.
    let server = serve(&db.path, LONG_INTERVAL).await;

    let mut a = Client::connect_raw(&server.url()).await;
    let hello = a.next_frame().await;
    assert_eq!(hello["type"], "connected");
    assert_eq!(hello["authenticated"], false);
    assert!(hello["message"].as_str().is_some_and(|m| !m.is_empty()));
    assert!(
        parse_timestamp(hello["timestamp"].as_str().unwrap()).is_some(),
        "{hello}"
    );
    assert_eq!(hello["server"], skillmon::SERVER_NAME);
    assert_eq!(hello["protocol"], 1);
    assert_eq!(hello["interval_ms"], 30_000);
    let sid_a = hello["session_id"].as_str().expect("session_id").to_owned();
    assert!(!sid_a.is_empty());

    let first = a.next_frame().await;
    assert_eq!(first["type"], "metrics_update", "{first}");
    assert!(first["seq"].is_u64());
    assert!(parse_timestamp(first["timestamp"].as_str().unwrap()).is_some());
    assert_eq!(compat_top(&first), expected_top(&db.path, 10));
    assert_eq!(first["data"]["anomalies"], json!([]));

    // A second connection gets its own session id and its own first update.
    let (mut b, hello_b) = Client::connect(&server.url()).await;
    assert_ne!(hello_b["session_id"].as_str().unwrap(), sid_a);
    let first_b = b.next_frame().await;
    assert_eq!(first_b["type"], "metrics_update");
    assert_eq!(first_b["data"], first["data"]);
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn then_one_update_per_interval() {
    let (db, _conn) = TestDb::seeded();
    let server = serve(&db.path, Duration::from_millis(100)).await;
    let (mut c, hello) = Client::connect(&server.url()).await;
    assert_eq!(hello["interval_ms"], 100);
    let ticks_before = server.shared.stats.ticks();
    for _ in 0..4 {
        let u = c.next_update().await;
        assert_eq!(compat_top(&u), expected_top(&db.path, 10));
    }
    let ticks_after = server.shared.stats.ticks();
    // The first update came at once; the other three were ticks.
    assert!(
        ticks_after >= ticks_before + 3,
        "{ticks_before} -> {ticks_after}"
    );
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn values_and_ranking_equal_the_database() {
    let (db, _conn) = TestDb::seeded();
    let server = serve(&db.path, LONG_INTERVAL).await;
    let (_c, u) = Client::connect_and_update(&server.url()).await;

    // Exactly what skill_metrics holds, ranked total desc then name, total > 0.
    assert_eq!(compat_top(&u), expected_top(&db.path, 10));
    // And by hand, so the expectation query cannot hide a shared mistake.
    assert_eq!(names(&u), ["gamma", "alpha", "beta", "delta"]);
    let top = u["data"]["top_skills"].as_array().unwrap();
    let row = |name: &str| top.iter().find(|s| s["skill_name"] == name).unwrap();
    assert_eq!(row("gamma")["total_invocations"], 5);
    assert_eq!(row("gamma")["completion_rate"], 100.0);
    assert_eq!(row("gamma")["avg_duration_seconds"], 3.0);
    // A percentage, not a fraction.
    assert_eq!(row("alpha")["completion_rate"], 200.0 / 3.0);
    assert_eq!(row("alpha")["avg_duration_seconds"], 3.0);
    // No invocation completed: 0.0 and an explicit null.
    assert_eq!(row("beta")["completion_rate"], 0.0);
    assert!(
        row("beta")
            .as_object()
            .unwrap()
            .contains_key("avg_duration_seconds")
    );
    assert_eq!(row("beta")["avg_duration_seconds"], Value::Null);
    assert_eq!(row("delta")["completion_rate"], 100.0 / 3.0);
    assert_eq!(row("delta")["avg_duration_seconds"], 1.5);
    assert!(
        !names(&u).contains(&"zero".to_owned()),
        "total 0 is never served"
    );
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn top_n_is_respected() {
    let (db, _conn) = TestDb::seeded();
    let server = start(config(&db.path, LONG_INTERVAL, 2)).await;
    let (_c, u) = Client::connect_and_update(&server.url()).await;
    assert_eq!(names(&u), ["gamma", "alpha"]);
    assert_eq!(compat_top(&u), expected_top(&db.path, 2));
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_update_when_another_connection_writes() {
    let (db, _conn) = TestDb::seeded();
    let server = serve(&db.path, SHORT_INTERVAL).await;
    let (mut c, first) = Client::connect_and_update(&server.url()).await;
    assert!(!names(&first).contains(&"fresh".to_owned()));

    // A separate writer connection, as session-buddy would be.
    let writer = rusqlite::Connection::open(&db.path).unwrap();
    invoke_n(&writer, "fresh", 7, 7);
    let u = c
        .update_where("fresh is on top", |u| {
            names(u).first().map(String::as_str) == Some("fresh")
        })
        .await;
    assert_eq!(compat_top(&u), expected_top(&db.path, 10));

    invoke(&writer, "alpha", true, Some(10.0));
    let u = c
        .update_where("alpha has 4 invocations", |u| {
            u["data"]["top_skills"]
                .as_array()
                .unwrap()
                .iter()
                .any(|s| s["skill_name"] == "alpha" && s["total_invocations"] == 4)
        })
        .await;
    assert_eq!(compat_top(&u), expected_top(&db.path, 10));
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_subscribe_form_is_confirmed_and_followed_by_an_update() {
    let (db, _conn) = TestDb::seeded();
    // 30 s interval: the update after each confirmation is not a tick.
    let server = serve(&db.path, LONG_INTERVAL).await;
    let (mut c, _) = Client::connect_and_update(&server.url()).await;
    let all = ["gamma", "alpha", "beta", "delta"];

    let (conf, u) = c
        .subscribe(json!({"type": "subscribe", "skill": "beta"}))
        .await;
    assert_eq!(conf["skill"], "beta");
    assert!(parse_timestamp(conf["timestamp"].as_str().unwrap()).is_some());
    assert_eq!(names(&u), ["beta"]);

    let (conf, u) = c
        .subscribe(json!({"type": "subscribe", "skill": null}))
        .await;
    assert_eq!(conf.get("skill"), Some(&Value::Null), "{conf}");
    assert_eq!(names(&u), all);

    c.subscribe(json!({"type": "subscribe", "skill": "gamma"}))
        .await;
    let (conf, u) = c.subscribe(json!({"type": "subscribe", "skill": ""})).await;
    assert_eq!(conf["skill"], "", "echoed as given");
    assert_eq!(names(&u), all);

    c.subscribe(json!({"type": "subscribe", "skill": "gamma"}))
        .await;
    let (conf, u) = c.subscribe(json!({"type": "subscribe"})).await;
    assert_eq!(conf.get("skill"), Some(&Value::Null), "{conf}");
    assert_eq!(names(&u), all);

    let (conf, u) = c
        .subscribe(json!({"type": "subscribe", "skill_name": "delta"}))
        .await;
    assert_eq!(conf["skill"], "delta");
    assert_eq!(conf["skills"], json!(["delta"]));
    assert_eq!(names(&u), ["delta"]);

    let (conf, u) = c
        .subscribe(json!({"type": "subscribe", "skills": ["delta", "alpha"]}))
        .await;
    assert_eq!(conf["skills"], json!(["alpha", "delta"]));
    assert_eq!(names(&u), ["alpha", "delta"], "ranked order");
    let exp = expected_top(&db.path, 10);
    let exp_rows: Vec<&Value> = exp
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["skill_name"] == "alpha" || r["skill_name"] == "delta")
        .collect();
    assert_eq!(compat_top(&u), json!(exp_rows));

    // Unsubscribe: no reply, and at once an update for all skills.
    c.send_json(json!({"type": "unsubscribe"})).await;
    let u = c.next_frame().await;
    assert_eq!(u["type"], "metrics_update", "no reply to unsubscribe: {u}");
    assert_eq!(names(&u), all);
    // Nothing else was queued before this pong.
    c.send_json(json!({"type": "ping", "id": "after"})).await;
    let pong = c.next_frame().await;
    assert_eq!(pong, json!({"type": "pong", "id": "after"}));
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ping_pong_echoes_the_id() {
    let (db, _conn) = TestDb::new();
    let server = serve(&db.path, LONG_INTERVAL).await;
    let (mut c, _) = Client::connect_and_update(&server.url()).await;
    for id in [json!(7), json!("abc"), json!({"n": [1, 2]}), json!(0.5)] {
        c.send_json(json!({"type": "ping", "id": id})).await;
        assert_eq!(c.next_frame().await, json!({"type": "pong", "id": id}));
    }
    for ping in [json!({"type": "ping"}), json!({"type": "ping", "id": null})] {
        c.send_json(ping).await;
        let pong = c.next_frame().await;
        assert_eq!(pong, json!({"type": "pong"}), "bare pong, no id key");
    }
    server.stop().await.unwrap();
}

/// A client's close ends the session: the server replies and writes
/// nothing after its reply, however fast the ticks come.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_follows_the_close_reply() {
    use futures_util::StreamExt as _;
    use tokio_tungstenite::tungstenite::{Error, Message};
    let (db, _conn) = TestDb::seeded();
    let server = serve(&db.path, Duration::from_millis(5)).await;
    for round in 0..30 {
        let (mut c, _) = Client::connect_and_update(&server.url()).await;
        c.ws.close(None).await.expect("close");
        let mut replied = false;
        loop {
            let next = tokio::time::timeout(DEADLINE, c.ws.next())
                .await
                .expect("the server ends the connection");
            match next {
                // Ticks already on their way before the server read the close.
                Some(Ok(Message::Text(_))) => {
                    assert!(!replied, "round {round}: a frame after the close reply");
                }
                Some(Ok(Message::Close(_))) => replied = true,
                Some(Ok(_)) => {}
                None | Some(Err(Error::ConnectionClosed | Error::AlreadyClosed)) => break,
                // What the client's tungstenite says when a frame follows
                // the close reply.
                Some(Err(e @ Error::Protocol(_))) => {
                    panic!("round {round}: a frame after the close reply? {e}")
                }
                Some(Err(e)) => panic!("round {round}: {e}"),
            }
        }
        assert!(replied, "round {round}: no close reply");
    }
    server.stop().await.unwrap();
}

/// The server writes its text frames itself (`server::write`) and leaves
/// control frames to tungstenite: WebSocket pings sent while ticks are
/// going out get their pongs, in order, and no frame is cut or interleaved.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_pings_during_ticks_get_their_pongs_and_frames_stay_whole() {
    use futures_util::StreamExt as _;
    use tokio_tungstenite::tungstenite::Message;
    let (db, _conn) = TestDb::seeded();
    let server = serve(&db.path, Duration::from_millis(10)).await;
    let (mut c, _) = Client::connect_and_update(&server.url()).await;
    const PINGS: u8 = 60;
    let (mut sent, mut ponged, mut updates) = (0u8, 0u8, 0usize);
    let mut last_seq = c.last_seq.expect("first update's seq");
    while ponged < PINGS || updates < 20 {
        if sent < PINGS {
            c.ws.send(Message::Ping(vec![sent; 1 + usize::from(sent)].into()))
                .await
                .expect("ping");
            sent += 1;
        }
        let msg = tokio::time::timeout(DEADLINE, c.ws.next())
            .await
            .expect("nothing within the deadline")
            .expect("stream ended")
            .expect("read");
        match msg {
            Message::Pong(p) => {
                assert_eq!(&p[..], &vec![ponged; 1 + usize::from(ponged)][..]);
                ponged += 1;
            }
            Message::Text(t) => {
                let v: Value = serde_json::from_str(t.as_str()).expect("whole JSON frame");
                assert_eq!(v["type"], "metrics_update", "{v}");
                let seq = v["seq"].as_u64().expect("seq");
                assert!(seq > last_seq, "{last_seq} then {seq}");
                last_seq = seq;
                assert_eq!(compat_top(&v), expected_top(&db.path, 10));
                updates += 1;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seq_strictly_increases_across_subscription_changes() {
    let (db, _conn) = TestDb::seeded();
    let server = serve(&db.path, SHORT_INTERVAL).await;
    let (mut c, _) = Client::connect(&server.url()).await;
    // Client::check asserts seq on every update; switch subscriptions while
    // ticks keep coming, including back to groups seen before.
    let subs = [
        json!({"type": "subscribe", "skill": "alpha"}),
        json!({"type": "subscribe", "skills": ["beta", "gamma"]}),
        json!({"type": "unsubscribe"}),
        json!({"type": "subscribe", "skill": "alpha"}),
        json!({"type": "subscribe", "skill": "nope"}),
        json!({"type": "subscribe", "skill": null}),
    ];
    for round in 0..3 {
        for s in &subs {
            c.send_json(s.clone()).await;
            if round == 0 {
                c.next_update().await;
            }
        }
    }
    for _ in 0..5 {
        c.next_update().await;
    }
    assert!(c.updates_seen >= 11, "{}", c.updates_seen);

    // Another connection counts on its own.
    let (_d, first) = Client::connect_and_update(&server.url()).await;
    assert!(first["seq"].as_u64().unwrap() <= c.last_seq.unwrap());
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filtered_client_gets_its_rows_its_anomalies_and_every_tick() {
    let (db, conn) = TestDb::seeded();
    let recent = ts_ago(60, "%Y-%m-%dT%H:%M:%SZ");
    let older = ts_ago(120, "%Y-%m-%dT%H:%M:%SZ");
    skillmon::store::fixture::insert_anomaly(&conn, "delta", &older, "drop", Some(-2.5)).unwrap();
    skillmon::store::fixture::insert_anomaly(&conn, "gamma", &recent, "spike", Some(3.0)).unwrap();
    // Top 2: delta ranks 4th.
    let server = start(config(&db.path, SHORT_INTERVAL, 2)).await;
    let (mut c, u) = Client::connect_and_update(&server.url()).await;
    assert_eq!(names(&u), ["gamma", "alpha"]);
    assert_eq!(anomaly_keys(&u).len(), 2);

    let (_, u) = c
        .subscribe(json!({"type": "subscribe", "skill": "delta"}))
        .await;
    let delta_row: Vec<Value> = expected_top(&db.path, 10)
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["skill_name"] == "delta")
        .cloned()
        .collect();
    assert_eq!(
        compat_top(&u),
        json!(delta_row),
        "outside the top 2, still served"
    );
    assert_eq!(anomaly_keys(&u), [("delta".to_owned(), older.clone())]);
    let a = &u["data"]["anomalies"][0];
    assert_eq!(a["anomaly_type"], "drop");
    assert_eq!(a["deviation_score"], -2.5);
    // And on the following ticks too.
    let u = c.next_update().await;
    assert_eq!(names(&u), ["delta"]);
    assert_eq!(anomaly_keys(&u), [("delta".to_owned(), older)]);

    // A skill with no data yet: an update every tick, empty.
    let (_, u) = c
        .subscribe(json!({"type": "subscribe", "skill": "nope"}))
        .await;
    assert_eq!(u["data"], json!({"top_skills": [], "anomalies": []}));
    let seq0 = u["seq"].as_u64().unwrap();
    let ticks0 = server.shared.stats.ticks();
    for _ in 0..3 {
        let u = c.next_update().await;
        assert_eq!(u["data"], json!({"top_skills": [], "anomalies": []}));
    }
    let ticks1 = server.shared.stats.ticks();
    // Three ticks, three updates: one per tick (seq counts skipped ones too).
    assert!(
        c.last_seq.unwrap() - seq0 <= ticks1 - ticks0,
        "no extra frames"
    );

    // Data for it appears: the filtered client sees it.
    invoke(&conn, "nope", true, Some(1.0));
    let u = c
        .update_where("nope appears", |u| names(u) == ["nope"])
        .await;
    assert_eq!(u["data"]["top_skills"][0]["total_invocations"], 1);
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anomalies_of_the_last_hour_by_real_time_newest_first() {
    let (db, conn) = TestDb::seeded();
    let ins = |skill: &str, at: &str, ty: &str, score: Option<f64>| {
        skillmon::store::fixture::insert_anomaly(&conn, skill, at, ty, score).unwrap();
    };
    let frac = ts_ago(5 * 60, "%Y-%m-%dT%H:%M:%S%.6f+00:00");
    let z = ts_ago(10 * 60, "%Y-%m-%dT%H:%M:%SZ");
    let offset = ts_ago(20 * 60, "%Y-%m-%dT%H:%M:%S+00:00");
    let space = ts_ago(30 * 60, "%Y-%m-%d %H:%M:%S");
    let null_score = ts_ago(40 * 60, "%Y-%m-%d %H:%M:%S");
    // 2 h old with a `T`: a text comparison against datetime('now','-1 hour')
    // would let it through for the rest of the UTC day.
    let old_t = ts_ago(2 * 3600, "%Y-%m-%dT%H:%M:%S");
    let old_z = ts_ago(2 * 3600, "%Y-%m-%dT%H:%M:%SZ");
    let old_space = ts_ago(2 * 3600, "%Y-%m-%d %H:%M:%S");
    // Inserted out of order on purpose.
    ins("alpha", &space, "pattern_shift", Some(2.1));
    ins("gamma", &old_t, "spike", Some(9.0));
    ins("beta", &z, "drop", Some(-2.7));
    ins("delta", &frac, "performance_drop", Some(-3.5));
    ins("gamma", &old_z, "spike", Some(9.0));
    ins("alpha", &null_score, "spike", None);
    ins("gamma", &offset, "performance_spike", Some(2.2));
    ins("beta", &old_space, "drop", Some(-9.0));
    // A recent but resolved one.
    conn.execute(
        "INSERT INTO skill_anomalies (skill_name, detected_at, anomaly_type, deviation_score, resolved_at)
         VALUES ('beta', ?1, 'drop', -5.0, ?2)",
        [ts_ago(60, "%Y-%m-%dT%H:%M:%SZ"), now_iso()],
    )
    .unwrap();

    let server = serve(&db.path, LONG_INTERVAL).await;
    let (_c, u) = Client::connect_and_update(&server.url()).await;
    assert_eq!(
        anomaly_keys(&u),
        [
            ("delta".to_owned(), frac),
            ("beta".to_owned(), z),
            ("gamma".to_owned(), offset),
            ("alpha".to_owned(), space),
            ("alpha".to_owned(), null_score),
        ],
        "{}",
        u["data"]["anomalies"]
    );
    let an = u["data"]["anomalies"].as_array().unwrap();
    assert_eq!(an[0]["anomaly_type"], "performance_drop");
    assert_eq!(an[0]["deviation_score"], -3.5);
    assert_eq!(an[1]["anomaly_type"], "drop");
    assert_eq!(an[1]["deviation_score"], -2.7);
    assert!(an[4].as_object().unwrap().contains_key("deviation_score"));
    assert_eq!(an[4]["deviation_score"], Value::Null);
    for a in an {
        assert_eq!(a["source"], "table");
    }
    server.stop().await.unwrap();

    // At most top N of them.
    let server = start(config(&db.path, LONG_INTERVAL, 2)).await;
    let (_c, u) = Client::connect_and_update(&server.url()).await;
    assert_eq!(anomaly_keys(&u).len(), 2);
    assert_eq!(anomaly_keys(&u)[0].0, "delta");
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_error_frames_and_the_connection_stays_open() {
    let (db, _conn) = TestDb::seeded();
    let server = serve(&db.path, LONG_INTERVAL).await;
    let (mut c, _) = Client::connect_and_update(&server.url()).await;
    let cases = [
        ("not json", "invalid_json"),
        ("", "invalid_json"),
        ("{\"type\": \"ping\"", "invalid_json"),
        ("[1, 2]", "not_an_object"),
        ("\"subscribe\"", "not_an_object"),
        ("42", "not_an_object"),
        (r#"{"type": "explode"}"#, "unknown_type"),
        (r#"{"type": "Subscribe"}"#, "unknown_type"),
        (r#"{"type": 5}"#, "bad_request"),
        (r#"{"skill": "x"}"#, "bad_request"),
        (r#"{"type": "subscribe", "skill": 5}"#, "bad_request"),
        (r#"{"type": "subscribe", "skills": "a"}"#, "bad_request"),
        (r#"{"type": "subscribe", "skills": [1]}"#, "bad_request"),
    ];
    for (i, (text, code)) in cases.iter().enumerate() {
        c.send_text(*text).await;
        let e = c.next_frame().await;
        assert_eq!(e["type"], "error", "{text:?} -> {e}");
        assert_eq!(e["code"], *code, "{text:?} -> {e}");
        assert!(e["message"].as_str().is_some_and(|m| !m.is_empty()), "{e}");
        // Still open, still answering.
        c.send_json(json!({"type": "ping", "id": i})).await;
        assert_eq!(c.next_frame().await, json!({"type": "pong", "id": i}));
    }
    let long = format!(r#"{{"type":"subscribe","skill":"{}"}}"#, "x".repeat(300));
    c.send_text(long).await;
    assert_eq!(c.next_frame().await["code"], "bad_request");

    // A binary frame.
    c.ws.send(tokio_tungstenite::tungstenite::Message::binary(vec![
        1u8, 2, 3,
    ]))
    .await
    .unwrap();
    let e = c.next_frame().await;
    assert_eq!(
        (e["type"].as_str(), e["code"].as_str()),
        (Some("error"), Some("bad_request")),
        "{e}"
    );
    c.send_json(json!({"type": "ping", "id": "bin"})).await;
    assert_eq!(c.next_frame().await, json!({"type": "pong", "id": "bin"}));

    // A bad subscribe leaves the old subscription alone.
    c.subscribe(json!({"type": "subscribe", "skill": "beta"}))
        .await;
    c.send_text(r#"{"type": "subscribe", "skill": 5}"#).await;
    assert_eq!(c.next_frame().await["code"], "bad_request");
    // An auth frame while auth is off: accepted and ignored, no reply.
    c.send_json(json!({"token": "abc"})).await;
    c.send_json(json!({"type": "ping", "id": "end"})).await;
    assert_eq!(c.next_frame().await, json!({"type": "pong", "id": "end"}));
    server.stop().await.unwrap();
}

/// Flood `c` with `n` copies of `msg` in one burst (one flush), then read
/// until a `rate_limited` error; return it.
async fn flood_until_rate_limited(
    c: &mut Client,
    msg: tokio_tungstenite::tungstenite::Message,
    n: usize,
) -> Value {
    for _ in 0..n {
        c.ws.feed(msg.clone()).await.unwrap();
    }
    c.ws.flush().await.unwrap();
    let until = tokio::time::Instant::now() + DEADLINE;
    loop {
        let left = until.saturating_duration_since(tokio::time::Instant::now());
        match c.next_event_within(left).await {
            Some(Event::Frame(v)) if v["code"] == "rate_limited" => return v,
            Some(Event::Frame(_)) => continue,
            other => panic!("waiting for rate_limited: {other:?}"),
        }
    }
}

/// After a flood: the connection is open and pings are answered again once
/// the rate limit refills. Paced by the server's ticks, not by sleeping.
async fn answered_again(c: &mut Client) {
    let until = tokio::time::Instant::now() + DEADLINE;
    for i in 0.. {
        assert!(tokio::time::Instant::now() < until, "never answered again");
        let id = json!(format!("again-{i}"));
        c.send_json(json!({"type": "ping", "id": id})).await;
        loop {
            let v = c.next_frame().await;
            if v["type"] == "pong" && v["id"] == id {
                return;
            }
            if v["type"] == "metrics_update" {
                break; // a tick went by; ask again
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_gets_rate_limited_then_served_again() {
    let (db, _conn) = TestDb::seeded();
    let server = serve(&db.path, SHORT_INTERVAL).await;
    let (mut c, _) = Client::connect_and_update(&server.url()).await;
    let ping = tokio_tungstenite::tungstenite::Message::text(r#"{"type":"ping","id":1}"#);
    let e = flood_until_rate_limited(&mut c, ping, 300).await;
    assert_eq!(e["type"], "error");
    assert!(e["message"].as_str().is_some_and(|m| !m.is_empty()));
    answered_again(&mut c).await;
    c.next_update().await;
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_binary_flood_gets_rate_limited_too() {
    let (db, _conn) = TestDb::seeded();
    let server = serve(&db.path, SHORT_INTERVAL).await;
    let (mut c, _) = Client::connect_and_update(&server.url()).await;
    let bin = tokio_tungstenite::tungstenite::Message::binary(vec![0u8; 16]);
    flood_until_rate_limited(&mut c, bin, 300).await;
    answered_again(&mut c).await;
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_over_64_kib_is_closed_with_1009() {
    let (db, _conn) = TestDb::seeded();
    let server = serve(&db.path, LONG_INTERVAL).await;
    let (mut c, _) = Client::connect_and_update(&server.url()).await;
    let big = format!(
        r#"{{"type":"subscribe","skill":"{}"}}"#,
        "x".repeat(64 * 1024 + 1)
    );
    c.send_text(big).await;
    assert_eq!(c.close_code_within(DEADLINE).await, 1009);

    // Exactly 64 KiB in total is still accepted (and refused as bad_request,
    // since the name is too long), on a fresh connection.
    let (mut d, _) = Client::connect_and_update(&server.url()).await;
    let prefix = r#"{"type":"subscribe","skill":""#;
    let pad = 64 * 1024 - prefix.len() - 2;
    d.send_text(format!("{prefix}{}\"}}", "y".repeat(pad)))
        .await;
    assert_eq!(d.next_frame().await["code"], "bad_request");
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_closes_every_client_with_1001_within_a_second() {
    let (db, _conn) = TestDb::seeded();
    let server = serve(&db.path, SHORT_INTERVAL).await;
    let addr = server.addr;
    let mut clients = Vec::new();
    for i in 0..4 {
        let (mut c, _) = Client::connect_and_update(&server.url()).await;
        if i % 2 == 1 {
            c.subscribe(json!({"type": "subscribe", "skill": "alpha"}))
                .await;
        }
        clients.push(c);
    }
    let started = tokio::time::Instant::now();
    let stopping = tokio::spawn(server.stop());
    let closes = clients
        .iter_mut()
        .map(|c| c.close_code_within(Duration::from_secs(1)));
    let codes = futures_util::future::join_all(closes).await;
    assert!(codes.iter().all(|&c| c == 1001), "{codes:?}");
    assert!(
        started.elapsed() <= Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    tokio::time::timeout(DEADLINE, stopping)
        .await
        .expect("stop() resolves")
        .expect("no panic")
        .expect("stop() is Ok");
    // The listener is gone.
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_sent_before_reading_anything_are_answered_after_connected() {
    let (db, _conn) = TestDb::seeded();
    let server = serve(&db.path, LONG_INTERVAL).await;
    let mut c = Client::connect_raw(&server.url()).await;
    // Pipelined before a single frame was read.
    c.send_json(json!({"type": "subscribe", "skill": "alpha"}))
        .await;
    c.send_json(json!({"type": "ping", "id": 1})).await;
    c.send_json(json!({"type": "subscribe", "skill": "alpha"}))
        .await;
    // Client::check asserts `connected` comes first.
    let hello = c.next_frame().await;
    assert_eq!(hello["type"], "connected");
    let mut kinds = Vec::new();
    let mut last_update = Value::Null;
    while kinds.len() < 6 {
        let f = c.next_frame().await;
        kinds.push(f["type"].as_str().unwrap().to_owned());
        if f["type"] == "metrics_update" {
            last_update = f;
        }
    }
    assert_eq!(
        kinds,
        [
            "metrics_update",
            "subscription_confirmed",
            "metrics_update",
            "pong",
            "subscription_confirmed",
            "metrics_update"
        ],
        "re-subscribing to the same skill is confirmed and followed by an update too"
    );
    assert_eq!(names(&last_update), ["alpha"]);
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frame_in_the_same_packet_as_the_handshake_is_not_lost() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (db, _conn) = TestDb::new();
    let server = serve(&db.path, LONG_INTERVAL).await;
    let payload = br#"{"type":"ping","id":"pipelined"}"#;
    let mask = [0x12u8, 0x34, 0x56, 0x78];
    let mut bytes = format!(
        "GET /ws HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
        server.addr
    )
    .into_bytes();
    bytes.extend([0x81, 0x80 | payload.len() as u8]);
    bytes.extend(mask);
    bytes.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    let mut s = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    s.write_all(&bytes).await.unwrap();
    // Read until the pong's text shows up (server frames are unmasked).
    let mut got = Vec::new();
    let mut chunk = [0u8; 4096];
    let needle = br#""id":"pipelined""#;
    while !got.windows(needle.len()).any(|w| w == needle) {
        let n = tokio::time::timeout(DEADLINE, s.read(&mut chunk))
            .await
            .expect("pong to a pipelined ping")
            .unwrap();
        assert!(n > 0, "closed: {}", String::from_utf8_lossy(&got));
        got.extend_from_slice(&chunk[..n]);
    }
    assert!(got.starts_with(b"HTTP/1.1 101"));
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscription_size_limits() {
    let (db, _conn) = TestDb::seeded();
    let server = serve(&db.path, LONG_INTERVAL).await;
    let (mut c, _) = Client::connect_and_update(&server.url()).await;
    let many: Vec<String> = (0..64).map(|i| format!("s{i}")).collect();
    let (conf, u) = c
        .subscribe(json!({"type": "subscribe", "skills": many}))
        .await;
    assert_eq!(conf["skills"].as_array().unwrap().len(), 64);
    assert_eq!(u["data"]["top_skills"], json!([]));
    let too_many: Vec<String> = (0..65).map(|i| format!("s{i}")).collect();
    c.send_json(json!({"type": "subscribe", "skills": too_many}))
        .await;
    assert_eq!(c.next_frame().await["code"], "bad_request");
    let name = "n".repeat(256);
    let (conf, _) = c
        .subscribe(json!({"type": "subscribe", "skill": name}))
        .await;
    assert_eq!(conf["skill"], name);
    c.send_json(json!({"type": "subscribe", "skill": "n".repeat(257)}))
        .await;
    assert_eq!(c.next_frame().await["code"], "bad_request");
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_anomaly_ages_out_of_the_hour_without_any_write() {
    let (db, conn) = TestDb::seeded();
    // 3 s short of an hour old, so it drops out of the window in ~3 s.
    let edge = ts_ago(3600 - 3, "%Y-%m-%dT%H:%M:%SZ");
    let fresh = ts_ago(60, "%Y-%m-%d %H:%M:%S");
    skillmon::store::fixture::insert_anomaly(&conn, "alpha", &edge, "drop", Some(-2.0)).unwrap();
    skillmon::store::fixture::insert_anomaly(&conn, "beta", &fresh, "spike", Some(2.0)).unwrap();
    drop(conn);
    let server = serve(&db.path, Duration::from_millis(100)).await;
    let (mut c, u) = Client::connect_and_update(&server.url()).await;
    assert_eq!(
        anomaly_keys(&u),
        [
            ("beta".to_owned(), fresh.clone()),
            ("alpha".to_owned(), edge)
        ]
    );
    let queries = server.shared.stats.db_queries();
    let u = c
        .update_where("the old one aged out", |u| anomaly_keys(u).len() == 1)
        .await;
    assert_eq!(anomaly_keys(&u), [("beta".to_owned(), fresh)]);
    assert_eq!(
        server.shared.stats.db_queries(),
        queries,
        "windows move with the clock, not by re-reading the database"
    );
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fragmented_message_over_64_kib_is_closed_with_1009() {
    use tokio_tungstenite::tungstenite::protocol::frame::Frame;
    use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
    let (db, _conn) = TestDb::new();
    let server = serve(&db.path, LONG_INTERVAL).await;
    let (mut c, _) = Client::connect_and_update(&server.url()).await;
    // Three 30 KiB fragments: each frame is small, the message is not.
    let part = vec![b' '; 30 * 1024];
    let frames = [
        Frame::message(part.clone(), OpCode::Data(Data::Text), false),
        Frame::message(part.clone(), OpCode::Data(Data::Continue), false),
        Frame::message(part, OpCode::Data(Data::Continue), true),
    ];
    for f in frames {
        c.ws.feed(tokio_tungstenite::tungstenite::Message::Frame(f))
            .await
            .unwrap();
    }
    c.ws.flush().await.unwrap();
    assert_eq!(c.close_code_within(DEADLINE).await, 1009);
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abandoned_subscription_groups_are_dropped() {
    let (db, _conn) = TestDb::seeded();
    let server = serve(&db.path, SHORT_INTERVAL).await;
    let (mut c, _) = Client::connect(&server.url()).await;
    for s in ["alpha", "beta", "gamma", "delta", "nope"] {
        c.subscribe(json!({"type": "subscribe", "skill": s})).await;
    }
    // Two ticks later only the live group is left.
    c.next_update().await;
    c.next_update().await;
    assert_eq!(server.shared.hub.groups(), 1);
    let (_d, _) = Client::connect_and_update(&server.url()).await;
    assert_eq!(server.shared.hub.groups(), 2, "nope + all");
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unicode_names_and_skill_plus_skills() {
    let (db, conn) = TestDb::seeded();
    let name = "café-🚀 \"quoted\" \\ tab\t";
    invoke_n(&conn, name, 2, 1);
    let server = serve(&db.path, LONG_INTERVAL).await;
    let (mut c, _) = Client::connect(&server.url()).await;
    assert!(names(&c.next_update().await).contains(&name.to_owned()));
    let (conf, u) = c
        .subscribe(json!({"type": "subscribe", "skill": name}))
        .await;
    assert_eq!(conf["skill"], name);
    assert_eq!(names(&u), [name]);
    assert_eq!(u["data"]["top_skills"][0]["completion_rate"], 50.0);
    // `skill` and `skills` together: the union; `skill` is echoed.
    let (conf, u) = c
        .subscribe(json!({"type": "subscribe", "skill": "alpha", "skills": ["beta", "alpha"]}))
        .await;
    assert_eq!(conf["skill"], "alpha");
    assert_eq!(conf["skills"], json!(["alpha", "beta"]));
    assert_eq!(names(&u), ["alpha", "beta"]);
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_utf8_gets_1007_and_a_protocol_violation_1002() {
    use tokio_tungstenite::tungstenite::Message;
    use tokio_tungstenite::tungstenite::protocol::frame::Frame;
    use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
    let (db, _conn) = TestDb::new();
    let server = serve(&db.path, LONG_INTERVAL).await;

    let (mut c, _) = Client::connect_and_update(&server.url()).await;
    let bad_text = Frame::message(vec![b'{', 0xff, 0xfe, b'}'], OpCode::Data(Data::Text), true);
    c.ws.send(Message::Frame(bad_text)).await.unwrap();
    assert_eq!(c.close_code_within(DEADLINE).await, 1007);

    let (mut c, _) = Client::connect_and_update(&server.url()).await;
    let reserved = Frame::message(vec![1u8, 2, 3], OpCode::Data(Data::Reserved(3)), true);
    c.ws.send(Message::Frame(reserved)).await.unwrap();
    assert_eq!(c.close_code_within(DEADLINE).await, 1002);
    server.stop().await.unwrap();
}
