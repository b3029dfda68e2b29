//! `skillmon demo`: generated live data for anyone without a database yet,
//! and the benchmark generator.
//!
//! Owns the synthetic activity: a session-buddy-compatible database built
//! from `assets/schema.sql` in a directory it created itself, 24 hours of
//! back-filled history, and a writer thread that keeps inserting
//! invocations (the schema's trigger does the bookkeeping, as with the real
//! writer) along a repeating timeline of incidents. It never touches a file
//! it did not create: `--keep-db` and `--generate` refuse an existing path.

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use chrono::{DateTime, Utc};
use rusqlite::Connection;

use crate::store::fixture;

/// One synthetic skill: popularity, how often it completes, how long it takes.
#[derive(Debug, Clone, Copy)]
pub struct Profile {
    pub name: &'static str,
    pub weight: f64,
    pub completion: f64,
    pub duration: f64,
}

const fn p(name: &'static str, weight: f64, completion: f64, duration: f64) -> Profile {
    Profile {
        name,
        weight,
        completion,
        duration,
    }
}

/// The dozen skills of the demo.
pub const SKILLS: [Profile; 12] = [
    p("pytest-run", 30.0, 0.93, 6.3),
    p("ruff-check", 25.0, 0.98, 0.8),
    p("mypy", 18.0, 0.88, 12.0),
    p("git-commit", 15.0, 0.97, 1.5),
    p("code-review", 10.0, 0.85, 45.0),
    p("crackerjack-lint", 8.0, 0.92, 3.0),
    p("refactor-extract", 6.0, 0.75, 20.0),
    p("docs-write", 5.0, 0.90, 30.0),
    p("dependency-audit", 4.0, 0.95, 8.0),
    p("docker-build", 4.0, 0.90, 90.0),
    p("bench-run", 3.0, 0.80, 60.0),
    p("sql-migrate", 2.0, 0.70, 15.0),
];

/// The skill that appears during the demo.
pub const NEW_SKILL: Profile = p("semgrep-scan", 9.0, 0.9, 4.0);

/// Length of the incident timeline; it repeats.
pub const CYCLE_SECS: f64 = 240.0;
/// The new skill's first invocation, seconds after start.
pub const NEW_SKILL_AT: f64 = 40.0;
/// Mean time between live invocations.
const MEAN_GAP_SECS: f64 = 0.3;
/// Back-filled invocations per hour of history.
const BACKFILL_PER_HOUR: usize = 140;

/// What the timeline does to a skill at `elapsed` seconds into the demo:
/// (completion probability, duration factor), or None while it is silent.
pub fn conditions(skill: &Profile, elapsed: f64) -> Option<(f64, f64)> {
    let e = elapsed % CYCLE_SECS;
    if (190.0..220.0).contains(&e) {
        return None; // a quiet period: nobody uses any skill
    }
    if skill.name == NEW_SKILL.name && elapsed < NEW_SKILL_AT {
        return None;
    }
    let mut completion = skill.completion;
    let mut factor = 1.0;
    if skill.name == "pytest-run" && (20.0..90.0).contains(&e) {
        factor = 4.0; // a duration spike
    }
    if skill.name == "ruff-check" && (60.0..150.0).contains(&e) {
        completion = 0.2; // completion collapses
    }
    Some((completion, factor))
}

/// ISO forms real writers use, cycled so every reader path is exercised.
fn format_invoked_at(t: DateTime<Utc>, form: u64) -> String {
    match form % 3 {
        0 => t.to_rfc3339_opts(chrono::SecondsFormat::Micros, false), // Python isoformat
        1 => t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),  // ...Z
        _ => t.format("%Y-%m-%d %H:%M:%S").to_string(),               // SQLite datetime()
    }
}

fn normal(rng: &mut fastrand::Rng) -> f64 {
    // Box-Muller.
    let u1 = rng.f64().max(1e-12);
    let u2 = rng.f64();
    (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
}

fn pick<'a>(rng: &mut fastrand::Rng, skills: &'a [Profile]) -> &'a Profile {
    let total: f64 = skills.iter().map(|s| s.weight).sum();
    let mut x = rng.f64() * total;
    for s in skills {
        if x < s.weight {
            return s;
        }
        x -= s.weight;
    }
    &skills[skills.len() - 1]
}

fn insert(
    conn: &Connection,
    rng: &mut fastrand::Rng,
    skill: &Profile,
    at: DateTime<Utc>,
    completion: f64,
    factor: f64,
    n: u64,
) -> rusqlite::Result<()> {
    let completed = rng.f64() < completion;
    let duration = skill.duration * factor * (0.35 * normal(rng)).exp();
    let invoked_at = format_invoked_at(at, n);
    let session = format!("demo-{:04}", n / 25);
    fixture::insert_invocation(
        conn,
        &fixture::Invocation {
            skill_name: skill.name,
            invoked_at: &invoked_at,
            completed,
            duration_seconds: completed.then_some((duration * 100.0).round() / 100.0),
            session_id: &session,
        },
    )
}

/// Create the demo database at `path` with 24 h of history ending `now`:
/// steady usage, plus `mypy` failing through the last hour so a live
/// anomaly shows at once, and one row in `skill_anomalies` as an outside
/// detector would write it. Returns the invocations written.
pub fn create_demo_db(path: &Path, now: DateTime<Utc>, seed: u64) -> anyhow::Result<usize> {
    let mut conn = fixture::create_db(path)
        .with_context(|| format!("cannot create the demo database {}", path.display()))?;
    // WAL so the server reads while the writer writes, like a live session-buddy.
    conn.pragma_update(None, "journal_mode", "WAL")?;
    let mut rng = fastrand::Rng::with_seed(seed);
    let tx = conn.transaction()?;
    let n = 24 * BACKFILL_PER_HOUR;
    // Oldest first, as a real writer appends them.
    let mut agos: Vec<f64> = (0..n).map(|_| rng.f64() * 86_400.0).collect();
    agos.sort_by(|a, b| b.total_cmp(a));
    for (i, ago) in agos.into_iter().enumerate() {
        let at = now - chrono::Duration::milliseconds((ago * 1000.0) as i64);
        let skill = pick(&mut rng, &SKILLS);
        let completion = if skill.name == "mypy" && ago < 3600.0 {
            0.0
        } else {
            skill.completion
        };
        insert(&tx, &mut rng, skill, at, completion, 1.0, i as u64)?;
    }
    let detected = (now - chrono::Duration::minutes(12)).format("%Y-%m-%d %H:%M:%S");
    fixture::insert_anomaly(
        &tx,
        "crackerjack-lint",
        &detected.to_string(),
        "pattern_shift",
        Some(2.4),
    )?;
    tx.commit()?;
    Ok(n)
}

/// The thread that keeps writing invocations along the timeline.
pub struct Writer {
    stop: mpsc::Sender<()>,
    handle: JoinHandle<u64>,
}

impl Writer {
    /// Start writing into the database at `path` (created by [`create_demo_db`]).
    pub fn start(path: PathBuf, seed: u64) -> anyhow::Result<Self> {
        let conn = Connection::open(&path)
            .with_context(|| format!("cannot open the demo database {}", path.display()))?;
        conn.busy_timeout(Duration::from_secs(2))?;
        let (stop, stopped) = mpsc::channel::<()>();
        let handle = std::thread::Builder::new()
            .name("demo-writer".into())
            .spawn(move || write_loop(conn, stopped, seed))?;
        Ok(Self { stop, handle })
    }

    /// Stop and return how many invocations were written.
    pub fn stop(self) -> u64 {
        let _ = self.stop.send(());
        self.handle.join().unwrap_or(0)
    }
}

fn write_loop(conn: Connection, stopped: mpsc::Receiver<()>, seed: u64) -> u64 {
    let mut rng = fastrand::Rng::with_seed(seed ^ 0x5eed);
    let started = Instant::now();
    let mut all = SKILLS.to_vec();
    all.push(NEW_SKILL);
    let mut written = 0u64;
    let mut failing = false;
    loop {
        let gap = -MEAN_GAP_SECS * rng.f64().max(1e-9).ln();
        match stopped.recv_timeout(Duration::from_secs_f64(gap.min(3.0))) {
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            _ => return written,
        }
        let elapsed = started.elapsed().as_secs_f64();
        let skill = pick(&mut rng, &all);
        let Some((completion, factor)) = conditions(skill, elapsed) else {
            continue;
        };
        let res = insert(
            &conn,
            &mut rng,
            skill,
            Utc::now(),
            completion,
            factor,
            written,
        );
        match res {
            Ok(()) => {
                written += 1;
                if failing {
                    tracing::info!("demo writer: writing again");
                    failing = false;
                }
            }
            Err(e) => {
                if !failing {
                    tracing::warn!("demo writer: cannot insert ({e}); retrying");
                    failing = true;
                }
            }
        }
    }
}

/// What [`generate`] did.
#[derive(Debug, Clone)]
pub struct Generated {
    pub invocations: u64,
    pub skills: usize,
    pub seconds: f64,
}

/// Write a benchmark database: `invocations` rows across `skills` skills
/// (Zipf-like popularity) spread evenly over the last `days` days.
pub fn generate(
    path: &Path,
    invocations: u64,
    skills: usize,
    days: f64,
    seed: u64,
) -> anyhow::Result<Generated> {
    if path.exists() {
        anyhow::bail!(
            "{} already exists; --generate only writes new files (choose another path or delete it)",
            path.display()
        );
    }
    if skills == 0 || !(days > 0.0 && days <= 3650.0) {
        anyhow::bail!("--skills must be positive and --days between 0 and 3650");
    }
    let started = Instant::now();
    let mut conn =
        fixture::create_db(path).with_context(|| format!("cannot create {}", path.display()))?;
    // Our own new file: fast bulk load, then WAL like a live writer's.
    conn.pragma_update(None, "journal_mode", "MEMORY")?;
    conn.pragma_update(None, "synchronous", "OFF")?;
    conn.pragma_update(None, "cache_size", -262_144)?;
    let mut rng = fastrand::Rng::with_seed(seed);
    let names: Vec<String> = (0..skills).map(|i| format!("skill-{i:04}")).collect();
    let profiles: Vec<Profile> = (0..skills)
        .map(|i| Profile {
            name: "",
            weight: 1.0 / ((i + 1) as f64).powf(0.8),
            completion: 0.6 + 0.39 * rng.f64(),
            duration: 0.5 + 60.0 * rng.f64(),
        })
        .collect();
    let total: f64 = profiles.iter().map(|p| p.weight).sum();
    let cumulative: Vec<f64> = profiles
        .iter()
        .scan(0.0, |acc, p| {
            *acc += p.weight / total;
            Some(*acc)
        })
        .collect();
    let now = Utc::now();
    let span_ms = ((days * 86_400_000.0) as i64).max(1);
    let tx = conn.transaction()?;
    {
        let mut stmt = tx.prepare(
            "INSERT INTO skill_invocation (skill_name, invoked_at, session_id, completed, duration_seconds)
             VALUES (?1, ?2, ?3, ?4, ?5)",
        )?;
        // Oldest first, as a real writer appends them.
        let mut offsets: Vec<i64> = (0..invocations).map(|_| rng.i64(0..span_ms)).collect();
        offsets.sort_unstable_by(|a, b| b.cmp(a));
        for (n, ago_ms) in (0u64..).zip(offsets) {
            let x = rng.f64();
            let i = cumulative.partition_point(|&c| c < x).min(skills - 1);
            let prof = &profiles[i];
            let at = now - chrono::Duration::milliseconds(ago_ms);
            let completed = rng.f64() < prof.completion;
            let duration = completed.then(|| prof.duration * (0.35 * normal(&mut rng)).exp());
            stmt.execute(rusqlite::params![
                names[i],
                format_invoked_at(at, n),
                format!("gen-{}", n / 50),
                completed,
                duration
            ])?;
        }
    }
    tx.commit()?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    Ok(Generated {
        invocations,
        skills,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// `skillmon demo`'s settings (the binary builds them from its flags).
#[derive(Debug, Clone, PartialEq)]
pub struct DemoConfig {
    /// Run only the demo server (for other clients), no dashboard.
    pub serve_only: bool,
    /// Address the demo server listens on.
    pub host: String,
    /// Port of the demo server [default: 8765 with `serve_only`, else a free one].
    pub port: Option<u16>,
    /// Keep the demo database at this new path instead of a temporary one.
    pub keep_db: Option<PathBuf>,
    /// One JSON line per update instead of the dashboard.
    pub json: bool,
    /// Time between updates.
    pub interval: Duration,
    /// Write a benchmark database here and exit (see [`Generate`]).
    pub generate: Option<Generate>,
    /// Seed of the generated activity (reproducible runs); `None` = the clock.
    pub seed: Option<u64>,
}

/// What `--generate` writes: a benchmark database of `invocations` rows
/// across `skills` skills spread over `days` days.
#[derive(Debug, Clone, PartialEq)]
pub struct Generate {
    pub path: PathBuf,
    pub invocations: u64,
    pub skills: usize,
    pub days: f64,
}

impl Default for DemoConfig {
    fn default() -> Self {
        Self {
            serve_only: false,
            host: "127.0.0.1".into(),
            port: None,
            keep_db: None,
            json: false,
            interval: Duration::from_secs(1),
            generate: None,
            seed: None,
        }
    }
}

/// Run `skillmon demo` with these settings.
pub async fn run(args: DemoConfig) -> anyhow::Result<std::process::ExitCode> {
    let seed = args.seed.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64)
    });
    if let Some(gen_args) = &args.generate {
        let path = &gen_args.path;
        let g = tokio::task::spawn_blocking({
            let path = path.clone();
            let (n, s, d) = (gen_args.invocations, gen_args.skills, gen_args.days);
            move || generate(&path, n, s, d, seed)
        })
        .await??;
        println!(
            "generated {} invocations across {} skills in {:.1} s: {}",
            g.invocations,
            g.skills,
            g.seconds,
            path.display()
        );
        return Ok(std::process::ExitCode::SUCCESS);
    }
    // The database lives in a directory we created (removed on exit), or at
    // --keep-db, which must not exist yet: we never overwrite a user's file.
    let (tempdir, path) = if let Some(p) = &args.keep_db {
        if p.exists() {
            anyhow::bail!(
                "--keep-db {}: the file already exists; choose a new path (the demo never overwrites files)",
                p.display()
            );
        }
        (None, p.clone())
    } else {
        let dir = tempfile::Builder::new()
            .prefix("skillmon-demo-")
            .tempdir()
            .context("cannot create a temporary directory for the demo database")?;
        let path = dir.path().join("skills.db");
        (Some(dir), path)
    };
    let n = tokio::task::spawn_blocking({
        let path = path.clone();
        move || create_demo_db(&path, Utc::now(), seed)
    })
    .await??;
    tracing::info!(
        "demo database {} with {n} back-filled invocations",
        path.display()
    );
    let writer = Writer::start(path.clone(), seed)?;
    let port = args.port.unwrap_or(if args.serve_only { 8765 } else { 0 });
    let listener = crate::server::bind(&args.host, port).await?;
    let mut config = crate::server::ServeConfig::new(&path);
    config.interval = args.interval;
    // Every demo skill fits, so none hides below the top 10.
    config.top = 25;
    config.write_timeout = crate::server::default_write_timeout(args.interval);
    let server = crate::server::start(listener, config).await?;
    let url = server.url();
    tracing::info!("demo server listening on {url}");
    if !args.serve_only && args.json {
        eprintln!(
            "skillmon demo: server on {url}; database {}",
            path.display()
        );
    }
    let code = if args.serve_only {
        // The handlers are in place before anyone can read "serving".
        let signal = crate::signal::shutdown();
        eprintln!("skillmon demo: serving generated live data on {url} (Ctrl-C to stop)");
        signal.await;
        std::process::ExitCode::SUCCESS
    } else {
        dashboard(&url, &args).await?
    };
    server.stop().await?;
    let written = tokio::task::spawn_blocking(move || writer.stop()).await?;
    tracing::info!("demo writer stopped after {written} live invocations");
    match tempdir {
        Some(dir) => {
            let shown = dir.path().display().to_string();
            dir.close()
                .with_context(|| format!("cannot remove the demo directory {shown}"))?;
        }
        None => eprintln!("skillmon demo: kept the database at {}", path.display()),
    }
    Ok(code)
}

/// The dashboard (or `--json` lines) on the demo server, until the user
/// quits or a signal arrives.
async fn dashboard(url: &str, args: &DemoConfig) -> anyhow::Result<std::process::ExitCode> {
    let mut watch = crate::config::WatchOptions::for_url(url);
    watch.json = args.json;
    watch.no_token = true;
    tokio::select! {
        code = crate::watch::run(watch) => code,
        _ = crate::signal::shutdown() => Ok(std::process::ExitCode::SUCCESS),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{Store, anomaly};

    #[test]
    fn timeline() {
        let ruff = SKILLS[1];
        assert_eq!(conditions(&ruff, 10.0), Some((0.98, 1.0)));
        assert_eq!(conditions(&ruff, 70.0), Some((0.2, 1.0)));
        assert_eq!(conditions(&ruff, 200.0), None, "quiet period");
        assert_eq!(conditions(&SKILLS[0], 30.0), Some((0.93, 4.0)));
        assert_eq!(conditions(&NEW_SKILL, 10.0), None);
        assert!(conditions(&NEW_SKILL, NEW_SKILL_AT + 1.0).is_some());
    }

    #[test]
    fn demo_db_shows_windows_and_a_live_anomaly_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("skills.db");
        let now = Utc::now();
        let n = create_demo_db(&path, now, 7).unwrap();
        let mut store = Store::new(&path);
        let snap = store
            .refresh_at(now.timestamp_millis() as f64 / 1000.0)
            .snapshot;
        assert_eq!(snap.skills.len(), SKILLS.len());
        let day: u64 = snap.skills.iter().filter_map(|s| s.invocations_24h).sum();
        assert_eq!(day as usize, n, "every back-filled row is within 24 h");
        let mypy: Vec<_> = snap
            .anomalies
            .iter()
            .filter(|a| a.anomaly.skill_name == "mypy")
            .collect();
        assert!(
            mypy.iter().any(
                |a| a.anomaly.anomaly_type == anomaly::Kind::PerformanceDrop.as_str()
                    && a.anomaly.source.as_deref() == Some("live")
            ),
            "{:?}",
            snap.anomalies
        );
        assert!(
            snap.anomalies
                .iter()
                .any(|a| a.anomaly.source.as_deref() == Some("table"))
        );
    }

    #[test]
    fn generate_refuses_existing_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.db");
        std::fs::write(&path, b"mine").unwrap();
        let err = generate(&path, 10, 2, 1.0, 1).unwrap_err();
        assert!(err.to_string().contains("already exists"));
        assert_eq!(std::fs::read(&path).unwrap(), b"mine");
        let fresh = dir.path().join("y.db");
        let g = generate(&fresh, 1000, 20, 2.0, 1).unwrap();
        assert_eq!(g.invocations, 1000);
        let mut store = Store::new(&fresh);
        let snap = store.refresh().snapshot;
        let total: u64 = snap.skills.iter().map(|s| s.total_invocations).sum();
        assert_eq!(total, 1000);
    }
}
