//! The help overlay, generated from the keymap table.

use ratatui::Frame;
use ratatui::layout::{Constraint, Rect};
use ratatui::text::Span;
use ratatui::widgets::{Block, Cell, Clear, Row, Table};

use super::centered;
use crate::tui::app::App;
use crate::tui::keymap::Action;
use crate::tui::theme::Theme;

pub(crate) fn render(app: &App, frame: &mut Frame, area: Rect, theme: &Theme) {
    let mut rows: Vec<Row> = Action::all()
        .map(|a| {
            let keys: Vec<String> = app
                .keymap
                .keys_for(a)
                .iter()
                .map(std::string::ToString::to_string)
                .collect();
            Row::new(vec![
                Cell::from(Span::styled(keys.join(" "), theme.key)),
                Cell::from(Span::styled(a.description(), theme.base)),
            ])
        })
        .collect();
    rows.push(Row::new(vec![
        Cell::from(Span::styled("mouse", theme.key)),
        Cell::from(Span::styled("wheel scrolls, click selects", theme.base)),
    ]));
    let h = (rows.len() as u16) + 4;
    let popup = centered(area, 78, h);
    frame.render_widget(Clear, popup);
    let table = Table::new(rows, [Constraint::Length(16), Constraint::Fill(1)])
        .header(Row::new(vec!["Keys", "Action"]).style(theme.header_row))
        .column_spacing(2)
        .block(
            Block::bordered()
                .border_style(theme.title)
                .title(Span::styled(" Help — ? or Esc closes ", theme.title)),
        );
    frame.render_widget(table, popup);
}
