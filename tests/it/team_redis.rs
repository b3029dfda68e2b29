//! The team view against a real Redis (issue 11): publishers on generated
//! databases, edges merging them, `watch --once --json` against an edge,
//! Redis killed and restarted, a source that stops and comes back.
//!
//! Each test starts its own `redis-server` on a free port (never 6379);
//! without the binary a test prints one line (past the harness's capture)
//! saying it was skipped and returns (`.ci/run` refuses to run without it,
//! so CI always runs them). Only in builds with the `team` feature (the
//! default).
#![cfg(feature = "team")]

use crate::support;

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::io::{BufRead as _, BufReader, Write as _};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;
use skillmon::server::Handle;
use skillmon::team::{EdgeConfig, PublishConfig, RedisTarget, TeamRole};
use support::*;

/// A publisher writes at least this often in these tests (staleness unit).
const EVERY: Duration = Duration::from_millis(200);
/// The edges' tick.
const EDGE_TICK: Duration = Duration::from_millis(100);

struct Redis {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
    extra: Vec<String>,
}

/// A fresh [`Redis`] for the calling test (named in the skip line), or
/// return from the test when `redis-server` is not installed.
macro_rules! redis_or_skip {
    ($extra:expr) => {{
        fn here() {}
        // `it::team_redis::<test>::{{closure}}::here`: the test's path.
        let test = std::any::type_name_of_val(&here)
            .trim_start_matches("it::")
            .trim_end_matches("::here")
            .trim_end_matches("::{{closure}}");
        match Redis::start(test, $extra) {
            Some(redis) => redis,
            None => return,
        }
    }};
}

impl Redis {
    /// A fresh `redis-server` on a free loopback port, or `None` (after
    /// one line on stderr) when it is not installed.
    fn start(test: &str, extra: &[&str]) -> Option<Self> {
        if Command::new("redis-server")
            .arg("--version")
            .stdout(Stdio::null())
            .status()
            .is_err()
        {
            // Straight to the stderr handle, not `eprintln!`: the test
            // harness captures the macro's output of a passing test, and a
            // skip must show in every run.
            let _ = writeln!(
                std::io::stderr(),
                "{test}: SKIPPED, `redis-server` is not installed \
                 (Debian/Ubuntu: apt-get install redis-server; macOS: brew install redis; \
                 .ci/run fails without it)"
            );
            return None;
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let dir = tempfile::tempdir().expect("redis dir");
        let extra: Vec<String> = extra.iter().map(std::string::ToString::to_string).collect();
        let child = spawn_redis(port, dir.path(), &extra);
        Some(Self {
            child,
            port,
            dir,
            extra,
        })
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Start again on the same port (empty: nothing is persisted).
    fn restart(&mut self) {
        self.child = spawn_redis(self.port, self.dir.path(), &self.extra);
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.kill();
    }
}

/// `redis-server` on `port`, returned once it accepts connections.
fn spawn_redis(port: u16, dir: &Path, extra: &[String]) -> Child {
    let mut child = Command::new("redis-server")
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(["--save", "", "--appendonly", "no"])
        .arg("--dir")
        .arg(dir)
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn redis-server");
    let out = child.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            if line.contains("Ready to accept connections") {
                let _ = tx.send(());
            }
        }
    });
    rx.recv_timeout(DEADLINE)
        .unwrap_or_else(|_| panic!("redis-server on port {port} not ready within {DEADLINE:?}"));
    child
}

fn target(url: &str) -> RedisTarget {
    RedisTarget::parse(url, None).expect("redis url")
}

async fn publisher(db: &Path, url: &str, name: &str) -> Handle {
    let role = TeamRole::Publish(PublishConfig {
        redis: target(url),
        source: name.into(),
        every: EVERY,
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    skillmon::server::start_team(listener, config(db, EDGE_TICK, 10), role)
        .await
        .expect("start publisher")
}

async fn edge_with(redis: RedisTarget, tick: Duration, ttl: Duration) -> Handle {
    let role = TeamRole::Edge(EdgeConfig {
        redis,
        sources: None,
        source_ttl: ttl,
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    skillmon::server::start_team(listener, config(Path::new(""), tick, 10), role)
        .await
        .expect("start edge")
}

async fn edge(url: &str, tick: Duration, ttl: Duration) -> Handle {
    edge_with(target(url), tick, ttl).await
}

/// Two databases whose rankings differ once merged: `a` is the standard
/// set plus an anomaly on alpha; `b` has alpha 4 (1 done), gamma 1, epsilon
/// 1 and an anomaly on epsilon.
fn two_dbs() -> (TestDb, TestDb) {
    let (a, ca) = TestDb::seeded();
    skillmon::store::fixture::insert_anomaly(&ca, "alpha", &now_iso(), "drop", Some(-3.5)).unwrap();
    let (b, cb) = TestDb::new();
    invoke_n(&cb, "alpha", 4, 1);
    invoke(&cb, "gamma", false, None);
    invoke(&cb, "epsilon", true, Some(7.0));
    skillmon::store::fixture::insert_anomaly(&cb, "epsilon", &now_iso(), "spike", Some(4.0))
        .unwrap();
    (a, b)
}

/// Per skill: (total, completed, sum of completed durations), read from the
/// invocation rows of every database in `dbs`.
fn direct(dbs: &[&Path]) -> BTreeMap<String, (u64, u64, f64)> {
    let mut out: BTreeMap<String, (u64, u64, f64)> = BTreeMap::new();
    for db in dbs {
        let conn = rusqlite::Connection::open(db).unwrap();
        let mut stmt = conn
            .prepare(
                "SELECT skill_name, COUNT(*), SUM(completed),
                        COALESCE(SUM(CASE WHEN completed THEN duration_seconds END), 0)
                   FROM skill_invocation GROUP BY skill_name",
            )
            .unwrap();
        let rows = stmt
            .query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, i64>(1)? as u64,
                    r.get::<_, i64>(2)? as u64,
                    r.get::<_, f64>(3)?,
                ))
            })
            .unwrap();
        for row in rows {
            let (name, n, c, d) = row.unwrap();
            let e = out.entry(name).or_default();
            e.0 += n;
            e.1 += c;
            e.2 += d;
        }
    }
    out
}

/// The update's figures equal the direct computation over `dbs`, ranked
/// by total then name.
fn assert_merged(update: &Value, dbs: &[&Path]) {
    let want = direct(dbs);
    let mut ranked: Vec<(&String, &(u64, u64, f64))> = want.iter().collect();
    ranked.sort_by(|a, b| b.1.0.cmp(&a.1.0).then(a.0.cmp(b.0)));
    let rows = update["data"]["top_skills"].as_array().expect("top_skills");
    let got: Vec<&str> = rows
        .iter()
        .map(|r| r["skill_name"].as_str().unwrap())
        .collect();
    let names: Vec<&str> = ranked.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(got, names, "ranking after merging: {update}");
    for (row, (name, (total, completed, dur))) in rows.iter().zip(&ranked) {
        assert_eq!(row["total_invocations"], *total, "{name}");
        let rate = *completed as f64 * 100.0 / *total as f64;
        let got_rate = row["completion_rate"].as_f64().unwrap();
        assert!(
            (got_rate - rate).abs() < 1e-9,
            "{name}: {got_rate} vs {rate}"
        );
        if *completed == 0 {
            assert!(row["avg_duration_seconds"].is_null(), "{name}");
        } else {
            let avg = dur / *completed as f64;
            let got_avg = row["avg_duration_seconds"].as_f64().unwrap();
            assert!((got_avg - avg).abs() < 1e-9, "{name}: {got_avg} vs {avg}");
        }
    }
}

fn source_names(update: &Value) -> Vec<String> {
    update["sources"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|s| s["source"].as_str().unwrap_or("").to_owned())
                .collect()
        })
        .unwrap_or_default()
}

fn stale(update: &Value, name: &str) -> Option<bool> {
    update["sources"]
        .as_array()?
        .iter()
        .find(|s| s["source"] == name)?["stale"]
        .as_bool()
}

fn fresh_pair(u: &Value) -> bool {
    source_names(u) == ["a", "b"] && stale(u, "a") == Some(false) && stale(u, "b") == Some(false)
}

/// Breakdown and anomaly sources of a merged update of [`two_dbs`].
fn assert_breakdown(update: &Value) {
    let rows = update["data"]["top_skills"].as_array().unwrap();
    let row = |n: &str| rows.iter().find(|r| r["skill_name"] == n).unwrap();
    let alpha = row("alpha")["sources"].as_array().unwrap();
    assert_eq!(alpha.len(), 2);
    assert_eq!(
        (&alpha[0]["source"], &alpha[0]["total_invocations"]),
        (&Value::from("a"), &Value::from(3))
    );
    assert_eq!(
        (&alpha[1]["source"], &alpha[1]["total_invocations"]),
        (&Value::from("b"), &Value::from(4))
    );
    let epsilon = row("epsilon")["sources"].as_array().unwrap();
    assert_eq!(epsilon.len(), 1);
    assert_eq!(epsilon[0]["source"], "b");
    let table: Vec<(String, String)> = update["data"]["anomalies"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["source"] == "table")
        .map(|a| {
            (
                a["skill_name"].as_str().unwrap().to_owned(),
                a["team_source"].as_str().unwrap_or("?").to_owned(),
            )
        })
        .collect();
    let mut table = table;
    table.sort();
    assert_eq!(
        table,
        [("alpha".into(), "a".into()), ("epsilon".into(), "b".into())]
    );
}

/// Start `skillmon serve ARGS --port 0` and return it with its ws:// URL.
async fn spawn_serve(home: &Path, args: &[&str]) -> (Spawned, String) {
    let mut all = vec!["serve", "--port", "0"];
    all.extend_from_slice(args);
    let args: Vec<&OsStr> = all.iter().map(OsStr::new).collect();
    let (child, lines) = spawn_logging(home, &args);
    let url = tokio::task::spawn_blocking(move || {
        loop {
            let line = lines
                .recv_timeout(DEADLINE)
                .expect("no 'listening on' line from serve");
            if let Some(i) = line.find("listening on ws://") {
                let rest = &line[i + "listening on ".len()..];
                return rest.split_whitespace().next().unwrap().to_owned();
            }
        }
    })
    .await
    .unwrap();
    (child, url)
}

#[tokio::test]
async fn either_edge_serves_the_merged_team_to_watch() {
    let redis = redis_or_skip!(&[]);
    let (a, b) = two_dbs();
    let pa = publisher(&a.path, &redis.url(), "a").await;
    let pb = publisher(&b.path, &redis.url(), "b").await;
    let e1 = edge(&redis.url(), EDGE_TICK, Duration::from_secs(600)).await;
    let (mut c, _) = Client::connect(&e1.url()).await;
    let u = c.update_where("both sources fresh", fresh_pair).await;
    assert_merged(&u, &[&a.path, &b.path]);
    assert_breakdown(&u);

    // The second edge is the real binary, started after the publishers,
    // with a tick far away: what watch gets is the team read at start.
    let home = tempfile::tempdir().unwrap();
    let redis_url = redis.url();
    let (e2, e2_url) = spawn_serve(home.path(), &["--from", &redis_url, "--interval", "30s"]).await;
    for url in [e1.url(), e2_url.clone()] {
        let out = run_ok(home.path(), &["watch", &url, "--once", "--json"]).await;
        let v: Value = serde_json::from_slice(&out.stdout).expect("one JSON object");
        assert_eq!(source_names(&v), ["a", "b"], "{url}: {v}");
        assert_merged(&v, &[&a.path, &b.path]);
        assert_breakdown(&v);
    }
    // A single server is unchanged: no team fields in its frames.
    let (_single, u) = Client::connect_and_update(&pa.url()).await;
    assert!(u.get("sources").is_none(), "{u}");
    assert!(u["data"]["top_skills"][0].get("sources").is_none(), "{u}");
    terminate(e2);
    stop_all([e1, pa, pb]).await;
}

#[tokio::test]
async fn an_edge_started_later_has_the_team_before_its_first_tick() {
    let redis = redis_or_skip!(&[]);
    let (a, b) = two_dbs();
    let pa = publisher(&a.path, &redis.url(), "a").await;
    let pb = publisher(&b.path, &redis.url(), "b").await;
    // Both payloads are in Redis once a first edge has seen them.
    let first = edge(&redis.url(), EDGE_TICK, Duration::from_secs(600)).await;
    let (mut c, _) = Client::connect(&first.url()).await;
    c.update_where("both sources", fresh_pair).await;
    // Quiet publishers: no message can reach the late edge, only the keys.
    pa.stop().await.unwrap();
    pb.stop().await.unwrap();

    let late = edge(&redis.url(), LONG_INTERVAL, Duration::from_secs(600)).await;
    let (_c, u) = Client::connect_and_update(&late.url()).await;
    assert_eq!(source_names(&u), ["a", "b"], "{u}");
    assert_merged(&u, &[&a.path, &b.path]);
    assert_breakdown(&u);
    stop_all([late, first]).await;
}

/// `/healthz` of `addr` until its `team.redis.state` is `state`, awaiting
/// one of `client`'s updates between polls (never sleeping).
async fn wait_redis_state(
    addr: std::net::SocketAddr,
    client: &mut Client,
    state: &str,
) -> (u16, Value) {
    let until = tokio::time::Instant::now() + DEADLINE;
    loop {
        let (code, v) = health(addr).await;
        if v["team"]["redis"]["state"] == state {
            return (code, v);
        }
        assert!(
            tokio::time::Instant::now() < until,
            "redis state never became {state:?}; last: {code} {v}"
        );
        client.next_update().await;
    }
}

#[tokio::test]
async fn redis_down_keeps_edges_serving_and_restart_counts_no_source_twice() {
    let mut redis = redis_or_skip!(&[]);
    let (a, b) = two_dbs();
    let pa = publisher(&a.path, &redis.url(), "a").await;
    let pb = publisher(&b.path, &redis.url(), "b").await;
    let e1 = edge(&redis.url(), EDGE_TICK, Duration::from_secs(600)).await;
    let e2 = edge(&redis.url(), EDGE_TICK, Duration::from_secs(600)).await;
    let (mut c1, _) = Client::connect(&e1.url()).await;
    let (mut c2, _) = Client::connect(&e2.url()).await;
    let (mut cp, _) = Client::connect(&pa.url()).await;
    let before = c1.update_where("both sources", fresh_pair).await;
    c2.update_where("both sources", fresh_pair).await;

    redis.kill();
    for (e, c) in [(&e1, &mut c1), (&e2, &mut c2)] {
        let (code, h) = wait_redis_state(e.addr, c, "unreachable").await;
        // /healthz is liveness (200, "degraded"); /readyz says not ready, why
        // and since when.
        assert_eq!(code, 200, "{h}");
        assert_eq!(h["status"], "degraded", "{h}");
        assert!(!h["team"]["redis"]["reason"].as_str().unwrap().is_empty());
        assert!(h["team"]["redis"]["since"].is_string());
        let ready = http_get(e.addr, "/readyz").await;
        assert_eq!(ready.status, 503, "{}", ready.body);
        assert!(ready.body.contains("since"), "{}", ready.body);
        // Still serving the last team snapshot, figures unchanged.
        let u = c.next_update().await;
        assert_eq!(source_names(&u), ["a", "b"]);
        assert_eq!(u["data"], before["data"]);
    }
    // A publisher keeps serving its own clients.
    let (code, h) = wait_redis_state(pa.addr, &mut cp, "unreachable").await;
    assert_eq!(code, 200, "{h}");
    cp.next_update().await;

    redis.restart();
    for (e, c) in [(&e1, &mut c1), (&e2, &mut c2)] {
        let (code, _) = wait_redis_state(e.addr, c, "up").await;
        assert_eq!(code, 200);
        assert_eq!(http_get(e.addr, "/readyz").await.status, 200);
        // Both sources published again after the restart: still counted once.
        let u = c
            .update_where("both sources republished", |u| {
                fresh_pair(u)
                    && u["sources"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .zip(before["sources"].as_array().unwrap())
                        .all(|(n, o)| n["updated_at"] != o["updated_at"])
            })
            .await;
        assert_merged(&u, &[&a.path, &b.path]);
    }
    wait_redis_state(pa.addr, &mut cp, "up").await;
    let metrics = http_get(e1.addr, "/metrics").await.body;
    assert!(metrics.contains("skillmon_team_redis_up 1"), "{metrics}");
    assert!(metrics.contains("skillmon_team_sources 2"), "{metrics}");
    stop_all([e1, e2, pa, pb]).await;
}

#[tokio::test]
async fn a_silent_source_goes_stale_then_away_and_comes_back() {
    let redis = redis_or_skip!(&[]);
    let (a, b) = two_dbs();
    let pa = publisher(&a.path, &redis.url(), "a").await;
    let pb = publisher(&b.path, &redis.url(), "b").await;
    let e = edge(&redis.url(), EDGE_TICK, Duration::from_secs(2)).await;
    let (mut c, _) = Client::connect(&e.url()).await;
    c.update_where("both sources", fresh_pair).await;

    pb.stop().await.unwrap();
    // Only b: a keeps publishing.
    let u = c
        .update_where("b stale, a fresh", |u| {
            stale(u, "b") == Some(true) && stale(u, "a") == Some(false)
        })
        .await;
    assert_merged(&u, &[&a.path, &b.path]); // still counted until the TTL
    let (_, h) = health(e.addr).await;
    assert_eq!(h["team"]["stale_sources"], 1, "{h}");

    let u = c
        .update_where("b dropped", |u| source_names(u) == ["a"])
        .await;
    assert_merged(&u, &[&a.path]);

    let pb = publisher(&b.path, &redis.url(), "b").await;
    let u = c.update_where("b back", fresh_pair).await;
    assert_merged(&u, &[&a.path, &b.path]);
    stop_all([e, pa, pb]).await;
}

#[tokio::test]
async fn credentials_work_from_a_file_and_never_show() {
    let redis = redis_or_skip!(&["--requirepass", "pw-from-file"]);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("redis-password");
    std::fs::write(&file, "pw-from-file\n").unwrap();
    let (a, _) = two_dbs();
    let good = RedisTarget::parse(&redis.url(), Some(&file)).unwrap();
    let role = TeamRole::Publish(PublishConfig {
        redis: good.clone(),
        source: "a".into(),
        every: EVERY,
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let pa = skillmon::server::start_team(listener, config(&a.path, EDGE_TICK, 10), role)
        .await
        .unwrap();
    let e = edge_with(good, EDGE_TICK, Duration::from_secs(600)).await;
    let (mut c, _) = Client::connect(&e.url()).await;
    let u = c
        .update_where("source a", |u| source_names(u) == ["a"])
        .await;
    assert_merged(&u, &[&a.path]);

    let wrong_url = format!("redis://:wrong-secret@127.0.0.1:{}", redis.port);
    let bad = edge(&wrong_url, EDGE_TICK, Duration::from_secs(600)).await;
    let (code, h) = health(bad.addr).await;
    // Liveness stays 200; readiness says the edge cannot reach Redis.
    assert_eq!(code, 200);
    assert_eq!(h["status"], "degraded", "{h}");
    assert_eq!(http_get(bad.addr, "/readyz").await.status, 503);
    assert_eq!(h["team"]["redis"]["state"], "unreachable", "{h}");
    let text = h.to_string();
    assert!(!text.contains("wrong-secret"), "{text}");
    assert!(text.contains("redis://:***@127.0.0.1"), "{text}");

    // The binary's error for a bad URL names the fix and hides the password.
    let out = run_fails(dir.path(), &["serve", "--from", "http://u:hidden-pw@x"]).await;
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--from") && err.contains("redis://"), "{err}");
    assert!(!err.contains("hidden-pw"), "{err}");
    let out = run_fails(
        dir.path(),
        &["serve", "--db", "x.db", "--from", &redis.url()],
    )
    .await;
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("drop --db"), "{err}");
    stop_all([bad, e, pa]).await;
}

#[tokio::test]
async fn a_cli_publisher_without_a_listener_feeds_a_filtered_edge() {
    let redis = redis_or_skip!(&[]);
    let (a, b) = two_dbs();
    let url = redis.url();
    let db = a.path.to_str().unwrap();
    let args = [
        "serve",
        "--db",
        db,
        "--publish",
        &url,
        "--source",
        "cli-a",
        "--publish-every",
        "200ms",
        "--no-listen",
    ];
    let args: Vec<&OsStr> = args.iter().map(OsStr::new).collect();
    let (child, _lines) = spawn_logging(a.dir.path(), &args);
    let pb = publisher(&b.path, &url, "b").await;
    let role = TeamRole::Edge(EdgeConfig {
        redis: target(&url),
        sources: Some(vec!["cli-a".into()]),
        source_ttl: Duration::from_secs(600),
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let e = skillmon::server::start_team(listener, config(Path::new(""), EDGE_TICK, 10), role)
        .await
        .unwrap();
    let (mut c, _) = Client::connect(&e.url()).await;
    let u = c
        .update_where("the CLI publisher's source", |u| {
            source_names(u) == ["cli-a"]
        })
        .await;
    assert_merged(&u, &[&a.path]);
    // b publishes too, but this edge merges only cli-a.
    let (mut cb, _) = Client::connect(&pb.url()).await;
    cb.next_update().await;
    let u = c.next_update().await;
    assert_eq!(source_names(&u), ["cli-a"]);
    assert!(terminate(child).success());
    e.stop().await.unwrap();
    pb.stop().await.unwrap();
}

/// Needs no Redis: one that is not there.
#[tokio::test]
async fn an_unreachable_redis_is_logged_once_without_its_password() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap()
        .port();
    let home = tempfile::tempdir().unwrap();
    let from = format!("redis://user:pw-in-url@127.0.0.1:{closed}");
    let args = ["serve", "--port", "0", "--from", &from];
    let args: Vec<&OsStr> = args.iter().map(OsStr::new).collect();
    let (child, lines) = spawn_logging(home.path(), &args);
    let (lines, log, addr) = tokio::task::spawn_blocking(move || {
        let mut log = Vec::new();
        loop {
            let line = lines.recv_timeout(DEADLINE).expect("serve log line");
            log.push(line.clone());
            if let Some(i) = line.find("listening on ws://") {
                let addr = line[i + "listening on ws://".len()..]
                    .split('/')
                    .next()
                    .unwrap()
                    .to_owned();
                return (lines, log, addr);
            }
        }
    })
    .await
    .unwrap();
    let addr: std::net::SocketAddr = addr.parse().unwrap();
    // Several failed attempts (the backoff starts at 250 ms)…
    loop {
        let m = http_get(addr, "/metrics").await.body;
        let failures = m
            .lines()
            .find_map(|l| l.strip_prefix("skillmon_team_redis_failures_total "))
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0);
        if failures >= 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (code, h) = health(addr).await;
    assert_eq!(code, 200);
    assert_eq!(h["status"], "degraded", "{h}");
    assert_eq!(http_get(addr, "/readyz").await.status, 503);
    assert_eq!(
        h["team"]["redis"]["url"],
        format!("redis://user:***@127.0.0.1:{closed}")
    );
    assert!(terminate(child).success());
    // …and one log line for them, without the password.
    let mut log = log;
    log.extend(lines.try_iter());
    let all = log.join("\n");
    assert!(!all.contains("pw-in-url"), "{all}");
    let unreachable = log.iter().filter(|l| l.contains("unreachable")).count();
    assert_eq!(unreachable, 1, "{all}");
}

/// Ask `url` (as an ext client) for the `history` of `skills` over `window`.
async fn history(url: &str, skills: &[String], window: &str) -> Value {
    let (mut c, _) = Client::connect_and_update(url).await;
    c.send_json(serde_json::json!({"type": "history", "skills": skills, "window": window}))
        .await;
    let h = c
        .frame_where("a history or error frame", |v| {
            v["type"] == "history" || v["type"] == "error"
        })
        .await;
    assert_eq!(h["type"], "history", "{url}: {h}");
    h
}

/// Per skill: bucket start → (invocations, completed, completed × average
/// duration), and its anomalies as (detected_at, type), sorted.
type Buckets = BTreeMap<String, BTreeMap<String, (u64, u64, f64)>>;
type Anomalies = BTreeMap<String, Vec<(String, String)>>;

fn add_history(h: &Value, buckets: &mut Buckets, anomalies: &mut Anomalies) {
    for s in h["skills"].as_array().expect("skills") {
        let name = s["skill_name"].as_str().unwrap().to_owned();
        let per = buckets.entry(name.clone()).or_default();
        for b in s["buckets"].as_array().unwrap() {
            let e = per
                .entry(b["start"].as_str().unwrap().to_owned())
                .or_default();
            let completed = b["completed"].as_u64().unwrap();
            e.0 += b["invocations"].as_u64().unwrap();
            e.1 += completed;
            e.2 += b["avg_duration"].as_f64().unwrap_or(0.0) * completed as f64;
        }
        let found = anomalies.entry(name).or_default();
        for a in s["anomalies"].as_array().unwrap() {
            let row = (
                a["detected_at"].as_str().unwrap().to_owned(),
                a["anomaly_type"].as_str().unwrap().to_owned(),
            );
            if !found.contains(&row) {
                found.push(row);
            }
        }
        found.sort();
    }
}

#[tokio::test]
async fn history_at_an_edge_adds_up_the_publishers_histories() {
    let redis = redis_or_skip!(&[]);
    let (a, b) = two_dbs();
    let pa = publisher(&a.path, &redis.url(), "a").await;
    let pb = publisher(&b.path, &redis.url(), "b").await;
    let e = edge(&redis.url(), EDGE_TICK, Duration::from_secs(600)).await;
    let (mut c, _) = Client::connect(&e.url()).await;
    c.update_where("both sources fresh", fresh_pair).await;
    let skills: Vec<String> = direct(&[&a.path, &b.path]).into_keys().collect();
    for window in ["1h", "24h"] {
        let at_edge = history(&e.url(), &skills, window).await;
        let (mut want, mut want_anomalies) = (Buckets::new(), Anomalies::new());
        for p in [&pa, &pb] {
            add_history(
                &history(&p.url(), &skills, window).await,
                &mut want,
                &mut want_anomalies,
            );
        }
        let (mut got, mut got_anomalies) = (Buckets::new(), Anomalies::new());
        add_history(&at_edge, &mut got, &mut got_anomalies);
        assert_eq!(got.len(), skills.len(), "{at_edge}");
        for (skill, buckets) in &got {
            let mut seen = 0;
            for (start, (n, completed, dur)) in buckets {
                // A bucket the publishers' frames did not have (the clock
                // moved on to the next bucket in between) must be empty.
                let (wn, wc, wd) = want[skill].get(start).copied().unwrap_or_default();
                assert_eq!((n, completed), (&wn, &wc), "{window} {skill} {start}");
                assert!(
                    (dur - wd).abs() < 0.01,
                    "{window} {skill} {start}: {dur} vs {wd}"
                );
                seen += n;
            }
            let total: u64 = want[skill].values().map(|v| v.0).sum();
            assert_eq!(
                seen, total,
                "{window} {skill}: every invocation at the edge"
            );
            assert!(total > 0, "{window} {skill}: invocations in the window");
        }
        assert_eq!(got_anomalies, want_anomalies, "{window}: {at_edge}");
        assert_eq!(got_anomalies["alpha"].len(), 1, "{at_edge}");
        assert_eq!(got_anomalies["epsilon"].len(), 1, "{at_edge}");
    }
    stop_all([e, pa, pb]).await;
}
