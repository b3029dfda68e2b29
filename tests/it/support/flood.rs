//! A connection flood from 127.0.0.1 (bounded in count and time) and the
//! server-process readings it is judged by: open descriptors and resident
//! memory from /proc, and a descriptor limit set on a child before it runs.
//! Shared by `tests/serve_flood.rs` and `examples/flood.rs` (which includes
//! this file by path), so it uses nothing else of `support`. Linux only.

use std::net::SocketAddr;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::Relaxed};
use std::time::{Duration, Instant};

/// How hard to flood.
#[derive(Debug, Clone, Copy)]
pub struct Flood {
    /// At most this many connects ...
    pub connects: usize,
    /// ... for at most this long.
    pub for_at_most: Duration,
    /// Each socket is held this long without sending a byte.
    pub hold: Duration,
    /// Sockets open at once on the flooding side.
    pub in_flight: usize,
}

impl Default for Flood {
    /// 20,000 connects in at most 10 s, each held 1.5 s (longer than the
    /// 1 s a refused socket used to be held), up to 4,000 at once.
    fn default() -> Self {
        Self {
            connects: 20_000,
            for_at_most: Duration::from_secs(10),
            hold: Duration::from_millis(1500),
            in_flight: 4000,
        }
    }
}

/// What the flood did.
#[derive(Debug, Clone, Copy)]
pub struct Flooded {
    /// Connects that succeeded.
    pub connects: usize,
    /// Connects that failed or timed out (1 s).
    pub failed: usize,
    pub took: Duration,
}

/// Connect to `server` from 127.0.0.1 as fast as `in_flight` allows,
/// holding each socket for `hold` without a byte, until `connects` or
/// `for_at_most`.
pub async fn flood(server: SocketAddr, f: Flood) -> Flooded {
    assert!(server.ip().is_loopback(), "the flood only targets loopback");
    let permits = Arc::new(tokio::sync::Semaphore::new(f.in_flight));
    let ok = Arc::new(AtomicUsize::new(0));
    let failed = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..f.connects {
        if started.elapsed() > f.for_at_most {
            break;
        }
        let Ok(permit) = permits.clone().acquire_owned().await else {
            break;
        };
        let (ok, failed) = (ok.clone(), failed.clone());
        tasks.spawn(async move {
            let connect = tokio::net::TcpStream::connect(server);
            if let Ok(Ok(stream)) = tokio::time::timeout(Duration::from_secs(1), connect).await {
                ok.fetch_add(1, Relaxed);
                tokio::time::sleep(f.hold).await;
                drop(stream);
            } else {
                failed.fetch_add(1, Relaxed);
            }
            drop(permit);
        });
        // Reap finished tasks as we go (bounded memory here too).
        while tasks.try_join_next().is_some() {}
    }
    while tasks.join_next().await.is_some() {}
    Flooded {
        connects: ok.load(Relaxed),
        failed: failed.load(Relaxed),
        took: started.elapsed(),
    }
}

/// Open descriptors of `pid` (entries of /proc/PID/fd).
pub fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, Iterator::count)
}

/// Resident memory of `pid` in kB (`VmRSS`).
pub fn rss_kb(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.split_whitespace().next())
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

/// The highest descriptor count and RSS of `pid`, sampled every 10 ms on a
/// thread until `stop` is set.
pub fn sample_peaks(pid: u32, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<(usize, u64)> {
    std::thread::spawn(move || {
        let (mut fds, mut rss) = (0, 0);
        while !stop.load(Relaxed) {
            fds = open_fds(pid).max(fds);
            rss = rss_kb(pid).max(rss);
            std::thread::sleep(Duration::from_millis(10));
        }
        (fds, rss)
    })
}

/// Run the child `cmd` with a soft and hard open-file limit of `n`.
pub fn limit_nofile(cmd: &mut Command, n: u64) {
    use std::os::unix::process::CommandExt as _;
    // SAFETY: setrlimit is async-signal-safe and changes only the child.
    unsafe {
        cmd.pre_exec(move || {
            let lim = libc::rlimit {
                rlim_cur: n,
                rlim_max: n,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raw const lim) == 0 {
                Ok(())
            } else {
                Err(std::io::Error::last_os_error())
            }
        });
    }
}
