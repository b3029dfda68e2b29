//! permessage-deflate (RFC 7692) on `serve`, against a reference inflater
//! that keeps its window across messages as browsers and Python
//! `websockets` do: every compressed update inflates to exactly the frame
//! an uncompressed client gets, whatever comes between (pongs, history
//! replies, skipped updates); clients that ask for no context takeover or
//! a small window get valid frames; compressed client messages are read;
//! bombs and protocol errors are refused with the right close code.

use crate::support;

use std::sync::Arc;

use serde_json::{Value, json};
use skillmon::protocol::SkillStat;
use skillmon::store::Snapshot;
use support::deflate::{DeflateClient, deflate};
use support::*;

const OFFER: &str = "permessage-deflate; client_max_window_bits";

/// Tick `n`'s data: the top row's count is `MARK + n`, so a frame names
/// the tick it was built at; other rows move now and then.
const MARK: u64 = 1_000_000;

fn snapshot(n: u64) -> Arc<Snapshot> {
    let stat = |name: &str, total: u64| SkillStat {
        skill_name: name.into(),
        total_invocations: total,
        completion_rate: 50.0 + (total % 50) as f64,
        avg_duration_seconds: Some(total as f64 / 7.0),
        invocations_1h: Some(total % 13),
        invocations_24h: Some(total % 101),
        last_invoked_at: Some("2026-12-04T21:00:00+00:00".into()),
    };
    let mut rows = vec![
        stat("marker", MARK + n),
        stat("pytest-run", 700 + n / 3),
        stat("ruff-check", 400 + n / 7),
        stat("gamma", 5),
    ];
    rows.extend((0..n % 4).map(|i| stat(&format!("extra-{i}"), 10 + i)));
    Arc::new(Snapshot::new(rows, vec![]))
}

/// The tick a frame of [`snapshot`] was built at (`None`: a frame of the
/// database's own data).
fn tick_of(update: &Value) -> Option<u64> {
    update["data"]["top_skills"][0]["total_invocations"]
        .as_u64()?
        .checked_sub(MARK)
}

/// The update as JSON without its `seq`, and the seq.
fn without_seq(mut v: Value) -> (Value, u64) {
    let seq = v["seq"].as_u64().expect("seq");
    v.as_object_mut().unwrap().remove("seq");
    (v, seq)
}

async fn deflate_server() -> (TestDb, skillmon::server::Handle) {
    let (db, _conn) = TestDb::seeded();
    let server = start(config(&db.path, LONG_INTERVAL, 10)).await;
    (db, server)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_updates_inflate_exactly_with_pongs_histories_and_skips_between() {
    let (_db, server) = deflate_server().await;
    let mut dc = DeflateClient::connect(server.addr, Some(OFFER), true, 15).await;
    assert_eq!(
        dc.extensions.as_deref(),
        Some("permessage-deflate; client_no_context_takeover")
    );
    let (hello, compressed, _) = dc.of_type("connected").await;
    assert_eq!(hello["protocol"], 1, "{hello}");
    assert!(compressed, "`connected` shrinks, so it goes compressed");
    // An uncompressed client of the same group, at the same time.
    let mut plain = Client::connect_raw(&server.url()).await;
    dc.of_type("metrics_update").await;
    plain.next_update().await;

    let mut rng = fastrand::Rng::with_seed(20);
    let (mut last_seq, mut n, mut small, mut updates, mut sizes) = (1u64, 0u64, 0u32, 0u32, 0usize);
    let (mut pongs, mut histories) = (0, 0);
    for round in 0..1000u64 {
        // Now and then a burst of ticks: the session may skip some.
        let burst = if rng.u8(..8) == 0 { 3 } else { 1 };
        for _ in 0..burst {
            n += 1;
            server.publish(snapshot(n));
        }
        // Within the rate limit's burst of 40 over the whole run.
        let mut asked = None;
        match rng.u16(..1000) {
            0..20 => asked = Some("pong"),
            20..35 => asked = Some("history"),
            _ => {}
        }
        let compress = rng.bool();
        match asked {
            Some("pong") => {
                dc.send_text(&json!({"type": "ping", "id": round}).to_string(), compress)
                    .await;
            }
            Some(_) => {
                let ask = json!({"type": "history", "skills": ["marker"], "window": "1h"});
                dc.send_text(&ask.to_string(), compress).await;
            }
            None => {}
        }
        // Read until this round's last tick has arrived (and the reply).
        let (mut replied, mut arrived) = (asked.is_none(), false);
        while !(replied && arrived) {
            let (text, compressed, wire) = dc.text().await;
            let v: Value = serde_json::from_str(&text)
                .unwrap_or_else(|e| panic!("round {round}: not JSON ({e}): {text}"));
            match v["type"].as_str() {
                Some("pong") => {
                    assert!(!compressed, "a pong leaves the window as it was");
                    assert_eq!(v["id"], round);
                    pongs += 1;
                    replied = true;
                }
                Some("history") => {
                    assert_eq!(v["skills"][0]["skill_name"], "marker", "{text}");
                    histories += 1;
                    replied = true;
                }
                Some("metrics_update") => {
                    assert!(compressed);
                    // seq padded to the fixed width with JSON spaces.
                    let seq_field = text
                        .strip_prefix(r#"{"type":"metrics_update","seq":"#)
                        .and_then(|r| r.get(..8))
                        .expect("seq field");
                    assert_eq!(seq_field.trim_end().parse::<u64>().ok(), v["seq"].as_u64());
                    let seq = v["seq"].as_u64().unwrap();
                    assert!(seq > last_seq, "seq {seq} after {last_seq}");
                    last_seq = seq;
                    updates += 1;
                    sizes += wire;
                    if wire * 10 < text.len() {
                        small += 1;
                    }
                    if tick_of(&v) == Some(n) {
                        // The same frame as the uncompressed client's.
                        let theirs = plain
                            .update_where("this round's tick", |u| tick_of(u) == Some(n))
                            .await;
                        assert_eq!(without_seq(v).0, without_seq(theirs).0, "round {round}");
                        arrived = true;
                    }
                }
                other => panic!("unexpected {other:?}: {text}"),
            }
        }
    }
    assert!(
        pongs > 5 && histories > 5,
        "{pongs} pongs, {histories} histories"
    );
    // In step most of the time: the frame against the previous one is a
    // small fraction of the frame.
    assert!(small * 10 > updates * 7, "{small} small of {updates}");
    eprintln!(
        "{updates} updates, {:.0} B on the wire on average",
        sizes as f64 / f64::from(updates)
    );
    // The server's own count agrees (/metrics: skillmon_updates_compressed).
    let (previous, alone) = server.stats().compressed();
    assert!(
        previous + alone >= u64::from(updates),
        "{previous} + {alone}"
    );
    assert!(
        previous > alone * 3,
        "{previous} against the previous, {alone} alone"
    );
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_context_takeover_and_small_windows_get_frames_they_can_inflate() {
    let (_db, server) = deflate_server().await;
    let mut reset = DeflateClient::connect(
        server.addr,
        Some("permessage-deflate; server_no_context_takeover"),
        true,
        15,
    )
    .await;
    assert!(reset.reset, "{:?}", reset.extensions);
    let mut tiny = DeflateClient::connect(
        server.addr,
        Some("permessage-deflate; server_max_window_bits=9"),
        true,
        9,
    )
    .await;
    assert_eq!(
        tiny.extensions.as_deref(),
        Some("permessage-deflate; client_no_context_takeover; server_max_window_bits=9")
    );
    let mut mid = DeflateClient::connect(
        server.addr,
        Some("permessage-deflate; server_max_window_bits=12"),
        true,
        12,
    )
    .await;
    for c in [&mut reset, &mut tiny, &mut mid] {
        c.of_type("metrics_update").await;
    }
    let (mut tiny_plain, mut mid_compressed) = (0, 0);
    for n in 1..=60 {
        server.publish(snapshot(n));
        for (i, c) in [&mut reset, &mut tiny, &mut mid].into_iter().enumerate() {
            let compressed = loop {
                let (v, compressed, _) = c.of_type("metrics_update").await;
                if tick_of(&v) == Some(n) {
                    break compressed;
                }
            };
            match i {
                0 => assert!(compressed),
                1 => tiny_plain += usize::from(!compressed),
                _ => mid_compressed += usize::from(compressed),
            }
        }
    }
    // 512 bytes is less than a frame: those go uncompressed (RFC 7692
    // allows it per message); 4 KiB holds a frame alone.
    assert_eq!(tiny_plain, 60);
    assert_eq!(mid_compressed, 60);
    server.stop().await.unwrap();
}

#[tokio::test]
async fn compressed_and_fragmented_client_messages_are_read_beside_a_client_without_deflate() {
    let (_db, server) = deflate_server().await;
    server.publish(snapshot(1));
    let mut dc = DeflateClient::connect(server.addr, Some(OFFER), false, 15).await;
    let (mut plain, _) = Client::connect(&server.url()).await;
    dc.of_type("connected").await;
    // Compressed, as Python `websockets` sends it.
    dc.send_text(r#"{"type":"ping","id":"a"}"#, true).await;
    let (pong, compressed, _) = dc.of_type("pong").await;
    assert_eq!(pong["id"], "a");
    assert!(!compressed);
    // Compressed and cut into three frames, a ping between them.
    let sub = deflate(br#"{"type":"subscribe","skills":["gamma"]}"#);
    let third = sub.len() / 3;
    dc.send_frame(false, true, 0x1, &sub[..third]).await;
    dc.send_frame(true, false, 0x9, b"hi").await;
    dc.send_frame(false, false, 0x0, &sub[third..2 * third])
        .await;
    dc.send_frame(true, false, 0x0, &sub[2 * third..]).await;
    let (confirmed, _, _) = dc.of_type("subscription_confirmed").await;
    assert_eq!(confirmed["skill_name"], "gamma", "{confirmed}");
    // The picture that follows a confirmation, from the latest tick.
    let (update, compressed, _) = dc.of_type("metrics_update").await;
    assert!(compressed);
    assert_eq!(names(&update), ["gamma"], "{update}");
    // The client without deflate gets its frames uncompressed.
    server.publish(snapshot(2));
    let theirs = plain
        .update_where("tick 2", |u| tick_of(u) == Some(2))
        .await;
    assert_eq!(theirs["data"]["top_skills"][0]["skill_name"], "marker");
    server.stop().await.unwrap();
}

#[tokio::test]
async fn a_decompression_bomb_is_closed_with_1009_not_inflated() {
    let (_db, server) = deflate_server().await;
    let mut dc = DeflateClient::connect(server.addr, Some(OFFER), false, 15).await;
    dc.of_type("connected").await;
    // 16 MiB of spaces: ~16 KB on the wire.
    let bomb = deflate(&vec![b' '; 16 << 20]);
    assert!(bomb.len() < 64 << 10);
    dc.send_frame(true, true, 0x1, &bomb).await;
    assert_eq!(dc.close_code().await, Some(1009));
    server.stop().await.unwrap();
}

#[tokio::test]
async fn rsv1_on_a_control_frame_or_without_negotiation_is_a_protocol_error() {
    let (_db, server) = deflate_server().await;
    let mut dc = DeflateClient::connect(server.addr, Some(OFFER), false, 15).await;
    dc.of_type("connected").await;
    dc.send_frame(true, true, 0x9, b"").await;
    assert_eq!(dc.close_code().await, Some(1002), "RSV1 on a ping");

    let mut raw = DeflateClient::connect(server.addr, None, false, 15).await;
    assert_eq!(raw.extensions, None);
    raw.of_type("connected").await;
    raw.send_text(r#"{"type":"ping"}"#, true).await;
    assert_eq!(raw.close_code().await, Some(1002), "RSV1 not negotiated");

    let mut cont = DeflateClient::connect(server.addr, Some(OFFER), false, 15).await;
    cont.of_type("connected").await;
    cont.send_frame(false, false, 0x1, b"{\"type\":").await;
    cont.send_frame(true, true, 0x0, b"\"ping\"}").await;
    assert_eq!(
        cont.close_code().await,
        Some(1002),
        "RSV1 on a continuation"
    );
    server.stop().await.unwrap();
}

#[tokio::test]
async fn with_compression_off_the_offer_is_declined_and_frames_go_plain() {
    let (db, _conn) = TestDb::seeded();
    let mut cfg = config(&db.path, LONG_INTERVAL, 10);
    cfg.net.compression = skillmon::deflate::Compression::Off;
    let server = start(cfg).await;
    let mut dc = DeflateClient::connect(server.addr, Some(OFFER), true, 15).await;
    assert_eq!(dc.extensions, None);
    let (_, compressed, _) = dc.of_type("connected").await;
    assert!(!compressed);
    server.publish(snapshot(1));
    loop {
        let (v, compressed, _) = dc.of_type("metrics_update").await;
        assert!(!compressed);
        if tick_of(&v) == Some(1) {
            break;
        }
    }
    server.stop().await.unwrap();
}

#[tokio::test]
async fn an_offer_the_server_cannot_honour_is_declined_not_failed() {
    let (_db, server) = deflate_server().await;
    let mut dc = DeflateClient::connect(
        server.addr,
        Some("permessage-deflate; server_max_window_bits=99, x-webkit-deflate-frame"),
        false,
        15,
    )
    .await;
    assert_eq!(dc.extensions, None);
    let (_, compressed, _) = dc.of_type("connected").await;
    assert!(!compressed);
    server.publish(snapshot(1));
    let (_, compressed, _) = dc.of_type("metrics_update").await;
    assert!(!compressed);
    server.stop().await.unwrap();
}
