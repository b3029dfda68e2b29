//! (team) What the dashboard adds when the server is an edge (`serve
//! --from`): the header's "team · N sources (K stale)", the anomalies'
//! Source column and the detail view's per-source breakdown. Reads
//! `App::team` only; against a single server (no team fields) every
//! function here returns nothing and the screen is unchanged.

use ratatui::layout::Constraint;
use ratatui::text::Span;
use ratatui::widgets::{Block, Cell, Row, Table};

use super::fmt_secs;
use crate::protocol::Anomaly;
use crate::text::{sanitize, truncate_width};
use crate::tui::app::App;
use crate::tui::theme::Theme;

/// Width of the anomalies panel's Source column.
pub const SOURCE_W: u16 = 12;

/// "team · N sources (K stale)", warn-styled while any source is stale.
pub fn header<'a>(app: &App, theme: &Theme) -> Option<Span<'a>> {
    let (n, stale) = app.team.as_ref()?.counts();
    let plural = if n == 1 { "" } else { "s" };
    let style = if stale > 0 { theme.warn } else { theme.accent };
    Some(Span::styled(
        format!("team · {n} source{plural} ({stale} stale)"),
        style,
    ))
}

/// The anomaly's team source cell, when the server is an edge; `nth`: how
/// many rows identical to `a` (skill, detection time, type) come before it.
pub fn source_cell<'a>(app: &App, a: &Anomaly, nth: usize) -> Option<Cell<'a>> {
    let team = app.team.as_ref()?;
    let name = team.source_of(a, nth).unwrap_or("—");
    Some(Cell::from(truncate_width(
        &sanitize(name),
        usize::from(SOURCE_W),
    )))
}

/// Rows needed by [`breakdown`] for `name` (0: nothing to show).
pub fn breakdown_height(app: &App, name: &str) -> u16 {
    match app.team.as_ref().and_then(|t| t.skill_sources(name)) {
        Some(list) if !list.is_empty() => list.len().min(8) as u16 + 3,
        _ => 0,
    }
}

/// The selected skill's figures per source.
pub fn breakdown<'a>(app: &App, name: &str, theme: &Theme) -> Option<Table<'a>> {
    let team = app.team.as_ref()?;
    let list = team.skill_sources(name)?;
    let stale = |s: &str| {
        team.sources
            .as_deref()
            .unwrap_or_default()
            .iter()
            .any(|i| i.source == s && i.stale)
    };
    let rows: Vec<Row> = list
        .iter()
        .take(8)
        .map(|s| {
            let mut source = truncate_width(&sanitize(&s.source), 20);
            if stale(&s.source) {
                source.push_str(" (stale)");
            }
            Row::new(vec![
                Cell::from(source),
                Cell::from(format!("{:>8}", s.total_invocations)),
                Cell::from(format!("{:>6.1}%", s.completion_rate)),
                Cell::from(format!("{:>8}", fmt_secs(s.avg_duration_seconds))),
                Cell::from(format!(
                    "{:>6}",
                    s.invocations_1h.map_or("—".into(), |v| v.to_string())
                )),
            ])
        })
        .collect();
    let widths = [
        Constraint::Fill(1),
        Constraint::Length(8),
        Constraint::Length(7),
        Constraint::Length(8),
        Constraint::Length(6),
    ];
    Some(
        Table::new(rows, widths)
            .header(
                Row::new(vec!["Source", "   Calls", "  Done", "     Avg", "    1h"])
                    .style(theme.header_row),
            )
            .column_spacing(1)
            .block(
                Block::bordered()
                    .border_style(theme.border)
                    .title(Span::styled(
                        format!(" By source ({}) ", list.len()),
                        theme.title,
                    )),
            ),
    )
}

#[cfg(test)]
mod tests {
    use ratatui::Terminal;
    use ratatui::backend::TestBackend;

    use crate::client::FeedEvent;
    use crate::protocol::{MetricsUpdate, ServerMessage, Subscription};
    use crate::tui::app::{App, Event, Overlay};
    use crate::tui::test_support::{connected, secs, t0};

    const EDGE_FRAME: &str = r#"{"type":"metrics_update","seq":1,"timestamp":"2026-11-22T03:00:00Z","data":{"top_skills":[{"skill_name":"alpha","total_invocations":7,"completion_rate":42.857142857142854,"avg_duration_seconds":2.5,"sources":[{"source":"alice","total_invocations":3,"completion_rate":66.7,"avg_duration_seconds":3.0,"invocations_1h":2},{"source":"bob","total_invocations":4,"completion_rate":25.0,"avg_duration_seconds":2.0}]}],"anomalies":[{"skill_name":"alpha","detected_at":"2026-11-22 02:59:00","anomaly_type":"drop","deviation_score":-3.1,"baseline_value":null,"observed_value":null,"source":"table","team_source":"bob"}]},"sources":[{"source":"alice","updated_at":"2026-11-22T03:00:00Z","stale":false},{"source":"bob","updated_at":"2026-11-22T02:59:00Z","stale":true}]}"#;

    fn app_with(frame: &str) -> App {
        let mut app = App::new("ws://edge/ws", Subscription::All, t0());
        app.size = (120, 30);
        app.update(connected(t0(), Some(1000)));
        let Ok(ServerMessage::MetricsUpdate(update)) = ServerMessage::parse(frame) else {
            panic!("not an update");
        };
        let update: MetricsUpdate = update;
        // The team fields come parsed in the update: the app never reads
        // the frame's text.
        app.update(Event::Feed(FeedEvent::Update {
            update,
            raw: Default::default(),
            at: secs(1),
        }));
        app
    }

    fn screen(app: &App) -> String {
        let mut t = Terminal::new(TestBackend::new(120, 30)).unwrap();
        t.draw(|f| super::super::render(app, f)).unwrap();
        let buf = t.backend().buffer().clone();
        let mut out = String::new();
        for y in 0..buf.area.height {
            for x in 0..buf.area.width {
                out.push_str(buf[(x, y)].symbol());
            }
            out.push('\n');
        }
        out
    }

    #[test]
    fn an_edge_shows_its_team() {
        let mut app = app_with(EDGE_FRAME);
        let s = screen(&app);
        assert!(s.contains("team · 2 sources (1 stale)"), "{s}");
        let source_col = s.lines().find(|l| l.contains("Detected")).unwrap();
        assert!(source_col.contains("Source"), "{s}");
        let row = s.lines().find(|l| l.contains("-3.1")).unwrap();
        assert!(row.contains("bob"), "{row}");

        app.overlay = Overlay::Detail("alpha".into());
        let s = screen(&app);
        assert!(s.contains("By source (2)"), "{s}");
        let alice = s.lines().find(|l| l.contains("alice")).unwrap();
        assert!(alice.contains("66.7%"), "{alice}");
        let bob = s.lines().find(|l| l.contains("bob (stale)")).unwrap();
        assert!(bob.contains("25.0%"), "{bob}");
    }

    #[test]
    fn identical_anomalies_from_two_sources_show_each_source() {
        let row = r#"{"skill_name":"alpha","detected_at":"2026-11-22 02:59:00","anomaly_type":"drop","deviation_score":-3.1,"baseline_value":null,"observed_value":null,"source":"table","team_source":"bob"}"#;
        let frame = EDGE_FRAME.replace(
            row,
            &format!("{},{row}", row.replace("\"bob\"", "\"alice\"")),
        );
        let app = app_with(&frame);
        let s = screen(&app);
        let rows: Vec<&str> = s.lines().filter(|l| l.contains("-3.1")).collect();
        assert_eq!(rows.len(), 2, "{s}");
        assert!(rows[0].contains("alice"), "{}", rows[0]);
        assert!(rows[1].contains("bob"), "{}", rows[1]);
    }

    #[test]
    fn a_single_server_changes_nothing() {
        let single = EDGE_FRAME
            .split(r#","sources":[{"source":"alice","updated"#)
            .next()
            .unwrap()
            .to_owned()
            + "}";
        let app = app_with(&single);
        assert!(app.team.is_none());
        let s = screen(&app);
        assert!(!s.contains("team ·"), "{s}");
        assert!(!s.contains("Source"), "{s}");
    }
}
