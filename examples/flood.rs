//! Flood benchmark (issue 18): one address floods a real `skillmon serve`
//! with connects while another address's client watches its ticks.
//!
//! ```sh
//! cargo build --release && cargo run --release --example flood -- 1024
//! ```
//! Runs `target/release/skillmon serve` (next to this example) on a free
//! loopback port with the given open-file limit (default 1,024), connects a
//! client from 127.0.0.2, then floods from 127.0.0.1: at most 20,000
//! connects in at most 10 s, each held 1.5 s without a byte. Prints the
//! server's descriptors and RSS before, at the peak, right after and once
//! the flood's sockets are gone, and what the 127.0.0.2 client saw (ticks,
//! seq gaps). Targets only 127.0.0.x. Linux only (reads /proc).

#[path = "../tests/it/support/flood.rs"]
#[allow(dead_code)]
mod flood;

use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use futures_util::StreamExt as _;
use tokio_tungstenite::tungstenite::Message;

/// A watcher from 127.0.0.2: counts updates and the ones its `seq` says it
/// missed, until the connection ends.
#[derive(Default)]
struct Watcher {
    updates: AtomicU64,
    missed: AtomicU64,
    closed: AtomicBool,
}

async fn watch(addr: SocketAddr, w: Arc<Watcher>) -> anyhow::Result<()> {
    let socket = tokio::net::TcpSocket::new_v4()?;
    socket.bind(SocketAddr::from(([127, 0, 0, 2], 0)))?;
    let stream = socket.connect(addr).await?;
    let url = format!("ws://{addr}/ws");
    let (mut ws, _) = tokio_tungstenite::client_async(url, stream).await?;
    let mut last: Option<u64> = None;
    while let Some(Ok(msg)) = ws.next().await {
        let Message::Text(text) = msg else { continue };
        let v: serde_json::Value = serde_json::from_str(text.as_str())?;
        if v["type"] == "metrics_update" {
            let seq = v["seq"].as_u64().unwrap_or(0);
            if let Some(prev) = last {
                w.missed.fetch_add(seq.saturating_sub(prev + 1), Relaxed);
            }
            last = Some(seq);
            w.updates.fetch_add(1, Relaxed);
        }
    }
    w.closed.store(true, Relaxed);
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let nofile: u64 = std::env::args()
        .nth(1)
        .map_or(Ok(1024), |a| a.parse())
        .map_err(|_| anyhow::anyhow!("usage: flood [NOFILE]"))?;
    let exe = std::env::current_exe()?;
    let serve = exe
        .parent()
        .and_then(|examples| examples.parent())
        .map(|dir| dir.join("skillmon"))
        .filter(|p| p.exists())
        .ok_or_else(|| anyhow::anyhow!("build the binary first: cargo build --release"))?;
    let dir = tempfile::tempdir()?;
    let db = dir.path().join("skills.db");
    skillmon::demo::generate(&db, 20_000, 50, 1.0, 1)?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let mut cmd = Command::new(serve);
    cmd.args(["serve", "--host", "127.0.0.1", "--interval", "100ms"])
        .args(["--port", &port.to_string()])
        .arg("--db")
        .arg(&db)
        .env("SKILLMON_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null());
    flood::limit_nofile(&mut cmd, nofile);
    let mut child = cmd.spawn()?;
    let pid = child.id();
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let rt = tokio::runtime::Runtime::new()?;
    let result = rt.block_on(async {
        let up = Instant::now() + Duration::from_secs(20);
        while tokio::net::TcpStream::connect(addr).await.is_err() {
            anyhow::ensure!(Instant::now() < up, "serve did not listen");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let w = Arc::new(Watcher::default());
        tokio::spawn(watch(addr, w.clone()));
        tokio::time::sleep(Duration::from_secs(2)).await;
        let (fds0, rss0) = (flood::open_fds(pid), flood::rss_kb(pid));
        let ticks0 = w.updates.load(Relaxed);
        let stop = Arc::new(AtomicBool::new(false));
        let peaks = flood::sample_peaks(pid, stop.clone());
        let f = flood::Flood::default();
        let done = flood::flood(addr, f).await;
        stop.store(true, Relaxed);
        let (fds_peak, rss_peak) = peaks.join().map_err(|_| anyhow::anyhow!("sampler"))?;
        let (fds1, rss1) = (flood::open_fds(pid), flood::rss_kb(pid));
        let ticks1 = w.updates.load(Relaxed);
        // Once the flood's sockets are gone (held 1.5 s at most, 10 s for a
        // per-address slot waiting for a request head).
        let settle = Instant::now();
        while flood::open_fds(pid) > fds0 + 1 && settle.elapsed() < Duration::from_secs(15) {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
        let (fds2, rss2) = (flood::open_fds(pid), flood::rss_kb(pid));
        println!("server: skillmon serve --interval 100ms, RLIMIT_NOFILE {nofile}, pid {pid}");
        println!(
            "flood from 127.0.0.1: {} connects ({} failed) in {:.1} s, each held {} ms, ≤ {} at once",
            done.connects,
            done.failed,
            done.took.as_secs_f64(),
            f.hold.as_millis(),
            f.in_flight
        );
        println!("                    descriptors   RSS (kB)");
        println!("before                 {fds0:>6}   {rss0:>8}");
        println!("peak during            {fds_peak:>6}   {rss_peak:>8}");
        println!("right after            {fds1:>6}   {rss1:>8}");
        println!(
            "settled (+{:.1} s)      {fds2:>6}   {rss2:>8}   ({:+.1} % RSS vs before)",
            settle.elapsed().as_secs_f64(),
            (rss2 as f64 / rss0 as f64 - 1.0) * 100.0
        );
        println!(
            "client from 127.0.0.2: {} updates during the flood, {} missed in all, {}",
            ticks1 - ticks0,
            w.missed.load(Relaxed),
            if w.closed.load(Relaxed) {
                "disconnected"
            } else {
                "still connected"
            }
        );
        Ok(())
    });
    let _ = child.kill();
    let _ = child.wait();
    result
}
