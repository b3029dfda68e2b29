//! `skillmon bench`, the real binary, against real servers on 127.0.0.1:
//! in-process `serve`s and a session-buddy-like server (no `seq`) written
//! here. Functional, not timed: every assertion is about counts (delivery,
//! ticks, errors, gaps), never about how fast anything was.

use crate::support;

use std::process::Output;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::{SinkExt as _, StreamExt as _};
use serde_json::Value;
use support::{TestDb, run_fails, serve, serve_seeded};
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};

/// Short enough for many ticks per run, long enough that a loaded machine
/// does not make a session skip one.
const INTERVAL: Duration = Duration::from_millis(200);

/// Run `skillmon bench ARGS` (clean environment, own home) off the
/// runtime; it must succeed.
/// [`bench`] with its arguments written as one line (`{url}` style
/// placeholders already filled in), split on whitespace.
async fn bench_line(line: &str) -> Output {
    bench(&line.split_whitespace().collect::<Vec<_>>()).await
}

async fn bench(args: &[&str]) -> Output {
    let home = tempfile::tempdir().expect("home");
    let mut cmd = support::command(home.path());
    cmd.arg("bench").args(args).env("SKILLMON_LOG", "warn");
    let out = support::output(cmd).await;
    assert!(
        out.status.success(),
        "skillmon bench {args:?}: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    out
}

/// The `--json` objects, one per run.
fn runs(out: &Output) -> Vec<Value> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect()
}

fn u(v: &Value, path: &str) -> u64 {
    v.pointer(path)
        .and_then(Value::as_u64)
        .unwrap_or_else(|| panic!("{path} missing in {v}"))
}

/// Delivery 1.0, no error, every client closed with 1000, and the ticks the
/// window holds: `duration / interval`, give or take the edges (a loaded
/// machine may delay ticks, never add any).
fn assert_clean(run: &Value, clients: u64, duration: Duration) {
    assert_eq!(run["delivery"], 1.0, "{run}");
    assert_eq!(u(run, "/errors"), 0, "{run}");
    assert_eq!(u(run, "/connect/failures"), 0, "{run}");
    assert_eq!(u(run, "/clean_closes"), clients, "{run}");
    let ticks = u(run, "/ticks");
    let nominal = (duration.as_millis() / INTERVAL.as_millis()) as u64;
    assert!(
        ticks >= nominal / 2 && ticks <= nominal + 1,
        "{ticks} ticks for {nominal} intervals: {run}"
    );
    assert_eq!(u(run, "/expected"), ticks * clients, "{run}");
    assert_eq!(u(run, "/delivered"), ticks * clients, "{run}");
    assert_eq!(run["gap_method"], "seq", "{run}");
    assert_eq!(u(run, "/gaps"), 0, "{run}");
    assert!(run["latency"]["p99_ms"].as_f64().is_some(), "{run}");
    let mean = run["frame_bytes"]["mean"]
        .as_f64()
        .expect("frame_bytes.mean");
    let max = u(run, "/frame_bytes/max") as f64;
    assert!(mean > 100.0 && mean <= max, "frame sizes: {run}");
    if run["subscribe"] == "all" {
        // The same frame every tick but for its seq's digits.
        assert!(max - mean < 8.0, "frame sizes: {run}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn fifty_clients_get_every_tick_from_serve() {
    let (server, _db, _conn) = serve_seeded(INTERVAL).await;
    let url = server.url();
    let out = bench_line(&format!(
        "{url} --clients 50 --duration 2s --warmup 300ms --grace 500ms --json"
    ))
    .await;
    let runs = runs(&out);
    assert_eq!(runs.len(), 1);
    let run = &runs[0];
    assert_clean(run, 50, Duration::from_secs(2));
    assert_eq!(u(run, "/clients"), 50);
    assert_eq!(run["subscribe"], "all");
    assert!(u(run, "/nofile_limit") >= 50);
    // Every client offered permessage-deflate (the default) and got it:
    // a frame that repeats the last but for its seq costs a few dozen
    // bytes on the wire.
    assert_eq!(run["compression"], "deflate", "{run}");
    assert_eq!(u(run, "/deflate_clients"), 50, "{run}");
    let wire = run["frame_bytes"]["wire_mean"].as_f64().expect("wire_mean");
    let mean = run["frame_bytes"]["mean"].as_f64().expect("mean");
    assert!(
        wire > 0.0 && wire < mean / 4.0,
        "{wire} B on the wire per {mean} B frame"
    );
    let total = server.stats().sessions_started();
    assert_eq!(total, 50, "one connection per client, no retries");
    server.stop().await.expect("stop");
}

#[tokio::test(flavor = "multi_thread")]
async fn stalled_clients_and_mixed_subscriptions_are_reported() {
    let (server, _db, _conn) = serve_seeded(INTERVAL).await;
    let url = server.url();
    let out = bench_line(&format!("{url} --clients 12 --stalled 2 --subscribe mix:alpha,gamma,all --duration 1s --warmup 200ms --grace 500ms --compression off --json")).await;
    let run = &runs(&out)[0];
    // Nothing offered, nothing compressed: a frame on the wire is its
    // text and a 4-byte head (126 to 65,535 bytes of payload).
    assert_eq!(run["compression"], "off", "{run}");
    assert_eq!(u(run, "/deflate_clients"), 0, "{run}");
    let wire = run["frame_bytes"]["wire_mean"].as_f64().expect("wire_mean");
    let mean = run["frame_bytes"]["mean"].as_f64().expect("mean");
    assert!((wire - mean - 4.0).abs() < 0.01, "{wire} vs {mean}");
    assert_eq!(u(run, "/stalled/clients"), 2, "{run}");
    assert_eq!(u(run, "/stalled/connected"), 2, "{run}");
    assert_eq!(u(run, "/connect/ok"), 14, "{run}");
    assert_eq!(run["subscribe"], "mix:alpha,gamma,all");
    // Stalled clients do not spoil the healthy ones' delivery.
    assert_clean(run, 12, Duration::from_secs(1));
    server.stop().await.expect("stop");
}

#[tokio::test(flavor = "multi_thread")]
async fn compare_runs_both_servers_alternately() {
    let (db, _conn) = TestDb::seeded();
    let a = serve(&db.path, INTERVAL).await;
    let b = serve(&db.path, INTERVAL).await;
    let (url_a, url_b) = (a.url(), b.url());
    let common_args = [
        "--clients",
        "10",
        "--duration",
        "1s",
        "--warmup",
        "200ms",
        "--grace",
        "300ms",
    ];
    let mut args = vec![
        url_a.as_str(),
        "--compare",
        url_b.as_str(),
        "--rounds",
        "2",
        "--json",
    ];
    args.extend(common_args);
    let json = runs(&bench(&args).await);
    let labels: Vec<(&str, u64)> = json
        .iter()
        .map(|r| (r["label"].as_str().unwrap_or(""), u(r, "/round")))
        .collect();
    assert_eq!(labels, [("A", 1), ("B", 1), ("A", 2), ("B", 2)]);
    for r in &json {
        assert_clean(r, 10, Duration::from_secs(1));
    }
    assert_eq!(json[0]["url"], url_a.as_str());
    assert_eq!(json[1]["url"], url_b.as_str());

    let mut args = vec![url_a.as_str(), "--compare", url_b.as_str()];
    args.extend(common_args);
    let table = String::from_utf8_lossy(&bench(&args).await.stdout).into_owned();
    assert!(table.contains(&url_a) && table.contains(&url_b), "{table}");
    assert!(table.contains("A / B"), "{table}");
    let delivery = table
        .lines()
        .find(|l| l.trim_start().starts_with("delivery"))
        .unwrap_or_else(|| panic!("no delivery row: {table}"));
    assert_eq!(
        delivery.split_whitespace().collect::<Vec<_>>(),
        ["delivery", "1.0000", "1.0000", "1.00"],
        "{table}"
    );
    a.stop().await.expect("stop");
    b.stop().await.expect("stop");
}

/// What the test server saw of each client: its `Authorization` and
/// `Sec-WebSocket-Protocol` headers and its first text frame.
type Seen = Arc<Mutex<Vec<(Option<String>, Option<String>, Option<String>)>>>;

/// A session-buddy-like server: compat `connected`, no snapshot on
/// connect, Python-style frames with real timestamps and no `seq`, one
/// frame per tick to everyone, except that every fourth tick is never
/// sent (so every client misses the same ticks). It accepts an offered
/// subprotocol (echoing it) and records what clients sent.
async fn session_buddy_skipping(interval: Duration) -> (String, Seen, tokio::task::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("ws://{}", listener.local_addr().expect("addr"));
    let (tx, rx) = tokio::sync::watch::channel(Utf8Bytes::from(""));
    let seen: Seen = Arc::default();
    let seen2 = seen.clone();
    let task = tokio::spawn(async move {
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(interval);
            for n in 0u64.. {
                tick.tick().await;
                if n % 4 == 3 {
                    continue;
                }
                let frame = format!(
                    "{{\"type\": \"metrics_update\", \"timestamp\": \"{}\", \"data\": {{\"top_skills\": [{{\"skill_name\": \"pytest-run\", \"total_invocations\": 30, \"completion_rate\": 93.33333333333333, \"avg_duration_seconds\": 6.34}}], \"anomalies\": []}}}}",
                    skillmon::protocol::now_timestamp()
                );
                tx.send_replace(frame.into());
            }
        });
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let mut rx = rx.clone();
            let seen = seen2.clone();
            tokio::spawn(async move {
                let headers = Arc::new(Mutex::new((None, None)));
                let h = headers.clone();
                #[allow(clippy::result_large_err)] // tungstenite's callback signature
                let callback = move |req: &Request, mut resp: Response| {
                    let get = |name: &str| {
                        req.headers()
                            .get(name)
                            .and_then(|v| v.to_str().ok())
                            .map(str::to_owned)
                    };
                    let protocol = get("Sec-WebSocket-Protocol");
                    if let Some(p) = protocol.as_deref().and_then(|p| p.parse().ok()) {
                        resp.headers_mut().insert("Sec-WebSocket-Protocol", p);
                    }
                    *h.lock().unwrap_or_else(std::sync::PoisonError::into_inner) =
                        (get("Authorization"), protocol);
                    Ok(resp)
                };
                let Ok(mut ws) = tokio_tungstenite::accept_hdr_async(stream, callback).await else {
                    return;
                };
                let hello = "{\"type\": \"connected\", \"message\": \"Connected to Session Buddy real-time metrics\", \"authenticated\": false, \"timestamp\": \"2026-11-22T02:39:04.515314+00:00\"}";
                if ws.send(Message::text(hello)).await.is_err() {
                    return;
                }
                let (auth, protocol) = headers
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .clone();
                let mut first = None;
                let mut recorded = false;
                rx.borrow_and_update();
                loop {
                    tokio::select! {
                        changed = rx.changed() => {
                            let frame = rx.borrow_and_update().clone();
                            if changed.is_err() || ws.send(Message::Text(frame)).await.is_err() {
                                return;
                            }
                        }
                        msg = ws.next() => match msg {
                            Some(Ok(Message::Text(t))) if first.is_none() => first = Some(t.as_str().to_owned()),
                            Some(Ok(Message::Close(_))) => {
                                let _ = ws.flush().await;
                                return;
                            }
                            Some(Ok(_)) => {}
                            _ => return,
                        },
                    }
                    if !recorded && (first.is_some() || auth.is_none()) {
                        recorded = true;
                        seen.lock()
                            .unwrap_or_else(std::sync::PoisonError::into_inner)
                            .push((auth.clone(), protocol.clone(), first.clone()));
                    }
                }
            });
        }
    });
    (url, seen, task)
}

#[tokio::test(flavor = "multi_thread")]
async fn gaps_come_from_timestamps_when_the_server_sends_no_seq() {
    let (url, _, task) = session_buddy_skipping(INTERVAL).await;
    let out = bench_line(&format!(
        "{url} --clients 8 --duration 2s --warmup 500ms --grace 500ms --json"
    ))
    .await;
    let run = &runs(&out)[0];
    assert_eq!(run["gap_method"], "timestamp", "{run}");
    assert_eq!(u(run, "/errors"), 0, "{run}");
    assert_eq!(u(run, "/clean_closes"), 8, "{run}");
    // Every client misses the same skipped ticks: at least one each, and
    // the same number for all.
    let gaps = u(run, "/gaps");
    assert!(gaps >= 8 && gaps % 8 == 0, "{gaps} gaps: {run}");
    // The ticks that were sent all arrived.
    assert_eq!(run["delivery"], 1.0, "{run}");
    assert!(run["first_update"]["max_ms"].as_f64().is_some(), "{run}");
    task.abort();
}

#[tokio::test(flavor = "multi_thread")]
async fn token_and_ext_protocol_are_offered_as_asked() {
    let (url, seen, task) = session_buddy_skipping(INTERVAL).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, "s3cret-token\n").expect("write token");
    let token_path = token_file.to_string_lossy().into_owned();
    let out = bench_line(&format!("{url} --clients 3 --duration 300ms --warmup 0s --grace 200ms --protocol ext --token-file {token_path} --json")).await;
    let run = &runs(&out)[0];
    assert_eq!(run["protocol"], "ext", "{run}");
    assert_eq!(run["negotiated_protocol"], "skillmon.v1", "{run}");
    let seen = seen
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone();
    assert_eq!(seen.len(), 3, "{seen:?}");
    for (auth, protocol, first) in &seen {
        assert_eq!(auth.as_deref(), Some("Bearer s3cret-token"));
        assert_eq!(protocol.as_deref(), Some("skillmon.v1"));
        let first: Value = serde_json::from_str(first.as_deref().unwrap_or("")).expect("json");
        assert_eq!(first, serde_json::json!({"token": "s3cret-token"}));
    }
    // The token never reaches the output.
    assert!(!String::from_utf8_lossy(&out.stdout).contains("s3cret"));
    assert!(!String::from_utf8_lossy(&out.stderr).contains("s3cret"));
    task.abort();
}

#[tokio::test(flavor = "multi_thread")]
async fn spawn_serves_a_db_and_reads_the_servers_memory_and_cpu() {
    let (db, _conn) = TestDb::seeded();
    let path = db.path.to_string_lossy().into_owned();
    let before = std::fs::read(&db.path).expect("read db");
    let out = bench_line(&format!("--spawn --db {path} --interval 200ms --clients 5 --duration 1s --warmup 200ms --grace 300ms --json")).await;
    let run = &runs(&out)[0];
    assert_clean(run, 5, Duration::from_secs(1));
    let server = &run["server"];
    assert!(u(run, "/server/pid") > 0, "{run}");
    assert!(u(run, "/server/rss_before_kb") > 0, "{run}");
    assert!(u(run, "/server/rss_after_kb") > 0, "{run}");
    assert!(server["kb_per_connection"].as_f64().is_some(), "{run}");
    assert!(server["cpu_ms"].as_f64().is_some(), "{run}");
    assert!(server["cpu_us_per_frame"].as_f64().is_some(), "{run}");
    assert_eq!(
        std::fs::read(&db.path).expect("read db"),
        before,
        "the database is never written"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_input_gets_a_message_naming_the_fix() {
    let home = tempfile::tempdir().expect("home");
    let out = run_fails(
        home.path(),
        &["bench", "ws://127.0.0.1:9/ws", "--subscribe", "some"],
    )
    .await;
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("one:NAME"), "{err}");

    let empty = home.path().join("token");
    std::fs::write(&empty, "\n").expect("write");
    let empty = empty.to_string_lossy().into_owned();
    let out = run_fails(
        home.path(),
        &["bench", "ws://127.0.0.1:9/ws", "--token-file", &empty],
    )
    .await;
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--token-file") && err.contains("empty"),
        "{err}"
    );

    let out = run_fails(home.path(), &["bench", "http://127.0.0.1:9/"]).await;
    assert!(String::from_utf8_lossy(&out.stderr).contains("ws://"));
}

/// Processes whose command line mentions `needle` (Linux /proc).
fn processes_mentioning(needle: &str) -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| {
        let e = e.ok()?;
        let pid: u32 = e.file_name().to_str()?.parse().ok()?;
        let cmdline = std::fs::read(e.path().join("cmdline")).ok()?;
        String::from_utf8_lossy(&cmdline)
            .contains(needle)
            .then_some(pid)
    })
    .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failed_start_stops_the_spawned_server() {
    let (db, _conn) = TestDb::seeded();
    let path = db.path.to_string_lossy().into_owned();
    let home = tempfile::tempdir().expect("home");
    // stderr to a file: an orphaned server would hold a pipe open forever.
    let err_path = home.path().join("stderr");
    let mut cmd = support::command(home.path());
    // The spawned server starts first; the bad --compare URL fails after it.
    cmd.args([
        "bench",
        "--spawn",
        "--db",
        &path,
        "--compare",
        "http://127.0.0.1:9/",
        "--clients",
        "1",
    ])
    .stdout(std::process::Stdio::null())
    .stderr(std::fs::File::create(&err_path).expect("stderr file"));
    let status = tokio::task::spawn_blocking(move || cmd.status().expect("run skillmon"))
        .await
        .expect("join");
    let left = processes_mentioning(&path);
    for pid in &left {
        // SAFETY: a signal to the orphaned server this test caused.
        unsafe {
            libc::kill(*pid as libc::pid_t, libc::SIGKILL);
        }
    }
    let err = std::fs::read_to_string(&err_path).expect("read stderr");
    assert!(!status.success(), "{err}");
    assert!(err.contains("ws://"), "{err}");
    assert!(left.is_empty(), "spawned servers left running: {left:?}");
}
