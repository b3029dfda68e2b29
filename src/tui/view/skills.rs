//! The top-skills table: rank, skill, invocations with change, completion
//! bar, average duration, 1h/24h (when the server sends them) and a trend
//! sparkline: the server's last hour (ext `history`, extended live) when
//! it has one, else the client's own samples. Columns drop out, least
//! important first, when the terminal is narrow.

use ratatui::Frame;
use ratatui::layout::{Constraint, Rect};
use ratatui::style::Style;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Cell, Paragraph, Row, Table, TableState};

use super::{fmt_secs, sparkline};
use crate::protocol::{HistoryWindow, Subscription};
use crate::text::{PLACEHOLDER_SCREEN, has_ext, or_placeholder, sanitize, truncate_width};
use crate::tui::app::{App, SkillRow, SortKey};
use crate::tui::layout::{table_capacity, table_offset};
use crate::tui::theme::Theme;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Col {
    Rank,
    Skill,
    Invocations,
    Completion,
    Duration,
    H1,
    H24,
    Trend,
}

const BAR: usize = 8;
const MIN_SKILL: u16 = 12;

fn width_of(c: Col, bar: bool) -> u16 {
    match c {
        Col::Rank => 3,
        Col::Skill => 0,
        Col::Invocations => 11,
        Col::Completion => {
            if bar {
                (BAR + 7) as u16
            } else {
                11
            }
        }
        Col::Duration => 8,
        Col::H1 => 5,
        Col::H24 => 6,
        Col::Trend => 12,
    }
}

/// Completion style by value.
pub(crate) fn completion_style(theme: &Theme, rate: f64) -> Style {
    if rate >= 90.0 {
        theme.good
    } else if rate >= 70.0 {
        theme.warn
    } else {
        theme.bad
    }
}

/// Per-update invocation counts of a skill, from its history.
pub(crate) fn activity(app: &App, skill: &str) -> Vec<u64> {
    app.view()
        .history
        .get(skill)
        .map(|h| {
            h.iter()
                .zip(h.iter().skip(1))
                .map(|(a, b)| b.total.saturating_sub(a.total))
                .collect()
        })
        .unwrap_or_default()
}

pub(crate) fn render(app: &App, frame: &mut Frame, area: Rect, theme: &Theme) {
    let rows = app.visible_rows();
    let total = app.view().rows.len();
    let title = if rows.len() == total {
        format!(" Top skills ({total}) ")
    } else {
        format!(" Top skills ({} of {total}) ", rows.len())
    };
    let block = Block::bordered()
        .border_style(theme.border)
        .title(Span::styled(title, theme.title));
    if rows.is_empty() {
        let msg = if let crate::tui::app::ConnState::Failed { reason } = &app.conn {
            format!("connection failed, not retrying: {}", sanitize(reason))
        } else if app.view().updated_at.is_none() {
            "waiting for the first update…".to_string()
        } else if !app.filter.is_empty() && total > 0 {
            format!(
                "no skill matches \"{}\" (Esc clears the filter)",
                sanitize(&app.filter)
            )
        } else {
            match &app.subscription {
                Subscription::All => "no skill has been used yet".to_string(),
                Subscription::Skills(_) => "no data for the subscribed skills yet".to_string(),
            }
        };
        frame.render_widget(
            Paragraph::new(Line::styled(msg, theme.dim)).block(block),
            area,
        );
        return;
    }

    let has_ext = has_ext(app.view().rows.iter().map(|r| &r.stat));
    let mut cols = vec![
        Col::Rank,
        Col::Skill,
        Col::Invocations,
        Col::Completion,
        Col::Duration,
    ];
    if has_ext {
        cols.push(Col::H1);
        cols.push(Col::H24);
    }
    cols.push(Col::Trend);
    let inner = area.width.saturating_sub(2);
    let mut bar = true;
    let skill_w = loop {
        let fixed: u16 = cols.iter().map(|c| width_of(*c, bar)).sum();
        let spacing = cols.len().saturating_sub(1) as u16;
        let w = inner.saturating_sub(fixed + spacing);
        if w >= MIN_SKILL {
            break w;
        }
        if let Some(pos) = [Col::Trend, Col::H24, Col::H1, Col::Duration]
            .iter()
            .find_map(|c| cols.iter().position(|x| x == c))
        {
            cols.remove(pos);
        } else if bar {
            bar = false;
        } else {
            break w.max(1);
        }
    };
    // The skill column takes what the names need; the trend gets the rest.
    let widest = rows
        .iter()
        .map(|r| unicode_width::UnicodeWidthStr::width(sanitize(&r.stat.skill_name).as_ref()))
        .max()
        .unwrap_or(0)
        .clamp(usize::from(MIN_SKILL), usize::from(u16::MAX)) as u16;
    let mut trend_w = width_of(Col::Trend, bar);
    let skill_w = if cols.contains(&Col::Trend) && widest < skill_w {
        trend_w += skill_w - widest;
        widest
    } else {
        skill_w
    };
    let trend_w = usize::from(trend_w);

    let arrow = if app.ascending() { "▲" } else { "▼" };
    let header_cell = |c: Col| {
        let (label, key) = match c {
            Col::Rank => ("#", SortKey::Rank),
            Col::Skill => ("Skill", SortKey::Name),
            Col::Invocations => ("Invocations", SortKey::Invocations),
            Col::Completion => ("Completion", SortKey::Completion),
            Col::Duration => ("Avg dur", SortKey::Duration),
            Col::H1 => ("1h", SortKey::Last1h),
            Col::H24 => ("24h", SortKey::Last24h),
            Col::Trend => ("Trend", SortKey::Delta),
        };
        let sorted = app.sort == key || (c == Col::Invocations && app.sort == SortKey::Delta);
        let text = if sorted && c != Col::Trend {
            format!("{label}{arrow}")
        } else {
            label.to_string()
        };
        Cell::from(text)
    };
    let header = Row::new(cols.iter().map(|c| header_cell(*c))).style(theme.header_row);

    // Only the rows that fit are built: with 1,000 skills the rest would be
    // formatted (sparklines included) just to be clipped.
    let selected = app
        .selected
        .as_ref()
        .and_then(|name| rows.iter().position(|r| &r.stat.skill_name == name))
        .unwrap_or(0);
    let capacity = table_capacity(area);
    let offset = table_offset(selected, capacity);
    let body: Vec<Row> = rows
        .iter()
        .skip(offset)
        .take(capacity.max(1))
        .map(|r| row(app, r, &cols, skill_w, trend_w, bar, theme))
        .collect();
    let widths: Vec<Constraint> = cols
        .iter()
        .map(|c| {
            if *c == Col::Skill {
                Constraint::Length(skill_w)
            } else if *c == Col::Trend {
                Constraint::Length(trend_w as u16)
            } else {
                Constraint::Length(width_of(*c, bar))
            }
        })
        .collect();
    let mut state = TableState::new().with_selected(Some(selected - offset));
    let table = Table::new(body, widths)
        .header(header)
        .block(block)
        .column_spacing(1)
        .row_highlight_style(theme.selected);
    frame.render_stateful_widget(table, area, &mut state);
}

fn row<'a>(
    app: &App,
    r: &SkillRow,
    cols: &[Col],
    skill_w: u16,
    trend_w: usize,
    bar: bool,
    theme: &Theme,
) -> Row<'a> {
    let s = &r.stat;
    let cells = cols.iter().map(|c| match c {
        Col::Rank => Cell::from(Span::styled(format!("{:>2}", r.rank), theme.dim)),
        Col::Skill => Cell::from(truncate_width(&s.skill_name, usize::from(skill_w))),
        Col::Invocations => {
            let mut spans = vec![Span::styled(
                format!("{:>6}", s.total_invocations),
                theme.base,
            )];
            match r.delta {
                Some(d) if d > 0 => spans.push(Span::styled(format!(" +{d}"), theme.delta_up)),
                Some(d) if d < 0 => spans.push(Span::styled(format!(" {d}"), theme.bad)),
                _ => {}
            }
            Cell::from(Line::from(spans))
        }
        Col::Completion => {
            let rate = s.completion_rate.clamp(0.0, 100.0);
            let style = completion_style(theme, rate);
            let pct = Span::styled(format!("{rate:5.1}%"), style);
            if bar {
                let filled = ((rate / 100.0) * BAR as f64).round() as usize;
                Cell::from(Line::from(vec![
                    Span::styled("█".repeat(filled), style),
                    Span::styled("░".repeat(BAR - filled), theme.bar_empty),
                    Span::raw(" "),
                    pct,
                ]))
            } else {
                Cell::from(pct)
            }
        }
        Col::Duration => Cell::from(format!("{:>7}", fmt_secs(s.avg_duration_seconds))),
        Col::H1 => Cell::from(format!("{:>5}", opt(s.invocations_1h))),
        Col::H24 => Cell::from(format!("{:>6}", opt(s.invocations_24h))),
        Col::Trend => {
            if let Some(series) = app.trend_history().get(HistoryWindow::Hour, &s.skill_name) {
                let per_cell = fold(&series.invocations(), trend_w);
                return Cell::from(Span::styled(sparkline(&per_cell, trend_w), theme.spark));
            }
            let act = activity(app, &s.skill_name);
            if act.is_empty() {
                Cell::from(Span::styled("·", theme.dim))
            } else {
                Cell::from(Span::styled(sparkline(&act, trend_w), theme.spark))
            }
        }
    });
    Row::new(cells.collect::<Vec<_>>())
}

/// `values` summed into at most `width` cells (oldest first), so a whole
/// hour of minute buckets fits a narrow column.
pub(crate) fn fold(values: &[u64], width: usize) -> Vec<u64> {
    let width = width.max(1);
    if values.len() <= width {
        return values.to_vec();
    }
    let per = values.len().div_ceil(width);
    // Whole groups end at the newest value: a partial group is the oldest.
    let rem = values.len() % per;
    let (head, tail) = values.split_at(rem);
    let mut out = Vec::with_capacity(width);
    let sum = |c: &[u64]| c.iter().fold(0u64, |a, b| a.saturating_add(*b));
    if !head.is_empty() {
        out.push(sum(head));
    }
    out.extend(tail.chunks(per).map(sum));
    out
}

fn opt(v: Option<u64>) -> String {
    or_placeholder(v, PLACEHOLDER_SCREEN)
}
