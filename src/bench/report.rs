//! Turning the clients' raw records into one [`Report`] per run, and
//! reports into text: the readable table (one run, or two servers side by
//! side with ratios) and the `--json` object. Pure: no I/O, no clock.

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;

use super::client::{ClientResult, Rec, StalledResult};
pub(crate) use super::print::{compare_table, table};

/// p50 / p99 / max of a distribution, in milliseconds.
#[derive(Debug, Clone, Copy, Serialize, PartialEq)]
pub(crate) struct Dist {
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

impl Dist {
    /// From microsecond samples (sorted in place); `None` when empty.
    pub(crate) fn from_us(v: &mut [i64]) -> Option<Self> {
        if v.is_empty() {
            return None;
        }
        v.sort_unstable();
        let at = |p: f64| {
            let rank = ((p * v.len() as f64).ceil() as usize).clamp(1, v.len());
            v[rank - 1] as f64 / 1000.0
        };
        Some(Self {
            p50_ms: at(0.50),
            p99_ms: at(0.99),
            max_ms: at(1.0),
        })
    }
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct ConnectReport {
    /// Clients that completed the upgrade.
    pub ok: usize,
    /// Clients that never connected, after their retries.
    pub failures: usize,
    pub retries: u64,
    /// Time to open every client (paced by --connect-rate).
    pub seconds: f64,
    /// TCP connect + upgrade time per client.
    pub time: Option<Dist>,
    /// Why connections failed (sanitized), with counts.
    pub errors: BTreeMap<String, u64>,
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct StalledReport {
    pub clients: usize,
    pub connected: usize,
    /// Stalled clients the server closed, by close code.
    pub close_codes: BTreeMap<String, u64>,
    pub closed_by_server: u64,
    /// Frames still waiting in their sockets when they finally read.
    pub buffered_frames: u64,
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct ServerReport {
    pub pid: u32,
    pub rss_before_kb: Option<u64>,
    pub rss_after_kb: Option<u64>,
    /// (RSS after connecting − before) / connections.
    pub kb_per_connection: Option<f64>,
    /// Server CPU during the window.
    pub cpu_ms: Option<f64>,
    pub cpu_us_per_frame: Option<f64>,
}

#[derive(Debug, Clone, Copy, Serialize)]
pub(crate) struct FrameBytes {
    pub mean: f64,
    pub max: u32,
    /// Bytes on the wire per frame per client (compressed when the
    /// server agreed permessage-deflate; frame heads included).
    pub wire_mean: f64,
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct ClientCpu {
    pub cpu_ms: f64,
    /// Percent of one core during the window.
    pub core_percent: f64,
    pub us_per_frame: Option<f64>,
}

/// One run against one server.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Report {
    pub label: String,
    pub url: String,
    pub round: u32,
    pub protocol: String,
    /// The subprotocol the server chose, if any.
    pub negotiated_protocol: Option<String>,
    /// What the clients offered: `deflate` or `off`.
    pub compression: String,
    /// Connected clients with which the server agreed permessage-deflate.
    pub deflate_clients: usize,
    pub subscribe: String,
    pub clients: usize,
    pub warmup_s: f64,
    pub duration_s: f64,
    pub grace_s: f64,
    pub connect: ConnectReport,
    /// `connected` → first `metrics_update`.
    pub first_update: Option<Dist>,
    /// Connected clients that got no update before the window.
    pub no_first_update: usize,
    /// Receipt − frame timestamp, every delivery in the window.
    pub latency: Option<Dist>,
    /// Per tick: last receipt − first receipt across clients.
    pub spread: Option<Dist>,
    /// Consecutive tick timestamps.
    pub tick_period: Option<Dist>,
    /// Distinct ticks in the window (the most of any subscription group).
    pub ticks: u64,
    /// Distinct in-window updates the healthy clients received.
    pub delivered: u64,
    /// Size of the in-window `metrics_update` frames (payload bytes): what
    /// each delivery cost the server to write.
    pub frame_bytes: Option<FrameBytes>,
    /// Per connected client, the in-window ticks any client of its
    /// subscription received (a tick nobody got shows as a gap instead).
    pub expected: u64,
    pub delivery: f64,
    pub gaps: u64,
    /// `seq`, `timestamp` (when the server sends no seq) or `none`.
    pub gap_method: &'static str,
    pub duplicates: u64,
    /// Connect failures + error frames + unreadable frames + lost
    /// connections + server-initiated closes of healthy clients.
    pub errors: u64,
    pub error_frames: u64,
    pub bad_frames: u64,
    pub lost: u64,
    /// Why connections were lost (sanitized), with counts.
    pub lost_reasons: BTreeMap<String, u64>,
    /// Healthy clients the server closed, by close code.
    pub close_codes: BTreeMap<String, u64>,
    /// Healthy clients whose close 1000 the server answered.
    pub clean_closes: u64,
    pub stalled: StalledReport,
    pub server: Option<ServerReport>,
    pub client_cpu: ClientCpu,
    pub nofile_limit: u64,
}

/// The run's settings and the figures read around the clients.
pub(crate) struct RunMeta {
    pub label: String,
    pub url: String,
    pub round: u32,
    pub protocol: String,
    pub compression: String,
    pub subscribe: String,
    pub warmup_s: f64,
    pub duration_s: f64,
    pub grace_s: f64,
    pub connect_seconds: f64,
    /// The window, frame timestamps in µs since the epoch (inclusive).
    pub window: (i64, i64),
    pub server: Option<ServerReport>,
    /// Client CPU µs during the window.
    pub client_cpu_us: u64,
    pub nofile_limit: u64,
}

pub(super) fn short(s: &str) -> String {
    let clean = crate::text::sanitize(s);
    crate::text::truncate_width(&clean, 120)
}

/// Merge every client's records into the run's report.
pub(crate) fn build(meta: RunMeta, clients: &[ClientResult], stalled: &[StalledResult]) -> Report {
    let (ws, we) = meta.window;
    let in_window = |r: &Rec| r.ts >= ws && r.ts <= we;

    let mut connect_us = Vec::new();
    let mut first_us = Vec::new();
    let mut latency = Vec::new();
    let mut connect_errors: BTreeMap<String, u64> = BTreeMap::new();
    let mut close_codes: BTreeMap<String, u64> = BTreeMap::new();
    let mut lost_reasons: BTreeMap<String, u64> = BTreeMap::new();
    let (mut ok, mut failures, mut retries, mut no_first) = (0, 0, 0u64, 0);
    let (mut error_frames, mut bad_frames, mut lost, mut clean) = (0u64, 0u64, 0u64, 0u64);
    let mut negotiated = None;
    // (group, tick timestamp) → (first receipt, last receipt)
    let mut ticks: HashMap<(usize, i64), (i64, i64)> = HashMap::new();
    let mut any_seq = false;
    // (sum, max, count) of in-window frame sizes; counted with `latency`.
    let mut frame_bytes = (0u64, 0u32, 0u64);
    let mut wire_bytes = 0u64;
    let mut deflate_clients = 0;
    for c in clients {
        retries += u64::from(c.connect.retries);
        if let Some(us) = c.connect.us {
            ok += 1;
            connect_us.push(us as i64);
        } else {
            failures += 1;
            let why = c.connect.error.as_deref().unwrap_or("unknown");
            *connect_errors.entry(short(why)).or_default() += 1;
            continue;
        }
        if negotiated.is_none() {
            negotiated.clone_from(&c.connect.negotiated);
        }
        deflate_clients += usize::from(c.connect.deflate);
        match c.first_update_us {
            Some(us) => first_us.push(us as i64),
            None => no_first += 1,
        }
        error_frames += u64::from(c.error_frames);
        bad_frames += u64::from(c.bad_frames);
        if let Some(why) = &c.lost {
            lost += 1;
            *lost_reasons.entry(short(why)).or_default() += 1;
        }
        if let Some(code) = c.server_close {
            *close_codes.entry(code.to_string()).or_default() += 1;
        }
        if c.clean_close {
            clean += 1;
        }
        for r in c.frames.iter().filter(|r| in_window(r)) {
            any_seq |= r.seq.is_some();
            latency.push(r.recv - r.ts);
            frame_bytes.0 += u64::from(r.bytes);
            frame_bytes.1 = frame_bytes.1.max(r.bytes);
            frame_bytes.2 += 1;
            wire_bytes += u64::from(r.wire);
            let e = ticks.entry((c.group, r.ts)).or_insert((r.recv, r.recv));
            e.0 = e.0.min(r.recv);
            e.1 = e.1.max(r.recv);
        }
    }

    // Ticks per group, their periods and spreads.
    let mut per_group: BTreeMap<usize, Vec<i64>> = BTreeMap::new();
    let mut spreads = Vec::with_capacity(ticks.len());
    for (&(g, ts), &(first, last)) in &ticks {
        per_group.entry(g).or_default().push(ts);
        spreads.push(last - first);
    }
    let mut periods = Vec::new();
    let mut median_period: HashMap<usize, i64> = HashMap::new();
    for (g, v) in &mut per_group {
        v.sort_unstable();
        let mut diffs: Vec<i64> = v.windows(2).map(|w| w[1] - w[0]).collect();
        periods.extend_from_slice(&diffs);
        if !diffs.is_empty() {
            diffs.sort_unstable();
            median_period.insert(*g, diffs[diffs.len() / 2]);
        }
    }
    let ticks_max = per_group.values().map(Vec::len).max().unwrap_or(0) as u64;

    // Delivery and gaps, client by client.
    let gap_method = if any_seq {
        "seq"
    } else if median_period.is_empty() {
        "none"
    } else {
        "timestamp"
    };
    let (mut delivered, mut expected, mut gaps, mut duplicates) = (0u64, 0u64, 0u64, 0u64);
    for c in clients.iter().filter(|c| c.connect.us.is_some()) {
        expected += per_group.get(&c.group).map_or(0, Vec::len) as u64;
        let mut seen: Vec<i64> = c
            .frames
            .iter()
            .filter(|r| in_window(r))
            .map(|r| r.ts)
            .collect();
        let n = seen.len() as u64;
        seen.sort_unstable();
        seen.dedup();
        delivered += seen.len() as u64;
        duplicates += n - seen.len() as u64;
        let period = median_period.get(&c.group).copied();
        let mut prev = c.pre;
        for r in &c.frames {
            if let Some(p) = prev
                && in_window(r)
            {
                match (gap_method, p.seq, r.seq) {
                    // A server's seq and timestamps are its own: saturate,
                    // never overflow, whatever values it sends.
                    ("seq", Some(a), Some(b)) if b > a.saturating_add(1) => gaps += b - a - 1,
                    ("timestamp", _, _) => {
                        if let Some(period) = period.filter(|p| *p > 0) {
                            let d = r.ts.saturating_sub(p.ts);
                            if d.saturating_mul(2) > period.saturating_mul(3) {
                                gaps +=
                                    ((d as f64 / period as f64).round() as u64).saturating_sub(1);
                            }
                        }
                    }
                    _ => {}
                }
            }
            prev = Some(*r);
        }
    }

    let mut stalled_codes: BTreeMap<String, u64> = BTreeMap::new();
    let mut buffered = 0;
    for s in stalled {
        if let Some(code) = s.server_close {
            *stalled_codes.entry(code.to_string()).or_default() += 1;
        }
        buffered += s.buffered_frames;
        if s.connect.us.is_none() {
            failures += 1;
            let why = s.connect.error.as_deref().unwrap_or("unknown");
            *connect_errors.entry(short(why)).or_default() += 1;
        }
        retries += u64::from(s.connect.retries);
    }
    let stalled_connected = stalled.iter().filter(|s| s.connect.us.is_some()).count();
    let closed_by_server: u64 = close_codes.values().sum();

    let window_s = ((we - ws) as f64 / 1e6).max(1e-6);
    let server = meta.server.map(|mut s| {
        s.cpu_us_per_frame = s
            .cpu_ms
            .filter(|_| delivered > 0)
            .map(|ms| ms * 1000.0 / delivered as f64);
        s
    });
    let client_cpu = ClientCpu {
        cpu_ms: meta.client_cpu_us as f64 / 1000.0,
        core_percent: meta.client_cpu_us as f64 / 1e6 / window_s * 100.0,
        us_per_frame: (delivered > 0).then(|| meta.client_cpu_us as f64 / delivered as f64),
    };
    Report {
        label: meta.label,
        url: meta.url,
        round: meta.round,
        protocol: meta.protocol,
        negotiated_protocol: negotiated,
        compression: meta.compression,
        deflate_clients,
        subscribe: meta.subscribe,
        clients: clients.len(),
        warmup_s: meta.warmup_s,
        duration_s: meta.duration_s,
        grace_s: meta.grace_s,
        connect: ConnectReport {
            ok: ok + stalled_connected,
            failures,
            retries,
            seconds: meta.connect_seconds,
            time: Dist::from_us(&mut connect_us),
            errors: connect_errors,
        },
        first_update: Dist::from_us(&mut first_us),
        no_first_update: no_first,
        latency: Dist::from_us(&mut latency),
        spread: Dist::from_us(&mut spreads),
        tick_period: Dist::from_us(&mut periods),
        ticks: ticks_max,
        delivered,
        frame_bytes: (frame_bytes.2 > 0).then(|| FrameBytes {
            mean: frame_bytes.0 as f64 / frame_bytes.2 as f64,
            max: frame_bytes.1,
            wire_mean: wire_bytes as f64 / frame_bytes.2 as f64,
        }),
        expected,
        delivery: if expected == 0 {
            0.0
        } else {
            delivered as f64 / expected as f64
        },
        gaps,
        gap_method,
        duplicates,
        errors: failures as u64 + error_frames + bad_frames + lost + closed_by_server,
        error_frames,
        bad_frames,
        lost,
        lost_reasons,
        close_codes,
        clean_closes: clean,
        stalled: StalledReport {
            clients: stalled.len(),
            connected: stalled_connected,
            closed_by_server: stalled_codes.values().sum(),
            close_codes: stalled_codes,
            buffered_frames: buffered,
        },
        server,
        client_cpu,
        nofile_limit: meta.nofile_limit,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::client::Connect;

    fn client(group: usize, frames: &[(i64, i64, Option<u64>)]) -> ClientResult {
        ClientResult {
            group,
            connect: Connect {
                us: Some(1000),
                ..Default::default()
            },
            first_update_us: Some(10),
            frames: frames
                .iter()
                .map(|&(ts, recv, seq)| Rec {
                    ts,
                    recv,
                    seq,
                    bytes: 100,
                    wire: 50,
                })
                .collect(),
            clean_close: true,
            ..Default::default()
        }
    }

    fn meta() -> RunMeta {
        RunMeta {
            label: "A".into(),
            url: "ws://x".into(),
            round: 1,
            protocol: "compat".into(),
            compression: "deflate".into(),
            subscribe: "all".into(),
            warmup_s: 1.0,
            duration_s: 1.0,
            grace_s: 1.0,
            connect_seconds: 0.1,
            window: (1_000_000, 2_000_000),
            server: None,
            client_cpu_us: 500,
            nofile_limit: 1024,
        }
    }

    #[test]
    fn wild_seq_and_timestamps_from_a_server_are_no_panic() {
        let pre = Rec {
            ts: 1_000_000,
            recv: 1_000_000,
            seq: Some(u64::MAX),
            bytes: 100,
            wire: 50,
        };
        let mut c = client(0, &[(1_500_000, 1_500_000, Some(u64::MAX))]);
        c.pre = Some(pre);
        let r = build(meta(), &[c], &[]);
        assert_eq!(r.gaps, 0);
        assert_eq!(r.gap_method, "seq");
        // No seq: gaps by timestamp, after a pre-window frame stamped in
        // the year -250,000 (chrono parses it).
        let mut c = client(
            0,
            &[
                (1_100_000, 1_100_000, None),
                (1_200_000, 1_200_000, None),
                (1_300_000, 1_300_000, None),
            ],
        );
        c.pre = Some(Rec {
            ts: -8_000_000_000_000_000_000,
            recv: 1_000_000,
            seq: None,
            bytes: 100,
            wire: 50,
        });
        let r = build(meta(), &[c], &[]);
        assert_eq!(r.gap_method, "timestamp");
        assert_eq!(r.delivered, 3);
    }

    #[test]
    fn gaps_by_timestamp_without_seq() {
        // Ticks every 100 ms; the second client misses two of them.
        let full: Vec<_> = (0..10)
            .map(|i| {
                (
                    1_000_000 + i * 100_000,
                    1_000_000 + i * 100_000 + 2000,
                    None,
                )
            })
            .collect();
        let holed: Vec<_> = full
            .iter()
            .copied()
            .enumerate()
            .filter(|(i, _)| *i != 3 && *i != 4)
            .map(|(_, f)| f)
            .collect();
        let r = build(meta(), &[client(0, &full), client(0, &holed)], &[]);
        assert_eq!(r.gap_method, "timestamp");
        assert_eq!(r.ticks, 10);
        assert_eq!(r.expected, 20);
        assert_eq!(r.delivered, 18);
        assert_eq!(r.gaps, 2);
        assert_eq!(r.latency.map(|d| d.max_ms), Some(2.0));
        assert_eq!(r.tick_period.map(|d| d.max_ms), Some(100.0));
    }

    #[test]
    fn gaps_by_seq_and_duplicates() {
        let a = [
            (1_100_000, 1_100_500, Some(1)),
            (1_200_000, 1_200_900, Some(4)),
            (1_200_000, 1_201_000, Some(5)),
        ];
        let r = build(meta(), &[client(0, &a)], &[]);
        assert_eq!(r.gap_method, "seq");
        assert_eq!(r.gaps, 2);
        assert_eq!(r.duplicates, 1);
        assert_eq!(r.delivered, 2);
        assert_eq!(r.errors, 0);
        let t = table(&r);
        assert!(t.contains("delivery") && t.contains("1.0000"), "{t}");
    }

    #[test]
    fn compare_prints_both_with_ratios() {
        let a = [(1_100_000, 1_101_000, Some(1))];
        let b = [(1_100_000, 1_102_000, Some(1))];
        let ra = build(meta(), &[client(0, &a)], &[]);
        let mut m = meta();
        m.url = "ws://y".into();
        let rb = build(m, &[client(0, &b)], &[]);
        let t = compare_table(&[ra], &[rb]);
        assert!(t.contains("ws://x") && t.contains("ws://y"), "{t}");
        assert!(
            t.contains("A / B") && t.contains("0.50"),
            "latency ratio: {t}"
        );
    }

    #[test]
    fn a_comparison_takes_memory_from_round_one_and_says_so() {
        let run = |url: &str, kb: f64| {
            let mut m = meta();
            m.url = url.into();
            m.server = Some(ServerReport {
                pid: 1,
                rss_before_kb: Some(1000),
                rss_after_kb: Some(1000 + kb as u64),
                kb_per_connection: Some(kb),
                cpu_ms: Some(10.0),
                cpu_us_per_frame: Some(10.0),
            });
            build(m, &[client(0, &[(1_100_000, 1_101_000, Some(1))])], &[])
        };
        // Round 1 on fresh servers, then rounds that reuse the heap.
        let a = [run("ws://x", 7.0), run("ws://x", 0.1), run("ws://x", 0.1)];
        let b = [run("ws://y", 8.0), run("ws://y", 2.0), run("ws://y", 2.0)];
        let t = compare_table(&a, &b);
        let line = t
            .lines()
            .find(|l| l.contains("kB per connection"))
            .unwrap_or_else(|| panic!("no memory row: {t}"));
        assert!(line.contains("(round 1)"), "{line}");
        assert_eq!(
            line.split_whitespace().rev().take(3).collect::<Vec<_>>(),
            ["0.88", "8.00", "7.00"],
            "{line}"
        );
        // A single round needs no such note.
        let t = compare_table(&a[..1], &b[..1]);
        assert!(!t.contains("(round 1)"), "{t}");
    }
}
