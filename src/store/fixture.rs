//! Building and writing session-buddy-compatible databases for the demo,
//! the benchmarks and the tests. Never used on a user's database: the server
//! only reads through [`super::open_read_only`] (in `store::query`).

use std::path::Path;

use rusqlite::{Connection, params};

/// The session-buddy-compatible schema (tables, indexes, trigger).
pub const SCHEMA_SQL: &str = include_str!("../../assets/schema.sql");

/// Create (or open) a writable database at `path` with the schema applied.
pub fn create_db(path: &Path) -> rusqlite::Result<Connection> {
    let conn = Connection::open(path)?;
    conn.execute_batch(SCHEMA_SQL)?;
    Ok(conn)
}

/// One use of a skill, inserted the way session-buddy's writer does, so the
/// trigger keeps `skill_metrics` up to date.
#[derive(Debug, Clone)]
pub struct Invocation<'a> {
    pub skill_name: &'a str,
    pub invoked_at: &'a str,
    pub completed: bool,
    pub duration_seconds: Option<f64>,
    pub session_id: &'a str,
}

pub fn insert_invocation(conn: &Connection, inv: &Invocation<'_>) -> rusqlite::Result<()> {
    conn.execute(
        "INSERT INTO skill_invocation (skill_name, invoked_at, session_id, completed, duration_seconds)
         VALUES (?1, ?2, ?3, ?4, ?5)",
        params![
            inv.skill_name,
            inv.invoked_at,
            inv.session_id,
            inv.completed,
            inv.duration_seconds
        ],
    )?;
    Ok(())
}

/// A row of `skill_anomalies` as an outside detector would write it.
pub fn insert_anomaly(
    conn: &Connection,
    skill_name: &str,
    detected_at: &str,
    anomaly_type: &str,
    deviation_score: Option<f64>,
) -> rusqlite::Result<()> {
    conn.execute(
        "INSERT INTO skill_anomalies (skill_name, detected_at, anomaly_type, deviation_score)
         VALUES (?1, ?2, ?3, ?4)",
        params![skill_name, detected_at, anomaly_type, deviation_score],
    )?;
    Ok(())
}
