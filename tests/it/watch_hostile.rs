//! `skillmon watch --json` against servers that misbehave on purpose, on
//! real sockets, one case each: a message over `--max-frame`, a ping flood
//! from a server that never reads, accept-then-close (reconnect storms),
//! and `connected` sent twice on one connection. Assertions count events
//! (connections, close codes, stderr lines), never race a clock.

use crate::support;

use std::io::{BufRead, BufReader, Read};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use futures_util::future::BoxFuture;
use futures_util::{SinkExt, StreamExt};
use support::*;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

type Ws = WebSocketStream<tokio::net::TcpStream>;

/// What a hostile server reports to the test.
#[derive(Debug)]
enum Seen {
    /// Connection `n` (0-based) accepted, at this time.
    Accepted(usize, Instant),
    /// The client closed with this code.
    ClientClosed(Option<u16>),
}

/// A server running `behave(n, ws, report)` for its n-th connection.
async fn hostile<F>(behave: F) -> (String, mpsc::UnboundedReceiver<Seen>)
where
    F: Fn(usize, Ws, mpsc::UnboundedSender<Seen>) -> BoxFuture<'static, ()> + Send + Sync + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("ws://{}", listener.local_addr().expect("addr"));
    let (tx, rx) = mpsc::unbounded_channel();
    let behave = Arc::new(behave);
    tokio::spawn(async move {
        let count = AtomicUsize::new(0);
        while let Ok((stream, _)) = listener.accept().await {
            let n = count.fetch_add(1, Ordering::SeqCst);
            let _ = tx.send(Seen::Accepted(n, Instant::now()));
            let (tx, behave) = (tx.clone(), behave.clone());
            tokio::spawn(async move {
                if let Ok(ws) = tokio_tungstenite::accept_async(stream).await {
                    behave(n, ws, tx).await;
                }
            });
        }
    });
    (url, rx)
}

const HELLO: &str = "{\"type\": \"connected\", \"message\": \"hi\", \"authenticated\": false, \"timestamp\": \"2026-11-22T02:39:04Z\"}";

/// The next event matching `pred`, or a panic after `within`.
async fn next_seen(
    rx: &mut mpsc::UnboundedReceiver<Seen>,
    within: Duration,
    what: &str,
    pred: impl Fn(&Seen) -> bool,
) -> Seen {
    let wait = async {
        loop {
            match rx.recv().await {
                Some(s) if pred(&s) => return s,
                Some(_) => continue,
                None => panic!("server gone while waiting for {what}"),
            }
        }
    };
    tokio::time::timeout(within, wait)
        .await
        .unwrap_or_else(|_| panic!("no {what} within {within:?}"))
}

/// `skillmon watch --json URL ARGS…` running, stdout lines on a channel.
struct Watch {
    child: Spawned,
    lines: std::sync::mpsc::Receiver<String>,
    stderr: std::thread::JoinHandle<String>,
    _home: tempfile::TempDir,
}

impl Watch {
    fn start(url: &str, extra: &[&str]) -> Watch {
        let home = tempfile::tempdir().expect("tempdir");
        let mut c = command(home.path());
        c.args(["watch", url, "--json"])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = Spawned::spawn(&mut c);
        let out = child.stdout.take().expect("stdout");
        let mut err = child.stderr.take().expect("stderr");
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { return };
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        let stderr = std::thread::spawn(move || {
            let mut s = String::new();
            let _ = err.read_to_string(&mut s);
            s
        });
        Watch {
            child,
            lines,
            stderr,
            _home: home,
        }
    }

    /// Peak resident memory so far (VmHWM), in bytes.
    fn peak_rss(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .expect("/proc status");
        let kb: u64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmHWM");
        kb * 1024
    }

    /// The next stdout line, waiting at most `within`.
    async fn line(&self, within: Duration) -> Option<String> {
        let deadline = Instant::now() + within;
        loop {
            match self.lines.try_recv() {
                Ok(l) => return Some(l),
                Err(std::sync::mpsc::TryRecvError::Disconnected) => return None,
                Err(std::sync::mpsc::TryRecvError::Empty) if Instant::now() >= deadline => {
                    return None;
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        }
    }

    /// Wait for the process to exit by itself; its code and stderr.
    async fn exit(mut self, within: Duration) -> (Option<i32>, String) {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                let err = self.stderr.join().expect("stderr thread");
                return (status.code(), err);
            }
            if Instant::now() >= deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!(
                    "watch did not exit within {within:?}; stderr: {}",
                    self.stderr.join().unwrap_or_default()
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Kill it; its stderr.
    fn kill(mut self) -> String {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.stderr.join().expect("stderr thread")
    }
}

/// Read until the client's close frame; report its code.
async fn report_close(ws: &mut Ws, tx: &mpsc::UnboundedSender<Seen>) {
    while let Some(Ok(m)) = ws.next().await {
        if let Message::Close(f) = m {
            let _ = tx.send(Seen::ClientClosed(f.map(|f| u16::from(f.code))));
            return;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_message_is_closed_with_1009_and_explained() {
    let (url, mut seen) = hostile(|_, mut ws, tx| {
        Box::pin(async move {
            if ws.send(Message::text(HELLO)).await.is_err() {
                return;
            }
            let big = format!(
                "{{\"type\": \"metrics_update\", \"data\": {{\"top_skills\": [], \"anomalies\": []}}, \"pad\": \"{}\"}}",
                "x".repeat(200 << 10)
            );
            if ws.send(Message::text(big)).await.is_err() {
                return;
            }
            report_close(&mut ws, &tx).await;
        })
    })
    .await;
    let watch = Watch::start(&url, &["--max-frame", "64KiB"]);
    let close = next_seen(
        &mut seen,
        Duration::from_secs(20),
        "the client's close",
        |s| matches!(s, Seen::ClientClosed(_)),
    )
    .await;
    assert!(matches!(close, Seen::ClientClosed(Some(1009))), "{close:?}");
    let (code, stderr) = watch.exit(Duration::from_secs(20)).await;
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("over the 64 KiB limit"), "{stderr}");
    assert!(stderr.contains("--max-frame"), "{stderr}");
    assert!(stderr.contains("1009"), "{stderr}");
    // Not retried: the same server would send the same message.
    let mut more = 0;
    while let Ok(s) = seen.try_recv() {
        if matches!(s, Seen::Accepted(..)) {
            more += 1;
        }
    }
    assert_eq!(more, 0, "no second connection");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ping_flood_from_a_server_that_never_reads_is_replaced_in_bounded_memory() {
    let (url, mut seen) = hostile(|_, mut ws, _| {
        Box::pin(async move {
            if ws.send(Message::text(HELLO)).await.is_err() {
                return;
            }
            // Pings as fast as the socket takes them; never read a byte.
            let payload = vec![b'p'; 125];
            while ws.send(Message::Ping(payload.clone().into())).await.is_ok() {}
        })
    })
    .await;
    let watch = Watch::start(&url, &[]);
    next_seen(
        &mut seen,
        Duration::from_secs(10),
        "the first connection",
        |s| matches!(s, Seen::Accepted(0, _)),
    )
    .await;
    // Declared dead (our pings get no pong; our writes do not drain) and
    // replaced, like a silent server.
    next_seen(
        &mut seen,
        Duration::from_secs(90),
        "a new connection",
        |s| matches!(s, Seen::Accepted(1, _)),
    )
    .await;
    let peak = watch.peak_rss();
    let stderr = watch.kill();
    assert!(
        peak < 150 << 20,
        "peak RSS {} MiB under a ping flood",
        peak >> 20
    );
    assert!(stderr.contains("disconnected from"), "{stderr}");
    eprintln!("peak RSS under the ping flood: {} MiB", peak >> 20);
}

/// The delays printed on stderr (`retrying in 1.2s`).
fn retry_delays(stderr: &str) -> Vec<f64> {
    stderr
        .lines()
        .filter_map(|l| l.split("retrying in ").nth(1))
        .filter_map(|v| v.trim_end_matches('s').parse().ok())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accept_then_close_servers_get_the_full_backoff() {
    let (url, mut seen) = hostile(|n, mut ws, _| {
        Box::pin(async move {
            if ws.send(Message::text(HELLO)).await.is_err() {
                return;
            }
            let code = [CloseCode::Normal, CloseCode::Away, CloseCode::Error][n % 3];
            let _ = ws
                .close(Some(CloseFrame {
                    code,
                    reason: "bye".into(),
                }))
                .await;
        })
    })
    .await;
    let watch = Watch::start(&url, &[]);
    const CONNECTIONS: usize = 7;
    let mut accepted = Vec::new();
    while accepted.len() < CONNECTIONS {
        if let Seen::Accepted(_, at) =
            next_seen(&mut seen, Duration::from_secs(60), "a connection", |s| {
                matches!(s, Seen::Accepted(..))
            })
            .await
        {
            accepted.push(at);
        }
    }
    let stderr = watch.kill();
    // Each delay is drawn from [step/2, step], the step doubling from 250 ms:
    // `connected` never resets it (printed with one decimal: ±0.05 s).
    let delays = retry_delays(&stderr);
    assert!(delays.len() >= CONNECTIONS - 1, "{stderr}");
    for (i, d) in delays.iter().enumerate() {
        let step = (0.25 * f64::from(1u32 << i.min(10))).min(10.0);
        assert!(
            *d >= step / 2.0 - 0.051 && *d <= step + 0.051,
            "delay {i} = {d}s, step {step}s: {stderr}"
        );
    }
    // The server saw the same: a gap is never shorter than half its step
    // (a busy machine only makes gaps longer).
    for (i, w) in accepted.windows(2).enumerate() {
        let step = Duration::from_millis(250 << i).min(Duration::from_secs(10));
        assert!(
            w[1] - w[0] >= step / 2,
            "connection {} came {:?} after the previous one (step {step:?})",
            i + 1,
            w[1] - w[0]
        );
    }
    let in_10s = accepted
        .iter()
        .filter(|t| **t - accepted[0] <= Duration::from_secs(10))
        .count();
    assert!(in_10s <= 8, "{in_10s} connections in 10 s");
    for code in ["1000", "1001", "1011"] {
        assert!(stderr.contains(&format!("close code {code}")), "{stderr}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connected_twice_on_one_connection_is_not_a_reconnect() {
    let (url, _seen) = hostile(|n, mut ws, _| {
        Box::pin(async move {
            for _ in 0..2 {
                if ws.send(Message::text(HELLO)).await.is_err() {
                    return;
                }
            }
            if n == 0 {
                let _ = ws
                    .send(Message::text(python_update(SB_SKILLS, false)))
                    .await;
                let _ = ws
                    .close(Some(CloseFrame {
                        code: CloseCode::Away,
                        reason: "restarting".into(),
                    }))
                    .await;
                return;
            }
            loop {
                if ws
                    .send(Message::text(python_update(SB_SKILLS, false)))
                    .await
                    .is_err()
                {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    })
    .await;
    let watch = Watch::start(&url, &[]);
    // One update from each connection (the second connection's `connected`
    // frames were handled before its update was printed).
    let mut updates = 0;
    while updates < 2 {
        let line = watch.line(Duration::from_secs(20)).await;
        assert!(line.is_some(), "fewer than 2 updates");
        updates += 1;
    }
    let stderr = watch.kill();
    assert_eq!(
        stderr.matches("reconnected to").count(),
        1,
        "two connections, one reconnect: {stderr}"
    );
}
