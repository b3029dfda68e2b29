//! The detail view of one skill: its numbers, its completion-rate and
//! duration history as charts (from the client's own history), and its
//! anomalies.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::symbols::Marker;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Axis, Block, Chart, Clear, Dataset, GraphType, Paragraph};

use super::{anomalies, fmt_secs};
use crate::protocol::Anomaly;
use crate::text::sanitize;
use crate::tui::app::App;
use crate::tui::theme::Theme;

pub fn render(app: &App, name: &str, frame: &mut Frame, area: Rect, theme: &Theme) {
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
        Constraint::Length(1),
        Constraint::Fill(1),
        Constraint::Length(by_source_h),
        Constraint::Length(anom_h),
    ])
    .areas(inner);
    frame.render_widget(Paragraph::new(summary), top);
    if let Some(t) = super::team::breakdown(app, name, theme) {
        frame.render_widget(t, by_source);
    }

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
    } else {
        // x = seconds before the newest sample (≤ 0).
        let newest = hist.last().map(|s| s.at).unwrap_or(app.now);
        let x = |s: &crate::tui::app::Sample| (s.at - newest).num_milliseconds() as f64 / 1000.0;
        let xmin = hist.first().map(|s| x(s)).unwrap_or(0.0).min(-1.0);
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
        let x_axis = || {
            Axis::default()
                .style(theme.dim)
                .bounds([xmin, 0.0])
                .labels([
                    Line::from(format!("-{}", fmt_secs(Some(-xmin)))),
                    Line::from("latest"),
                ])
        };
        let c = Chart::new(vec![
            Dataset::default()
                .marker(Marker::Braille)
                .graph_type(GraphType::Line)
                .style(theme.chart_a)
                .data(&completion),
        ])
        .block(
            Block::bordered()
                .border_style(theme.border)
                .title(Span::styled(" Completion % ", theme.title)),
        )
        .x_axis(x_axis())
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
        .block(
            Block::bordered()
                .border_style(theme.border)
                .title(Span::styled(" Avg duration ", theme.title)),
        )
        .x_axis(x_axis())
        .y_axis(
            Axis::default()
                .style(theme.dim)
                .bounds([0.0, dmax])
                .labels([Line::from("0"), Line::from(fmt_secs(Some(dmax)))]),
        );
        frame.render_widget(d, right);
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
