//! Real session-buddy databases in temp dirs, seeded through the fixture the
//! way session-buddy writes them, and expectations read straight from them
//! with a separate connection.

use std::path::{Path, PathBuf};

use rusqlite::Connection;
use serde_json::Value;
use skillmon::store::fixture::{self, Invocation};
use tempfile::TempDir;

/// A temp dir holding `skills.db` (not created until asked). The dir also
/// serves as the home of a child process ([`crate::support::command`]).
pub struct TestDb {
    pub dir: TempDir,
    pub path: PathBuf,
}

impl TestDb {
    /// A temp dir and the path of a database that does not exist yet.
    pub fn missing() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("skills.db");
        Self { dir, path }
    }

    /// A temp dir with an empty session-buddy database (schema, no rows).
    pub fn new() -> (Self, Connection) {
        let db = Self::missing();
        let conn = db.create();
        (db, conn)
    }

    /// A temp dir with a database holding the [`seed_basic`] data set.
    pub fn seeded() -> (Self, Connection) {
        let (db, conn) = Self::new();
        seed_basic(&conn);
        (db, conn)
    }

    /// Create the schema at `path` and return a writable connection.
    pub fn create(&self) -> Connection {
        fixture::create_db(&self.path).expect("create db")
    }

    /// Another path in the same temp dir.
    pub fn sibling(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

/// The `watch` tests' data set: pytest-run 4 uses (3 done), mypy 2 (none
/// done: avg null), ruff-check 1, and one `drop` anomaly on mypy.
pub fn make_db() -> TestDb {
    let (db, conn) = TestDb::new();
    let now = chrono::Utc::now();
    let at = now.to_rfc3339();
    let rows: &[(&str, bool, Option<f64>)] = &[
        ("pytest-run", true, Some(6.5)),
        ("pytest-run", true, Some(3.25)),
        ("pytest-run", false, None),
        ("pytest-run", true, Some(1.0)),
        ("mypy", false, None),
        ("mypy", false, None),
        ("ruff-check", true, Some(0.5)),
    ];
    for (name, done, dur) in rows {
        insert(&conn, name, &at, *done, *dur, "s1");
    }
    let detected = now.format("%Y-%m-%d %H:%M:%S").to_string();
    fixture::insert_anomaly(&conn, "mypy", &detected, "drop", Some(-2.5)).expect("anomaly");
    db
}

/// A timestamp `secs_ago` seconds before now, in the given chrono format
/// (UTC), e.g. `"%Y-%m-%dT%H:%M:%SZ"`.
pub fn ts_ago(secs_ago: i64, fmt: &str) -> String {
    (chrono::Utc::now() - chrono::Duration::seconds(secs_ago))
        .format(fmt)
        .to_string()
}

/// Now, as session-buddy writes it (`...+00:00`).
pub fn now_iso() -> String {
    skillmon::protocol::now_timestamp()
}

/// Insert one invocation the way session-buddy does (the trigger keeps
/// `skill_metrics`).
fn insert(
    conn: &Connection,
    skill: &str,
    at: &str,
    completed: bool,
    duration: Option<f64>,
    session: &str,
) {
    fixture::insert_invocation(
        conn,
        &Invocation {
            skill_name: skill,
            invoked_at: at,
            completed,
            duration_seconds: duration,
            session_id: session,
        },
    )
    .expect("insert invocation");
}

/// Insert one invocation of `skill`, now.
pub fn invoke(conn: &Connection, skill: &str, completed: bool, duration: Option<f64>) {
    insert(conn, skill, &now_iso(), completed, duration, "test-session");
}

/// Insert `total` invocations of `skill`, the first `completed` of them
/// completed with a duration of 2 s, in one transaction.
pub fn invoke_n(conn: &Connection, skill: &str, total: usize, completed: usize) {
    conn.execute_batch("BEGIN").expect("begin");
    for i in 0..total {
        let done = i < completed;
        invoke(conn, skill, done, done.then_some(2.0));
    }
    conn.execute_batch("COMMIT").expect("commit");
}

/// The standard data set: `gamma` 5 invocations all completed (1..5 s),
/// `alpha` 3 with 2 completed (2 s, 4 s), `beta` 3 none completed, `delta` 3
/// with 1 completed (1.5 s), and a `zero` row in `skill_metrics` with no
/// invocations (must never be served). Ranked: gamma, alpha, beta, delta.
pub fn seed_basic(conn: &Connection) {
    conn.execute_batch("BEGIN").expect("begin");
    for d in [1.0, 2.0, 3.0, 4.0, 5.0] {
        invoke(conn, "gamma", true, Some(d));
    }
    invoke(conn, "alpha", true, Some(2.0));
    invoke(conn, "alpha", false, None);
    invoke(conn, "alpha", true, Some(4.0));
    for _ in 0..3 {
        invoke(conn, "beta", false, Some(9.0));
    }
    invoke(conn, "delta", false, None);
    invoke(conn, "delta", true, Some(1.5));
    invoke(conn, "delta", false, None);
    conn.execute(
        "INSERT INTO skill_metrics (skill_name, total_invocations) VALUES ('zero', 0)",
        [],
    )
    .expect("insert zero row");
    conn.execute_batch("COMMIT").expect("commit");
}

/// Every ranked row of `skill_metrics` (total > 0, total desc then name) as
/// (name, total, completion %, avg duration), read with a separate connection.
pub fn db_metrics(path: &Path) -> Vec<(String, u64, f64, Option<f64>)> {
    let conn = Connection::open(path).expect("open db for expectations");
    let mut stmt = conn
        .prepare(
            "SELECT skill_name, total_invocations, completion_rate, avg_duration_seconds
               FROM skill_metrics WHERE total_invocations > 0
              ORDER BY total_invocations DESC, skill_name ASC",
        )
        .expect("prepare");
    stmt.query_map([], |r| {
        Ok((r.get(0)?, r.get::<_, i64>(1)? as u64, r.get(2)?, r.get(3)?))
    })
    .expect("query")
    .collect::<Result<_, _>>()
    .expect("rows")
}

/// The expected `top_skills` of an update: the first `top` rows of
/// [`db_metrics`] with the compat fields, as the wire carries them.
pub fn expected_top(path: &Path, top: usize) -> Value {
    db_metrics(path)
        .into_iter()
        .take(top)
        .map(|(name, total, rate, avg)| {
            serde_json::json!({
                "skill_name": name,
                "total_invocations": total,
                "completion_rate": rate,
                "avg_duration_seconds": avg,
            })
        })
        .collect()
}

/// The bytes of a file (empty when missing).
pub fn file_bytes(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap_or_default()
}

/// Sorted names of the files in a directory.
pub fn dir_listing(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .expect("read dir")
        .map(|e| {
            e.expect("dir entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    v.sort();
    v
}
