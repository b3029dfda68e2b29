//! The anomalies panel: type (drop and spike styled apart), skill, deviation
//! score coloured by magnitude, detected-at as a relative time, and
//! baseline → observed when the server sends them.

use ratatui::Frame;
use ratatui::layout::{Constraint, Rect};
use ratatui::style::{Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Cell, Paragraph, Row, Table};

use super::ago;
use crate::protocol::{Anomaly, parse_timestamp};
use crate::text::{sanitize, truncate_width};
use crate::tui::app::App;
use crate::tui::theme::Theme;

pub(crate) fn type_style(theme: &Theme, kind: &str) -> Style {
    let k = kind.to_ascii_lowercase();
    if k.contains("drop") {
        theme.drop
    } else if k.contains("spike") {
        theme.spike
    } else {
        theme.other_anomaly
    }
}

pub(crate) fn score_style(theme: &Theme, score: Option<f64>) -> Style {
    match score.map(f64::abs) {
        Some(z) if z >= 3.0 => theme.bad,
        Some(z) if z >= 2.0 => theme.warn,
        _ => theme.base,
    }
}

pub(crate) fn fmt_score(score: Option<f64>) -> String {
    match score {
        Some(z) if z.is_finite() => format!("{z:+.1}"),
        _ => "—".into(),
    }
}

pub(crate) fn fmt_value(v: f64) -> String {
    if v.abs() >= 100.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.2}")
    }
}

pub(crate) fn detected(app: &App, a: &Anomaly) -> String {
    match parse_timestamp(&a.detected_at) {
        Some(t) => ago(app.now, t),
        None => truncate_width(&a.detected_at, 10),
    }
}

pub(crate) fn change(a: &Anomaly) -> String {
    // skillmon's live rows have known units: completion in percent,
    // durations in seconds. Rows from elsewhere are shown as they come.
    let live = a.source.as_deref() == Some("live");
    let unit = match a.anomaly_type.as_str() {
        "performance_drop" | "performance_spike" if live => "%",
        t if live && t.starts_with("duration") => "s",
        _ => "",
    };
    let f = |v: f64| {
        if unit == "%" {
            format!("{v:.1}%")
        } else {
            format!("{}{unit}", fmt_value(v))
        }
    };
    match (a.baseline_value, a.observed_value) {
        (Some(b), Some(o)) => format!("{} → {}", f(b), f(o)),
        (None, Some(o)) => format!("→ {}", f(o)),
        (Some(b), None) => format!("{} →", f(b)),
        (None, None) => String::new(),
    }
}

/// Rows for a list of anomalies (shared with the detail view).
pub(crate) fn table<'a>(
    app: &App,
    list: &[&Anomaly],
    width: u16,
    theme: &Theme,
    title: String,
) -> Table<'a> {
    let inner = width.saturating_sub(2);
    let show_change = list
        .iter()
        .any(|a| a.baseline_value.is_some() || a.observed_value.is_some())
        && inner >= 60;
    let type_w = list
        .iter()
        .map(|a| unicode_width::UnicodeWidthStr::width(sanitize(&a.anomaly_type).as_ref()))
        .max()
        .unwrap_or(4)
        // Room for `performance_spike` when the panel is wide enough.
        .clamp(4, if inner >= 70 { 17 } else { 13 }) as u16;
    let team = app.team.is_some();
    let fixed = type_w
        + 6
        + 9
        + if show_change { 16 } else { 0 }
        + if team { super::team::SOURCE_W + 1 } else { 0 };
    let spacing = if show_change { 4 } else { 3 };
    let skill_w = inner.saturating_sub(fixed + spacing).max(4);
    // Identical rows (two sources, one anomaly) seen so far, for their sources.
    let mut seen: std::collections::HashMap<(&str, &str, &str), usize> =
        std::collections::HashMap::new();
    let rows: Vec<Row> = list
        .iter()
        .map(|a| {
            let nth = if team {
                let n = seen
                    .entry((&a.skill_name, &a.detected_at, &a.anomaly_type))
                    .or_insert(0);
                *n += 1;
                *n - 1
            } else {
                0
            };
            let mut cells = vec![
                Cell::from(Span::styled(
                    truncate_width(&a.anomaly_type, usize::from(type_w)),
                    type_style(theme, &a.anomaly_type),
                )),
                Cell::from(truncate_width(&a.skill_name, usize::from(skill_w))),
                Cell::from(Span::styled(
                    format!("{:>6}", fmt_score(a.deviation_score)),
                    score_style(theme, a.deviation_score),
                )),
                Cell::from(Span::styled(detected(app, a), theme.dim)),
            ];
            if show_change {
                cells.push(Cell::from(change(a)));
            }
            cells.extend(super::team::source_cell(app, a, nth));
            if app.attention.is_fresh(a, app.now) {
                Row::new(cells).style(fresh_style(theme))
            } else {
                Row::new(cells)
            }
        })
        .collect();
    let mut header = vec!["Type", "Skill", " Score", "Detected"];
    let mut widths = vec![
        Constraint::Length(type_w),
        Constraint::Length(skill_w),
        Constraint::Length(6),
        Constraint::Length(9),
    ];
    if show_change {
        header.push("Base → obs");
        widths.push(Constraint::Length(16));
    }
    let title_style = if app.attention.title_flash(app.now) {
        flash_style(theme)
    } else {
        theme.title
    };
    if team {
        header.push("Source");
        widths.push(Constraint::Length(super::team::SOURCE_W));
    }
    Table::new(rows, widths)
        .header(Row::new(header).style(theme.header_row))
        .column_spacing(1)
        .block(
            Block::bordered()
                .border_style(theme.border)
                .title(Span::styled(title, title_style)),
        )
}

/// A new anomaly's row, for [`crate::tui::app::HIGHLIGHT_SECS`] (bold,
/// underlined: no background, so every theme keeps the terminal's own).
pub(crate) fn fresh_style(theme: &Theme) -> Style {
    theme
        .warn
        .add_modifier(Modifier::BOLD | Modifier::UNDERLINED)
}

/// The panel title's "on" phase while new anomalies are highlighted.
pub(crate) fn flash_style(theme: &Theme) -> Style {
    theme.warn.add_modifier(Modifier::BOLD | Modifier::REVERSED)
}

pub(crate) fn render(app: &App, frame: &mut Frame, area: Rect, theme: &Theme) {
    let list: Vec<&Anomaly> = app.view().anomalies.iter().collect();
    if list.is_empty() {
        let block = Block::bordered()
            .border_style(theme.border)
            .title(Span::styled(" Anomalies ", theme.title));
        let msg = if app.view().updated_at.is_none() {
            "waiting for data…"
        } else if app.subscription != crate::protocol::Subscription::All
            && app.health.server.is_none()
        {
            "No anomalies reported (session-buddy sends none to a filtered subscription)."
        } else {
            "No anomalies reported."
        };
        frame.render_widget(
            Paragraph::new(Line::styled(msg, theme.dim)).block(block),
            area,
        );
        return;
    }
    let title = format!(" Anomalies ({}) ", list.len());
    frame.render_widget(table(app, &list, area.width, theme, title), area);
}

#[cfg(test)]
mod unit_tests {
    use super::*;

    fn anomaly(kind: &str, source: Option<&str>) -> Anomaly {
        Anomaly {
            skill_name: "s".into(),
            detected_at: String::new(),
            anomaly_type: kind.into(),
            deviation_score: Some(-2.5),
            baseline_value: Some(87.857),
            observed_value: Some(0.0),
            source: source.map(Into::into),
        }
    }

    #[test]
    fn live_values_carry_their_units() {
        assert_eq!(
            change(&anomaly("performance_drop", Some("live"))),
            "87.9% → 0.0%"
        );
        assert_eq!(
            change(&anomaly("duration_spike", Some("live"))),
            "87.86s → 0.00s"
        );
        assert_eq!(
            change(&anomaly("performance_drop", Some("table"))),
            "87.86 → 0.00"
        );
        assert_eq!(change(&anomaly("drop", None)), "87.86 → 0.00");
    }
}
