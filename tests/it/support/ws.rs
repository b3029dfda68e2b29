//! A WebSocket client for the server tests that awaits frames with a
//! deadline (never sleeps to synchronize) and checks the protocol invariants
//! on every frame it sees, plus readers of an update's fields.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use skillmon::protocol::{MetricsUpdate, ServerMessage};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use super::DEADLINE;

pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// What a client saw next.
#[derive(Debug)]
pub enum Event {
    /// A text frame, parsed as JSON.
    Frame(Value),
    /// A close frame; `None` code when the frame carried none.
    Close(Option<u16>, String),
    /// The stream ended or failed without a close frame.
    Ended(String),
}

/// A WebSocket client that checks, on every frame it receives: valid JSON
/// with a string `type`, parseable by [`ServerMessage::parse`] as a known
/// type; `connected` first and only once; `seq` on every `metrics_update`,
/// strictly increasing.
pub struct Client {
    pub ws: Ws,
    pub frames_seen: usize,
    pub last_seq: Option<u64>,
    /// How many `metrics_update` frames this client has seen.
    pub updates_seen: usize,
}

impl Client {
    /// Connect and return without reading anything.
    /// Connects as an ext client (offering the `skillmon.v1` subprotocol).
    pub async fn connect_raw(url: &str) -> Self {
        use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
        let mut req = url.into_client_request().expect("client request");
        req.headers_mut().insert(
            "Sec-WebSocket-Protocol",
            skillmon::protocol::SUBPROTOCOL
                .parse()
                .expect("header value"),
        );
        let (ws, _resp) = tokio::time::timeout(DEADLINE, tokio_tungstenite::connect_async(req))
            .await
            .expect("connect timed out")
            .expect("connect");
        Self::from_ws(ws)
    }

    /// Wrap a stream that finished its handshake, nothing read yet.
    pub fn from_ws(ws: Ws) -> Self {
        Self {
            ws,
            frames_seen: 0,
            last_seq: None,
            updates_seen: 0,
        }
    }

    /// Connect and consume the `connected` frame, returning it.
    pub async fn connect(url: &str) -> (Self, Value) {
        let mut c = Self::connect_raw(url).await;
        let hello = c.next_frame().await;
        assert_eq!(hello["type"], "connected", "first frame: {hello}");
        (c, hello)
    }

    /// Connect and consume the `connected` frame and the first
    /// `metrics_update`, returning the update.
    pub async fn connect_and_update(url: &str) -> (Self, Value) {
        let (mut c, _) = Self::connect(url).await;
        let update = c.next_update().await;
        (c, update)
    }

    /// The next event, or `None` when nothing came within `deadline`.
    pub async fn next_event_within(&mut self, deadline: Duration) -> Option<Event> {
        loop {
            let Ok(msg) = tokio::time::timeout(deadline, self.ws.next()).await else {
                return None;
            };
            let msg = match msg {
                None => return Some(Event::Ended("stream ended".into())),
                Some(Err(e)) => return Some(Event::Ended(e.to_string())),
                Some(Ok(m)) => m,
            };
            match msg {
                Message::Text(t) => return Some(Event::Frame(self.check(t.as_str()))),
                Message::Close(f) => {
                    return Some(match f {
                        Some(f) => Event::Close(Some(u16::from(f.code)), f.reason.to_string()),
                        None => Event::Close(None, String::new()),
                    });
                }
                Message::Binary(b) => panic!("the server sent a binary frame ({} bytes)", b.len()),
                _ => continue, // ping/pong control frames
            }
        }
    }

    /// The next event; panics when nothing came within [`DEADLINE`].
    pub async fn next_event(&mut self) -> Event {
        match self.next_event_within(DEADLINE).await {
            Some(e) => e,
            None => panic!("no frame within {DEADLINE:?}"),
        }
    }

    /// The next text frame; panics on close, end or deadline.
    pub async fn next_frame(&mut self) -> Value {
        match self.next_event().await {
            Event::Frame(v) => v,
            other => panic!("expected a frame, got {other:?}"),
        }
    }

    /// The first frame for which `pick` holds, skipping the others (e.g.
    /// ticks); panics on a close, the end of the stream, or after
    /// [`DEADLINE`], naming `what` and the last frame skipped.
    pub async fn frame_where(&mut self, what: &str, pick: impl Fn(&Value) -> bool) -> Value {
        let until = tokio::time::Instant::now() + DEADLINE;
        let mut last = Value::Null;
        loop {
            let left = until.saturating_duration_since(tokio::time::Instant::now());
            match self.next_event_within(left).await {
                Some(Event::Frame(v)) if pick(&v) => return v,
                Some(Event::Frame(v)) => last = v,
                Some(other) => panic!("waiting for {what}, got {other:?}"),
                None => panic!("no {what} within {DEADLINE:?}; last: {last}"),
            }
        }
    }

    /// The next frame of type `ty`, skipping others (e.g. ticks).
    pub async fn next_of_type(&mut self, ty: &str) -> Value {
        self.frame_where(&format!("{ty:?} frame"), |v| v["type"] == ty)
            .await
    }

    /// The next `metrics_update`.
    pub async fn next_update(&mut self) -> Value {
        self.next_of_type("metrics_update").await
    }

    /// The first `metrics_update` for which `pred` holds, within [`DEADLINE`].
    pub async fn update_where(&mut self, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        self.frame_where(&format!("an update where {what}"), |v| {
            v["type"] == "metrics_update" && pred(v)
        })
        .await
    }

    /// Read until a close frame and return its code; panics when the
    /// connection ends without one or nothing came within `deadline`.
    pub async fn close_code_within(&mut self, deadline: Duration) -> u16 {
        let until = tokio::time::Instant::now() + deadline;
        loop {
            let left = until.saturating_duration_since(tokio::time::Instant::now());
            match self.next_event_within(left).await {
                Some(Event::Frame(_)) => continue,
                Some(Event::Close(Some(code), _)) => return code,
                Some(other) => panic!("expected a close frame with a code, got {other:?}"),
                None => panic!("no close frame within {deadline:?}"),
            }
        }
    }

    pub async fn send_text(&mut self, text: impl Into<String>) {
        let text: String = text.into();
        tokio::time::timeout(DEADLINE, self.ws.send(Message::text(text)))
            .await
            .expect("send timed out")
            .expect("send");
    }

    pub async fn send_json(&mut self, v: Value) {
        self.send_text(v.to_string()).await;
    }

    /// Send a ping with `id` and wait for its pong (skipping other frames).
    pub async fn ping(&mut self, id: Value) -> Value {
        self.send_json(serde_json::json!({"type": "ping", "id": id}))
            .await;
        self.frame_where(&format!("pong {id}"), |v| {
            v["type"] == "pong" && v["id"] == id
        })
        .await
    }

    /// Subscribe with `msg` and return (`subscription_confirmed`, the
    /// `metrics_update` that must follow it at once).
    pub async fn subscribe(&mut self, msg: Value) -> (Value, Value) {
        self.send_json(msg).await;
        let confirmed = self.next_of_type("subscription_confirmed").await;
        let update = self.next_frame().await;
        assert_eq!(
            update["type"], "metrics_update",
            "the frame right after subscription_confirmed: {update}"
        );
        (confirmed, update)
    }

    /// Validate one text frame against the protocol and the per-connection
    /// invariants.
    fn check(&mut self, text: &str) -> Value {
        let v: Value =
            serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"));
        let ty = v["type"]
            .as_str()
            .unwrap_or_else(|| panic!("frame without a string type: {text}"));
        let parsed = ServerMessage::parse(text)
            .unwrap_or_else(|e| panic!("ServerMessage::parse failed ({e}): {text}"));
        assert_ne!(parsed, ServerMessage::Unknown, "unknown frame type: {text}");
        if self.frames_seen == 0 {
            assert_eq!(ty, "connected", "first frame must be connected: {text}");
        } else {
            assert_ne!(ty, "connected", "connected sent twice: {text}");
        }
        if ty == "metrics_update" {
            let seq = v["seq"]
                .as_u64()
                .unwrap_or_else(|| panic!("metrics_update without an integer seq: {text}"));
            if let Some(last) = self.last_seq {
                assert!(seq > last, "seq not strictly increasing: {last} then {seq}");
            }
            self.last_seq = Some(seq);
            self.updates_seen += 1;
            assert!(v["data"]["top_skills"].is_array(), "top_skills: {text}");
            assert!(v["data"]["anomalies"].is_array(), "anomalies: {text}");
        }
        self.frames_seen += 1;
        v
    }
}

/// `skill_name`s of an update's `top_skills`, in order.
pub fn names(update: &Value) -> Vec<String> {
    update["data"]["top_skills"]
        .as_array()
        .expect("top_skills array")
        .iter()
        .map(|s| s["skill_name"].as_str().expect("skill_name").to_owned())
        .collect()
}

/// `top_skills` of an update with only the compat fields, for comparing
/// with [`expected_top`].
pub fn compat_top(update: &Value) -> Value {
    Value::Array(
        update["data"]["top_skills"]
            .as_array()
            .expect("top_skills array")
            .iter()
            .map(|s| {
                serde_json::json!({
                    "skill_name": s["skill_name"],
                    "total_invocations": s["total_invocations"],
                    "completion_rate": s["completion_rate"],
                    "avg_duration_seconds": s["avg_duration_seconds"],
                })
            })
            .collect(),
    )
}

/// `(skill_name, detected_at)` of an update's anomalies, in order.
pub fn anomaly_keys(update: &Value) -> Vec<(String, String)> {
    update["data"]["anomalies"]
        .as_array()
        .expect("anomalies array")
        .iter()
        .map(|a| {
            (
                a["skill_name"].as_str().expect("skill_name").to_owned(),
                a["detected_at"].as_str().expect("detected_at").to_owned(),
            )
        })
        .collect()
}

/// The next `metrics_update` on a bare stream, parsed into the crate's own
/// type (other frames skipped); panics when the stream ends or nothing
/// parses within [`DEADLINE`].
pub async fn next_parsed_update(ws: &mut Ws) -> MetricsUpdate {
    let wait = async {
        while let Some(msg) = ws.next().await {
            let msg = msg.unwrap_or_else(|e| panic!("waiting for an update: {e}"));
            if let Ok(text) = msg.to_text()
                && let Ok(ServerMessage::MetricsUpdate(u)) = ServerMessage::parse(text)
            {
                return u;
            }
        }
        panic!("connection ended before an update");
    };
    tokio::time::timeout(DEADLINE, wait)
        .await
        .unwrap_or_else(|_| panic!("no update within {DEADLINE:?}"))
}

/// Close `client` and wait until the server has freed its place: a new
/// connection to `url` is no longer refused with 503 (the slot frees when
/// the server notices the close, so this retries until [`DEADLINE`]).
pub async fn close_and_await_slot(mut client: Client, url: &str) {
    client.ws.close(None).await.expect("close");
    assert!(matches!(
        client.next_event().await,
        Event::Close(..) | Event::Ended(_)
    ));
    drop(client);
    let until = tokio::time::Instant::now() + super::DEADLINE;
    loop {
        match tokio_tungstenite::connect_async(url).await {
            Ok(_) => return,
            Err(tokio_tungstenite::tungstenite::Error::Http(r)) if r.status() == 503 => {
                assert!(tokio::time::Instant::now() < until, "slot never freed");
                tokio::task::yield_now().await;
            }
            Err(e) => panic!("{e}"),
        }
    }
}
