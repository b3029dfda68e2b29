//! Read-only access to a session-buddy skills database.
//!
//! Owns the SQLite connection, change detection and the queries that turn
//! the database into a [`Snapshot`]. It never writes the user's database:
//! the connection is opened with `mode=ro` and only runs `SELECT`s (inside
//! `BEGIN DEFERRED … COMMIT` read transactions) and the read-only
//! `PRAGMA data_version`. A tick where nothing changed costs one `stat` and
//! that pragma, no queries; while the database is in the error state each
//! tick retries the read.
//!
//! Calls block (SQLite is synchronous); the server runs them on a blocking
//! thread, never on the async runtime.
//!
//! States the database can be in ([`DbState`]) are reported once per change
//! in the log; the server keeps serving: the last good snapshot while the
//! database is locked or unreadable, an empty one while it is missing or has
//! no tables, and it recovers by itself when the database comes back.

mod activity;
pub mod anomaly;
pub mod fixture;
pub mod history;
mod query;
mod snapshot;

pub use query::open_read_only;
pub use snapshot::{Snapshot, TimedAnomaly, merge_anomalies};

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rusqlite::Connection;

use crate::protocol::{Anomaly, format_timestamp};
use activity::Activity;
use anomaly::Kind;
use history::AnomalyLog;
use query::{Base, classify, load};

/// Which anomalies are served. Named in lowercase (`off`, `table`, `live`,
/// `both`) by `Display` / `FromStr`; each variant's doc line is its help text.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Default,
    strum::Display,
    strum::EnumString,
    strum::IntoStaticStr,
    strum::EnumIter,
    strum::EnumMessage,
)]
#[strum(serialize_all = "lowercase")]
pub enum AnomalySource {
    /// None.
    Off,
    /// Rows of `skill_anomalies` (unresolved, last hour).
    Table,
    /// Computed live from `skill_invocation`.
    Live,
    /// Both, merged and de-duplicated.
    #[default]
    Both,
}

impl AnomalySource {
    fn table(self) -> bool {
        matches!(self, Self::Table | Self::Both)
    }
    fn live(self) -> bool {
        matches!(self, Self::Live | Self::Both)
    }
}

/// How the store computes what it serves.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StoreOptions {
    pub anomalies: AnomalySource,
    /// |z| at which a live anomaly is reported.
    pub threshold: f64,
}

impl Default for StoreOptions {
    fn default() -> Self {
        Self {
            anomalies: AnomalySource::Both,
            threshold: anomaly::DEFAULT_THRESHOLD,
        }
    }
}

/// What the database looks like from here.
#[derive(Debug, Clone, PartialEq, Eq, strum::IntoStaticStr, strum::VariantNames)]
#[strum(serialize_all = "snake_case")]
pub enum DbState {
    /// Not read yet.
    Starting,
    /// Read successfully.
    Ok,
    /// No file at the path (not created yet, or deleted).
    Missing,
    /// A file, but without session-buddy's tables (empty, or another database).
    NoTables,
    /// A writer holds a lock longer than the busy timeout.
    Locked,
    /// Anything else, e.g. not a SQLite file, or a schema mid-migration.
    Error(String),
}

impl DbState {
    /// Short machine-friendly name (health endpoint, metrics label).
    pub fn as_str(&self) -> &'static str {
        self.into()
    }

    /// One human line for the log and the health endpoint; `has_data` says
    /// whether a last good snapshot is still being served.
    pub fn describe(&self, path: &Path, has_data: bool) -> String {
        let serving = if has_data {
            "serving the last good snapshot"
        } else {
            "serving empty updates until it can be read"
        };
        let p = path.display();
        match self {
            DbState::Starting => format!("database {p}: not read yet"),
            DbState::Ok => format!("database {p}: reading"),
            DbState::Missing => format!(
                "database {p}: no such file; serving empty updates until it appears (check --db / SKILLMON_DB)"
            ),
            DbState::NoTables => format!(
                "database {p}: no session-buddy tables (skill_metrics); serving empty updates until they appear"
            ),
            DbState::Locked => format!("database {p}: locked by a writer; {serving}"),
            DbState::Error(e) => format!("database {p}: {e}; {serving}"),
        }
    }
}

/// The database's state as the server reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DbStatus {
    pub state: DbState,
    /// Whether the served snapshot comes from a good read (false: empty).
    pub has_data: bool,
    /// One human line (log, `/healthz`).
    pub detail: String,
}

impl DbStatus {
    /// Healthy: reading, or locked while a last good snapshot is served.
    pub fn healthy(&self) -> bool {
        self.state == DbState::Ok || (self.state == DbState::Locked && self.has_data)
    }
}

/// Identity of the file behind the path, to notice it being replaced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FileId {
    #[cfg(unix)]
    dev: u64,
    #[cfg(unix)]
    ino: u64,
    #[cfg(not(unix))]
    created: Option<std::time::SystemTime>,
}

impl FileId {
    fn of(meta: &std::fs::Metadata) -> Self {
        #[cfg(unix)]
        {
            use std::os::unix::fs::MetadataExt;
            FileId {
                dev: meta.dev(),
                ino: meta.ino(),
            }
        }
        #[cfg(not(unix))]
        {
            FileId {
                created: meta.created().ok(),
            }
        }
    }
}

/// The outcome of one [`Store::refresh`].
#[derive(Debug, Clone)]
pub struct Refresh {
    pub snapshot: Arc<Snapshot>,
    /// Whether this refresh ran queries (false when nothing changed).
    pub queried: bool,
}

/// The read-only view of one skills database.
pub struct Store {
    path: PathBuf,
    options: StoreOptions,
    conn: Option<Connection>,
    file_id: Option<FileId>,
    data_version: Option<i64>,
    state: DbState,
    snapshot: Arc<Snapshot>,
    /// Whether `snapshot` comes from a good read (not emptied since).
    has_data: bool,
    queries_run: u64,
    base: Base,
    activity: Activity,
    /// When each live finding was first seen: its `detected_at`.
    first_seen: HashMap<(String, Kind), f64>,
    /// When windows next change without new data (a sample ages out).
    next_expiry: Option<f64>,
    /// Every anomaly served in the last day (for `history`).
    anomaly_log: Arc<AnomalyLog>,
}

impl Store {
    /// A store for `path` with default options; nothing is opened until the
    /// first refresh.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self::with_options(path, StoreOptions::default())
    }

    pub fn with_options(path: impl Into<PathBuf>, options: StoreOptions) -> Self {
        Self {
            path: path.into(),
            options,
            conn: None,
            file_id: None,
            data_version: None,
            state: DbState::Starting,
            snapshot: Arc::new(Snapshot::empty()),
            has_data: false,
            queries_run: 0,
            base: Base::default(),
            activity: Activity::default(),
            first_seen: HashMap::new(),
            next_expiry: None,
            anomaly_log: Arc::default(),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn state(&self) -> &DbState {
        &self.state
    }

    /// State, whether data is being served, and the line describing both.
    pub fn status(&self) -> DbStatus {
        DbStatus {
            state: self.state.clone(),
            has_data: self.has_data,
            detail: self.state.describe(&self.path, self.has_data),
        }
    }

    /// How many refreshes ran queries so far.
    pub fn queries_run(&self) -> u64 {
        self.queries_run
    }

    /// Invocations of the last day held in memory for windows and live rules.
    pub fn window_samples(&self) -> usize {
        self.activity.len()
    }

    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.snapshot.clone()
    }

    /// Bring the snapshot up to date, cheaply when nothing changed.
    pub fn refresh(&mut self) -> Refresh {
        self.refresh_at(unix_now())
    }

    /// [`Store::refresh`] with an explicit clock (Unix seconds), for tests
    /// and benchmarks.
    pub fn refresh_at(&mut self, now: f64) -> Refresh {
        let (state, queried) = self.try_refresh(now);
        self.set_state(state);
        let windows_moved = self.next_expiry.is_some_and(|t| now >= t);
        if self.state == DbState::Ok && (queried || windows_moved) {
            self.rebuild(now);
        }
        Refresh {
            snapshot: self.snapshot.clone(),
            queried,
        }
    }

    /// Turn the last read plus the in-memory day of invocations into a
    /// snapshot at `now`: windows, live findings, merged anomalies.
    fn rebuild(&mut self, now: f64) {
        self.activity.evict(now);
        let mut skills = self.base.skills.clone();
        if self.base.has_invocations {
            for s in &mut skills {
                let w = anomaly::windows(self.activity.samples(&s.skill_name), now);
                s.invocations_1h = Some(w.last_hour);
                s.invocations_24h = Some(w.last_day);
            }
        }
        let table = if self.options.anomalies.table() {
            self.base.table_anomalies.clone()
        } else {
            Vec::new()
        };
        let mut anomalies = Vec::new();
        let mut seen = HashMap::new();
        if self.options.anomalies.live() {
            for (skill, samples) in self.activity.skills() {
                for f in anomaly::detect(samples, now, self.options.threshold) {
                    let key = (skill.clone(), f.kind);
                    let at = self.first_seen.get(&key).copied().unwrap_or(now);
                    seen.insert(key, at);
                    anomalies.push(TimedAnomaly {
                        at,
                        expires: f64::INFINITY,
                        anomaly: Anomaly {
                            skill_name: skill.clone(),
                            detected_at: chrono::DateTime::from_timestamp_millis(
                                (at * 1000.0) as i64,
                            )
                            .map(format_timestamp)
                            .unwrap_or_default(),
                            anomaly_type: f.kind.as_str().into(),
                            deviation_score: Some(round3(f.z)),
                            baseline_value: Some(round3(f.baseline)),
                            observed_value: Some(round3(f.observed)),
                            source: Some("live".into()),
                        },
                    });
                }
            }
        }
        self.first_seen = seen;
        self.next_expiry = self
            .activity
            .skills()
            .filter_map(|(_, v)| anomaly::next_expiry(v, now))
            .min_by(f64::total_cmp);
        let merged = merge_anomalies(table, anomalies);
        AnomalyLog::record(&mut self.anomaly_log, &merged, now);
        self.snapshot = Arc::new(
            Snapshot::new(skills, merged)
                .with_minutes(self.activity.minutes().clone())
                .with_anomaly_log(self.anomaly_log.clone()),
        );
    }

    fn set_state(&mut self, state: DbState) {
        if state != self.state {
            let line = state.describe(&self.path, self.has_data);
            if state == DbState::Ok {
                tracing::info!("{line}");
            } else {
                tracing::warn!("{line}");
            }
            self.state = state;
        }
    }

    fn close(&mut self) {
        self.conn = None;
        self.file_id = None;
        self.data_version = None;
        self.activity.reset();
    }

    fn go_empty(&mut self) {
        self.has_data = false;
        self.base = Base::default();
        self.activity.reset();
        self.first_seen.clear();
        self.next_expiry = None;
        self.anomaly_log = Arc::default();
        if !self.snapshot.is_empty() {
            self.snapshot = Arc::new(Snapshot::empty());
        }
    }

    fn try_refresh(&mut self, now: f64) -> (DbState, bool) {
        let meta = match std::fs::metadata(&self.path) {
            Ok(m) if m.is_file() => m,
            Ok(_) => {
                self.close();
                self.go_empty();
                return (DbState::Error("not a regular file".into()), false);
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                self.close();
                self.go_empty();
                return (DbState::Missing, false);
            }
            Err(e) => {
                self.close();
                return (DbState::Error(format!("cannot stat: {e}")), false);
            }
        };
        let id = FileId::of(&meta);
        if self.conn.is_some() && self.file_id != Some(id) {
            tracing::info!(
                "database {}: file was replaced; reopening",
                self.path.display()
            );
            self.close();
        }
        if self.conn.is_none() {
            match open_read_only(&self.path) {
                Ok(c) => {
                    self.conn = Some(c);
                    self.file_id = Some(id);
                }
                Err(e) => return (classify(&e), false),
            }
        }
        let Some(conn) = self.conn.as_ref() else {
            return (DbState::Error("no connection".into()), false);
        };
        let version: i64 = match conn.query_row("PRAGMA data_version", [], |r| r.get(0)) {
            Ok(v) => v,
            Err(e) => {
                let st = classify(&e);
                if !matches!(st, DbState::Locked) {
                    self.close();
                }
                return (st, false);
            }
        };
        if self.data_version == Some(version)
            && matches!(self.state, DbState::Ok | DbState::NoTables)
        {
            return (self.state.clone(), false);
        }
        self.queries_run += 1;
        let want_table = self.options.anomalies.table();
        match load(conn, &mut self.activity, now, want_table) {
            Ok(Some(base)) => {
                self.has_data = true;
                self.base = base;
                self.data_version = Some(version);
                (DbState::Ok, true)
            }
            Ok(None) => {
                self.data_version = Some(version);
                self.go_empty();
                (DbState::NoTables, true)
            }
            Err(e) => {
                let st = classify(&e);
                if matches!(st, DbState::NoTables) {
                    self.go_empty();
                }
                // Re-read next tick whatever data_version says.
                self.data_version = None;
                (st, true)
            }
        }
    }
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// Now as Unix seconds.
pub fn unix_now() -> f64 {
    chrono::Utc::now().timestamp_micros() as f64 / 1e6
}
