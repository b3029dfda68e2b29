//! A WebSocket server that misbehaves on purpose, on 127.0.0.1 port 0, for
//! the `watch` robustness tests: each connection plays a script of
//! [`Step`]s (the n-th connection the n-th script, the last one again after
//! that), and [`refusing`] answers every request with a raw HTTP response.
//! It counts the frames it sent so a test can wait for a flood to be under
//! way instead of sleeping.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};

/// One thing a hostile connection does.
#[derive(Clone)]
pub enum Step {
    /// Send this text frame.
    Text(String),
    /// Close with this code and reason (raw: any text), then stop.
    Close(u16, String),
    /// Send this text frame again and again, as fast as the client takes
    /// it, until the client goes away.
    Flood(String),
    /// Send these frames in turn, again and again, as fast as the client
    /// takes them, until the client goes away.
    FloodCycle(Vec<String>),
}

/// A running hostile server.
pub struct Hostile {
    pub url: String,
    /// Text frames sent so far, over all connections.
    pub sent: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Hostile {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Hostile {
    pub fn sent(&self) -> u64 {
        self.sent.load(Ordering::Relaxed)
    }
}

/// Serve `scripts`: connection n plays `scripts[n]` (the last script for
/// every connection after), then reads (and drops) until the client goes.
pub async fn hostile(scripts: Vec<Vec<Step>>) -> Hostile {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("ws://{}", listener.local_addr().expect("addr"));
    let sent = Arc::new(AtomicU64::new(0));
    let counter = sent.clone();
    let task = tokio::spawn(async move {
        let mut n = 0usize;
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let script = scripts
                .get(n)
                .or(scripts.last())
                .cloned()
                .unwrap_or_default();
            n += 1;
            let counter = counter.clone();
            tokio::spawn(async move {
                let Ok(ws) = tokio_tungstenite::accept_async(stream).await else {
                    return;
                };
                let (mut tx, mut rx) = ws.split();
                // Drain the client (pings are answered by tungstenite on flush).
                let reader = tokio::spawn(async move { while rx.next().await.is_some() {} });
                for step in script {
                    let frames = match step {
                        Step::Text(t) => {
                            if tx.send(Message::text(t)).await.is_err() {
                                break;
                            }
                            counter.fetch_add(1, Ordering::Relaxed);
                            continue;
                        }
                        Step::Close(code, reason) => {
                            let _ = tx
                                .send(Message::Close(Some(CloseFrame {
                                    code: CloseCode::from(code),
                                    reason: reason.into(),
                                })))
                                .await;
                            break;
                        }
                        Step::Flood(t) => vec![t],
                        Step::FloodCycle(v) => v,
                    };
                    // Shared bytes: each send is a cheap clone.
                    let frames: Vec<Utf8Bytes> = frames.into_iter().map(Into::into).collect();
                    'flood: loop {
                        for f in &frames {
                            if tx.send(Message::Text(f.clone())).await.is_err() {
                                break 'flood;
                            }
                            counter.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    break;
                }
                let _ = reader.await;
            });
        }
    });
    Hostile { url, sent, task }
}

/// A TCP server that answers every request with `response` (raw bytes, an
/// HTTP response of the test's choosing) and closes.
pub async fn refusing(response: Vec<u8>) -> Hostile {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("ws://{}", listener.local_addr().expect("addr"));
    let sent = Arc::new(AtomicU64::new(0));
    let counter = sent.clone();
    let task = tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                return;
            };
            let response = response.clone();
            let counter = counter.clone();
            tokio::spawn(async move {
                // Read the request head, then answer.
                let mut head = Vec::new();
                let mut buf = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                if stream.write_all(&response).await.is_ok() {
                    counter.fetch_add(1, Ordering::Relaxed);
                }
                let _ = stream.shutdown().await;
            });
        }
    });
    Hostile { url, sent, task }
}
