//! A publisher (`serve --db … --publish redis://…`): writes its server's
//! snapshot to Redis on every change and at least every `--publish-every`
//! (default 10 s): `SET skillmon:source:{name}` (the latest value, so an edge
//! that starts later has it at once) and `PUBLISH skillmon:updates`, in one
//! `MULTI`. Redis failing never stops the server: the publisher retries with
//! backoff (`ConnectionManager` reconnects) and writes the newest snapshot
//! once Redis answers. Must not touch the store or the hub: it only reads
//! the snapshots the server's tick loop hands it.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::payload::{MAX_HISTORY_SKILLS, SourcePayload, VERSION, body, history_body};
use super::{CHANNEL, KEY_EXPIRY_SECS, KEY_PREFIX, PublishConfig, TeamStatus};
use crate::store::Snapshot;

/// One Redis round trip may take this long before it counts as a failure.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(3);

/// Publish every snapshot `rx` sees until `shutdown`.
pub async fn run(
    config: PublishConfig,
    status: Arc<TeamStatus>,
    mut rx: watch::Receiver<Arc<Snapshot>>,
    shutdown: CancellationToken,
) {
    let client = match config.redis.client() {
        Ok(c) => c,
        Err(e) => {
            status.set_down(&e);
            return;
        }
    };
    let manager_config = redis::aio::ConnectionManagerConfig::new()
        .set_number_of_retries(1)
        .set_connection_timeout(Some(Duration::from_secs(2)))
        .set_response_timeout(Some(Duration::from_secs(2)))
        .set_max_delay(Duration::from_millis(500));
    let mut conn = match redis::aio::ConnectionManager::new_lazy_with_config(client, manager_config)
    {
        Ok(c) => c,
        Err(e) => {
            status.set_down(&config.redis.scrub(&e));
            return;
        }
    };
    let instance = fastrand::u64(..);
    let mut seq = 0u64;
    let mut last_body: Option<String> = None;
    let mut heartbeat = Instant::now();
    let mut backoff = super::backoff();
    let key = format!("{KEY_PREFIX}{}", config.source);
    let mut said_left_out = false;
    loop {
        let snapshot = rx.borrow_and_update().clone();
        // The history is not compared: a new invocation also changes the
        // skills' 24 h counts, and the heartbeat carries the rest.
        let (skills, anomalies) = body(&snapshot);
        let body_json = serde_json::to_string(&(&skills, &anomalies)).unwrap_or_default();
        let due = last_body.as_deref() != Some(body_json.as_str()) || Instant::now() >= heartbeat;
        if due {
            seq += 1;
            let now = chrono::Utc::now();
            let history = history_body(&snapshot, now.timestamp_millis() as f64 / 1000.0);
            if history.left_out > 0 && !said_left_out {
                said_left_out = true;
                tracing::warn!(
                    "publishing the history of the top {MAX_HISTORY_SKILLS} skills only: {} more skills have no history at the edges",
                    history.left_out
                );
            }
            let payload = SourcePayload {
                v: VERSION,
                source: config.source.clone(),
                instance,
                seq,
                updated_at_ms: now.timestamp_millis(),
                interval_ms: config.every.as_millis() as u64,
                skills,
                anomalies,
                minutes: history.minutes,
                anomaly_log: history.anomaly_log,
            };
            let text = serde_json::to_string(&payload).unwrap_or_default();
            let mut pipe = redis::pipe();
            pipe.atomic()
                .set_ex(&key, &text, KEY_EXPIRY_SECS)
                .ignore()
                .publish(CHANNEL, &text)
                .ignore();
            let write = pipe.query_async::<()>(&mut conn);
            let result = tokio::select! {
                () = shutdown.cancelled() => return,
                r = tokio::time::timeout(COMMAND_TIMEOUT, write) => r,
            };
            match result {
                Ok(Ok(())) => {
                    status.set_up();
                    status.published(now);
                    backoff.reset();
                    last_body = Some(body_json);
                    heartbeat = Instant::now() + config.every;
                }
                Ok(Err(e)) => {
                    status.set_down(&config.redis.scrub(&e));
                    if !wait(&shutdown, backoff.next_delay()).await {
                        return;
                    }
                    continue;
                }
                Err(_) => {
                    status.set_down(&format!("no answer within {COMMAND_TIMEOUT:?}"));
                    if !wait(&shutdown, backoff.next_delay()).await {
                        return;
                    }
                    continue;
                }
            }
        }
        tokio::select! {
            () = shutdown.cancelled() => return,
            changed = rx.changed() => if changed.is_err() { return },
            () = tokio::time::sleep_until(heartbeat) => {}
        }
    }
}

/// Sleep `d` unless shut down first (then `false`).
pub(crate) async fn wait(shutdown: &CancellationToken, d: Duration) -> bool {
    tokio::select! {
        () = shutdown.cancelled() => false,
        () = tokio::time::sleep(d) => true,
    }
}
