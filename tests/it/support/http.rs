//! A raw HTTP client (the request sent verbatim, the response read to EOF)
//! and `/healthz` polling.

use std::net::SocketAddr;

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::DEADLINE;
use super::ws::Client;

/// A plain HTTP response: status, head (status line and headers), body.
#[derive(Debug)]
pub struct HttpResponse {
    pub status: u16,
    pub head: String,
    pub body: String,
}

impl HttpResponse {
    pub fn header(&self, name: &str) -> Option<String> {
        self.head.lines().skip(1).find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_owned())
        })
    }
}

/// Send `request` verbatim and read the response to EOF.
pub async fn http_raw(addr: SocketAddr, request: &str) -> HttpResponse {
    let fut = async {
        let mut s = TcpStream::connect(addr).await.expect("connect");
        s.write_all(request.as_bytes())
            .await
            .expect("write request");
        // Read to EOF; a reset after the response (the server closing with
        // request bytes unread) still leaves what arrived before it.
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        loop {
            match s.read(&mut chunk).await {
                Ok(0) => break,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
                Err(e) if !buf.is_empty() => {
                    eprintln!("read after {} bytes: {e}", buf.len());
                    break;
                }
                Err(e) => panic!("read response: {e}"),
            }
        }
        buf
    };
    let buf = tokio::time::timeout(DEADLINE, fut)
        .await
        .expect("HTTP response timed out");
    let text = String::from_utf8_lossy(&buf).into_owned();
    let (head, body) = text
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("no end of head in {text:?}"));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status in {head:?}"));
    HttpResponse {
        status,
        head: head.to_owned(),
        body: body.to_owned(),
    }
}

/// `GET path` over plain HTTP/1.1.
pub async fn http_get(addr: SocketAddr, path: &str) -> HttpResponse {
    http_raw(
        addr,
        &format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"),
    )
    .await
}

/// `GET /healthz` parsed as JSON, with its status.
pub async fn health(addr: SocketAddr) -> (u16, Value) {
    let r = http_get(addr, "/healthz").await;
    let v: Value = serde_json::from_str(&r.body)
        .unwrap_or_else(|e| panic!("healthz body not JSON ({e}): {:?}", r.body));
    (r.status, v)
}

/// Poll `/healthz` once per tick (awaiting `client`'s next update between
/// polls, never sleeping) until its `db` field is `state`. The server records
/// the database state before it publishes a tick, so the poll after an update
/// sees that tick's state.
pub async fn wait_health_db(addr: SocketAddr, client: &mut Client, state: &str) -> (u16, Value) {
    let until = tokio::time::Instant::now() + DEADLINE;
    loop {
        let (code, v) = health(addr).await;
        if v["db"] == state {
            return (code, v);
        }
        assert!(
            tokio::time::Instant::now() < until,
            "healthz db never became {state:?}; last: {code} {v}"
        );
        client.next_update().await;
    }
}
