//! Reports as text: the readable table of one run, and two servers side by
//! side with ratios (A / B). Pure: no I/O, no clock.

use super::report::short;
#[allow(clippy::wildcard_imports)]
use super::report::*;

/// One line of the table: a name, a value and its decimals.
struct Row {
    name: &'static str,
    value: Option<f64>,
    decimals: usize,
}

/// Figures that mean something only on a server that has not served a
/// load before: after round 1 the server reuses the heap it grew, so its
/// RSS barely moves and "kB per connection" reads near zero. A comparison
/// takes them from round 1 and says so.
const FIRST_ROUND_ONLY: [&str; 3] = [
    "server RSS before (kB)",
    "server RSS after (kB)",
    "server kB per connection",
];

fn rows(r: &Report) -> Vec<Row> {
    let row = |name, value, decimals| Row {
        name,
        value,
        decimals,
    };
    let d = |x: Option<Dist>, f: fn(&Dist) -> f64| x.as_ref().map(f);
    let n = |x: u64| Some(x as f64);
    let server = r.server.as_ref();
    vec![
        row("connected", n(r.connect.ok as u64), 0),
        row("connect failures", n(r.connect.failures as u64), 0),
        row("connect retries", n(r.connect.retries), 0),
        row("connect time p50 (ms)", d(r.connect.time, |d| d.p50_ms), 2),
        row("connect time p99 (ms)", d(r.connect.time, |d| d.p99_ms), 2),
        row("connect time max (ms)", d(r.connect.time, |d| d.max_ms), 2),
        row(
            "welcome → first update p50 (ms)",
            d(r.first_update, |d| d.p50_ms),
            2,
        ),
        row(
            "welcome → first update p99 (ms)",
            d(r.first_update, |d| d.p99_ms),
            2,
        ),
        row(
            "welcome → first update max (ms)",
            d(r.first_update, |d| d.max_ms),
            2,
        ),
        row("broadcast latency p50 (ms)", d(r.latency, |d| d.p50_ms), 2),
        row("broadcast latency p99 (ms)", d(r.latency, |d| d.p99_ms), 2),
        row("broadcast latency max (ms)", d(r.latency, |d| d.max_ms), 2),
        row("per-tick spread p50 (ms)", d(r.spread, |d| d.p50_ms), 2),
        row("per-tick spread max (ms)", d(r.spread, |d| d.max_ms), 2),
        row("tick period p50 (ms)", d(r.tick_period, |d| d.p50_ms), 1),
        row("tick period max (ms)", d(r.tick_period, |d| d.max_ms), 1),
        row("ticks in window", n(r.ticks), 0),
        row("frames delivered", n(r.delivered), 0),
        row("frame size mean (B)", r.frame_bytes.map(|b| b.mean), 0),
        row(
            "on the wire per frame (B)",
            r.frame_bytes.map(|b| b.wire_mean),
            1,
        ),
        row("frames expected", n(r.expected), 0),
        row("delivery", Some(r.delivery), 4),
        row("gaps", n(r.gaps), 0),
        row("duplicates", n(r.duplicates), 0),
        row("errors", n(r.errors), 0),
        row("closed by server", n(r.close_codes.values().sum()), 0),
        row("clean closes (1000)", n(r.clean_closes), 0),
        row("stalled clients", n(r.stalled.clients as u64), 0),
        row("stalled closed by server", n(r.stalled.closed_by_server), 0),
        row(
            "server RSS before (kB)",
            server.and_then(|s| s.rss_before_kb).map(|v| v as f64),
            0,
        ),
        row(
            "server RSS after (kB)",
            server.and_then(|s| s.rss_after_kb).map(|v| v as f64),
            0,
        ),
        row(
            "server kB per connection",
            server.and_then(|s| s.kb_per_connection),
            2,
        ),
        row(
            "server CPU in window (ms)",
            server.and_then(|s| s.cpu_ms),
            0,
        ),
        row(
            "server CPU per frame (µs)",
            server.and_then(|s| s.cpu_us_per_frame),
            2,
        ),
        row(
            "client CPU (% of a core)",
            Some(r.client_cpu.core_percent),
            1,
        ),
        row("client CPU per frame (µs)", r.client_cpu.us_per_frame, 2),
    ]
}

fn fmt(v: Option<f64>, decimals: usize) -> String {
    v.map_or_else(|| "—".to_string(), |v| format!("{v:.decimals$}"))
}

fn header(r: &Report) -> String {
    format!(
        "{} clients (+{} stalled), subscribe {}, protocol {}{}, compression {}{}, warm-up {}s, window {}s, grace {}s; gaps by {}",
        r.clients,
        r.stalled.clients,
        r.subscribe,
        r.protocol,
        r.negotiated_protocol
            .as_deref()
            .map(|p| format!(" (server chose {})", short(p)))
            .unwrap_or_default(),
        r.compression,
        if r.compression == "off" {
            String::new()
        } else {
            format!(" (agreed by {} clients)", r.deflate_clients)
        },
        r.warmup_s,
        r.duration_s,
        r.grace_s,
        r.gap_method
    )
}

fn details(r: &Report, out: &mut String) {
    for (why, n) in &r.connect.errors {
        out.push_str(&format!("  connect failed ×{n}: {why}\n"));
    }
    for (why, n) in &r.lost_reasons {
        out.push_str(&format!("  connection lost ×{n}: {why}\n"));
    }
    for (code, n) in &r.close_codes {
        let label = code
            .parse()
            .map_or_else(|_| code.clone(), crate::text::close_code_label);
        out.push_str(&format!("  closed by server ×{n}: code {label}\n"));
    }
    for (code, n) in &r.stalled.close_codes {
        out.push_str(&format!("  stalled closed by server ×{n}: code {code}\n"));
    }
}

/// The readable table of one run.
pub(crate) fn table(r: &Report) -> String {
    let mut out = format!(
        "skillmon bench {} (round {})\n{}\n",
        short(&r.url),
        r.round,
        header(r)
    );
    let rows = rows(r);
    let w = rows
        .iter()
        .map(|r| r.name.chars().count())
        .max()
        .unwrap_or(0);
    for row in rows {
        out.push_str(&format!(
            "  {:<w$}  {:>12}\n",
            row.name,
            fmt(row.value, row.decimals)
        ));
    }
    details(r, &mut out);
    out
}

fn median(mut v: Vec<f64>) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let m = v.len() / 2;
    Some(if v.len() % 2 == 1 {
        v[m]
    } else {
        f64::midpoint(v[m - 1], v[m])
    })
}

/// Two servers side by side: each figure is the median over the rounds
/// (memory: round 1's, see [`FIRST_ROUND_ONLY`]), with the ratio A / B (the
/// server under test over the reference it is compared to).
pub(crate) fn compare_table(a: &[Report], b: &[Report]) -> String {
    let (Some(a0), Some(b0)) = (a.first(), b.first()) else {
        return String::new();
    };
    let agg = |runs: &[Report]| -> Vec<(String, Row, Option<f64>)> {
        let per_run: Vec<Vec<Row>> = runs.iter().map(rows).collect();
        rows(&runs[0])
            .into_iter()
            .enumerate()
            .map(|(i, row)| {
                if runs.len() > 1 && FIRST_ROUND_ONLY.contains(&row.name) {
                    let v = row.value;
                    return (format!("{} (round 1)", row.name), row, v);
                }
                let vals = per_run.iter().filter_map(|r| r[i].value).collect();
                (row.name.to_owned(), row, median(vals))
            })
            .collect()
    };
    let (ra, rb) = (agg(a), agg(b));
    let mut out = format!(
        "skillmon bench: A = {}, B = {} ({} round{} each, alternating; medians)\n{}\n",
        short(&a0.url),
        short(&b0.url),
        a.len(),
        if a.len() == 1 { "" } else { "s" },
        header(a0)
    );
    let w = ra.iter().map(|r| r.0.chars().count()).max().unwrap_or(0);
    out.push_str(&format!(
        "  {:<w$}  {:>12}  {:>12}  {:>8}\n",
        "metric", "A", "B", "A / B"
    ));
    for ((name, row, va), (_, _, vb)) in ra.into_iter().zip(rb) {
        let ratio = match (va, vb) {
            (Some(x), Some(y)) if y != 0.0 => format!("{:.2}", x / y),
            _ => "—".into(),
        };
        out.push_str(&format!(
            "  {:<w$}  {:>12}  {:>12}  {:>8}\n",
            name,
            fmt(va, row.decimals),
            fmt(vb, row.decimals),
            ratio
        ));
    }
    for (side, runs) in [("A", a), ("B", b)] {
        let mut d = String::new();
        for r in runs {
            details(r, &mut d);
        }
        if !d.is_empty() {
            out.push_str(&format!("{side}:\n{d}"));
        }
    }
    out
}
