//! Live anomalies and real time windows, end to end through the store and
//! the server, on real SQLite files.

use crate::support;

use chrono::{SecondsFormat, Utc};
use skillmon::server::ServeConfig;
use skillmon::store::fixture::{Invocation, create_db, insert_anomaly, insert_invocation};
use skillmon::store::{AnomalySource, Store, StoreOptions};
use support::{Client, TestDb, next_parsed_update, start};

const HOUR: f64 = 3600.0;

fn ts(unix: f64, form: usize) -> String {
    let t = chrono::DateTime::from_timestamp_millis((unix * 1000.0) as i64).unwrap();
    match form % 6 {
        0 => t.to_rfc3339_opts(SecondsFormat::Micros, false), // +00:00 with fraction
        1 => t.to_rfc3339_opts(SecondsFormat::Secs, true),    // Z
        2 => t.format("%Y-%m-%d %H:%M:%S").to_string(),       // space, no offset
        3 => t.format("%Y-%m-%dT%H:%M:%S%.3f").to_string(),   // T, no offset
        4 => t.format("%Y-%m-%d %H:%M:%S%.6f+00:00").to_string(), // space + offset
        _ => (t + chrono::Duration::hours(2))
            .format("%Y-%m-%dT%H:%M:%S+02:00")
            .to_string(), // another offset
    }
}

fn add(conn: &rusqlite::Connection, skill: &str, at: f64, form: usize, completed: bool, d: f64) {
    insert_invocation(
        conn,
        &Invocation {
            skill_name: skill,
            invoked_at: &ts(at, form),
            completed,
            duration_seconds: completed.then_some(d),
            session_id: "t",
        },
    )
    .unwrap();
}

/// 20 baseline invocations of `skill` (90 % complete, ~1 s) 2..12 h ago and
/// 3 failures in the last hour: a clear completion drop.
fn seed_drop(conn: &rusqlite::Connection, skill: &str, now: f64) {
    for i in 0..20 {
        add(
            conn,
            skill,
            now - 2.0 * HOUR - i as f64 * 1800.0,
            i,
            i % 10 != 0,
            1.0,
        );
    }
    for i in 0..3 {
        add(conn, skill, now - 60.0 * (i + 1) as f64, i, false, 0.0);
    }
}

#[test]
fn windows_are_right_for_every_timestamp_form() {
    let (db, conn) = TestDb::new();
    let path = db.path.clone();
    let now = Utc::now().timestamp() as f64;
    // Per form: one 10 min ago, one 5 h ago, one 30 h ago.
    for form in 0..6 {
        add(&conn, "a", now - 600.0, form, true, 1.0);
        add(&conn, "a", now - 5.0 * HOUR, form, true, 1.0);
        add(&conn, "a", now - 30.0 * HOUR, form, true, 1.0);
    }
    // 23 h ago written at UTC-12: its text reads 35 h ago, still inside.
    let far = chrono::DateTime::from_timestamp((now - 23.0 * HOUR) as i64, 0).unwrap()
        - chrono::Duration::hours(12);
    insert_invocation(
        &conn,
        &Invocation {
            skill_name: "a",
            invoked_at: &far.format("%Y-%m-%dT%H:%M:%S-12:00").to_string(),
            completed: true,
            duration_seconds: Some(1.0),
            session_id: "t",
        },
    )
    .unwrap();
    let mut store = Store::new(&path);
    let snap = store.refresh_at(now).snapshot;
    let a = &snap.skills[0];
    assert_eq!(a.total_invocations, 19);
    assert_eq!(a.invocations_1h, Some(6), "{a:?}");
    assert_eq!(a.invocations_24h, Some(13), "{a:?}");
    assert!(a.last_invoked_at.is_some());
}

#[test]
fn windows_decay_as_time_passes_without_queries() {
    let (db, conn) = TestDb::new();
    let path = db.path.clone();
    let now = Utc::now().timestamp() as f64;
    add(&conn, "a", now - 600.0, 0, true, 1.0);
    add(&conn, "a", now - 2.0 * HOUR, 1, true, 1.0);
    let mut store = Store::new(&path);
    let first = store.refresh_at(now);
    assert!(first.queried);
    assert_eq!(first.snapshot.skills[0].invocations_1h, Some(1));
    // 51 minutes later the recent one has left the hour; nothing was written.
    let later = store.refresh_at(now + 3060.0);
    assert!(!later.queried, "time passing costs no queries");
    assert_eq!(later.snapshot.skills[0].invocations_1h, Some(0));
    assert_eq!(later.snapshot.skills[0].invocations_24h, Some(2));
    // A day later both are gone from the windows, still in the totals.
    let day = store.refresh_at(now + 24.0 * HOUR);
    assert!(!day.queried);
    assert_eq!(day.snapshot.skills[0].invocations_24h, Some(0));
    assert_eq!(day.snapshot.skills[0].total_invocations, 2);
}

#[test]
fn live_and_table_anomalies_merge_by_mode() {
    let (db, conn) = TestDb::new();
    let path = db.path.clone();
    let now = Utc::now().timestamp() as f64;
    seed_drop(&conn, "mypy", now);
    add(&conn, "ruff", now - 100.0, 0, true, 1.0);
    insert_anomaly(&conn, "ruff", &ts(now - 300.0, 2), "spike", Some(3.1)).unwrap();
    let resolved = ts(now - 200.0, 0);
    insert_anomaly(&conn, "ruff", &resolved, "drop", Some(9.0)).unwrap();
    conn.execute(
        "UPDATE skill_anomalies SET resolved_at = ?1 WHERE anomaly_type = 'drop'",
        [&resolved],
    )
    .unwrap();

    let kinds = |mode| {
        let mut store = Store::with_options(
            &path,
            StoreOptions {
                anomalies: mode,
                threshold: 2.0,
            },
        );
        let snap = store.refresh_at(now).snapshot;
        snap.anomalies
            .iter()
            .map(|a| {
                (
                    a.anomaly.skill_name.clone(),
                    a.anomaly.anomaly_type.clone(),
                    a.anomaly.source.clone().unwrap(),
                )
            })
            .collect::<Vec<_>>()
    };
    let live = (
        "mypy".to_string(),
        "performance_drop".to_string(),
        "live".to_string(),
    );
    let table = ("ruff".to_string(), "spike".to_string(), "table".to_string());
    assert_eq!(
        kinds(AnomalySource::Both),
        vec![live.clone(), table.clone()],
        "newest first (the live finding was first seen now)"
    );
    assert_eq!(kinds(AnomalySource::Live), vec![live]);
    assert_eq!(kinds(AnomalySource::Table), vec![table]);
    assert!(kinds(AnomalySource::Off).is_empty());
}

#[test]
fn live_anomaly_values_follow_the_rule() {
    let (db, conn) = TestDb::new();
    let path = db.path.clone();
    let now = Utc::now().timestamp() as f64;
    seed_drop(&conn, "mypy", now);
    let mut store = Store::new(&path);
    let snap = store.refresh_at(now).snapshot;
    let a = &snap.anomalies[0].anomaly;
    assert_eq!(
        a.baseline_value,
        Some(90.0),
        "percent, like completion_rate"
    );
    assert_eq!(a.observed_value, Some(0.0));
    let z = -0.9 / (0.09f64 * 20.0 / 19.0).sqrt();
    assert!((a.deviation_score.unwrap() - z).abs() < 0.001, "{a:?}");
    assert!(skillmon::protocol::parse_timestamp(&a.detected_at).is_some());
    // detected_at is when it was first seen: stable across rebuilds.
    add(&conn, "mypy", now - 5.0, 0, false, 0.0);
    let again = store.refresh_at(now + 10.0).snapshot;
    assert_eq!(again.anomalies[0].anomaly.detected_at, a.detected_at);
}

#[tokio::test]
async fn serve_shows_live_anomalies_from_an_invocation_only_history() {
    let (db, conn) = TestDb::new();
    seed_drop(&conn, "mypy", Utc::now().timestamp() as f64);
    let n: i64 = conn
        .query_row("SELECT COUNT(*) FROM skill_anomalies", [], |r| r.get(0))
        .unwrap();
    assert_eq!(n, 0, "nothing in the anomalies table");
    drop(conn);
    let server = start(ServeConfig::new(&db.path)).await;
    let mut c = Client::connect_raw(&server.url()).await;
    let update = next_parsed_update(&mut c.ws).await;
    let a = &update.data.anomalies;
    assert_eq!(a.len(), 1, "{a:?}");
    assert_eq!(a[0].skill_name, "mypy");
    assert_eq!(a[0].anomaly_type, "performance_drop");
    assert_eq!(a[0].source.as_deref(), Some("live"));
    let mypy = &update.data.top_skills[0];
    assert_eq!(mypy.invocations_1h, Some(3));
    assert_eq!(mypy.invocations_24h, Some(23));
    server.stop().await.unwrap();
}

#[test]
fn odd_rows_neither_fail_the_load_nor_get_counted_twice() {
    let (db, conn) = TestDb::new();
    let path = db.path.clone();
    let now = Utc::now().timestamp() as f64;
    for i in 0..10 {
        add(&conn, "a", now - 60.0 * (i + 1) as f64, i, true, 1.0);
    }
    // A NULL `completed`, a BLOB name and an unparsable time, written
    // around the trigger as a foreign writer might.
    conn.execute_batch(&format!(
        "INSERT INTO skill_invocation (skill_name, invoked_at, completed) VALUES ('a', '{}', NULL);
         INSERT INTO skill_invocation (skill_name, invoked_at, completed) VALUES (x'ff00', '{}', 1);
         INSERT INTO skill_invocation (skill_name, invoked_at, completed) VALUES ('a', 'yesterday-ish', 1);",
        ts(now - 30.0, 0),
        ts(now - 30.0, 0)
    ))
    .unwrap();
    let mut store = Store::new(&path);
    let first = store.refresh_at(now);
    assert_eq!(*store.state(), skillmon::store::DbState::Ok);
    let a = first
        .snapshot
        .skills
        .iter()
        .find(|s| s.skill_name == "a")
        .unwrap();
    assert_eq!(
        a.invocations_24h,
        Some(11),
        "10 good rows + the NULL-completed one"
    );
    for k in 0..3 {
        add(&conn, "a", now - 5.0, k, true, 1.0);
        let r = store.refresh_at(now + k as f64);
        assert!(r.queried);
        let a = r
            .snapshot
            .skills
            .iter()
            .find(|s| s.skill_name == "a")
            .unwrap();
        assert_eq!(a.invocations_24h, Some(12 + k as u64), "nothing read twice");
    }
    assert_eq!(store.window_samples(), 14);
}

#[test]
fn a_lock_after_the_data_went_away_is_not_reported_as_serving_it() {
    use skillmon::store::DbState;
    let (db, conn) = TestDb::new();
    let path = db.path.clone();
    add(
        &conn,
        "a",
        Utc::now().timestamp() as f64 - 60.0,
        0,
        true,
        1.0,
    );
    drop(conn);
    let mut store = Store::new(&path);
    store.refresh();
    assert!(store.status().healthy() && store.status().has_data);

    // Deleted: empty updates.
    std::fs::remove_file(&path).unwrap();
    assert!(store.refresh().snapshot.skills.is_empty());
    assert_eq!(store.status().state, DbState::Missing);

    // Back, but locked by a writer before this store reads it (the lock is
    // taken on a sibling file that is then renamed into place).
    let staged = db.sibling("staged.db");
    let writer = create_db(&staged).unwrap();
    add(
        &writer,
        "b",
        Utc::now().timestamp() as f64 - 60.0,
        0,
        true,
        1.0,
    );
    writer.execute_batch("BEGIN EXCLUSIVE").unwrap();
    std::fs::rename(&staged, &path).unwrap();
    let r = store.refresh();
    let status = store.status();
    assert_eq!(status.state, DbState::Locked);
    assert!(r.snapshot.skills.is_empty());
    assert!(!status.has_data && !status.healthy(), "{status:?}");
    assert!(status.detail.contains("empty updates"), "{}", status.detail);

    writer.execute_batch("COMMIT").unwrap();
    let r = store.refresh();
    assert_eq!(r.snapshot.skills[0].skill_name, "b");
    assert!(store.status().healthy());
}
