//! An edge (`serve --from redis://…`): holds the latest payload of every
//! source, merges them ([`super::merge`]) and hands the team snapshot to the
//! server's hub, at each message and each tick. At (re)connect it
//! subscribes to `skillmon:updates` first, then reads every
//! `skillmon:source:*` key, so nothing published in between is missed and
//! a new edge has the whole team before its first tick. Sources are keyed
//! by name: a publisher or Redis restart replaces a source, never adds one.
//!
//! Redis down: the last team snapshot keeps being served (staleness and the
//! TTL are frozen: Redis, not the sources, went quiet) and the edge
//! reconnects with backoff. Must not touch sessions or the hub's internals.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt as _;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::merge::{Input, merge};
use super::payload::SourcePayload;
use super::{CHANNEL, EdgeConfig, KEY_PREFIX, STALE_INTERVALS, TeamStatus};
use crate::store::Snapshot;

/// Connecting, subscribing and the first read may take this long.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// Where the edge puts each merged snapshot: the server's one snapshot
/// channel (newest wins), the same one the store's tick loop feeds.
pub type Sink = tokio::sync::watch::Sender<Arc<Snapshot>>;

struct Held {
    payload: SourcePayload,
    stale: bool,
    /// The instance this source had before the current one.
    previous: Option<u64>,
    /// Two live publishers share this name (logged once).
    shared_name: bool,
}

pub struct Edge {
    config: EdgeConfig,
    status: Arc<TeamStatus>,
    held: Mutex<HashMap<String, Held>>,
}

impl Edge {
    pub fn new(config: EdgeConfig, status: Arc<TeamStatus>) -> Arc<Self> {
        Arc::new(Self {
            config,
            status,
            held: Mutex::new(HashMap::new()),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Held>> {
        crate::sync::lock(&self.held)
    }

    /// Connect, subscribe and read every source's key. `None` (and the
    /// status says why) when Redis cannot be reached.
    pub async fn connect(&self) -> Option<redis::aio::PubSubStream> {
        match tokio::time::timeout(CONNECT_TIMEOUT, self.try_connect()).await {
            Ok(Ok(stream)) => {
                self.status.set_up();
                Some(stream)
            }
            Ok(Err(e)) => {
                self.status.set_down(&e);
                None
            }
            Err(_) => {
                self.status
                    .set_down(&format!("no answer within {CONNECT_TIMEOUT:?}"));
                None
            }
        }
    }

    async fn try_connect(&self) -> Result<redis::aio::PubSubStream, String> {
        let redis = &self.config.redis;
        let client = redis.client()?;
        let mut pubsub = client
            .get_async_pubsub()
            .await
            .map_err(|e| redis.scrub(&e))?;
        pubsub
            .subscribe(CHANNEL)
            .await
            .map_err(|e| redis.scrub(&e))?;
        let mut conn = client
            .get_multiplexed_async_connection()
            .await
            .map_err(|e| redis.scrub(&e))?;
        let mut cursor = 0u64;
        loop {
            let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(format!("{KEY_PREFIX}*"))
                .arg("COUNT")
                .arg(500)
                .query_async(&mut conn)
                .await
                .map_err(|e| redis.scrub(&e))?;
            if !keys.is_empty() {
                let values: Vec<Option<String>> = redis::cmd("MGET")
                    .arg(&keys)
                    .query_async(&mut conn)
                    .await
                    .map_err(|e| redis.scrub(&e))?;
                for v in values.into_iter().flatten() {
                    self.apply(&v);
                }
            }
            if next == 0 {
                break;
            }
            cursor = next;
        }
        Ok(pubsub.into_on_message())
    }

    /// Take one payload; `true` when it changed what the edge holds.
    pub fn apply(&self, text: &str) -> bool {
        let p = match SourcePayload::parse(text) {
            Ok(p) => p,
            Err(e) => {
                tracing::debug!("ignoring a payload that does not parse: {e}");
                return false;
            }
        };
        if !self.config.wants(&p.source) {
            return false;
        }
        self.status.received();
        // Saturating: `updated_at_ms` is whatever a publisher wrote.
        let age = chrono::Utc::now()
            .timestamp_millis()
            .saturating_sub(p.updated_at_ms);
        if age > self.config.source_ttl.as_millis() as i64 {
            return false; // a key left by a source long gone
        }
        let mut held = self.lock();
        match held.get_mut(&p.source) {
            Some(h) if !p.newer_than(&h.payload) => false,
            Some(h) => {
                if h.payload.instance != p.instance {
                    if h.previous == Some(p.instance) {
                        // An instance that was replaced came back: two
                        // publishers use this name and take turns.
                        if !h.shared_name {
                            h.shared_name = true;
                            tracing::warn!(source = %p.source, "two publishers use this source name; their figures replace each other: give each its own --source");
                        }
                    } else {
                        tracing::info!(source = %p.source, "source restarted (replaces its previous figures)");
                    }
                    h.previous = Some(h.payload.instance);
                }
                if h.stale {
                    tracing::info!(source = %p.source, "source publishing again");
                }
                h.payload = p;
                h.stale = false;
                true
            }
            None => {
                tracing::info!(source = %p.source, "source joined the team");
                held.insert(
                    p.source.clone(),
                    Held {
                        payload: p,
                        stale: false,
                        previous: None,
                        shared_name: false,
                    },
                );
                true
            }
        }
    }

    /// Update staleness and the TTL (unless `frozen`), then merge.
    pub fn rebuild(&self, frozen: bool) -> Arc<Snapshot> {
        let now = chrono::Utc::now().timestamp_millis();
        let ttl = self.config.source_ttl.as_millis() as i64;
        let mut held = self.lock();
        if !frozen {
            held.retain(|name, h| {
                let age = now.saturating_sub(h.payload.updated_at_ms);
                if age > ttl {
                    tracing::warn!(source = %name, "source dropped from the team totals: no snapshot for {} s (--source-ttl)", age / 1000);
                }
                age <= ttl
            });
            for (name, h) in held.iter_mut() {
                let age = now.saturating_sub(h.payload.updated_at_ms);
                let limit = i64::try_from(h.payload.interval_ms)
                    .unwrap_or(i64::MAX)
                    .saturating_mul(i64::from(STALE_INTERVALS));
                let stale = age > limit;
                if stale != h.stale {
                    if stale {
                        tracing::warn!(source = %name, "source stale: no snapshot for {} s", age / 1000);
                    }
                    h.stale = stale;
                }
            }
        }
        let inputs: Vec<Input<'_>> = held
            .values()
            .map(|h| Input {
                payload: &h.payload,
                stale: h.stale,
            })
            .collect();
        let snapshot = merge(&inputs);
        drop(inputs);
        drop(held);
        if let Some(t) = snapshot.team() {
            self.status.set_sources(t.sources.clone());
        }
        Arc::new(snapshot)
    }

    /// Merge off the runtime (CPU work) and put the result in `sink`.
    async fn publish(self: &Arc<Self>, sink: &Sink, frozen: bool) {
        let edge = self.clone();
        let sink = sink.clone();
        let done =
            tokio::task::spawn_blocking(move || sink.send_replace(edge.rebuild(frozen))).await;
        if done.is_err() {
            tracing::error!("team merge panicked; keeping the last snapshot");
        }
    }

    /// Read the whole team and hand it to `sink` (before the server accepts
    /// its first client), then return the task that follows Redis.
    pub async fn start(
        self: Arc<Self>,
        sink: Sink,
        tick: Duration,
        shutdown: CancellationToken,
    ) -> impl std::future::Future<Output = ()> + Send + 'static {
        let stream = self.connect().await;
        self.publish(&sink, false).await;
        self.run(stream, sink, tick, shutdown)
    }

    /// Follow Redis until `shutdown`: messages as they come, a merge every
    /// `tick`, reconnection with backoff.
    pub async fn run(
        self: Arc<Self>,
        mut stream: Option<redis::aio::PubSubStream>,
        sink: Sink,
        tick: Duration,
        shutdown: CancellationToken,
    ) {
        let mut backoff = super::backoff();
        let mut ticker = tokio::time::interval_at(Instant::now() + tick, tick);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut retry_at = Instant::now();
        loop {
            match stream.as_mut() {
                Some(s) => {
                    tokio::select! {
                        () = shutdown.cancelled() => return,
                        msg = s.next() => if let Some(msg) = msg {
                            let changed = match msg.get_payload::<String>() {
                                Ok(text) => self.apply(&text),
                                Err(_) => false,
                            };
                            if changed {
                                self.publish(&sink, false).await;
                            }
                        } else {
                            self.status.set_down("connection to Redis lost");
                            stream = None;
                            backoff.reset();
                            retry_at = Instant::now() + backoff.next_delay();
                        },
                        _ = ticker.tick() => self.publish(&sink, false).await,
                    }
                }
                None => {
                    tokio::select! {
                        () = shutdown.cancelled() => return,
                        _ = ticker.tick() => self.publish(&sink, true).await,
                        () = tokio::time::sleep_until(retry_at) => {
                            stream = self.connect().await;
                            if stream.is_some() {
                                backoff.reset();
                                self.publish(&sink, false).await;
                            } else {
                                retry_at = Instant::now() + backoff.next_delay();
                            }
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::SkillStat;

    fn edge(sources: Option<Vec<String>>) -> Arc<Edge> {
        let config = EdgeConfig {
            redis: super::super::RedisTarget::parse("redis://127.0.0.1:1", None).unwrap(),
            sources,
            source_ttl: Duration::from_secs(60),
        };
        Edge::new(config, Arc::new(TeamStatus::edge("redis://127.0.0.1:1")))
    }

    fn payload(source: &str, instance: u64, seq: u64, age_ms: i64, total: u64) -> String {
        serde_json::to_string(&SourcePayload {
            v: super::super::payload::VERSION,
            source: source.into(),
            instance,
            seq,
            updated_at_ms: chrono::Utc::now().timestamp_millis() - age_ms,
            interval_ms: 1000,
            skills: vec![SkillStat {
                skill_name: "s".into(),
                total_invocations: total,
                completion_rate: 100.0,
                avg_duration_seconds: Some(1.0),
                invocations_1h: None,
                invocations_24h: None,
                last_invoked_at: None,
            }],
            anomalies: vec![],
            minutes: std::collections::BTreeMap::new(),
            anomaly_log: vec![],
        })
        .unwrap()
    }

    fn total(e: &Edge) -> u64 {
        e.rebuild(false)
            .skills
            .first()
            .map_or(0, |s| s.total_invocations)
    }

    #[test]
    fn a_source_is_counted_once_whatever_arrives() {
        let e = edge(None);
        assert!(e.apply(&payload("a", 1, 1, 0, 5)));
        assert!(e.apply(&payload("a", 1, 2, 0, 6)));
        assert!(
            !e.apply(&payload("a", 1, 1, 0, 5)),
            "an older seq (a replayed key)"
        );
        assert!(e.apply(&payload("a", 2, 1, 0, 7)), "a restart replaces");
        assert!(e.apply(&payload("b", 9, 1, 0, 10)));
        assert_eq!(total(&e), 17);
        assert!(!e.apply("not json"));
        assert!(
            !e.apply(&payload("c", 1, 1, 120_000, 1)),
            "older than the TTL"
        );
        assert_eq!(total(&e), 17);
    }

    #[test]
    fn absurd_times_in_a_payload_neither_panic_nor_stay() {
        let e = edge(None);
        let mut p: SourcePayload = serde_json::from_str(&payload("a", 1, 1, 0, 5)).unwrap();
        p.updated_at_ms = i64::MIN;
        assert!(
            !e.apply(&serde_json::to_string(&p).unwrap()),
            "older than any TTL"
        );
        let mut p: SourcePayload = serde_json::from_str(&payload("b", 1, 1, 0, 5)).unwrap();
        p.interval_ms = u64::MAX / 2;
        assert!(e.apply(&serde_json::to_string(&p).unwrap()));
        let snap = e.rebuild(false);
        assert_eq!(snap.team().unwrap().counts(), (1, 0), "held, not stale");
        assert_eq!(total(&e), 5);
    }

    #[test]
    fn stale_after_three_intervals_and_filtered_by_name() {
        let e = edge(Some(vec!["a".into()]));
        assert!(!e.apply(&payload("b", 1, 1, 0, 1)), "not in --sources");
        assert!(e.apply(&payload("a", 1, 1, 3_500, 1)));
        let snap = e.rebuild(false);
        assert_eq!(snap.team().unwrap().counts(), (1, 1));
        assert!(e.apply(&payload("a", 1, 2, 0, 1)));
        assert_eq!(e.rebuild(false).team().unwrap().counts(), (1, 0));
    }
}
