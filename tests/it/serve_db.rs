//! `skillmon serve` against a real SQLite file that misbehaves: missing at
//! start, empty, not a database, locked by a writer, replaced, deleted, in WAL
//! mode under concurrent writes. The server keeps serving, `/healthz` says
//! what is going on, it recovers by itself, and it never writes the file.

use crate::support;

use serde_json::json;
use skillmon::store::{DbState, Store};
use support::*;

fn empty_data() -> serde_json::Value {
    json!({"top_skills": [], "anomalies": []})
}

/// The first update where `what` holds carries exactly the database's ranked
/// rows, and `/healthz` reports the database `ok` after it: the update, the
/// health status and body.
async fn served_again(
    c: &mut Client,
    addr: std::net::SocketAddr,
    db: &std::path::Path,
    what: &str,
    pred: impl Fn(&serde_json::Value) -> bool,
) -> (serde_json::Value, u16, serde_json::Value) {
    let u = c.update_where(what, pred).await;
    assert_eq!(compat_top(&u), expected_top(db, 10));
    let (code, h) = wait_health_db(addr, c, "ok").await;
    (u, code, h)
}

/// A server on the [`seed_basic`] data (no connection to the file left
/// open) and a client that has seen its four skills.
async fn serving_basic() -> (TestDb, skillmon::server::Handle, Client) {
    let (db, conn) = TestDb::seeded();
    drop(conn);
    let server = serve(&db.path, SHORT_INTERVAL).await;
    let (mut c, _) = Client::connect(&server.url()).await;
    assert_eq!(names(&c.next_update().await).len(), 4);
    (db, server, c)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_at_start_then_created() {
    let db = TestDb::missing();
    let server = serve(&db.path, SHORT_INTERVAL).await;
    let (mut c, u) = Client::connect_and_update(&server.url()).await;
    assert_eq!(u["data"], empty_data());
    let (code, h) = health(server.addr).await;
    // /healthz is liveness: 200 while serving; the body says degraded.
    assert_eq!(code, 200, "{h}");
    assert_eq!(h["status"], "degraded");
    assert_eq!(h["db"], "missing");
    assert!(
        h["db_detail"]
            .as_str()
            .unwrap()
            .contains(&db.path.display().to_string()),
        "{h}"
    );
    // Still ticking while it is missing.
    assert_eq!(c.next_update().await["data"], empty_data());

    let conn = db.create();
    seed_basic(&conn);
    let (_, code, h) = served_again(&mut c, server.addr, &db.path, "data appears", |u| {
        names(u).len() == 4
    })
    .await;
    assert_eq!(code, 200, "{h}");
    assert_eq!(h["status"], "ok");
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn empty_file_then_foreign_tables_then_the_schema() {
    let db = TestDb::missing();
    std::fs::write(&db.path, b"").unwrap();
    let server = serve(&db.path, SHORT_INTERVAL).await;
    let (mut c, _) = Client::connect(&server.url()).await;
    assert_eq!(c.next_update().await["data"], empty_data());
    let (code, h) = wait_health_db(server.addr, &mut c, "no_tables").await;
    // /healthz is liveness: 200 while serving; the body says degraded.
    assert_eq!(h["status"], "degraded", "{h}");
    assert_eq!(code, 200, "{h}");

    // Another application's database: still no session-buddy tables.
    let conn = rusqlite::Connection::open(&db.path).unwrap();
    conn.execute_batch("CREATE TABLE other (x INTEGER); INSERT INTO other VALUES (1);")
        .unwrap();
    c.next_update().await;
    c.next_update().await;
    let (code, h) = wait_health_db(server.addr, &mut c, "no_tables").await;
    // /healthz is liveness: 200 while serving; the body says degraded.
    assert_eq!(h["status"], "degraded", "{h}");
    assert_eq!(code, 200, "{h}");
    assert_eq!(c.next_update().await["data"], empty_data());

    // session-buddy migrates it: served.
    drop(conn);
    let conn = db.create();
    seed_basic(&conn);
    let (_, code, _) = served_again(&mut c, server.addr, &db.path, "data appears", |u| {
        names(u).len() == 4
    })
    .await;
    assert_eq!(code, 200);
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn not_a_database_is_reported_and_replaced_recovers() {
    let db = TestDb::missing();
    std::fs::write(&db.path, vec![b'x'; 8192]).unwrap();
    let server = serve(&db.path, SHORT_INTERVAL).await;
    let (mut c, _) = Client::connect(&server.url()).await;
    assert_eq!(c.next_update().await["data"], empty_data());
    let (code, h) = wait_health_db(server.addr, &mut c, "error").await;
    // /healthz is liveness: 200 while serving; the body says degraded.
    assert_eq!(h["status"], "degraded", "{h}");
    assert_eq!(code, 200, "{h}");

    let fresh = TestDb::missing();
    let conn = fresh.create();
    seed_basic(&conn);
    drop(conn);
    std::fs::rename(&fresh.path, &db.path).unwrap();
    served_again(&mut c, server.addr, &db.path, "data appears", |u| {
        names(u).len() == 4
    })
    .await;
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn locked_by_a_writer_keeps_serving_and_recovers_after_commit() {
    let (db, conn) = TestDb::seeded();
    // Rollback-journal mode, so an exclusive lock blocks readers.
    let mode: String = conn
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .unwrap();
    assert_eq!(mode.to_lowercase(), "delete");
    let before = expected_top(&db.path, 10);
    let server = serve(&db.path, SHORT_INTERVAL).await;
    let (mut c, _) = Client::connect(&server.url()).await;
    assert_eq!(compat_top(&c.next_update().await), before);

    conn.execute_batch("BEGIN EXCLUSIVE").unwrap();
    invoke_n_in_tx(&conn, "fresh", 9);
    let (code, h) = wait_health_db(server.addr, &mut c, "locked").await;
    assert_eq!(code, 200, "locked is still healthy: {h}");
    assert!(h["db_detail"].as_str().unwrap().contains("locked"), "{h}");
    // Still serving the last good snapshot, every tick.
    for _ in 0..3 {
        assert_eq!(compat_top(&c.next_update().await), before);
    }
    let text = http_get(server.addr, "/metrics").await.body;
    assert!(
        text.contains("skillmon_db_state{state=\"locked\"} 1"),
        "{text}"
    );

    conn.execute_batch("COMMIT").unwrap();
    let (_, code, _) = served_again(&mut c, server.addr, &db.path, "fresh appears", |u| {
        names(u).first().map(String::as_str) == Some("fresh")
    })
    .await;
    assert_eq!(code, 200);
    server.stop().await.unwrap();
}

/// `n` completed invocations inside the caller's transaction.
fn invoke_n_in_tx(conn: &rusqlite::Connection, skill: &str, n: usize) {
    for _ in 0..n {
        invoke(conn, skill, true, Some(1.0));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replaced_by_another_file_serves_the_new_data() {
    let (db, server, mut c) = serving_basic().await;

    // Written elsewhere, then renamed over the served path (atomic replace).
    let other = db.sibling("next.db");
    let conn = skillmon::store::fixture::create_db(&other).unwrap();
    invoke_n(&conn, "replacement", 3, 1);
    invoke_n(&conn, "second", 1, 1);
    drop(conn);
    std::fs::rename(&other, &db.path).unwrap();
    let u = c
        .update_where("the new file is served", |u| {
            names(u) == ["replacement", "second"]
        })
        .await;
    assert_eq!(compat_top(&u), expected_top(&db.path, 10));
    // And writes to the new file are followed.
    let conn = rusqlite::Connection::open(&db.path).unwrap();
    invoke_n(&conn, "second", 5, 5);
    c.update_where("writes to the new file show", |u| {
        names(u) == ["second", "replacement"]
    })
    .await;
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleted_while_running_then_recreated() {
    let (db, server, mut c) = serving_basic().await;

    std::fs::remove_file(&db.path).unwrap();
    c.update_where("empty after delete", |u| u["data"] == empty_data())
        .await;
    let (code, h) = wait_health_db(server.addr, &mut c, "missing").await;
    // /healthz is liveness: 200 while serving; the body says degraded.
    assert_eq!(h["status"], "degraded", "{h}");
    assert_eq!(code, 200);
    // Empty on every following tick, not a stale snapshot.
    for _ in 0..2 {
        assert_eq!(c.next_update().await["data"], empty_data());
    }

    let conn = db.create();
    invoke_n(&conn, "reborn", 2, 2);
    served_again(&mut c, server.addr, &db.path, "recovered", |u| {
        names(u) == ["reborn"]
    })
    .await;
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wal_database_written_concurrently() {
    let (db, conn) = TestDb::new();
    let mode: String = conn
        .query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
    seed_basic(&conn);
    let server = serve(&db.path, SHORT_INTERVAL).await;
    let (mut c, _) = Client::connect(&server.url()).await;
    assert_eq!(names(&c.next_update().await).len(), 4);

    // A writer thread commits one invocation at a time while updates flow.
    const N: u64 = 150;
    let path = db.path.clone();
    let writer = std::thread::spawn(move || {
        let w = rusqlite::Connection::open(&path).unwrap();
        w.busy_timeout(std::time::Duration::from_secs(5)).unwrap();
        for i in 0..N {
            invoke(&w, "wal-writer", i % 3 != 0, Some(0.5));
            // Spread the commits over several ticks (a writer's pace, not
            // synchronization).
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
    });
    let mut last = 0u64;
    let mut distinct = 0;
    let until = tokio::time::Instant::now() + DEADLINE;
    while last < N {
        assert!(tokio::time::Instant::now() < until, "stuck at {last}");
        let u = c.next_update().await;
        assert_eq!(
            server.shared.stats.db().state,
            DbState::Ok,
            "a WAL reader never waits on the writer"
        );
        let n = u["data"]["top_skills"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["skill_name"] == "wal-writer")
            .map_or(0, |s| s["total_invocations"].as_u64().unwrap());
        assert!(n >= last, "went backwards: {last} -> {n}");
        if n != last {
            distinct += 1;
        }
        last = n;
        // Every other row is untouched by the writer.
        for row in u["data"]["top_skills"].as_array().unwrap() {
            if row["skill_name"] == "gamma" {
                assert_eq!(row["total_invocations"], 5);
            }
        }
    }
    writer.join().unwrap();
    assert!(distinct >= 1);
    assert_eq!(
        compat_top(&c.next_update().await),
        expected_top(&db.path, 10)
    );
    let (code, h) = health(server.addr).await;
    assert_eq!((code, h["db"].as_str()), (200, Some("ok")));
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_database_file_is_byte_identical_after_a_run() {
    let (db, conn) = TestDb::seeded();
    skillmon::store::fixture::insert_anomaly(
        &conn,
        "alpha",
        &ts_ago(60, "%Y-%m-%dT%H:%M:%SZ"),
        "drop",
        Some(-2.0),
    )
    .unwrap();
    drop(conn);
    let bytes = file_bytes(&db.path);
    let listing = dir_listing(db.dir.path());
    let mtime = std::fs::metadata(&db.path).unwrap().modified().unwrap();
    assert!(!bytes.is_empty());

    let server = serve(&db.path, SHORT_INTERVAL).await;
    let mut clients = Vec::new();
    for sub in [
        None,
        Some(json!({"type": "subscribe", "skill": "alpha"})),
        Some(json!({"type": "subscribe", "skills": ["beta", "nope"]})),
    ] {
        let (mut c, _) = Client::connect(&server.url()).await;
        if let Some(s) = sub {
            c.subscribe(s).await;
        }
        clients.push(c);
    }
    for _ in 0..5 {
        for c in &mut clients {
            c.next_update().await;
        }
    }
    health(server.addr).await;
    http_get(server.addr, "/metrics").await;
    server.stop().await.unwrap();

    assert!(file_bytes(&db.path) == bytes, "the database file changed");
    assert_eq!(
        dir_listing(db.dir.path()),
        listing,
        "no journal/wal/shm left"
    );
    assert_eq!(
        std::fs::metadata(&db.path).unwrap().modified().unwrap(),
        mtime
    );
}

#[test]
fn store_runs_no_queries_on_unchanged_data() {
    let (db, conn) = TestDb::seeded();
    let mut store = Store::new(&db.path);
    let r = store.refresh();
    assert!(r.queried);
    assert_eq!(store.state(), &DbState::Ok);
    assert_eq!(r.snapshot.skills.len(), 4);
    let runs = store.queries_run();
    for _ in 0..5 {
        let r = store.refresh();
        assert!(!r.queried, "nothing changed, nothing queried");
        assert_eq!(r.snapshot.skills.len(), 4);
    }
    assert_eq!(store.queries_run(), runs);

    invoke(&conn, "new-one", true, Some(1.0));
    let r = store.refresh();
    assert!(r.queried, "a commit by another connection is noticed");
    assert!(r.snapshot.skills.iter().any(|s| s.skill_name == "new-one"));
    assert!(!store.refresh().queried);

    // A missing file costs no query either.
    let gone = TestDb::missing();
    let mut store = Store::new(&gone.path);
    for _ in 0..3 {
        let r = store.refresh();
        assert!(!r.queried);
        assert_eq!(store.state(), &DbState::Missing);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_ticks_cost_no_queries_on_unchanged_data() {
    let (db, conn) = TestDb::seeded();
    let server = serve(&db.path, SHORT_INTERVAL).await;
    let stats = &server.shared.stats;
    let (mut c, _) = Client::connect_and_update(&server.url()).await;
    let queries = stats.db_queries();
    let ticks = stats.ticks();
    assert!(queries >= 1);
    for _ in 0..5 {
        c.next_update().await;
    }
    assert!(stats.ticks() >= ticks + 4);
    assert_eq!(stats.db_queries(), queries, "unchanged: no queries");

    invoke(&conn, "alpha", true, Some(1.0));
    c.update_where("the write shows", |u| {
        u["data"]["top_skills"][1]["total_invocations"] == 4
    })
    .await;
    let after = stats.db_queries();
    assert!(after > queries);
    for _ in 0..5 {
        c.next_update().await;
    }
    assert_eq!(stats.db_queries(), after);
    server.stop().await.unwrap();
}

/// A file without session-buddy tables whose `data_version` did not change
/// is not re-queried either.
#[test]
fn store_runs_no_queries_on_an_unchanged_table_less_file() {
    let db = TestDb::missing();
    std::fs::write(&db.path, b"").unwrap();
    let mut store = Store::new(&db.path);
    store.refresh();
    assert_eq!(store.state(), &DbState::NoTables);
    for _ in 0..3 {
        assert!(!store.refresh().queried);
    }
    // Tables created: noticed.
    let conn = db.create();
    seed_basic(&conn);
    assert!(store.refresh().queried);
    assert_eq!(store.state(), &DbState::Ok);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_directory_at_the_path_is_an_error_not_a_crash() {
    let db = TestDb::missing();
    std::fs::create_dir(&db.path).unwrap();
    let server = serve(&db.path, SHORT_INTERVAL).await;
    let (mut c, _) = Client::connect(&server.url()).await;
    assert_eq!(c.next_update().await["data"], empty_data());
    let (code, h) = wait_health_db(server.addr, &mut c, "error").await;
    // /healthz is liveness: 200 while serving; the body says degraded.
    assert_eq!(h["status"], "degraded", "{h}");
    assert_eq!(code, 200);
    assert!(
        h["db_detail"]
            .as_str()
            .unwrap()
            .contains("not a regular file"),
        "{h}"
    );
    std::fs::remove_dir(&db.path).unwrap();
    let conn = db.create();
    seed_basic(&conn);
    c.update_where("recovered", |u| names(u).len() == 4).await;
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn locked_at_start_serves_empty_then_the_data_after_commit() {
    let (db, conn) = TestDb::seeded();
    conn.execute_batch("BEGIN EXCLUSIVE").unwrap();
    invoke(&conn, "alpha", true, Some(1.0));
    let server = serve(&db.path, SHORT_INTERVAL).await;
    let (mut c, _) = Client::connect(&server.url()).await;
    assert_eq!(c.next_update().await["data"], empty_data());
    let (code, h) = wait_health_db(server.addr, &mut c, "locked").await;
    // /healthz is liveness: 200 while serving; the body says degraded.
    assert_eq!(h["status"], "degraded", "{h}");
    assert_eq!(
        code, 200,
        "locked before any good read: nothing to serve: {h}"
    );
    assert!(h["db_detail"].as_str().unwrap().contains("locked"), "{h}");
    assert_eq!(c.next_update().await["data"], empty_data());
    conn.execute_batch("COMMIT").unwrap();
    let (u, _, _) = served_again(&mut c, server.addr, &db.path, "data after commit", |u| {
        names(u).len() == 4
    })
    .await;
    assert_eq!(u["data"]["top_skills"][1]["total_invocations"], 4);
    server.stop().await.unwrap();
}
