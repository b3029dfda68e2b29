//! `bench --spawn`: a `skillmon serve` of bench's own, on a free loopback
//! port, serving the given database or one generated in a temporary
//! directory (removed when the server stops). Its pid is what bench reads
//! memory and CPU from. Must not touch a database it was not given, except
//! the one it generated.

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context as _;

/// Skills and invocations of the generated database (a realistic top 10).
const GENERATED_SKILLS: usize = 50;
const GENERATED_INVOCATIONS: u64 = 20_000;
/// How long the server may take to start listening.
const START_TIMEOUT: Duration = Duration::from_secs(20);

pub(crate) struct Spawned {
    pub url: String,
    pub pid: u32,
    child: Child,
    dir: Option<tempfile::TempDir>,
}

impl Spawned {
    /// Start `skillmon serve` (this same executable) and wait until it
    /// accepts connections.
    pub(crate) async fn start(db: Option<&Path>, interval: Duration) -> anyhow::Result<Self> {
        let (dir, db) = if let Some(p) = db {
            if !p.exists() {
                anyhow::bail!(
                    "--db {}: no such file; give a session-buddy skills database or leave --db out to generate one",
                    p.display()
                );
            }
            (None, p.to_path_buf())
        } else {
            let dir = tempfile::Builder::new()
                .prefix("skillmon-bench-")
                .tempdir()
                .context("cannot create a temporary directory for the bench database")?;
            let path = dir.path().join("skills.db");
            let p = path.clone();
            tokio::task::spawn_blocking(move || {
                crate::demo::data::generate(&p, GENERATED_INVOCATIONS, GENERATED_SKILLS, 1.0, 1)
            })
            .await??;
            (Some(dir), path)
        };
        // A free port: bind port 0, note it, release it for the server.
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .context("cannot find a free loopback port for --spawn")?
            .port();
        let exe = std::env::current_exe().context("cannot find the skillmon executable")?;
        let child = Command::new(exe)
            .arg("serve")
            .arg("--db")
            .arg(&db)
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            // Every bench client comes from 127.0.0.1: lift the per-IP cap.
            .args(["--max-connections-per-ip", &u32::MAX.to_string()])
            .arg("--interval")
            .arg(format!("{}ms", interval.as_millis().max(1)))
            .env(
                "SKILLMON_LOG",
                std::env::var("SKILLMON_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .context("cannot start `skillmon serve` for --spawn")?;
        let mut s = Self {
            url: format!("ws://127.0.0.1:{port}/ws"),
            pid: child.id(),
            child,
            dir,
        };
        let started = Instant::now();
        loop {
            if let Ok(Some(status)) = s.child.try_wait() {
                anyhow::bail!(
                    "the spawned `skillmon serve` exited ({status}) before listening; see its messages above"
                );
            }
            if tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
            {
                return Ok(s);
            }
            if started.elapsed() > START_TIMEOUT {
                s.stop().await;
                anyhow::bail!(
                    "the spawned `skillmon serve` did not listen on port {port} within {}s",
                    START_TIMEOUT.as_secs()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// SIGTERM, then wait (a kill after 5 s).
    pub(crate) async fn stop(mut self) {
        // SAFETY: kill sends a signal to the child we started.
        unsafe {
            libc::kill(self.pid as libc::pid_t, libc::SIGTERM);
        }
        let _ = tokio::task::spawn_blocking(move || {
            let started = Instant::now();
            loop {
                match self.child.try_wait() {
                    Ok(Some(_)) | Err(_) => break,
                    Ok(None) if started.elapsed() > Duration::from_secs(5) => {
                        let _ = self.child.kill();
                        let _ = self.child.wait();
                        break;
                    }
                    Ok(None) => std::thread::sleep(Duration::from_millis(20)),
                }
            }
            drop(self.dir);
        })
        .await;
    }
}
