//! The SQL side of the store: opening the database read-only, classifying
//! SQLite errors into [`DbState`]s, and the one read transaction that loads
//! the skills, the unresolved anomaly rows and the new invocations.
//!
//! Only `SELECT`s and read-only pragmas run here; nothing in this module
//! writes, and nothing outside the store calls it except [`open_read_only`].

use std::path::Path;
use std::time::Duration;

use rusqlite::{Connection, OpenFlags, OptionalExtension};

use super::activity::Activity;
use super::{DbState, TimedAnomaly, snapshot};
use crate::protocol::{Anomaly, SkillStat};

/// Most recent-anomaly rows held in memory (the query is bounded by this).
const MAX_ANOMALY_ROWS: usize = 10_000;
/// Most skills held in memory.
const MAX_SKILL_ROWS: usize = 100_000;
/// How long a read waits on a writer's lock before the tick reports `Locked`.
const BUSY_TIMEOUT: Duration = Duration::from_millis(250);

/// What the last read of the tables said, before time windows are applied.
#[derive(Debug, Default)]
pub(super) struct Base {
    pub(super) skills: Vec<SkillStat>,
    pub(super) table_anomalies: Vec<TimedAnomaly>,
    /// Whether `skill_invocation` exists (windows and live rules need it).
    pub(super) has_invocations: bool,
}

/// Open `path` read-only: SQLite's `mode=ro` URI plus the READ_ONLY flag, so
/// no statement on this connection can ever write the file.
pub fn open_read_only(path: &Path) -> rusqlite::Result<Connection> {
    let uri = format!("file:{}?mode=ro", uri_escape(&path.to_string_lossy()));
    let conn = Connection::open_with_flags(
        uri,
        OpenFlags::SQLITE_OPEN_READ_ONLY
            | OpenFlags::SQLITE_OPEN_URI
            | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    Ok(conn)
}

/// Escape the characters SQLite's URI parser treats specially in a path.
fn uri_escape(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for c in path.chars() {
        match c {
            '%' => out.push_str("%25"),
            '?' => out.push_str("%3f"),
            '#' => out.push_str("%23"),
            _ => out.push(c),
        }
    }
    out
}

pub(super) fn classify(e: &rusqlite::Error) -> DbState {
    use rusqlite::ErrorCode as C;
    match e {
        rusqlite::Error::SqliteFailure(f, msg) => match f.code {
            C::DatabaseBusy | C::DatabaseLocked => DbState::Locked,
            C::NotADatabase => DbState::Error("not a SQLite database".into()),
            C::CannotOpen => DbState::Error(format!(
                "cannot open ({})",
                msg.as_deref()
                    .unwrap_or("permission denied or a missing -wal/-shm file")
            )),
            _ => {
                let m = msg.clone().unwrap_or_else(|| f.to_string());
                if m.contains("no such table: skill_metrics") {
                    DbState::NoTables
                } else {
                    DbState::Error(m)
                }
            }
        },
        other => DbState::Error(other.to_string()),
    }
}

fn table_exists(conn: &Connection, name: &str) -> rusqlite::Result<bool> {
    conn.query_row(
        "SELECT 1 FROM sqlite_master WHERE type IN ('table','view') AND name = ?1",
        [name],
        |_| Ok(()),
    )
    .optional()
    .map(|o| o.is_some())
}

/// Read everything a snapshot needs in one read transaction, so the skills,
/// the anomalies and the new invocations come from the same moment. `None`
/// when the database has no session-buddy tables.
pub(super) fn load(
    conn: &Connection,
    activity: &mut Activity,
    now: f64,
    table_anomalies: bool,
) -> rusqlite::Result<Option<Base>> {
    // A deferred transaction that only reads takes a shared lock, never a
    // write lock, and writes nothing.
    conn.execute_batch("BEGIN DEFERRED")?;
    let result = load_in_tx(conn, activity, now, table_anomalies);
    // Ending a read transaction cannot lose anything; ignore a failure to end
    // one that never started.
    let _ = conn.execute_batch("COMMIT");
    result
}

fn load_in_tx(
    conn: &Connection,
    activity: &mut Activity,
    now: f64,
    table_anomalies: bool,
) -> rusqlite::Result<Option<Base>> {
    if !table_exists(conn, "skill_metrics")? {
        return Ok(None);
    }
    let skills = match load_skills(conn, true) {
        // An older schema without last_invoked: serve without it.
        Err(rusqlite::Error::SqliteFailure(_, Some(m)))
            if m.contains("no such column: last_invoked") =>
        {
            load_skills(conn, false)?
        }
        other => other?,
    };
    let mut anomalies = Vec::new();
    if table_anomalies && table_exists(conn, "skill_anomalies")? {
        // Compare real instants (SQLite parses `T` or space, `Z` or an
        // offset, with or without fraction), not text as session-buddy does.
        let mut stmt = conn.prepare_cached(
            "SELECT skill_name, CAST(detected_at AS TEXT), anomaly_type,
                    CAST(deviation_score AS REAL), CAST(baseline_value AS REAL),
                    CAST(observed_value AS REAL),
                    unixepoch(detected_at, 'subsec') AS t
               FROM skill_anomalies
              WHERE (resolved_at IS NULL OR resolved_at = '')
                AND typeof(skill_name) = 'text' AND typeof(anomaly_type) = 'text'
                AND unixepoch(detected_at, 'subsec') >= ?1
              ORDER BY t DESC, id DESC
              LIMIT ?2",
        )?;
        let rows = stmt.query_map(
            rusqlite::params![now - snapshot::ANOMALY_WINDOW_SECS, MAX_ANOMALY_ROWS as i64],
            |r| {
                Ok(TimedAnomaly::from_table(
                    r.get(6)?,
                    Anomaly {
                        skill_name: r.get(0)?,
                        detected_at: r.get::<_, Option<String>>(1)?.unwrap_or_default(),
                        anomaly_type: r.get(2)?,
                        deviation_score: r.get(3)?,
                        baseline_value: r.get(4)?,
                        observed_value: r.get(5)?,
                        source: Some("table".into()),
                    },
                ))
            },
        )?;
        for row in rows {
            anomalies.push(row?);
        }
    }
    let has_invocations = table_exists(conn, "skill_invocation")?;
    if has_invocations {
        activity.load(conn, now)?;
    } else {
        activity.reset();
    }
    Ok(Some(Base {
        skills,
        table_anomalies: anomalies,
        has_invocations,
    }))
}

fn load_skills(conn: &Connection, with_last: bool) -> rusqlite::Result<Vec<SkillStat>> {
    let last = if with_last { "last_invoked" } else { "NULL" };
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT skill_name,
                CAST(total_invocations AS INTEGER),
                CAST(completion_rate AS REAL),
                CAST(avg_duration_seconds AS REAL),
                {last}
           FROM skill_metrics
          WHERE total_invocations > 0 AND typeof(skill_name) = 'text'
          ORDER BY total_invocations DESC, skill_name ASC
          LIMIT ?1"
    ))?;
    let rows = stmt.query_map([MAX_SKILL_ROWS as i64], |r| {
        Ok(SkillStat {
            skill_name: r.get(0)?,
            total_invocations: r.get::<_, i64>(1)?.max(0) as u64,
            completion_rate: r.get::<_, Option<f64>>(2)?.unwrap_or(0.0),
            avg_duration_seconds: r.get(3)?,
            invocations_1h: None,
            invocations_24h: None,
            last_invoked_at: r.get::<_, Option<String>>(4)?,
        })
    })?;
    rows.collect()
}
