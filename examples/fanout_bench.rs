//! Fan-out benchmark: N idle WebSocket subscribers on one `skillmon serve`.
//!
//! ```sh
//! cargo run --release --example fanout_bench -- 10000
//! cargo run --release --example fanout_bench -- 2000 --tls   # wss:// (test CA made by rcgen)
//! ```
//! The server runs in a child process (this same program, in server mode)
//! so its memory and CPU can be read from /proc without the clients' own.
//! Prints the server's resident memory per idle connection, the server CPU
//! per tick, and the delay from a tick's timestamp to each client's receipt.
//! Linux only (reads /proc).

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use skillmon::protocol::{ServerMessage, parse_timestamp};
use skillmon::store::fixture;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

const INTERVAL_MS: u64 = 1000;
const MEASURED_TICKS: usize = 10;

fn proc_field(pid: u32, file: &str, key: &str) -> u64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/{file}")).unwrap_or_default();
    text.lines()
        .find(|l| l.starts_with(key))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// utime + stime of `pid`, in clock ticks (1/100 s).
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit(')').next().unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    f.get(11).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0)
        + f.get(12).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0)
}

fn server_mode(db: &str) -> anyhow::Result<()> {
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let mut config = skillmon::server::ServeConfig::new(db);
        config.interval = Duration::from_millis(INTERVAL_MS);
        // Every client comes from 127.0.0.1.
        config.net.max_connections_per_ip = usize::MAX;
        if let Ok(dir) = std::env::var("FANOUT_TLS_DIR") {
            let dir = std::path::Path::new(&dir);
            config.net.tls = Some(skillmon::server::tls::TlsFiles {
                cert: dir.join("cert.pem"),
                key: dir.join("key.pem"),
            });
        }
        let handle = skillmon::server::start(listener, config).await?;
        println!("PORT {}", handle.addr.port());
        std::io::stdout().flush()?;
        // Run until the parent closes our stdin.
        tokio::task::spawn_blocking(|| {
            let mut s = String::new();
            while std::io::stdin().read_line(&mut s).is_ok_and(|n| n > 0) {}
        })
        .await?;
        handle.stop().await?;
        Ok(())
    })
}

/// A test CA and a server certificate for 127.0.0.1 in `dir`; returns a
/// client connector that trusts the CA.
fn make_certs(dir: &std::path::Path) -> anyhow::Result<tokio_tungstenite::Connector> {
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
    use rustls_pki_types::pem::PemObject;
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate()?)?;
    let key = KeyPair::generate()?;
    let cert = CertificateParams::new(vec!["127.0.0.1".to_owned()])?.signed_by(&key, &ca)?;
    std::fs::write(dir.join("cert.pem"), cert.pem())?;
    std::fs::write(dir.join("key.pem"), key.serialize_pem())?;
    let mut roots = rustls::RootCertStore::empty();
    roots.add(rustls_pki_types::CertificateDer::from_pem_slice(
        ca.pem().as_bytes(),
    )?)?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(tokio_tungstenite::Connector::Rustls(Arc::new(config)))
}

fn pct(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    v[((v.len() - 1) as f64 * p).round() as usize]
}

fn main() -> anyhow::Result<()> {
    if let Ok(db) = std::env::var("FANOUT_SERVER_DB") {
        return server_mode(&db);
    }
    let args: Vec<String> = std::env::args().skip(1).collect();
    let tls = args.iter().any(|a| a == "--tls");
    let clients: usize = args
        .iter()
        .find(|a| !a.starts_with("--"))
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or(10_000);
    let dir = tempfile::tempdir()?;
    let connector = if tls {
        Some(make_certs(dir.path())?)
    } else {
        None
    };
    let db = dir.path().join("skills.db");
    {
        let conn = fixture::create_db(&db)?;
        let now = skillmon::protocol::now_timestamp();
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
    }
    let mut child = Command::new(std::env::current_exe()?);
    if tls {
        child.env("FANOUT_TLS_DIR", dir.path());
    }
    let mut child = child
        .env("FANOUT_SERVER_DB", &db)
        .env("SKILLMON_LOG", "warn")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()?;
    let pid = child.id();
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout")).read_line(&mut line)?;
    let port: u16 = line.trim().trim_start_matches("PORT ").parse()?;
    let url = format!("ws{}://127.0.0.1:{port}/ws", if tls { "s" } else { "" });

    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async move {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let rss_before = proc_field(pid, "status", "VmRSS:");
        let latencies = Arc::new(Mutex::new(Vec::<f64>::new()));
        let measuring = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let cfg = WebSocketConfig::default().read_buffer_size(4096).write_buffer_size(0);
        let started = Instant::now();
        let sem = Arc::new(tokio::sync::Semaphore::new(256));
        let mut tasks = Vec::with_capacity(clients);
        for _ in 0..clients {
            let permit = sem.clone().acquire_owned().await?;
            let (mut ws, _) = tokio_tungstenite::connect_async_tls_with_config(
                url.as_str(),
                Some(cfg),
                true,
                connector.clone(),
            )
            .await?;
            drop(permit);
            let lat = latencies.clone();
            let on = measuring.clone();
            tasks.push(tokio::spawn(async move {
                while let Some(Ok(msg)) = ws.next().await {
                    if !on.load(std::sync::atomic::Ordering::Relaxed) {
                        continue;
                    }
                    let recv = chrono::Utc::now();
                    if let Ok(text) = msg.to_text()
                        && let Ok(ServerMessage::MetricsUpdate(u)) = ServerMessage::parse(text)
                        && let Some(sent) = u.timestamp.as_deref().and_then(parse_timestamp)
                    {
                        let ms = (recv - sent).num_microseconds().unwrap_or(0) as f64 / 1000.0;
                        if let Ok(mut v) = lat.lock() {
                            v.push(ms);
                        }
                    }
                }
            }));
        }
        let connect_secs = started.elapsed().as_secs_f64();
        // Let every client get past its first frames, then read idle memory.
        tokio::time::sleep(Duration::from_millis(3 * INTERVAL_MS)).await;
        let rss_after = proc_field(pid, "status", "VmRSS:");
        let cpu0 = cpu_ticks(pid);
        measuring.store(true, std::sync::atomic::Ordering::Relaxed);
        tokio::time::sleep(Duration::from_millis(MEASURED_TICKS as u64 * INTERVAL_MS)).await;
        measuring.store(false, std::sync::atomic::Ordering::Relaxed);
        let cpu1 = cpu_ticks(pid);
        let mut lat = latencies.lock().map(|v| v.clone()).unwrap_or_default();
        println!(
            "clients: {clients}{} (connected in {connect_secs:.1} s), interval {INTERVAL_MS} ms",
            if tls { " over wss:// (TLS 1.3)" } else { "" }
        );
        println!(
            "server RSS: {} KiB before, {} KiB with clients: {:.2} KiB per idle connection",
            rss_before,
            rss_after,
            (rss_after.saturating_sub(rss_before)) as f64 / clients as f64
        );
        println!(
            "server CPU: {:.1} ms per tick ({:.1} % of one core) over {MEASURED_TICKS} ticks",
            (cpu1 - cpu0) as f64 * 10.0 / MEASURED_TICKS as f64,
            (cpu1 - cpu0) as f64 * 10.0 / (MEASURED_TICKS as f64 * INTERVAL_MS as f64) * 100.0
        );
        if !lat.is_empty() {
            let n = lat.len();
            println!(
                "tick → client delay: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms ({n} deliveries, {:.1} per client per tick)",
                pct(&mut lat, 0.5),
                pct(&mut lat, 0.99),
                pct(&mut lat, 1.0),
                n as f64 / clients as f64 / MEASURED_TICKS as f64
            );
        }
        for t in tasks {
            t.abort();
        }
        anyhow::Ok(())
    })?;
    drop(child.stdin.take());
    let _ = child.wait();
    Ok(())
}
