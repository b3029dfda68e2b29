//! Keys and the mouse: what each binding does to the [`App`] (the bindings
//! themselves are data in `tui::keymap`).

#[allow(clippy::wildcard_imports)]
use super::*;

impl App {
    pub(super) fn on_key(&mut self, k: KeyEvent) {
        // Only presses count: no repeats, no releases (kitty protocol, Windows).
        if k.kind != KeyEventKind::Press {
            return;
        }
        let ctrl_c = k.code == KeyCode::Char('c') && k.modifiers.contains(KeyModifiers::CONTROL);
        if ctrl_c {
            self.quit = true;
            return;
        }
        match self.mode {
            Mode::Filter => {
                match k.code {
                    KeyCode::Esc => {
                        self.filter.clear();
                        self.mode = Mode::Normal;
                    }
                    KeyCode::Enter => self.mode = Mode::Normal,
                    KeyCode::Backspace => {
                        self.filter.pop();
                    }
                    KeyCode::Char(c) if !k.modifiers.contains(KeyModifiers::CONTROL) => {
                        self.filter.push(c);
                    }
                    _ => return,
                }
                self.dirty = true;
                return;
            }
            Mode::Subscribe => {
                match k.code {
                    KeyCode::Esc => {
                        self.mode = Mode::Normal;
                        self.input.clear();
                    }
                    KeyCode::Enter => {
                        let sub = Subscription::from_names(
                            self.input.split(',').map(|s| s.trim().to_string()),
                        );
                        if let Err(e) = sub.validate() {
                            self.status = Some(e.to_string());
                            self.dirty = true;
                            return;
                        }
                        self.status = Some(match &sub {
                            Subscription::All => "subscribing to all skills".to_string(),
                            Subscription::Skills(s) => format!("subscribing to {}", s.join(", ")),
                        });
                        self.subscription = sub.clone();
                        self.outbox.push(FeedCommand::Subscribe(sub));
                        self.mode = Mode::Normal;
                        self.input.clear();
                    }
                    KeyCode::Backspace => {
                        self.input.pop();
                    }
                    KeyCode::Char(c) if !k.modifiers.contains(KeyModifiers::CONTROL) => {
                        self.input.push(c);
                    }
                    _ => return,
                }
                self.dirty = true;
                return;
            }
            Mode::Normal => {}
        }
        // Esc first closes what is open.
        if k.code == KeyCode::Esc {
            if self.overlay != Overlay::None {
                self.overlay = Overlay::None;
                self.dirty = true;
                return;
            }
            if !self.filter.is_empty() {
                self.filter.clear();
                self.dirty = true;
                return;
            }
        }
        let Some(action) = self.keymap.action(&k) else {
            return;
        };
        self.status = None;
        let page = self.table_capacity().max(1) as isize;
        match action {
            Action::Quit => self.quit = true,
            Action::Help => {
                self.overlay = if self.overlay == Overlay::Help {
                    Overlay::None
                } else {
                    Overlay::Help
                }
            }
            Action::Up => self.move_by(-1),
            Action::Down => self.move_by(1),
            Action::PageUp => self.move_by(-page),
            Action::PageDown => self.move_by(page),
            Action::Home => self.select_index(0),
            Action::End => self.select_index(usize::MAX),
            Action::Detail => {
                self.overlay = if let Overlay::Detail(_) = &self.overlay {
                    Overlay::None
                } else {
                    let rows = self.visible_rows();
                    match rows.get(self.selected_index()) {
                        Some(r) => Overlay::Detail(r.stat.skill_name.clone()),
                        None => Overlay::None,
                    }
                };
                if let Overlay::Detail(name) = &self.overlay {
                    let asks = self.history.detail_requests(name);
                    self.outbox.extend(asks);
                }
            }
            Action::Window => {
                self.window = match self.window {
                    HistoryWindow::Hour => HistoryWindow::Day,
                    HistoryWindow::Day => HistoryWindow::Hour,
                };
                self.status = Some(format!("detail charts: last {}", self.window));
            }
            Action::SortNext => {
                self.sort = self.sort.next();
                self.reversed = false;
            }
            Action::SortReverse => self.reversed = !self.reversed,
            Action::Filter => {
                self.mode = Mode::Filter;
                self.overlay = Overlay::None;
            }
            Action::Freeze => {
                self.frozen = match self.frozen.take() {
                    Some(_) => None,
                    None => Some(self.live.clone()),
                };
                self.frozen_history = self.frozen.as_ref().map(|_| self.history.clone());
            }
            Action::Theme => {
                if self.no_color {
                    self.status = Some("colours are off (NO_COLOR / --no-color)".into());
                } else {
                    self.theme = Theme::next_name(self.theme);
                    self.status = Some(format!("theme: {}", self.theme.as_str()));
                }
            }
            Action::Subscribe => {
                self.mode = Mode::Subscribe;
                self.input = self.subscription.skills().join(", ");
            }
            Action::Seen => self.attention.acknowledge(),
        }
        self.dirty = true;
    }

    pub(super) fn on_mouse(&mut self, m: MouseEvent) {
        match m.kind {
            MouseEventKind::ScrollDown => self.move_by(1),
            MouseEventKind::ScrollUp => self.move_by(-1),
            MouseEventKind::Down(MouseButton::Left) => {
                if self.overlay != Overlay::None {
                    return;
                }
                let table = layout(self.size.0, self.size.1).table;
                let first = table.y + 2;
                let cap = table_capacity(table);
                let in_x = m.column >= table.x && m.column < table.x + table.width;
                if !in_x || m.row < first || usize::from(m.row - first) >= cap {
                    return;
                }
                let offset = table_offset(self.selected_index(), cap);
                let idx = offset + usize::from(m.row - first);
                if idx < self.visible_rows().len() {
                    self.select_index(idx);
                } else {
                    return;
                }
            }
            _ => return,
        }
        self.dirty = true;
    }
}
