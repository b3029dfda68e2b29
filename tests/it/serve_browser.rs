//! A real browser (headless Chromium, when installed) connects to `serve`,
//! negotiates permessage-deflate on its own and reads compressed updates.
//! The page comes from a loopback HTTP server of the test's (an allowed
//! origin) and reports what it saw back to it.

use crate::support;

use std::io::Write as _;
use std::process::{Command, Stdio};

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpListener;

use support::*;

/// The first browser found on PATH.
fn chromium() -> Option<&'static str> {
    ["chromium", "chromium-browser", "google-chrome"]
        .into_iter()
        .find(|b| {
            Command::new(b)
                .arg("--version")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        })
}

/// One HTTP request's target (`GET /x?y HTTP/1.1` → `/x?y`), read from
/// `stream`, or `None` when it closed first.
async fn request_target(stream: &mut tokio::net::TcpStream) -> Option<String> {
    let mut head = Vec::new();
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let mut chunk = [0u8; 2048];
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        head.extend_from_slice(&chunk[..n]);
    }
    let line = String::from_utf8_lossy(&head).lines().next()?.to_owned();
    line.split(' ').nth(1).map(str::to_owned)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_browser_negotiates_deflate_and_reads_compressed_updates() {
    let Some(browser) = chromium() else {
        // Straight to stderr, past the harness's capture: a skip must show.
        let _ = writeln!(
            std::io::stderr(),
            "serve_browser::a_browser_negotiates_deflate_and_reads_compressed_updates: SKIPPED, \
             no headless Chromium on PATH (Debian: apt-get install chromium)"
        );
        return;
    };
    let (db, _conn) = TestDb::seeded();
    let server = start(config(&db.path, WATCH_INTERVAL, 10)).await;
    let pages = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let page_url = format!("http://127.0.0.1:{}/", pages.local_addr().unwrap().port());
    let page = format!(
        r#"<!doctype html><meta charset="utf-8"><script>
const ws = new WebSocket("ws://127.0.0.1:{port}/ws");
const seqs = [];
ws.onmessage = (e) => {{
  const m = JSON.parse(e.data);
  if (m.type !== "metrics_update") return;
  seqs.push(m.seq + ":" + m.data.top_skills.length);
  if (seqs.length === 3) {{
    fetch("/report?ext=" + encodeURIComponent(ws.extensions) + "&seqs=" + seqs.join(","));
  }}
}};
</script>"#,
        port = server.addr.port()
    );
    let home = tempfile::tempdir().unwrap();
    let _browser = Spawned::spawn(
        Command::new(browser)
            .args([
                "--headless=new",
                "--no-sandbox",
                "--disable-gpu",
                "--no-first-run",
                "--disable-dev-shm-usage",
            ])
            .arg(format!("--user-data-dir={}", home.path().display()))
            .arg(&page_url)
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    );
    // A browser starts slowly: a longer wait than the socket tests'.
    let report = tokio::time::timeout(DEADLINE * 6, async {
        loop {
            let (mut stream, _) = pages.accept().await.unwrap();
            let Some(target) = request_target(&mut stream).await else {
                continue;
            };
            let (status, body) = if target == "/" {
                ("200 OK", page.as_str())
            } else {
                ("204 No Content", "")
            };
            let _ = stream
                .write_all(
                    format!(
                        "HTTP/1.1 {status}\r\nContent-Type: text/html\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                        body.len()
                    )
                    .as_bytes(),
                )
                .await;
            if let Some(report) = target.strip_prefix("/report?") {
                return report.to_owned();
            }
        }
    })
    .await
    .expect("the page reports three updates");
    assert!(
        report.starts_with("ext=permessage-deflate"),
        "the browser negotiated deflate: {report}"
    );
    assert!(
        report.ends_with("&seqs=1:4,2:4,3:4"),
        "three whole updates in order (the seeded four skills each): {report}"
    );
    // And they came compressed, not merely after an agreement.
    let (previous, alone) = server.stats().compressed();
    assert!(
        previous + alone >= 2,
        "{previous} + {alone} compressed updates"
    );
    server.stop().await.unwrap();
}
