//! Team view latency: publish → edge → client on loopback, against the
//! same clients on the DB-backed server itself.
//!
//! ```sh
//! cargo run --release --example team_latency -- 1000 20
//! ```
//! Starts its own `redis-server` on a free port, a publisher (`serve --db
//! --publish`, 50 ms ticks) and an edge (`serve --from`), N clients on each
//! (default 1000) and, per round (default 20), writes one invocation to the
//! database. For every client it records when the frame carrying the new
//! total arrived, relative to the first client of the DB-backed server that
//! saw it (the store tick is the common start). Prints p50/p99/max of that
//! delay for both sets; the edge's extra cost is their difference.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use skillmon::store::fixture;
use skillmon::team::{EdgeConfig, PublishConfig, RedisTarget, TeamRole};

type Samples = Arc<Mutex<Vec<(u64, Instant)>>>;

async fn clients(url: String, n: usize, samples: Samples) {
    for _ in 0..n {
        let (mut ws, _) = match tokio_tungstenite::connect_async(url.as_str()).await {
            Ok(ws) => ws,
            Err(e) => {
                eprintln!("connect {url}: {e}");
                return;
            }
        };
        let samples = samples.clone();
        tokio::spawn(async move {
            let mut last = 0u64;
            while let Some(Ok(m)) = ws.next().await {
                let Ok(text) = m.into_text() else { continue };
                // The first row's total, without a JSON parse per client
                // (the clients share the machine with the servers).
                let total = text
                    .split_once("\"total_invocations\":")
                    .and_then(|(_, rest)| rest.split(|c: char| !c.is_ascii_digit()).next())
                    .and_then(|n| n.parse::<u64>().ok())
                    .unwrap_or(0);
                if total > last {
                    last = total;
                    if let Ok(mut s) = samples.lock() {
                        s.push((total, Instant::now()));
                    }
                }
            }
        });
    }
}

fn percentiles(mut v: Vec<f64>) -> String {
    if v.is_empty() {
        return "no samples".into();
    }
    v.sort_by(f64::total_cmp);
    let p = |q: f64| v[((v.len() - 1) as f64 * q).round() as usize];
    format!(
        "n={} p50={:.2} ms p99={:.2} ms max={:.2} ms",
        v.len(),
        p(0.5),
        p(0.99),
        v[v.len() - 1]
    )
}

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let n: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(1000);
    let rounds: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(20);
    let dir = tempfile::tempdir()?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let mut redis = std::process::Command::new("redis-server")
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(["--save", "", "--appendonly", "no"])
        .stdout(std::process::Stdio::null())
        .spawn()
        .map_err(|e| anyhow::anyhow!("redis-server: {e} (install it to run this bench)"))?;
    let db = dir.path().join("skills.db");
    let conn = fixture::create_db(&db)?;
    let invoke = |conn: &rusqlite::Connection| {
        fixture::insert_invocation(
            conn,
            &fixture::Invocation {
                skill_name: "bench",
                invoked_at: &chrono::Utc::now().to_rfc3339(),
                completed: true,
                duration_seconds: Some(1.0),
                session_id: "bench",
            },
        )
    };
    invoke(&conn)?;
    let rt = tokio::runtime::Runtime::new()?;
    let result = rt.block_on(async {
        let url = format!("redis://127.0.0.1:{port}");
        // Wait for Redis to accept connections.
        let client = redis::Client::open(url.as_str())?;
        let started = Instant::now();
        while client.get_multiplexed_async_connection().await.is_err() {
            anyhow::ensure!(
                started.elapsed() < Duration::from_secs(10),
                "redis did not start"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let mut config = skillmon::server::ServeConfig::new(Path::new(&db));
        config.interval = Duration::from_millis(50);
        // Every client comes from 127.0.0.1: lift the per-address cap.
        config.net.max_connections_per_ip = usize::MAX;
        config.max_connections = 2 * n + 100;
        let publisher = skillmon::server::start_team(
            tokio::net::TcpListener::bind("127.0.0.1:0").await?,
            config.clone(),
            TeamRole::Publish(PublishConfig {
                redis: RedisTarget::parse(&url, None)?,
                source: "bench".into(),
                every: Duration::from_secs(10),
            }),
        )
        .await?;
        let mut edge_config = config.clone();
        edge_config.interval = Duration::from_secs(1);
        let edge = skillmon::server::start_team(
            tokio::net::TcpListener::bind("127.0.0.1:0").await?,
            edge_config,
            TeamRole::Edge(EdgeConfig {
                redis: RedisTarget::parse(&url, None)?,
                sources: None,
                source_ttl: Duration::from_secs(600),
            }),
        )
        .await?;
        let db_samples: Samples = Arc::default();
        let edge_samples: Samples = Arc::default();
        // The clients run on their own runtime thread, the servers on this one.
        let client_rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()?;
        client_rt
            .spawn(clients(publisher.url(), n, db_samples.clone()))
            .await?;
        client_rt
            .spawn(clients(edge.url(), n, edge_samples.clone()))
            .await?;
        println!("{n} clients on the DB-backed server, {n} on the edge; {rounds} rounds");
        tokio::time::sleep(Duration::from_secs(2)).await;
        for _ in 0..rounds {
            invoke(&conn)?;
            // Let the round reach every client (ticks are 50 ms apart).
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        let db_s = db_samples.lock().map(|s| s.clone()).unwrap_or_default();
        let edge_s = edge_samples.lock().map(|s| s.clone()).unwrap_or_default();
        let mut via_db = Vec::new();
        let mut via_edge = Vec::new();
        for total in 2..=rounds + 1 {
            let Some(first) = db_s.iter().filter(|s| s.0 == total).map(|s| s.1).min() else {
                continue;
            };
            let ms = |t: Instant| t.saturating_duration_since(first).as_secs_f64() * 1000.0;
            via_db.extend(db_s.iter().filter(|s| s.0 == total).map(|s| ms(s.1)));
            via_edge.extend(edge_s.iter().filter(|s| s.0 == total).map(|s| ms(s.1)));
        }
        println!(
            "DB-backed server, after its first client: {}",
            percentiles(via_db)
        );
        println!(
            "edge (publish → Redis → edge → client):   {}",
            percentiles(via_edge)
        );
        edge.stop().await?;
        publisher.stop().await?;
        client_rt.shutdown_background();
        anyhow::Ok(())
    });
    let _ = redis.kill();
    let _ = redis.wait();
    result
}
