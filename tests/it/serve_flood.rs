//! One address cannot exhaust the server (issue 18): sockets refused for
//! the per-address limit are answered and closed at once, at most 64 held
//! at a time; a flood of connects from 127.0.0.1 leaves the real binary,
//! run with a 1,024 descriptor limit, under that limit, a client from
//! 127.0.0.2 connected and missing no tick, and its memory back where it
//! was. A 503 on a TLS port goes out over TLS.

use crate::support;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::time::Instant;

use support::*;
use tokio::net::TcpSocket;
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;

/// The server's descriptor limit in the flood test.
const NOFILE: u64 = 1024;

/// An ext client whose socket is bound to `from` (another loopback address
/// is another client address to the server).
async fn connect_from(from: [u8; 4], server: SocketAddr) -> Client {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::from((from, 0))).unwrap();
    let stream = tokio::time::timeout(DEADLINE, socket.connect(server))
        .await
        .expect("connect timed out")
        .expect("connect");
    let mut req = format!("ws://{server}/ws").into_client_request().unwrap();
    req.headers_mut().insert(
        "Sec-WebSocket-Protocol",
        skillmon::protocol::SUBPROTOCOL.parse().unwrap(),
    );
    let (ws, _) = tokio::time::timeout(
        DEADLINE,
        tokio_tungstenite::client_async(req, tokio_tungstenite::MaybeTlsStream::Plain(stream)),
    )
    .await
    .expect("upgrade timed out")
    .expect("upgrade");
    Client::from_ws(ws)
}

/// `GET path` from 127.0.0.2 (the flood's address has no slot to spare).
async fn get_from_other(server: SocketAddr, path: &str) -> String {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::from(([127, 0, 0, 2], 0))).unwrap();
    let mut s = socket.connect(server).await.unwrap();
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut out = String::new();
    tokio::time::timeout(DEADLINE, s.read_to_string(&mut out))
        .await
        .expect("response timed out")
        .unwrap();
    out
}

fn metric(text: &str, name: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {name} in {text}"))
}

#[test]
fn a_flood_from_one_address_cannot_exhaust_descriptors_or_starve_others() {
    let home = tempfile::tempdir().unwrap();
    let (db, _conn) = TestDb::seeded();
    let mut cmd = command(home.path());
    cmd.args(["serve", "--port", "0", "--interval", "200ms", "--db"])
        .arg(&db.path);
    limit_nofile(&mut cmd, NOFILE);
    let server = ServeChild::spawn(cmd);
    let (pid, addr) = (server.pid(), server.addr());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut good = connect_from([127, 0, 0, 2], addr).await;
        assert_eq!(good.next_frame().await["type"], "connected");
        good.next_update().await;
        good.next_update().await;
        let (fds_before, rss_before) = (open_fds(pid), rss_kb(pid));

        let stop = Arc::new(AtomicBool::new(false));
        let sampler = sample_peaks(pid, stop.clone());
        let flooding = tokio::spawn(flood(addr, Flood::default()));
        // The good client reads every tick while the flood runs: `seq`
        // moves by exactly one per update (a skipped update would add more).
        let mut updates = 0;
        let mut late: Option<Client> = None;
        while !flooding.is_finished() {
            let last = good.last_seq;
            good.next_update().await;
            assert_eq!(good.last_seq, last.map(|s| s + 1), "a tick was missed");
            updates += 1;
            // Midway, a new client from another address still gets in.
            if updates == 10 {
                let mut c = connect_from([127, 0, 0, 2], addr).await;
                assert_eq!(c.next_frame().await["type"], "connected");
                c.next_update().await;
                late = Some(c);
            }
        }
        let connects = flooding.await.unwrap().connects;
        stop.store(true, Relaxed);
        let (fds_max, _) = sampler.join().unwrap();
        let fds_during = open_fds(pid);
        eprintln!(
            "flood: {connects} connects; server fds {fds_before} before, max {fds_max} during; \
             RSS {rss_before} kB before; {updates} ticks received"
        );
        assert!(connects >= 2000, "the flood made only {connects} connects");
        assert!(late.is_some(), "the flood ended before the late client");
        assert!(
            (fds_max as u64) < NOFILE - 64,
            "{fds_max} descriptors open at the peak, limit {NOFILE}"
        );
        // The refusals were answered (503) or, past the held cap, dropped.
        let metrics = get_from_other(addr, "/metrics").await;
        let refused = metric(&metrics, "skillmon_per_ip_rejections_total");
        assert!(refused > 0, "{metrics}");

        // After the flood: the flood's sockets are gone (awaited, bounded),
        // the clients are still served, and memory is back.
        let until = Instant::now() + DEADLINE;
        while open_fds(pid) > fds_before + 1 {
            assert!(
                Instant::now() < until,
                "descriptors never returned: {}",
                open_fds(pid)
            );
            good.next_update().await;
        }
        let last = good.last_seq;
        good.next_update().await;
        assert_eq!(good.last_seq, last.map(|s| s + 1));
        // Memory: back within 10 % (awaited tick by tick, bounded).
        let until = Instant::now() + DEADLINE;
        let mut rss_after = rss_kb(pid);
        while rss_after as f64 > rss_before as f64 * 1.10 {
            assert!(
                Instant::now() < until,
                "RSS {rss_before} kB before, {rss_after} kB after the flood"
            );
            good.next_update().await;
            rss_after = rss_kb(pid);
        }
        eprintln!(
            "after: server fds {} (at the flood's end {fds_during}), RSS {rss_after} kB",
            open_fds(pid)
        );
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_503_on_a_tls_port_goes_out_over_tls() {
    let pki = Pki::new();
    let (db, _conn) = TestDb::seeded();
    let mut cfg = config(&db.path, LONG_INTERVAL, 10);
    cfg.net.tls = Some(pki.files());
    cfg.net.max_connections_per_ip = 1;
    let server = start(cfg).await;
    let url = format!("wss://localhost:{}/ws", server.addr.port());
    let connector = || tokio_tungstenite::Connector::Rustls(pki.client_config());
    let (first, _) = tokio_tungstenite::connect_async_tls_with_config(
        url.as_str(),
        None,
        false,
        Some(connector()),
    )
    .await
    .expect("the first wss:// client");
    let refused = tokio::time::timeout(
        DEADLINE,
        tokio_tungstenite::connect_async_tls_with_config(
            url.as_str(),
            None,
            false,
            Some(connector()),
        ),
    )
    .await
    .expect("no answer");
    match refused {
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
            assert_eq!(resp.status().as_u16(), 503);
            let body = String::from_utf8_lossy(resp.body().as_deref().unwrap_or_default());
            assert!(body.contains("--max-connections-per-ip 1"), "{body}");
        }
        Err(e) => panic!("expected the 503 over TLS, got {e}"),
        Ok(_) => panic!("a second client from the address got in"),
    }
    drop(first);
    server.stop().await.unwrap();
}
