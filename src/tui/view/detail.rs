//! The detail view of one skill: its numbers, its history as charts and
//! its anomalies. From a server that offers history (ext): the last 24 h
//! or 1 h in the server's buckets (invocations, completion %, average
//! duration, anomaly markers at their time; the window key switches);
//! otherwise (session-buddy) the completion and duration samples this
//! session received, and a line saying the server has no history. Axis
//! labels are wall-clock times in UTC (the server's bucket edges are UTC),
//! computed from the data, never from a clock.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::symbols::Marker;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Axis, Block, Chart, Clear, Dataset, GraphType, Paragraph};

use chrono::{DateTime, Utc};
use ratatui::style::Style;

use super::{anomalies, fmt_secs};
use crate::protocol::{Anomaly, HistoryWindow};
use crate::text::sanitize;
use crate::tui::app::{App, Series};
use crate::tui::keymap::Action;
use crate::tui::theme::Theme;

pub(crate) fn render(app: &App, name: &str, frame: &mut Frame, area: Rect, theme: &Theme) {
    // Full screen between the header and the footer.
    let popup = Rect::new(
        area.x,
        area.y + 1,
        area.width,
        area.height.saturating_sub(2),
    );
    frame.render_widget(Clear, popup);
    let block = Block::bordered()
        .border_style(theme.title)
        .title(Span::styled(
            format!(" {} — Enter or Esc closes ", sanitize(name)),
            theme.title,
        ));
    let inner = block.inner(popup);
    frame.render_widget(block, popup);

    let view = app.view();
    let row = view.rows.iter().find(|r| r.stat.skill_name == name);
    let summary = match row {
        Some(r) => {
            let s = &r.stat;
            let mut spans = vec![
                Span::styled(format!("rank {}  ", r.rank), theme.dim),
                Span::styled(format!("{} invocations  ", s.total_invocations), theme.base),
                Span::styled(
                    format!("{:.1}% completed  ", s.completion_rate),
                    super::skills::completion_style(theme, s.completion_rate),
                ),
                Span::styled(
                    format!("avg {}", fmt_secs(s.avg_duration_seconds)),
                    theme.base,
                ),
            ];
            if let (Some(a), Some(b)) = (s.invocations_1h, s.invocations_24h) {
                spans.push(Span::styled(
                    format!("  {a} in 1h · {b} in 24h"),
                    theme.base,
                ));
            }
            Line::from(spans)
        }
        None => Line::styled("not in the latest update", theme.warn),
    };
    let list: Vec<&Anomaly> = view
        .anomalies
        .iter()
        .filter(|a| a.skill_name == name)
        .collect();
    let anom_h = if list.is_empty() {
        3
    } else {
        (list.len().min(5) as u16) + 3
    };
    let by_source_h = super::team::breakdown_height(app, name);
    let [top, charts, by_source, bottom] = Layout::vertical([
        Constraint::Length(2),
        Constraint::Fill(1),
        Constraint::Length(by_source_h),
        Constraint::Length(anom_h),
    ])
    .areas(inner);
    frame.render_widget(Paragraph::new(vec![summary, history_line(app, theme)]), top);
    if let Some(t) = super::team::breakdown(app, name, theme) {
        frame.render_widget(t, by_source);
    }

    match app.history.offered {
        Some(true) => match app.history.get(app.window, name) {
            Some(series) if series.span().is_some() => history_charts(series, frame, charts, theme),
            _ => frame.render_widget(
                Paragraph::new(Line::styled(
                    format!("asking the server for the last {}…", app.window),
                    theme.dim,
                ))
                .block(
                    Block::bordered()
                        .border_style(theme.border)
                        .title(" History "),
                ),
                charts,
            ),
        },
        _ => sample_charts(app, name, frame, charts, theme),
    }

    if list.is_empty() {
        frame.render_widget(
            Paragraph::new(Line::styled("No anomalies for this skill.", theme.dim)).block(
                Block::bordered()
                    .border_style(theme.border)
                    .title(Span::styled(" Anomalies ", theme.title)),
            ),
            bottom,
        );
    } else {
        let title = format!(" Anomalies ({}) ", list.len());
        frame.render_widget(
            anomalies::table(app, &list, bottom.width, theme, title),
            bottom,
        );
    }
}

/// What the charts show, and how to switch.
fn history_line<'a>(app: &App, theme: &Theme) -> Line<'a> {
    match app.history.offered {
        Some(true) => {
            let key = app
                .keymap
                .keys_for(Action::Window)
                .first()
                .map(std::string::ToString::to_string);
            let other = match app.window {
                HistoryWindow::Hour => HistoryWindow::Day,
                HistoryWindow::Day => HistoryWindow::Hour,
            };
            let buckets = match app.window {
                HistoryWindow::Hour => "1-min",
                HistoryWindow::Day => "15-min",
            };
            let mut text = format!(
                "history: server's last {} ({buckets} buckets, UTC) · • = anomaly",
                app.window
            );
            if let Some(k) = key {
                text.push_str(&format!(" · {k}: {other}"));
            }
            Line::styled(text, theme.dim)
        }
        Some(false) => Line::styled(
            "history: this server does not offer it (charts: this session's samples)",
            theme.dim,
        ),
        None => Line::styled("history: waiting for the connection", theme.dim),
    }
}

/// "HH:MM" (or "HH:MM:SS" for short spans) in UTC.
fn clock(t: DateTime<Utc>, seconds: bool) -> String {
    if seconds {
        t.format("%H:%M:%S").to_string()
    } else {
        t.format("%H:%M").to_string()
    }
}

/// The x axis of a span starting at `start`, `len` seconds long: three
/// wall-clock labels.
fn time_axis<'a>(start: DateTime<Utc>, len: f64, theme: &Theme) -> Axis<'a> {
    let seconds = len < 600.0;
    let at = |f: f64| {
        clock(
            start + chrono::Duration::milliseconds((len * f * 1000.0) as i64),
            seconds,
        )
    };
    Axis::default().style(theme.dim).bounds([0.0, len]).labels([
        Line::from(at(0.0)),
        Line::from(at(0.5)),
        Line::from(at(1.0)),
    ])
}

fn chart_block<'a>(title: String, theme: &Theme) -> Block<'a> {
    Block::bordered()
        .border_style(theme.border)
        .title(Span::styled(title, theme.title))
}

/// A vertical dotted line at each `x`, from 0 to `top`.
fn marker_points(xs: &[f64], top: f64) -> Vec<(f64, f64)> {
    const STEPS: usize = 16;
    xs.iter()
        .flat_map(|x| (0..=STEPS).map(move |i| (*x, top * i as f64 / STEPS as f64)))
        .collect()
}

fn markers_dataset(points: &[(f64, f64)], style: Style) -> Dataset<'_> {
    Dataset::default()
        .marker(Marker::Dot)
        .graph_type(GraphType::Scatter)
        .style(style)
        .data(points)
}

/// The server's buckets: invocations on top, completion % and average
/// duration below, each with the window's anomalies marked.
fn history_charts(series: &Series, frame: &mut Frame, area: Rect, theme: &Theme) {
    let Some((start, end)) = series.span() else {
        return;
    };
    let len = ((end - start).num_seconds() as f64).max(1.0);
    let half = series.window.bucket_seconds() as f64 / 2.0;
    let x = |t: DateTime<Utc>| (t - start).num_milliseconds() as f64 / 1000.0;
    let invocations: Vec<(f64, f64)> = series
        .buckets
        .iter()
        .map(|b| (x(b.start) + half, b.invocations as f64))
        .collect();
    let completion: Vec<(f64, f64)> = series
        .buckets
        .iter()
        .filter_map(|b| b.completion().map(|c| (x(b.start) + half, c)))
        .collect();
    let durations: Vec<(f64, f64)> = series
        .buckets
        .iter()
        .filter_map(|b| b.avg_duration.map(|d| (x(b.start) + half, d)))
        .collect();
    let marks: Vec<f64> = series
        .markers
        .iter()
        .map(|m| x(m.at))
        .filter(|v| (0.0..=len).contains(v))
        .collect();
    let imax = invocations
        .iter()
        .map(|p| p.1)
        .fold(0.0_f64, f64::max)
        .max(1.0);
    let dmax = durations
        .iter()
        .map(|p| p.1)
        .fold(0.0_f64, f64::max)
        .max(0.001)
        * 1.2;
    let inv_marks = marker_points(&marks, imax);
    let comp_marks = marker_points(&marks, 100.0);
    let dur_marks = marker_points(&marks, dmax);
    let per = match series.window {
        HistoryWindow::Hour => "minute",
        HistoryWindow::Day => "15 min",
    };
    let total = series
        .buckets
        .iter()
        .fold(0u64, |a, b| a.saturating_add(b.invocations));
    let [top, bottom] = Layout::vertical([Constraint::Fill(1), Constraint::Fill(1)]).areas(area);
    let [left, right] =
        Layout::horizontal([Constraint::Fill(1), Constraint::Fill(1)]).areas(bottom);

    let inv = Chart::new(vec![
        Dataset::default()
            .marker(Marker::HalfBlock)
            .graph_type(GraphType::Bar)
            .style(theme.spark)
            .data(&invocations),
        markers_dataset(&inv_marks, theme.bad),
    ])
    .block(chart_block(
        format!(" Invocations per {per} · {total} in {} ", series.window),
        theme,
    ))
    .x_axis(time_axis(start, len, theme))
    .y_axis(
        Axis::default()
            .style(theme.dim)
            .bounds([0.0, imax])
            .labels([Line::from("0"), Line::from(format!("{imax:.0}"))]),
    );
    frame.render_widget(inv, top);

    let comp = Chart::new(vec![
        Dataset::default()
            .marker(Marker::Braille)
            .graph_type(GraphType::Line)
            .style(theme.chart_a)
            .data(&completion),
        markers_dataset(&comp_marks, theme.bad),
    ])
    .block(chart_block(" Completion % ".into(), theme))
    .x_axis(time_axis(start, len, theme))
    .y_axis(
        Axis::default()
            .style(theme.dim)
            .bounds([0.0, 100.0])
            .labels(["0", "50", "100"]),
    );
    frame.render_widget(comp, left);

    let dur = Chart::new(vec![
        Dataset::default()
            .marker(Marker::Braille)
            .graph_type(GraphType::Line)
            .style(theme.chart_b)
            .data(&durations),
        markers_dataset(&dur_marks, theme.bad),
    ])
    .block(chart_block(" Avg duration ".into(), theme))
    .x_axis(time_axis(start, len, theme))
    .y_axis(
        Axis::default()
            .style(theme.dim)
            .bounds([0.0, dmax])
            .labels([Line::from("0"), Line::from(fmt_secs(Some(dmax)))]),
    );
    frame.render_widget(dur, right);
}

/// This session's samples (a server without history, e.g. session-buddy).
fn sample_charts(app: &App, name: &str, frame: &mut Frame, charts: Rect, theme: &Theme) {
    let view = app.view();
    let hist: Vec<_> = view
        .history
        .get(name)
        .map(|h| h.iter().collect())
        .unwrap_or_default();
    let [left, right] =
        Layout::horizontal([Constraint::Fill(1), Constraint::Fill(1)]).areas(charts);
    if hist.len() < 2 {
        let msg = format!("collecting history… ({} of 2 points)", hist.len());
        frame.render_widget(
            Paragraph::new(Line::styled(msg, theme.dim)).block(
                Block::bordered()
                    .border_style(theme.border)
                    .title(" History "),
            ),
            charts,
        );
        return;
    }
    let (Some(first), Some(newest)) = (hist.first().map(|s| s.at), hist.last().map(|s| s.at))
    else {
        return;
    };
    let x = |s: &crate::tui::app::Sample| (s.at - first).num_milliseconds() as f64 / 1000.0;
    let len = ((newest - first).num_milliseconds() as f64 / 1000.0).max(1.0);
    let completion: Vec<(f64, f64)> = hist.iter().map(|s| (x(s), s.completion)).collect();
    let durations: Vec<(f64, f64)> = hist
        .iter()
        .filter_map(|s| s.duration.filter(|d| d.is_finite()).map(|d| (x(s), d)))
        .collect();
    let dmax = durations
        .iter()
        .map(|p| p.1)
        .fold(0.0_f64, f64::max)
        .max(0.001)
        * 1.2;
    let c = Chart::new(vec![
        Dataset::default()
            .marker(Marker::Braille)
            .graph_type(GraphType::Line)
            .style(theme.chart_a)
            .data(&completion),
    ])
    .block(chart_block(" Completion % ".into(), theme))
    .x_axis(time_axis(first, len, theme))
    .y_axis(
        Axis::default()
            .style(theme.dim)
            .bounds([0.0, 100.0])
            .labels(["0", "50", "100"]),
    );
    frame.render_widget(c, left);
    let d = Chart::new(vec![
        Dataset::default()
            .marker(Marker::Braille)
            .graph_type(GraphType::Line)
            .style(theme.chart_b)
            .data(&durations),
    ])
    .block(chart_block(" Avg duration ".into(), theme))
    .x_axis(time_axis(first, len, theme))
    .y_axis(
        Axis::default()
            .style(theme.dim)
            .bounds([0.0, dmax])
            .labels([Line::from("0"), Line::from(fmt_secs(Some(dmax)))]),
    );
    frame.render_widget(d, right);
}
