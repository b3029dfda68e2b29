//! Render cost of one dashboard frame with 1,000 skills (target < 2 ms).
//!
//! ```sh
//! cargo run --release --example render_bench
//! ```
//! Builds an `App` fed 60 updates of 1,000 skills (so every sparkline has
//! history), then times `render` into ratatui's `TestBackend` at 200x60,
//! changing the data between frames as live updates do.

use std::time::Instant;

use chrono::Utc;
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use skillmon::client::FeedEvent;
use skillmon::protocol::{Anomaly, Connected, MetricsData, MetricsUpdate, SkillStat, Subscription};
use skillmon::tui::app::{App, Event};

fn update(n: u64, skills: usize) -> MetricsUpdate {
    MetricsUpdate {
        seq: Some(n),
        timestamp: Some(skillmon::protocol::now_timestamp()),
        data: MetricsData {
            top_skills: (0..skills)
                .map(|i| SkillStat {
                    skill_name: format!("skill-{i:04}-with-a-longer-name"),
                    total_invocations: 100_000 - i as u64 * 10 + n,
                    completion_rate: 50.0 + (i % 50) as f64,
                    avg_duration_seconds: (i % 7 != 0).then_some(1.0 + i as f64 / 10.0),
                    invocations_1h: Some(i as u64 % 60),
                    invocations_24h: Some(i as u64 % 900),
                    last_invoked_at: None,
                })
                .collect(),
            anomalies: (0..10)
                .map(|i| Anomaly {
                    skill_name: format!("skill-{i:04}-with-a-longer-name"),
                    detected_at: "2026-11-22 02:33:54".into(),
                    anomaly_type: if i % 2 == 0 {
                        "performance_drop"
                    } else {
                        "duration_spike"
                    }
                    .into(),
                    deviation_score: Some(-2.0 - i as f64 / 10.0),
                    baseline_value: Some(90.0),
                    observed_value: Some(10.0),
                    source: Some("live".into()),
                })
                .collect(),
        },
        rows: skillmon::protocol::RowReport::default(),
        team: None,
    }
}

fn main() -> anyhow::Result<()> {
    const SKILLS: usize = 1000;
    let now = Utc::now();
    let mut app = App::new("ws://127.0.0.1:8765/ws", Subscription::All, now);
    app.update(Event::Feed(FeedEvent::Connected {
        info: Connected {
            message: "hi".into(),
            authenticated: false,
            timestamp: None,
            server: Some("skillmon/bench".into()),
            protocol: Some(1),
            interval_ms: Some(1000),
            session_id: None,
        },
        ext: false,
        at: now,
    }));
    let updates: Vec<MetricsUpdate> = (0..60).map(|n| update(n, SKILLS)).collect();
    for u in &updates {
        app.update(Event::Feed(FeedEvent::Update {
            update: u.clone(),
            raw: tokio_tungstenite::tungstenite::Utf8Bytes::default(),
            at: now,
        }));
    }
    let mut terminal = Terminal::new(TestBackend::new(200, 60))?;
    let mut times = Vec::new();
    for i in 0..500 {
        // A live update between frames, as in real use (not timed).
        app.update(Event::Feed(FeedEvent::Update {
            update: updates[i % updates.len()].clone(),
            raw: tokio_tungstenite::tungstenite::Utf8Bytes::default(),
            at: now,
        }));
        let t = Instant::now();
        terminal.draw(|f| skillmon::tui::view::render(&app, f))?;
        times.push(t.elapsed().as_secs_f64() * 1e3);
    }
    times.sort_by(f64::total_cmp);
    let p = |q: f64| times[((times.len() - 1) as f64 * q).round() as usize];
    println!(
        "render, {SKILLS} skills, 200x60: median {:.3} ms, p95 {:.3} ms, max {:.3} ms (n={})",
        p(0.5),
        p(0.95),
        p(1.0),
        times.len()
    );
    Ok(())
}
