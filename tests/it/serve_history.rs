//! Issue 9, serve side: `history` on request, on real sockets against a
//! real database (`docs/PROTOCOL.md` § History).

use crate::support;

use serde_json::{Value, json};
use support::*;

/// Ask for a history and return the `history` frame that answers it.
async fn ask(c: &mut Client, msg: Value) -> Value {
    c.send_json(msg).await;
    c.frame_where("a history or error frame", |v| {
        v["type"] == "history" || v["type"] == "error"
    })
    .await
}

fn skill<'a>(h: &'a Value, name: &str) -> &'a Value {
    h["skills"]
        .as_array()
        .and_then(|s| s.iter().find(|s| s["skill_name"] == name))
        .unwrap_or_else(|| panic!("{name} not in {h}"))
}

fn total(s: &Value, field: &str) -> u64 {
    s["buckets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b[field].as_u64().unwrap())
        .sum()
}

fn skill_names(h: &Value) -> Vec<String> {
    h["skills"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["skill_name"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_request_and_response() {
    let (db, _conn) = TestDb::seeded();
    let server = serve(&db.path, LONG_INTERVAL).await;
    let (mut c, _) = Client::connect_and_update(&server.url()).await;

    let h = ask(
        &mut c,
        json!({"type": "history", "skills": ["gamma", "nope", "alpha"], "window": "1h"}),
    )
    .await;
    assert_eq!(h["type"], "history", "{h}");
    assert_eq!(h["window"], "1h");
    assert_eq!(h["bucket_seconds"], 60);
    assert_eq!(skill_names(&h), ["alpha", "gamma", "nope"], "sorted");
    let gamma = skill(&h, "gamma");
    assert_eq!(gamma["buckets"].as_array().unwrap().len(), 60);
    assert_eq!(total(gamma, "invocations"), 5);
    assert_eq!(total(gamma, "completed"), 5);
    let alpha = skill(&h, "alpha");
    assert_eq!(total(alpha, "invocations"), 3);
    assert_eq!(total(alpha, "completed"), 2);
    // Every invocation was written within the last minute or two: the
    // buckets holding them average their completed durations.
    let busy: Vec<&Value> = gamma["buckets"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|b| b["invocations"].as_u64() > Some(0))
        .collect();
    assert!(!busy.is_empty() && busy.len() <= 2, "{gamma}");
    if busy.len() == 1 {
        assert_eq!(busy[0]["avg_duration"], 3.0, "(1+2+3+4+5)/5");
    }
    // Unknown skill: all-zero buckets, avg null (present), no error.
    let nope = skill(&h, "nope");
    assert_eq!(nope["buckets"].as_array().unwrap().len(), 60);
    assert_eq!(total(nope, "invocations"), 0);
    assert!(nope["buckets"][0].as_object().unwrap()["avg_duration"].is_null());
    assert_eq!(h["start"], gamma["buckets"][0]["start"]);

    let day = ask(
        &mut c,
        json!({"type": "history", "skills": ["gamma"], "window": "24h"}),
    )
    .await;
    assert_eq!(day["window"], "24h");
    assert_eq!(day["bucket_seconds"], 900);
    let gamma = skill(&day, "gamma");
    assert_eq!(gamma["buckets"].as_array().unwrap().len(), 96);
    assert_eq!(total(gamma, "invocations"), 5);
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn default_skills_follow_the_subscription() {
    let (db, _conn) = TestDb::seeded();
    let server = serve(&db.path, LONG_INTERVAL).await;
    let (mut c, _) = Client::connect_and_update(&server.url()).await;
    let h = ask(&mut c, json!({"type": "history", "window": "1h"})).await;
    assert_eq!(
        skill_names(&h),
        ["alpha", "beta", "delta", "gamma"],
        "all: the visible rows (zero is never ranked)"
    );
    c.subscribe(json!({"type": "subscribe", "skills": ["delta", "unknown"]}))
        .await;
    let h = ask(
        &mut c,
        json!({"type": "history", "window": "24h", "skills": []}),
    )
    .await;
    assert_eq!(skill_names(&h), ["delta", "unknown"]);
    assert_eq!(total(skill(&h, "delta"), "invocations"), 3);
    assert_eq!(total(skill(&h, "delta"), "completed"), 1);
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_history_requests_get_bad_request() {
    let (db, _conn) = TestDb::seeded();
    let server = serve(&db.path, LONG_INTERVAL).await;
    let (mut c, _) = Client::connect_and_update(&server.url()).await;
    let names: Vec<String> = (0..65).map(|i| format!("s{i}")).collect();
    let e = ask(
        &mut c,
        json!({"type": "history", "skills": names, "window": "1h"}),
    )
    .await;
    assert_eq!(e["type"], "error", "{e}");
    assert_eq!(e["code"], "bad_request");
    assert!(e["message"].as_str().unwrap().contains("64"), "{e}");
    for bad in [
        json!({"type": "history", "window": "7d"}),
        json!({"type": "history"}),
        json!({"type": "history", "skills": "gamma", "window": "1h"}),
    ] {
        let e = ask(&mut c, bad.clone()).await;
        assert_eq!(e["code"], "bad_request", "{bad} -> {e}");
    }
    // 64 names are fine.
    let names: Vec<String> = (0..64).map(|i| format!("s{i}")).collect();
    let h = ask(
        &mut c,
        json!({"type": "history", "skills": names, "window": "24h"}),
    )
    .await;
    assert_eq!(h["skills"].as_array().unwrap().len(), 64);
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_requests_are_rate_limited() {
    use futures_util::SinkExt as _;
    let (db, _conn) = TestDb::seeded();
    let server = serve(&db.path, LONG_INTERVAL).await;
    let (mut c, _) = Client::connect_and_update(&server.url()).await;
    let msg = tokio_tungstenite::tungstenite::Message::text(
        json!({"type": "history", "window": "1h"}).to_string(),
    );
    for _ in 0..100 {
        c.ws.feed(msg.clone()).await.unwrap();
    }
    c.ws.flush().await.unwrap();
    // The burst is answered, then the rest is dropped with one error.
    let mut histories = 0;
    loop {
        let v = c.next_frame().await;
        if v["code"] == "rate_limited" {
            break;
        }
        assert_eq!(v["type"], "history", "{v}");
        histories += 1;
    }
    assert!((40..100).contains(&histories), "{histories} answered");
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_asks_never_sees_a_history() {
    let (db, conn) = TestDb::seeded();
    let server = serve(&db.path, SHORT_INTERVAL).await;
    // Session-buddy's reference client: no subprotocol, subscribe, read.
    let (ws, _) = tokio::time::timeout(DEADLINE, tokio_tungstenite::connect_async(server.url()))
        .await
        .expect("connect timed out")
        .expect("connect");
    let mut plain = Client::from_ws(ws);
    assert_eq!(plain.next_frame().await["type"], "connected");
    plain
        .send_json(json!({"type": "subscribe", "skill": null}))
        .await;
    // Meanwhile an ext client asks for histories, on the same group.
    let (mut asker, _) = Client::connect_and_update(&server.url()).await;
    for window in ["1h", "24h"] {
        let h = ask(&mut asker, json!({"type": "history", "window": window})).await;
        assert_eq!(h["type"], "history");
    }
    invoke(&conn, "gamma", true, Some(1.0));
    // Ten frames (the confirmation, then ticks, one with the new row): none
    // is a history.
    let mut types = Vec::new();
    for _ in 0..10 {
        let v = plain.next_frame().await;
        types.push(v["type"].as_str().unwrap_or_default().to_owned());
    }
    assert_eq!(types[0], "subscription_confirmed", "{types:?}");
    assert!(
        types[1..].iter().all(|t| t == "metrics_update"),
        "{types:?}"
    );
    server.stop().await.unwrap();
}
