//! The floor: the bare serialize-once tokio-tungstenite fan-out that every
//! `skillmon bench` figure is compared to. One frame per tick, built once
//! (by skillmon's own encoder, so its rows carry the same fields as
//! skillmon's and `--skills` rows weigh what skillmon's do), handed to every client as a `Utf8Bytes` clone through a
//! `tokio::sync::watch` channel; nothing else (no database, no
//! subscriptions, no per-client `seq`: the tick number is the `seq`, the
//! same bytes for everyone). It speaks just enough of the protocol for
//! `skillmon bench` to measure it: `connected`, then `metrics_update` with
//! `timestamp` and `seq`; it answers a close and ignores everything else.
//!
//! ```sh
//! cargo run --release --example floor -- --port 9000 --interval 1000
//! skillmon bench ws://127.0.0.1:9000/ws --server-pid <its pid>
//! ```
//! Prints its URL on the first line of stdout; runs until SIGINT/SIGTERM.

use std::time::Duration;

use futures_util::{SinkExt as _, StreamExt as _};
use skillmon::protocol::{EncodedUpdate, MetricsData, SkillStat};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};

struct Args {
    port: u16,
    interval: Duration,
    skills: usize,
}

fn args() -> anyhow::Result<Args> {
    let mut a = Args {
        port: 0,
        interval: Duration::from_secs(1),
        skills: 10,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || {
            it.next()
                .ok_or_else(|| anyhow::anyhow!("{flag} needs a value"))
        };
        match flag.as_str() {
            "--port" => a.port = value()?.parse()?,
            "--interval" => a.interval = Duration::from_millis(value()?.parse()?),
            "--skills" => a.skills = value()?.parse()?,
            other => anyhow::bail!(
                "unknown argument {other:?}; use --port N, --interval MS, --skills N (rows per frame)"
            ),
        }
    }
    Ok(a)
}

/// One tick's frame: `skills` rows encoded by skillmon's own encoder, so
/// the frame carries the same fields (the implemented, ext and documented
/// API names side by side) and the bytes on the wire match skillmon's for
/// the same number of rows. Built once per tick, `seq` = tick number.
fn frame(seq: u64, skills: usize) -> Utf8Bytes {
    let now = skillmon::protocol::now_timestamp();
    let data = MetricsData {
        top_skills: (0..skills)
            .map(|i| SkillStat {
                skill_name: format!("skill-{i:04}"),
                total_invocations: 1000 - i as u64,
                completion_rate: 93.33333333333333,
                avg_duration_seconds: Some(6.34),
                invocations_1h: Some(12),
                invocations_24h: Some(240),
                last_invoked_at: Some(now.clone()),
            })
            .collect(),
        anomalies: Vec::new(),
    };
    EncodedUpdate::from_parts(&now, &data).with_seq(seq).into()
}

fn main() -> anyhow::Result<()> {
    let args = args()?;
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async move {
        let listener = TcpListener::bind(("127.0.0.1", args.port)).await?;
        println!("ws://{}/ws", listener.local_addr()?);
        let (tx, rx) = watch::channel(frame(0, args.skills));
        let skills = args.skills;
        let interval = args.interval;
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut seq = 0;
            loop {
                tick.tick().await;
                seq += 1;
                tx.send_replace(frame(seq, skills));
            }
        });
        let config = WebSocketConfig::default()
            .read_buffer_size(skillmon::server::READ_BUFFER_BYTES)
            .write_buffer_size(0);
        let accept = async {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let _ = stream.set_nodelay(true);
                let mut rx = rx.clone();
                tokio::spawn(async move {
                    let Ok(mut ws) =
                        tokio_tungstenite::accept_async_with_config(stream, Some(config)).await
                    else {
                        return;
                    };
                    let hello = format!(
                        r#"{{"type":"connected","message":"floor","authenticated":false,"timestamp":"{}"}}"#,
                        skillmon::protocol::now_timestamp()
                    );
                    if ws.send(Message::text(hello)).await.is_err() {
                        return;
                    }
                    rx.mark_changed();
                    loop {
                        tokio::select! {
                            changed = rx.changed() => {
                                if changed.is_err() {
                                    return;
                                }
                                let bytes = rx.borrow_and_update().clone();
                                if ws.send(Message::Text(bytes)).await.is_err() {
                                    return;
                                }
                            }
                            msg = ws.next() => match msg {
                                Some(Ok(Message::Close(_))) => {
                                    // tungstenite queued the reply; push it out.
                                    let _ = ws.flush().await;
                                    return;
                                }
                                Some(Ok(_)) => {}
                                Some(Err(_)) | None => return,
                            },
                        }
                    }
                });
            }
        };
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::select! {
            _ = accept => {}
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        anyhow::Ok(())
    })
}
