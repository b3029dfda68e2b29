//! The DNS-rebinding guard (issue 18): a loopback-bound `serve` answers
//! only requests whose `Host` names a loopback host, an IP address or an
//! `--allow-host` name, on the upgrade and on every plain route; browser
//! origins are compared with those names, not with the request's own Host.
//! Refusals are summarized in the log, not one line per socket.

use crate::support;

use std::net::SocketAddr;

use support::*;

const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

/// An upgrade request with this `Host` line (or none) and `Origin`.
fn upgrade(host: Option<&str>, origin: Option<&str>) -> String {
    let mut s = "GET /ws HTTP/1.1\r\n".to_owned();
    if let Some(h) = host {
        s.push_str(&format!("Host: {h}\r\n"));
    }
    if let Some(o) = origin {
        s.push_str(&format!("Origin: {o}\r\n"));
    }
    s.push_str(&format!(
        "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {KEY}\r\n\
         Sec-WebSocket-Version: 13\r\n\r\n"
    ));
    s
}

fn get(path: &str, host: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n")
}

/// The status of `request` sent raw to `addr`, read from the response's
/// first line (a 101 keeps the connection open).
async fn status(addr: SocketAddr, request: &str) -> u16 {
    use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _};
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    s.write_all(request.as_bytes()).await.expect("write");
    let mut line = String::new();
    let mut r = tokio::io::BufReader::new(s);
    tokio::time::timeout(DEADLINE, r.read_line(&mut line))
        .await
        .expect("no status line in time")
        .expect("read");
    line.split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no status in {line:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dns_rebinding_a_foreign_host_is_refused_on_loopback() {
    let (db, _conn) = TestDb::seeded();
    let server = serve(&db.path, LONG_INTERVAL).await;
    let addr = server.addr;
    let port = addr.port();
    // The rebinding page: its name now points at 127.0.0.1, so Origin and
    // Host agree and both are the attacker's.
    let evil = format!("evil.example:{port}");
    let r = http_raw(addr, &upgrade(Some(&evil), Some(&format!("http://{evil}")))).await;
    assert_eq!(r.status, 403, "{}", r.head);
    assert!(
        r.body.contains("evil.example") && r.body.contains("--allow-host"),
        "{}",
        r.body
    );
    assert_eq!(r.body.lines().count(), 1, "one line: {}", r.body);
    // Without an Origin (a script's fetch is the same), and on every plain
    // route: no skill data and no metrics under a foreign name.
    assert_eq!(status(addr, &upgrade(Some(&evil), None)).await, 403);
    for path in ["/metrics", "/healthz", "/readyz", "/"] {
        assert_eq!(status(addr, &get(path, &evil)).await, 403, "{path}");
    }
    for host in [
        "EVIL.example",
        "evil.example.",
        "localhost.evil.example",
        "127.0.0.1.nip.io",
    ] {
        assert_eq!(status(addr, &get("/metrics", host)).await, 403, "{host}");
    }
    // Loopback names and IP addresses, any port, any case.
    for host in [
        "localhost".to_owned(),
        format!("localhost:{port}"),
        format!("LocalHost.:{port}"),
        "dashboard.localhost:3000".to_owned(),
        format!("127.0.0.1:{port}"),
        "127.0.0.2".to_owned(),
        format!("[::1]:{port}"),
        "10.1.2.3:80".to_owned(),
    ] {
        assert_eq!(status(addr, &get("/metrics", &host)).await, 200, "{host}");
        assert_eq!(
            status(addr, &upgrade(Some(&host), None)).await,
            101,
            "{host}"
        );
    }
    // HTTP/1.1 needs a Host; HTTP/1.0 may go without.
    let r = http_raw(addr, &upgrade(None, None)).await;
    assert_eq!(r.status, 400, "{}", r.head);
    assert!(r.body.contains("Host"), "{}", r.body);
    assert_eq!(
        status(addr, "GET /metrics HTTP/1.1\r\nConnection: close\r\n\r\n").await,
        400
    );
    let two = "GET /metrics HTTP/1.1\r\nHost: localhost\r\nHost: evil.example\r\n\r\n";
    assert_eq!(status(addr, two).await, 400, "two Host headers");
    assert_eq!(status(addr, "GET /metrics HTTP/1.0\r\n\r\n").await, 200);
    let text = server.shared.stats.prometheus();
    assert!(
        text.contains("skillmon_host_rejections_total{status=\"403\"} 10"),
        "{text}"
    );
    assert!(
        text.contains("skillmon_host_rejections_total{status=\"400\"} 3"),
        "{text}"
    );
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dns_rebinding_an_origin_is_compared_with_the_allowed_hosts_not_the_request_host() {
    let (db, _conn) = TestDb::seeded();
    let server = serve(&db.path, LONG_INTERVAL).await;
    let addr = server.addr;
    let port = addr.port();
    // A foreign page naming the server by its address: the Host passes,
    // its Origin does not (today's rule let a page whose Origin matched the
    // request's Host through).
    for (host, origin) in [
        (
            format!("127.0.0.1:{port}"),
            format!("http://127.0.0.1.evil.example:{port}"),
        ),
        (
            format!("10.1.2.3:{port}"),
            format!("http://10.1.2.3:{port}"),
        ),
    ] {
        let r = http_raw(addr, &upgrade(Some(&host), Some(&origin))).await;
        assert_eq!(r.status, 403, "{origin} on {host}: {}", r.head);
        assert!(r.body.contains("--allow-origin"), "{}", r.body);
    }
    // Loopback pages still may.
    let page = upgrade(
        Some(&format!("localhost:{port}")),
        Some("http://app.localhost:5173"),
    );
    assert_eq!(status(addr, &page).await, 101);
    server.stop().await.unwrap();
}

/// `--allow-host` (and `SKILLMON_ALLOW_HOSTS`) on the real binary: the
/// named hosts and their pages pass, others still get 403; beyond loopback
/// the rule is off until a name is given.
#[test]
fn allow_host_names_pass_and_their_pages_may_connect() {
    let home = tempfile::tempdir().unwrap();
    let (db, _conn) = TestDb::seeded();
    let rt = tokio::runtime::Runtime::new().unwrap();

    let mut cmd = command(home.path());
    cmd.args([
        "serve",
        "--port",
        "0",
        "--allow-host",
        "dash.example",
        "--db",
    ])
    .arg(&db.path)
    .env("SKILLMON_ALLOW_HOSTS", "Other.Example");
    let mut server = ServeChild::spawn(cmd);
    let addr = server.addr();
    rt.block_on(async {
        let dash = "dash.example:8765";
        assert_eq!(status(addr, &get("/healthz", dash)).await, 200);
        assert_eq!(
            status(addr, &upgrade(Some(dash), Some("https://dash.example"))).await,
            101
        );
        assert_eq!(
            status(
                addr,
                &upgrade(Some("localhost"), Some("http://dash.example:3000"))
            )
            .await,
            101,
            "an allowed host's page, any port"
        );
        assert_eq!(
            status(addr, &upgrade(Some(dash), Some("https://evil.example"))).await,
            403
        );
        assert_eq!(status(addr, &get("/healthz", "evil.example")).await, 403);
    });
    // The flag overrides the variable (clap: flag > env).
    rt.block_on(async {
        assert_eq!(status(addr, &get("/healthz", "other.example")).await, 403);
    });
    assert!(server.terminate().success());

    // The variable, comma-separated, `*` for any (a same-origin proxy).
    let mut cmd = command(home.path());
    cmd.args(["serve", "--port", "0", "--db"])
        .arg(&db.path)
        .env("SKILLMON_ALLOW_HOSTS", "other.example,*");
    let mut server = ServeChild::spawn(cmd);
    let addr = server.addr();
    rt.block_on(async {
        assert_eq!(
            status(addr, &get("/healthz", "anything.example")).await,
            200
        );
    });
    assert!(server.terminate().success());

    // Beyond loopback: off without the flag (the token is the guard there),
    // on with it.
    for (allow, expect) in [(None, 200), (Some("dash.example"), 403)] {
        let mut cmd = command(home.path());
        cmd.args(["serve", "--port", "0", "--host", "0.0.0.0", "--db"])
            .arg(&db.path);
        if let Some(a) = allow {
            cmd.args(["--allow-host", a]);
        }
        let mut server = ServeChild::spawn(cmd);
        let addr = server.addr();
        rt.block_on(async {
            assert_eq!(
                status(addr, &get("/healthz", "evil.example")).await,
                expect,
                "{allow:?}"
            );
        });
        assert!(server.terminate().success());
    }

    // A URL is not a host name: refused at start, naming the flag.
    let out = rt.block_on(run_in(
        home.path(),
        &[
            "serve",
            "--port",
            "0",
            "--allow-host",
            "http://dash.example",
            "--db",
            db.path.to_str().unwrap(),
        ],
    ));
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--allow-host"), "{err}");
}

/// A flood of refused requests is a few log lines with a count, not one
/// line per socket.
#[test]
fn refusals_are_summarized_in_the_log_not_logged_per_socket() {
    let home = tempfile::tempdir().unwrap();
    let db = TestDb::missing();
    let mut cmd = command(home.path());
    cmd.args(["serve", "--port", "0", "--db"]).arg(&db.path);
    let mut server = ServeChild::spawn(cmd);
    let addr = server.addr();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        for _ in 0..50 {
            let req = upgrade(Some("localhost"), Some("https://evil.example"));
            assert_eq!(status(addr, &req).await, 403);
            assert_eq!(status(addr, &get("/healthz", "evil.example")).await, 403);
        }
        // A request after the refusals, answered: every refusal before it
        // was logged (or counted) by then.
        assert_eq!(status(addr, &get("/healthz", "localhost")).await, 200);
    });
    // Every line, up to its exit (counts still pending are logged then).
    assert!(server.terminate().success());
    let lines = server.lines.iter().collect::<Vec<_>>();
    let firsts: Vec<_> = lines
        .iter()
        .filter(|l| l.contains("evil.example"))
        .collect();
    // One line per cause: the first origin and the first host, each named
    // (escaped) with the flag that lifts it ...
    assert_eq!(firsts.len(), 2, "{lines:#?}");
    assert!(
        firsts
            .iter()
            .any(|l| l.contains("--allow-origin") && l.contains("https://evil.example")),
        "{lines:#?}"
    );
    assert!(
        firsts.iter().any(|l| l.contains("--allow-host")),
        "{lines:#?}"
    );
    // ... and the other 49 of each in a count.
    let counts: Vec<_> = lines.iter().filter(|l| l.contains("49 more")).collect();
    assert_eq!(counts.len(), 2, "{lines:#?}");
}
