//! Rendering: `render(&App, &mut Frame)`, pure (no I/O, no clock: every
//! relative time is computed from `App::now`). One file per screen region;
//! this one owns the frame layout, the header, the footer and the
//! view-only formatting helpers (relative times, durations, sparklines).
//! Plain text helpers (sanitizing, truncation, labels) live in
//! [`crate::text`]. Reads the app's state; never changes it.

pub(crate) mod anomalies;
pub(crate) mod detail;
pub(crate) mod health;
pub(crate) mod help;
pub(crate) mod skills;
pub(crate) mod team;

use chrono::{DateTime, Utc};
use ratatui::Frame;
use ratatui::layout::{Alignment, Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Clear, Paragraph};

use crate::text::{sanitize, subscription_label};
use crate::tui::app::{App, Badge, Mode, Overlay};
use crate::tui::layout::{MIN_HEIGHT, MIN_WIDTH, layout};
use crate::tui::theme::Theme;

/// Draw the whole dashboard.
pub fn render(app: &App, frame: &mut Frame) {
    let area = frame.area();
    let theme = app.theme();
    if area.width < MIN_WIDTH || area.height < MIN_HEIGHT {
        render_too_small(frame, area, &theme);
        return;
    }
    let areas = layout(area.width, area.height);
    render_header(app, frame, areas.header, &theme);
    skills::render(app, frame, areas.table, &theme);
    if let Some(a) = areas.anomalies {
        anomalies::render(app, frame, a, &theme);
    }
    if let Some(h) = areas.health {
        health::render(app, frame, h, &theme);
    }
    render_footer(app, frame, areas.footer, &theme);
    match &app.overlay {
        Overlay::None => {}
        Overlay::Help => help::render(app, frame, area, &theme),
        Overlay::Detail(name) => detail::render(app, name, frame, area, &theme),
    }
}

fn render_too_small(frame: &mut Frame, area: Rect, theme: &Theme) {
    frame.render_widget(Clear, area);
    let msg = vec![
        Line::styled("terminal too small", theme.warn),
        Line::styled(
            format!(
                "{}x{}, need {MIN_WIDTH}x{MIN_HEIGHT}",
                area.width, area.height
            ),
            theme.dim,
        ),
    ];
    let y = area.y + area.height.saturating_sub(2) / 2;
    let r = Rect::new(area.x, y, area.width, area.height.min(2));
    frame.render_widget(Paragraph::new(msg).alignment(Alignment::Center), r);
}

pub fn badge_style(theme: &Theme, b: Badge) -> ratatui::style::Style {
    match b {
        Badge::Connecting => theme.badge_connecting,
        Badge::Live => theme.badge_live,
        Badge::Stale => theme.badge_stale,
        Badge::Reconnecting => theme.badge_connecting,
        Badge::Failed => theme.badge_failed,
    }
}

fn render_header(app: &App, frame: &mut Frame, area: Rect, theme: &Theme) {
    let badge = app.badge();
    let sep = Span::styled(" │ ", theme.border);
    let mut spans = vec![
        Span::styled(" skillmon ", theme.title),
        Span::styled(format!(" {} ", badge.as_str()), badge_style(theme, badge)),
    ];
    if app.frozen.is_some() {
        spans.push(Span::raw(" "));
        spans.push(Span::styled(" FROZEN ", theme.badge_stale));
    }
    let unseen = app.attention.unseen;
    if unseen > 0 {
        spans.push(Span::styled(
            format!(" ⚠ {unseen} new "),
            theme.warn.add_modifier(ratatui::style::Modifier::BOLD),
        ));
    }
    let url_at = spans.len();
    spans.extend([
        sep.clone(),
        Span::styled(sanitize(&app.url).into_owned(), theme.accent),
        sep.clone(),
    ]);
    if let Some(team) = team::header(app, theme) {
        spans.extend([team, sep.clone()]);
    }
    spans.extend([
        Span::styled(subscription_label(&app.subscription), theme.base),
        sep.clone(),
    ]);
    let view = app.view();
    match view.updated_at {
        Some(t) => spans.push(Span::styled(
            format!("updated {}", ago(app.now, t)),
            theme.base,
        )),
        None => spans.push(Span::styled("no data yet", theme.dim)),
    }
    spans.push(sep.clone());
    spans.push(Span::styled(
        format!(
            "sort: {} {}",
            app.sort.as_str(),
            if app.ascending() { "▲" } else { "▼" }
        ),
        theme.base,
    ));
    if !app.filter.is_empty() {
        spans.push(sep);
        spans.push(Span::styled(
            format!("filter: {}", sanitize(&app.filter)),
            theme.warn,
        ));
    }
    // The URL (also in the Connection panel) gives way first when the
    // header is too long, e.g. for the new-anomaly count.
    let width: usize = spans.iter().map(ratatui::prelude::Span::width).sum();
    if app.attention.unseen > 0 && width > usize::from(area.width) {
        spans.drain(url_at..url_at + 2);
    }
    frame.render_widget(Paragraph::new(Line::from(spans)), area);
}

fn render_footer(app: &App, frame: &mut Frame, area: Rect, theme: &Theme) {
    let line = match app.mode {
        Mode::Filter => Line::from(vec![
            Span::styled(" filter: ", theme.key),
            Span::styled(sanitize(&app.filter).into_owned(), theme.base),
            Span::styled("▏", theme.accent),
            Span::styled("  Enter keep · Esc clear", theme.dim),
        ]),
        Mode::Subscribe => Line::from(vec![
            Span::styled(" skills: ", theme.key),
            Span::styled(sanitize(&app.input).into_owned(), theme.base),
            Span::styled("▏", theme.accent),
            Span::styled(
                "  comma-separated, empty = all · Enter subscribe · Esc cancel",
                theme.dim,
            ),
        ]),
        Mode::Normal => {
            let mut spans = vec![Span::raw(" ")];
            for (k, hint) in app.keymap.hints_where(|a| app.hint_applies(a)) {
                spans.push(Span::styled(k, theme.key));
                spans.push(Span::styled(format!(" {hint}  "), theme.dim));
            }
            if let Some(s) = &app.status {
                spans.push(Span::styled(format!("│ {}", sanitize(s)), theme.warn));
            }
            Line::from(spans)
        }
    };
    frame.render_widget(Paragraph::new(line), area);
}

/// A rectangle of at most `w` x `h` centred in `area`.
pub fn centered(area: Rect, w: u16, h: u16) -> Rect {
    let w = w.min(area.width);
    let h = h.min(area.height);
    let [_, mid, _] = Layout::vertical([
        Constraint::Fill(1),
        Constraint::Length(h),
        Constraint::Fill(1),
    ])
    .areas(area);
    let [_, c, _] = Layout::horizontal([
        Constraint::Fill(1),
        Constraint::Length(w),
        Constraint::Fill(1),
    ])
    .areas(mid);
    c
}

/// "5s ago", "3m ago", "2h ago", "4d ago".
pub fn ago(now: DateTime<Utc>, then: DateTime<Utc>) -> String {
    let s = (now - then).num_seconds();
    if s < 0 {
        "just now".into()
    } else if s < 60 {
        format!("{s}s ago")
    } else if s < 3600 {
        format!("{}m ago", s / 60)
    } else if s < 86_400 {
        format!("{}h ago", s / 3600)
    } else {
        format!("{}d ago", s / 86_400)
    }
}

/// "0.34s", "6.3s", "2m05s", "1h02m", "—" for none.
pub fn fmt_secs(v: Option<f64>) -> String {
    match v {
        None => "—".into(),
        Some(s) if !s.is_finite() => "—".into(),
        Some(s) if s < 1.0 => format!("{s:.2}s"),
        Some(s) if s < 60.0 => format!("{s:.1}s"),
        Some(s) if s < 3600.0 => {
            let s = s.round() as u64;
            format!("{}m{:02}s", s / 60, s % 60)
        }
        Some(s) => {
            let m = (s / 60.0).round() as u64;
            format!("{}h{:02}m", m / 60, m % 60)
        }
    }
}

pub fn fmt_rtt(d: std::time::Duration) -> String {
    let ms = d.as_secs_f64() * 1000.0;
    if ms < 10.0 {
        format!("{ms:.1} ms")
    } else {
        format!("{ms:.0} ms")
    }
}

/// Block-character sparkline of `values`, at most `width` cells (newest right).
pub fn sparkline(values: &[u64], width: usize) -> String {
    const BARS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];
    let vals = &values[values.len().saturating_sub(width)..];
    let max = vals.iter().copied().max().unwrap_or(0);
    vals.iter()
        .map(|v| {
            if max == 0 {
                BARS[0]
            } else {
                BARS[((*v as f64 / max as f64) * 7.0).round() as usize]
            }
        })
        .collect()
}

#[cfg(test)]
mod tests;
