//! Shared helpers for the `skillmon serve` integration tests: real SQLite
//! files in temp dirs, a real server on 127.0.0.1 port 0, a WebSocket client
//! that awaits frames with a deadline (never sleeps to synchronize) and checks
//! the protocol invariants on every frame it sees, and a raw HTTP client.
#![allow(dead_code)] // each test crate uses a different subset

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use rusqlite::Connection;
use serde_json::Value;
use skillmon::protocol::ServerMessage;
use skillmon::server::{Handle, ServeConfig};
use skillmon::store::fixture::{self, Invocation};
use tempfile::TempDir;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// How long any single awaited event may take before the test fails. Generous
/// on purpose: it only bounds a failure, a passing test never waits for it.
pub const DEADLINE: Duration = Duration::from_secs(10);

/// An interval long enough that a frame arriving "at once" cannot be a tick.
pub const LONG_INTERVAL: Duration = Duration::from_secs(30);

/// A short interval that keeps the tick-driven tests fast.
pub const SHORT_INTERVAL: Duration = Duration::from_millis(50);

// ---------------------------------------------------------------- database

/// A temp dir holding `skills.db` (not created until asked).
pub struct TestDb {
    pub dir: TempDir,
    pub path: PathBuf,
}

impl TestDb {
    /// A temp dir and the path of a database that does not exist yet.
    pub fn missing() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("skills.db");
        Self { dir, path }
    }

    /// A temp dir with an empty session-buddy database (schema, no rows).
    pub fn new() -> (Self, Connection) {
        let db = Self::missing();
        let conn = db.create();
        (db, conn)
    }

    /// Create the schema at `path` and return a writable connection.
    pub fn create(&self) -> Connection {
        fixture::create_db(&self.path).expect("create db")
    }

    /// Another path in the same temp dir.
    pub fn sibling(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

/// A timestamp `secs_ago` seconds before now, in the given chrono format
/// (UTC), e.g. `"%Y-%m-%dT%H:%M:%SZ"`.
pub fn ts_ago(secs_ago: i64, fmt: &str) -> String {
    (chrono::Utc::now() - chrono::Duration::seconds(secs_ago))
        .format(fmt)
        .to_string()
}

/// Now, as session-buddy writes it (`...+00:00`).
pub fn now_iso() -> String {
    skillmon::protocol::now_timestamp()
}

/// Insert one invocation the way session-buddy does (the trigger keeps
/// `skill_metrics`).
pub fn invoke(conn: &Connection, skill: &str, completed: bool, duration: Option<f64>) {
    let at = now_iso();
    fixture::insert_invocation(
        conn,
        &Invocation {
            skill_name: skill,
            invoked_at: &at,
            completed,
            duration_seconds: duration,
            session_id: "test-session",
        },
    )
    .expect("insert invocation");
}

/// Insert `total` invocations of `skill`, the first `completed` of them
/// completed with a duration of 2 s, in one transaction.
pub fn invoke_n(conn: &Connection, skill: &str, total: usize, completed: usize) {
    conn.execute_batch("BEGIN").expect("begin");
    for i in 0..total {
        let done = i < completed;
        invoke(conn, skill, done, done.then_some(2.0));
    }
    conn.execute_batch("COMMIT").expect("commit");
}

/// The standard data set: `gamma` 5 invocations all completed (1..5 s),
/// `alpha` 3 with 2 completed (2 s, 4 s), `beta` 3 none completed, `delta` 3
/// with 1 completed (1.5 s), and a `zero` row in `skill_metrics` with no
/// invocations (must never be served). Ranked: gamma, alpha, beta, delta.
pub fn seed_basic(conn: &Connection) {
    conn.execute_batch("BEGIN").expect("begin");
    for d in [1.0, 2.0, 3.0, 4.0, 5.0] {
        invoke(conn, "gamma", true, Some(d));
    }
    invoke(conn, "alpha", true, Some(2.0));
    invoke(conn, "alpha", false, None);
    invoke(conn, "alpha", true, Some(4.0));
    for _ in 0..3 {
        invoke(conn, "beta", false, Some(9.0));
    }
    invoke(conn, "delta", false, None);
    invoke(conn, "delta", true, Some(1.5));
    invoke(conn, "delta", false, None);
    conn.execute(
        "INSERT INTO skill_metrics (skill_name, total_invocations) VALUES ('zero', 0)",
        [],
    )
    .expect("insert zero row");
    conn.execute_batch("COMMIT").expect("commit");
}

/// Every ranked row of `skill_metrics` as the wire should carry it: the
/// expected `top_skills` (total > 0, total desc then name), read straight
/// from the database with a separate connection.
pub fn expected_top(path: &Path, top: usize) -> Value {
    let conn = Connection::open(path).expect("open db for expectations");
    let mut stmt = conn
        .prepare(
            "SELECT skill_name, total_invocations, completion_rate, avg_duration_seconds
               FROM skill_metrics WHERE total_invocations > 0
              ORDER BY total_invocations DESC, skill_name ASC LIMIT ?1",
        )
        .expect("prepare");
    let rows = stmt
        .query_map([top as i64], |r| {
            Ok(serde_json::json!({
                "skill_name": r.get::<_, String>(0)?,
                "total_invocations": r.get::<_, i64>(1)?,
                "completion_rate": r.get::<_, f64>(2)?,
                "avg_duration_seconds": r.get::<_, Option<f64>>(3)?,
            }))
        })
        .expect("query");
    Value::Array(rows.map(|r| r.expect("row")).collect())
}

/// The bytes of a file (empty when missing).
pub fn file_bytes(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap_or_default()
}

/// Sorted names of the files in a directory.
pub fn dir_listing(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .expect("read dir")
        .map(|e| {
            e.expect("dir entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    v.sort();
    v
}

// ------------------------------------------------------------------ server

/// The serve defaults for `db` with a given interval and top N.
pub fn config(db: &Path, interval: Duration, top: usize) -> ServeConfig {
    let mut c = ServeConfig::new(db);
    c.interval = interval;
    c.top = top;
    c.write_timeout = skillmon::server::default_write_timeout(interval);
    c
}

/// Start a server on 127.0.0.1 port 0.
pub async fn start(config: ServeConfig) -> Handle {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind 127.0.0.1:0");
    skillmon::server::start(listener, config)
        .await
        .expect("start server")
}

/// Start a server on `db` with the given interval and top 10.
pub async fn serve(db: &Path, interval: Duration) -> Handle {
    start(config(db, interval, 10)).await
}

// ------------------------------------------------------------------ client

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
    /// Connect as an ext client (offering the `skillmon.v1` subprotocol)
    /// and return without reading anything.
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

    /// The next event, or `None` when nothing came within `deadline`.
    pub async fn next_event_within(&mut self, deadline: Duration) -> Option<Event> {
        loop {
            let msg = match tokio::time::timeout(deadline, self.ws.next()).await {
                Err(_) => return None,
                Ok(m) => m,
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

    /// The next frame of type `ty`, skipping others (e.g. ticks).
    pub async fn next_of_type(&mut self, ty: &str) -> Value {
        let until = tokio::time::Instant::now() + DEADLINE;
        loop {
            let left = until.saturating_duration_since(tokio::time::Instant::now());
            match self.next_event_within(left).await {
                Some(Event::Frame(v)) if v["type"] == ty => return v,
                Some(Event::Frame(_)) => continue,
                Some(other) => panic!("waiting for {ty:?}, got {other:?}"),
                None => panic!("no {ty:?} frame within {DEADLINE:?}"),
            }
        }
    }

    /// The next `metrics_update`.
    pub async fn next_update(&mut self) -> Value {
        self.next_of_type("metrics_update").await
    }

    /// The first `metrics_update` for which `pred` holds, within [`DEADLINE`].
    pub async fn update_where(&mut self, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        let until = tokio::time::Instant::now() + DEADLINE;
        let mut last = Value::Null;
        loop {
            let left = until.saturating_duration_since(tokio::time::Instant::now());
            match self.next_event_within(left).await {
                Some(Event::Frame(v)) if v["type"] == "metrics_update" => {
                    if pred(&v) {
                        return v;
                    }
                    last = v;
                }
                Some(Event::Frame(_)) => continue,
                Some(other) => panic!("waiting for an update where {what}, got {other:?}"),
                None => panic!("no update where {what} within {DEADLINE:?}; last: {last}"),
            }
        }
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
        let until = tokio::time::Instant::now() + DEADLINE;
        loop {
            let left = until.saturating_duration_since(tokio::time::Instant::now());
            match self.next_event_within(left).await {
                Some(Event::Frame(v)) if v["type"] == "pong" && v["id"] == id => return v,
                Some(Event::Frame(_)) => continue,
                Some(other) => panic!("waiting for pong {id}, got {other:?}"),
                None => panic!("no pong {id} within {DEADLINE:?}"),
            }
        }
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

// -------------------------------------------------------------------- http

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

// ---------------------------------------------------------------- processes

/// The binary with no `SKILLMON_*` variables from the caller's environment.
pub fn skillmon() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_skillmon"));
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("SKILLMON_") {
            cmd.env_remove(k);
        }
    }
    cmd.env("NO_COLOR", "1").stdin(Stdio::null());
    cmd
}

pub fn kill(pid: u32, signal: &str) {
    let status = Command::new("kill")
        .args([&format!("-{signal}"), &pid.to_string()])
        .status()
        .expect("run kill");
    assert!(status.success(), "kill -{signal} {pid}");
}

/// SIGTERM `child` and wait for its exit status (SIGKILL and fail after
/// [`DEADLINE`]).
pub fn terminate(mut child: std::process::Child) -> std::process::ExitStatus {
    let pid = child.id();
    kill(pid, "TERM");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait());
    });
    match rx.recv_timeout(DEADLINE) {
        Ok(status) => status.expect("wait"),
        Err(_) => {
            kill(pid, "KILL");
            panic!("pid {pid} did not exit within {DEADLINE:?} of SIGTERM");
        }
    }
}
