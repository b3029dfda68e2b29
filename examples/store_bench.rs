//! Snapshot rebuild cost on a large skills database.
//!
//! ```sh
//! cargo run --release -- demo --generate /tmp/bench.db --invocations 1000000 --skills 500
//! cargo run --release --example store_bench -- /tmp/bench.db
//! ```
//! Prints the cold first snapshot, the cost of a tick on unchanged data
//! (no queries), and the rebuild after one new invocation (top skills,
//! 1h/24h windows, live and table anomalies). The database must be one the
//! generator made: the bench inserts rows into it.

use std::time::Instant;

use skillmon::store::{Store, fixture};

fn stats(mut v: Vec<f64>) -> String {
    v.sort_by(f64::total_cmp);
    let pct = |p: f64| v[((v.len() - 1) as f64 * p).round() as usize];
    format!(
        "median {:.3} ms, p95 {:.3} ms, max {:.3} ms (n={})",
        pct(0.5),
        pct(0.95),
        v[v.len() - 1],
        v.len()
    )
}

fn main() -> anyhow::Result<()> {
    let path = std::env::args().nth(1).ok_or_else(|| {
        anyhow::anyhow!("usage: store_bench PATH (a DB made by `skillmon demo --generate`)")
    })?;
    let path = std::path::PathBuf::from(path);

    let t = Instant::now();
    let mut store = Store::new(&path);
    let first = store.refresh();
    let cold = t.elapsed().as_secs_f64() * 1e3;
    let total: u64 = first
        .snapshot
        .skills
        .iter()
        .map(|s| s.total_invocations)
        .sum();
    println!(
        "database: {} invocations, {} skills, {} in the last 24 h held in memory",
        total,
        first.snapshot.skills.len(),
        store.window_samples()
    );
    println!("cold first snapshot (open, skills, 24 h windows, anomalies): {cold:.1} ms");

    let mut idle = Vec::new();
    for _ in 0..1000 {
        let t = Instant::now();
        let r = store.refresh();
        idle.push(t.elapsed().as_secs_f64() * 1e3);
        assert!(!r.queried, "unchanged data must cost no queries");
    }
    println!(
        "tick on unchanged data (stat + PRAGMA data_version, no queries): {}",
        stats(idle)
    );

    let writer = rusqlite::Connection::open(&path)?;
    let mut rebuild = Vec::new();
    for i in 0..100 {
        let now = chrono::Utc::now().to_rfc3339();
        fixture::insert_invocation(
            &writer,
            &fixture::Invocation {
                skill_name: "skill-0003",
                invoked_at: &now,
                completed: i % 3 != 0,
                duration_seconds: Some(2.0),
                session_id: "bench",
            },
        )?;
        let t = Instant::now();
        let r = store.refresh();
        rebuild.push(t.elapsed().as_secs_f64() * 1e3);
        assert!(r.queried);
    }
    println!("rebuild after one new invocation: {}", stats(rebuild));
    println!(
        "live anomalies in the last snapshot: {}",
        store
            .snapshot()
            .anomalies
            .iter()
            .filter(|a| a.anomaly.source.as_deref() == Some("live"))
            .count()
    );
    Ok(())
}
