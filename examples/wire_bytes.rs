//! Bytes per `metrics_update` frame with and without the documented-API
//! field names (issue 13), for the fan-out benchmark's data set.
//!
//! ```sh
//! cargo run --release --example wire_bytes
//! ```
//! Builds the same database as `fanout_bench` (200 invocations over 25
//! skills) plus three table anomalies, reads it through the real store, and
//! prints the size of the frame as served now (`EncodedUpdate`) next to the
//! implemented fields alone (the frame before the documented names were
//! added), for the all-skills group and a one-skill group.

use serde_json::json;
use skillmon::protocol::{EncodedUpdate, MetricsData, Subscription, now_timestamp};
use skillmon::store::{Store, fixture};

fn main() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let db = dir.path().join("skills.db");
    {
        let conn = fixture::create_db(&db)?;
        let now = now_timestamp();
        for i in 0..200 {
            fixture::insert_invocation(
                &conn,
                &fixture::Invocation {
                    skill_name: &format!("skill-{:02}", i % 25),
                    invoked_at: &now,
                    completed: i % 4 != 0,
                    duration_seconds: Some(1.5),
                    session_id: "bench",
                },
            )?;
        }
        for i in 0..3 {
            conn.execute(
                "INSERT INTO skill_anomalies
                   (skill_name, detected_at, anomaly_type, baseline_value, observed_value, deviation_score)
                 VALUES (?1, ?2, 'performance_drop', 0.85, 0.62, -2.3)",
                [format!("skill-{i:02}"), now.clone()],
            )?;
        }
    }
    let mut store = Store::new(&db);
    let snapshot = store.refresh().snapshot;
    let ts = now_timestamp();
    for (label, sub) in [
        ("all skills (top 10)", Subscription::All),
        ("one skill", Subscription::from_names(["skill-03"])),
    ] {
        let data = snapshot.view(&sub, 10, chrono::Utc::now());
        let now_bytes = EncodedUpdate::from_parts(&ts, &data).with_seq(1).len();
        let before = implemented_only(&ts, &data).len() + r#""seq":1,"#.len();
        let extra = now_bytes - before;
        let rows = data.top_skills.len() + data.anomalies.len();
        println!(
            "{label}: {} skills, {} anomalies: {before} B -> {now_bytes} B per frame \
             (+{extra} B, +{:.1} %, {:.1} B per row)",
            data.top_skills.len(),
            data.anomalies.len(),
            extra as f64 / before as f64 * 100.0,
            extra as f64 / rows.max(1) as f64
        );
    }
    Ok(())
}

/// The frame with only the implemented fields, as served before: the
/// row structs' own encoding (anomalies' null baseline/observed omitted).
fn implemented_only(ts: &str, data: &MetricsData) -> String {
    json!({"type": "metrics_update", "timestamp": ts, "data": data}).to_string()
}
