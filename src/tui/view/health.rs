//! The connection-health panel: state, URL, connected since, round-trip
//! time (last / average), messages and rate, bytes received and on the
//! wire (the compression ratio), seq gaps, reconnects, what
//! was dropped (only when something was), last close code and reason.

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Paragraph};

use super::{ago, badge_style, fmt_rtt};
use crate::text::{close_code_label, sanitize};
use crate::tui::app::{App, ConnState};
use crate::tui::theme::Theme;

pub(crate) fn render(app: &App, frame: &mut Frame, area: Rect, theme: &Theme) {
    let h = &app.health;
    let label = |s: &str| Span::styled(format!("{s:<11}"), theme.dim);
    let badge = app.badge();
    let mut state = vec![
        label("State"),
        Span::styled(format!(" {} ", badge.as_str()), badge_style(theme, badge)),
    ];
    match &app.conn {
        ConnState::Reconnecting { retry_at, attempt } => {
            let text = match retry_at {
                Some(t) if *t > app.now => {
                    let s = (*t - app.now).num_milliseconds() as f64 / 1000.0;
                    format!(" retry {s:.1}s")
                }
                Some(_) => format!(" attempt {}", attempt + 1),
                None => format!(" attempt {attempt}"),
            };
            state.push(Span::styled(text, theme.base));
        }
        ConnState::Failed { reason } => {
            state.push(Span::styled(format!(" {}", sanitize(reason)), theme.bad));
        }
        _ => {}
    }
    // Most telling first: short terminals cut the panel from the bottom
    // (the URL is in the header too).
    let mut lines = vec![Line::from(state)];
    let url_line = Line::from(vec![
        label("URL"),
        Span::styled(sanitize(&app.url).into_owned(), theme.accent),
    ]);
    let since = match h.connected_since {
        Some(t) => format!("{} ({})", t.format("%H:%M:%S UTC"), ago(app.now, t)),
        None => "—".into(),
    };
    lines.push(Line::from(vec![label("Connected"), Span::raw(since)]));
    let server = match (&h.server, h.interval) {
        (Some(s), Some(i)) => format!("{} · every {:.1}s", sanitize(s), i.as_secs_f64()),
        (Some(s), None) => sanitize(s).into_owned(),
        (None, _) if h.ever_connected => "session-buddy compatible".into(),
        (None, _) => "—".into(),
    };
    let server_line = Line::from(vec![label("Server"), Span::raw(server)]);
    let rtt = match (h.rtt_last, h.rtt_avg()) {
        (Some(l), Some(a)) => format!("{} last · {} avg", fmt_rtt(l), fmt_rtt(a)),
        _ => "—".into(),
    };
    lines.push(Line::from(vec![label("RTT"), Span::raw(rtt)]));
    lines.push(Line::from(vec![
        label("Messages"),
        Span::raw(format!("{} · {:.1}/s", h.messages, h.rate(app.now))),
    ]));
    lines.push(Line::from(vec![
        label("Bytes"),
        // The panel's inside, less the label's 11 columns.
        Span::raw(bytes_line(
            &h.traffic,
            usize::from(area.width.saturating_sub(2 + 11)),
        )),
    ]));
    let gaps = if h.seq_gaps == 0 && h.seq_duplicates == 0 {
        if h.last_seq.is_some() {
            "0".to_string()
        } else if app.live.updates == 0 {
            "—".to_string()
        } else {
            "— (no seq)".to_string()
        }
    } else {
        format!(
            "{} ({} missed, {} dup)",
            h.seq_gaps, h.seq_missed, h.seq_duplicates
        )
    };
    let gap_style = if h.seq_gaps > 0 {
        theme.warn
    } else {
        theme.base
    };
    lines.push(Line::from(vec![
        label("Seq gaps"),
        Span::styled(gaps, gap_style),
        Span::raw(format!(" · reconnects {}", h.reconnects)),
    ]));
    // Shown only when something was dropped: a well-behaved server never
    // sees this line.
    if h.skipped_updates > 0 || h.rejected_rows > 0 || h.ignored_frames > 0 {
        lines.push(Line::from(vec![
            label("Dropped"),
            Span::styled(
                format!(
                    "{} skipped · {} bad rows · {} ignored",
                    h.skipped_updates, h.rejected_rows, h.ignored_frames
                ),
                theme.warn,
            ),
        ]));
    }
    let close = match &h.last_close {
        None => "—".to_string(),
        Some((code, reason)) => {
            let code_txt = code.map_or_else(|| "no connection".into(), close_code_label);
            if reason.is_empty() {
                code_txt
            } else {
                format!("{code_txt}: {}", sanitize(reason))
            }
        }
    };
    lines.push(Line::from(vec![label("Last close"), Span::raw(close)]));
    if let Some(e) = &h.last_error {
        lines.push(Line::from(vec![
            label("Last error"),
            Span::styled(sanitize(e).into_owned(), theme.warn),
        ]));
    }
    lines.push(url_line);
    lines.push(server_line);
    let block = Block::bordered()
        .border_style(theme.border)
        .title(Span::styled(" Connection ", theme.title));
    frame.render_widget(Paragraph::new(lines).block(block), area);
}

/// "1.2 MiB · 61 KiB on the wire (0.05×)" under permessage-deflate (the
/// bytes after inflating, on the wire, and their ratio), "… (no
/// compression)" when the connection did not agree it; shorter forms when
/// `width` columns do not hold those.
fn bytes_line(t: &crate::client::Traffic, width: usize) -> String {
    use crate::size::human;
    if t.received == 0 {
        return "—".into();
    }
    let (long, short) = if let (true, Some(r)) = (t.deflate, t.ratio()) {
        let (inflated, wire) = (human(t.inflated as usize), human(t.wire as usize));
        (
            format!("{inflated} · {wire} on the wire ({r:.2}×)"),
            format!("{inflated} · wire {r:.2}×"),
        )
    } else {
        let received = human(t.received as usize);
        (
            format!("{received} (no compression)"),
            format!("{received} · plain"),
        )
    };
    if long.chars().count() <= width {
        long
    } else {
        short
    }
}
