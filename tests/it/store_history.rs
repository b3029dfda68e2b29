//! History buckets cut by the store (from its in-memory day) against a
//! brute-force count over the rows written, on a real SQLite file, with the
//! store's injectable clock.

use crate::support;

use chrono::SecondsFormat;
use skillmon::protocol::{History, HistoryWindow};
use skillmon::store::fixture::{Invocation, insert_anomaly, insert_invocation};
use skillmon::store::{AnomalySource, Store, StoreOptions, history};
use support::TestDb;

const HOUR: f64 = 3600.0;
const DAY: f64 = 86_400.0;

/// One written invocation: (Unix seconds, completed, duration).
type Row = (f64, bool, Option<f64>);

fn ts(unix: f64) -> String {
    chrono::DateTime::from_timestamp_millis((unix * 1000.0).round() as i64)
        .unwrap()
        .to_rfc3339_opts(SecondsFormat::Millis, true)
}

fn write(conn: &rusqlite::Connection, skill: &str, rows: &[Row]) {
    conn.execute_batch("BEGIN").unwrap();
    for &(t, completed, duration) in rows {
        insert_invocation(
            conn,
            &Invocation {
                skill_name: skill,
                invoked_at: &ts(t),
                completed,
                duration_seconds: duration,
                session_id: "t",
            },
        )
        .unwrap();
    }
    conn.execute_batch("COMMIT").unwrap();
}

/// (invocations, completed, avg duration of completed with one) per bucket,
/// counted row by row.
fn brute(rows: &[Row], window: HistoryWindow, now: f64) -> Vec<(u64, u64, Option<f64>)> {
    let first = window.first_bucket_start(now) as f64;
    let size = window.bucket_seconds() as f64;
    (0..window.buckets())
        .map(|i| {
            let lo = first + i as f64 * size;
            let hi = lo + size;
            let inside: Vec<&Row> = rows
                .iter()
                .filter(|r| r.0 >= lo && r.0 < hi && r.0 >= now - DAY && r.0 <= now)
                .collect();
            let done: Vec<f64> = inside.iter().filter(|r| r.1).filter_map(|r| r.2).collect();
            let avg = (!done.is_empty())
                .then(|| (done.iter().sum::<f64>() / done.len() as f64 * 1000.0).round() / 1000.0);
            (
                inside.len() as u64,
                inside.iter().filter(|r| r.1).count() as u64,
                avg,
            )
        })
        .collect()
}

fn cut(h: &History, skill: &str) -> Vec<(u64, u64, Option<f64>)> {
    let s = h
        .skills
        .iter()
        .find(|s| s.skill_name == skill)
        .unwrap_or_else(|| panic!("{skill} missing from the history"));
    s.buckets
        .iter()
        .map(|b| (b.invocations, b.completed, b.avg_duration))
        .collect()
}

/// Rows spread over the last 26 h (durations in quarter seconds, so sums
/// are exact), plus rows right on and around bucket edges and the 24 h cut.
fn rows_for(now: f64, seed: u64, n: usize) -> Vec<Row> {
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut rows: Vec<Row> = (0..n)
        .map(|_| {
            let ms = rng.u64(0..(26.0 * HOUR * 1000.0) as u64) as f64;
            let completed = rng.u8(0..10) < 7;
            let duration = rng.bool().then(|| f64::from(rng.u8(0..40)) * 0.25);
            (now - ms / 1000.0, completed, duration)
        })
        .collect();
    let minute_edge = (now / 60.0).floor() * 60.0 - 120.0;
    let quarter_edge = (now / 900.0).floor() * 900.0 - 900.0;
    for edge in [minute_edge, quarter_edge, (now / 900.0).floor() * 900.0] {
        rows.push((edge, true, Some(1.0)));
        rows.push((edge - 0.001, true, Some(2.0)));
        rows.push((edge + 0.001, false, Some(3.0)));
    }
    for t in [now - DAY - 1.0, now - DAY + 0.5, now - DAY + 900.0, now] {
        rows.push((t, true, Some(0.5)));
    }
    rows
}

fn assert_matches(store_now: f64, snap: &skillmon::store::Snapshot, rows: &[Row], at: f64) {
    for window in [HistoryWindow::Hour, HistoryWindow::Day] {
        let h = history::build(snap, &["busy".to_owned()], window, at);
        assert_eq!(h.window, window);
        assert_eq!(h.skills[0].buckets.len(), window.buckets());
        let got = cut(&h, "busy");
        let want = brute(rows, window, at);
        assert_eq!(
            got, want,
            "{window} at now {at} (store refreshed at {store_now})"
        );
        if window == HistoryWindow::Day {
            assert!(
                want.iter().any(|b| b.0 > 0),
                "{window}: the data set must reach the window"
            );
        }
    }
}

#[test]
fn buckets_match_a_brute_force_count() {
    let (db, conn) = TestDb::new();
    // A fixed clock, a few seconds past a minute edge.
    let now = 1_796_031_427.25;
    let rows = rows_for(now, 7, 3000);
    write(&conn, "busy", &rows);
    let mut store = Store::new(&db.path);
    let snap = store.refresh_at(now).snapshot;
    assert_matches(now, &snap, &rows, now);

    // An unknown skill gets all-zero buckets, not an error.
    let h = history::build(&snap, &["nope".to_owned()], HistoryWindow::Day, now);
    assert_eq!(h.skills[0].buckets.len(), 96);
    assert!(
        h.skills[0]
            .buckets
            .iter()
            .all(|b| b.invocations == 0 && b.avg_duration.is_none())
    );
    assert_eq!(h.start, h.skills[0].buckets[0].start);
    assert!(h.start.ends_with(":00Z"), "{}", h.start);
}

#[test]
fn windows_move_with_time_without_new_data() {
    let (db, conn) = TestDb::new();
    let now = 1_796_031_427.25;
    let rows = rows_for(now, 11, 2000);
    write(&conn, "busy", &rows);
    let mut store = Store::new(&db.path);
    store.refresh_at(now);
    // Across a minute edge, a quarter edge, an hour, and far enough that
    // the oldest rows fall out of the 24 h window.
    for later in [33.0, 60.0, 900.0, HOUR + 1.0, 5.0 * HOUR] {
        let at = now + later;
        let snap = store.refresh_at(at).snapshot;
        assert_matches(at, &snap, &rows, at);
    }
    // The snapshot built long before still answers for a later clock.
    let old = store.snapshot();
    let at = now + 5.0 * HOUR + 600.0;
    assert_matches(now + 5.0 * HOUR, &old, &rows, at);
    let h1 = history::build(&old, &["busy".to_owned()], HistoryWindow::Hour, now);
    let h2 = history::build(&old, &["busy".to_owned()], HistoryWindow::Hour, now + 60.0);
    assert_eq!(
        h1.skills[0].buckets[1], h2.skills[0].buckets[0],
        "one minute later the series moved by one bucket"
    );
}

#[test]
fn new_rows_extend_the_series_and_leave_old_snapshots_alone() {
    let (db, conn) = TestDb::new();
    let now = 1_796_031_427.25;
    let mut rows = rows_for(now, 3, 500);
    write(&conn, "busy", &rows);
    let mut store = Store::new(&db.path);
    let before = store.refresh_at(now).snapshot;
    let frozen = history::build(
        &before,
        &["busy".to_owned()],
        HistoryWindow::Hour,
        now + 30.0,
    );

    let added: Vec<Row> = vec![
        (now + 10.0, true, Some(4.0)),
        (now + 20.0, false, None),
        (now - 3000.0, true, Some(0.25)), // late-arriving, out of order
    ];
    write(&conn, "busy", &added);
    rows.extend(added);
    let after = store.refresh_at(now + 30.0).snapshot;
    assert_matches(now + 30.0, &after, &rows, now + 30.0);
    assert_eq!(
        history::build(
            &before,
            &["busy".to_owned()],
            HistoryWindow::Hour,
            now + 30.0
        ),
        frozen,
        "a snapshot already handed out never changes"
    );
}

#[test]
fn anomalies_in_the_window_ride_along() {
    let (db, conn) = TestDb::new();
    let now = 1_796_031_427.25;
    write(&conn, "busy", &rows_for(now, 5, 100));
    write(&conn, "other", &[(now - 30.0, true, None)]);
    insert_anomaly(&conn, "busy", &ts(now - 600.0), "drop", Some(-3.5)).unwrap();
    insert_anomaly(&conn, "busy", &ts(now - 120.0), "spike", None).unwrap();
    insert_anomaly(&conn, "other", &ts(now - 60.0), "drop", Some(-2.0)).unwrap();
    // Table rows only: random data could make live findings too.
    let mut store = table_store(&db.path);
    let snap = store.refresh_at(now).snapshot;
    let h = history::build(&snap, &["busy".to_owned()], HistoryWindow::Hour, now);
    let kinds: Vec<_> = h.skills[0]
        .anomalies
        .iter()
        .map(|a| {
            (
                a.anomaly_type.as_str(),
                a.deviation_score,
                a.detected_at.clone(),
            )
        })
        .collect();
    assert_eq!(
        kinds,
        [
            ("spike", None, ts(now - 120.0)),
            ("drop", Some(-3.5), ts(now - 600.0))
        ],
        "newest first, only this skill's"
    );
    // Fifty minutes later the older one is out of the 1 h window.
    let h = history::build(
        &snap,
        &["busy".to_owned()],
        HistoryWindow::Hour,
        now + 3000.0 + 60.0,
    );
    assert_eq!(h.skills[0].anomalies.len(), 1);
    assert_eq!(h.skills[0].anomalies[0].anomaly_type, "spike");
    let h = history::build(
        &snap,
        &["busy".to_owned()],
        HistoryWindow::Day,
        now + 3000.0 + 60.0,
    );
    assert_eq!(h.skills[0].anomalies.len(), 2, "both inside the day");
}

#[test]
fn anomalies_no_longer_served_stay_on_the_day_chart() {
    let (db, conn) = TestDb::new();
    let now = 1_796_031_427.25;
    write(&conn, "busy", &rows_for(now, 5, 100));
    insert_anomaly(&conn, "busy", &ts(now - 600.0), "drop", Some(-3.5)).unwrap();
    let mut store = table_store(&db.path);
    let snap = store.refresh_at(now).snapshot;
    assert_eq!(snap.anomalies.len(), 1);
    // Two hours on, a new row makes the store read again: the table row is
    // past its hour and no longer served...
    let later = now + 2.0 * HOUR;
    write(&conn, "busy", &[(later - 1.0, true, Some(1.0))]);
    let snap = store.refresh_at(later).snapshot;
    assert!(snap.anomalies.is_empty(), "{:?}", snap.anomalies);
    // ...but the day's chart still marks it, the hour's does not.
    let day = history::build(&snap, &["busy".to_owned()], HistoryWindow::Day, later);
    assert_eq!(day.skills[0].anomalies.len(), 1);
    assert_eq!(day.skills[0].anomalies[0].detected_at, ts(now - 600.0));
    assert_eq!(day.skills[0].anomalies[0].deviation_score, Some(-3.5));
    let hour = history::build(&snap, &["busy".to_owned()], HistoryWindow::Hour, later);
    assert!(hour.skills[0].anomalies.is_empty());
    // A day later it is forgotten.
    let next_day = now + DAY + 60.0;
    write(&conn, "busy", &[(next_day - 1.0, true, Some(1.0))]);
    let snap = store.refresh_at(next_day).snapshot;
    let day = history::build(&snap, &["busy".to_owned()], HistoryWindow::Day, next_day);
    assert!(day.skills[0].anomalies.is_empty());
    assert_eq!(snap.anomaly_log().of("busy").len(), 0);
}

#[test]
fn the_demo_day_is_on_the_chart_with_its_incidents() {
    let db = TestDb::missing();
    let now = chrono::Utc::now();
    skillmon::demo::create_demo_db(&db.path, now, 7).unwrap();
    let now = now.timestamp_millis() as f64 / 1000.0;
    let mut store = Store::new(&db.path);
    let snap = store.refresh_at(now).snapshot;
    let names: Vec<String> = snap.skills.iter().map(|s| s.skill_name.clone()).collect();
    let h = history::build(&snap, &names, HistoryWindow::Day, now);
    let first = HistoryWindow::Day.first_bucket_start(now);
    let conn = rusqlite::Connection::open(&db.path).unwrap();
    for s in &h.skills {
        let want: i64 = conn
            .query_row(
                "SELECT count(*) FROM skill_invocation
                  WHERE skill_name = ?1 AND unixepoch(invoked_at, 'subsec') >= ?2",
                rusqlite::params![s.skill_name, first],
                |r| r.get(0),
            )
            .unwrap();
        let got: u64 = s.buckets.iter().map(|b| b.invocations).sum();
        assert_eq!(got as i64, want, "{}", s.skill_name);
        assert!(got > 0, "{} has a back-filled day", s.skill_name);
    }
    let mypy = h.skills.iter().find(|s| s.skill_name == "mypy").unwrap();
    assert!(
        mypy.anomalies
            .iter()
            .any(|a| a.source.as_deref() == Some("live")),
        "the demo's mypy incident is marked: {:?}",
        mypy.anomalies
    );
    // Failing through the last hour: the buckets inside it completed nothing.
    assert!(mypy.buckets[93..].iter().all(|b| b.completed == 0));
    assert!(mypy.buckets[..88].iter().any(|b| b.completed > 0));
}

/// A store that serves the anomalies table only: random data could make
/// live findings too.
fn table_store(db: &std::path::Path) -> Store {
    Store::with_options(
        db,
        StoreOptions {
            anomalies: AnomalySource::Table,
            ..StoreOptions::default()
        },
    )
}
