//! Cost of a `history` frame (issue 9) on a large skills database.
//!
//! ```sh
//! cargo run --release -- demo --generate /tmp/hist.db --invocations 1000000 --skills 500 --days 1
//! cargo run --release --example history_bench -- /tmp/hist.db
//! ```
//! Prints, for the 10 busiest skills and for all of them, the time to cut
//! the 24 h and 1 h histories from the store's in-memory day
//! (`store::history::build`), the time to serialize the frame, and the
//! frame's bytes; plus the memory the one-minute buckets take. `--days 1`
//! puts every invocation inside the last day (the worst case); the default
//! 30 days is the shape of `store_bench`'s database.

use std::time::Instant;

use skillmon::protocol::{HistoryWindow, ServerMessage};
use skillmon::store::{Store, history, unix_now};

fn stats(mut v: Vec<f64>) -> String {
    v.sort_by(f64::total_cmp);
    let pct = |p: f64| v[((v.len() - 1) as f64 * p).round() as usize];
    format!(
        "median {:.3} ms, p95 {:.3} ms (n={})",
        pct(0.5),
        pct(0.95),
        v.len()
    )
}

fn main() -> anyhow::Result<()> {
    let path = std::env::args().nth(1).ok_or_else(|| {
        anyhow::anyhow!("usage: history_bench PATH (a DB made by `skillmon demo --generate`)")
    })?;
    let mut store = Store::new(std::path::PathBuf::from(path));
    let t = Instant::now();
    let snap = store.refresh().snapshot;
    println!(
        "cold first snapshot: {:.1} ms; {} skills, {} invocations of the last 24 h in memory",
        t.elapsed().as_secs_f64() * 1e3,
        snap.skills.len(),
        store.window_samples()
    );
    let all: Vec<String> = snap.skills.iter().map(|s| s.skill_name.clone()).collect();
    let minutes: usize = all
        .iter()
        .filter_map(|n| snap.minutes(n))
        .map(skillmon::store::history::Minutes::len)
        .sum();
    println!(
        "one-minute buckets held: {minutes} (~{:.1} MiB at 32 bytes each)",
        minutes as f64 * 32.0 / (1 << 20) as f64
    );
    let top10: Vec<String> = all.iter().take(10).cloned().collect();
    for window in [HistoryWindow::Day, HistoryWindow::Hour] {
        for (label, skills) in [("10 skills", &top10), ("500 skills", &all)] {
            let runs = if skills.len() > 10 { 50 } else { 500 };
            let (mut build, mut encode) = (Vec::new(), Vec::new());
            let mut bytes = 0;
            let mut invocations = 0;
            for _ in 0..runs {
                let now = unix_now();
                let t = Instant::now();
                let h = history::build(&snap, skills, window, now);
                build.push(t.elapsed().as_secs_f64() * 1e3);
                invocations = h
                    .skills
                    .iter()
                    .flat_map(|s| &s.buckets)
                    .map(|b| b.invocations)
                    .sum::<u64>();
                let t = Instant::now();
                let text = ServerMessage::History(h).encode();
                encode.push(t.elapsed().as_secs_f64() * 1e3);
                bytes = text.len();
            }
            println!("{window} history, {label} ({invocations} invocations in the buckets):");
            println!("  build from memory: {}", stats(build));
            println!("  serialize:         {}", stats(encode));
            println!("  frame: {bytes} bytes ({:.1} KiB)", bytes as f64 / 1024.0);
        }
    }
    Ok(())
}
