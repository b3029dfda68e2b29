//! Screen geometry: where the header, the skills table, the anomaly and
//! health panels and the footer go for a terminal size, and which table rows
//! are visible. Computed from the size alone so that key and mouse handling
//! (in [`crate::tui::app`]) agree with rendering (in [`crate::tui::view`]).
//! Owns no state and draws nothing.

/// Screen regions, computed from the terminal size alone so that key and
/// mouse handling agree with rendering.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Areas {
    pub header: ratatui::layout::Rect,
    pub table: ratatui::layout::Rect,
    pub anomalies: Option<ratatui::layout::Rect>,
    pub health: Option<ratatui::layout::Rect>,
    pub footer: ratatui::layout::Rect,
}

/// Smallest terminal the dashboard draws in.
pub(crate) const MIN_WIDTH: u16 = 40;
pub(crate) const MIN_HEIGHT: u16 = 10;

/// The layout for a terminal of `width` x `height`.
pub(crate) fn layout(width: u16, height: u16) -> Areas {
    use ratatui::layout::Rect;
    let header = Rect::new(0, 0, width, 1);
    let footer = Rect::new(0, height.saturating_sub(1), width, 1);
    let middle_h = height.saturating_sub(2);
    if middle_h >= 16 {
        // Room for ten skills first (13 lines), then the panels get the rest.
        let bottom_h = middle_h.saturating_sub(13).clamp(7, 12);
        let table = Rect::new(0, 1, width, middle_h - bottom_h);
        let y = 1 + table.height;
        let anom_w = if width >= 100 {
            width * 3 / 5
        } else {
            width / 2
        };
        let anomalies = Rect::new(0, y, anom_w, bottom_h);
        let health = Rect::new(anom_w, y, width - anom_w, bottom_h);
        Areas {
            header,
            table,
            anomalies: Some(anomalies),
            health: Some(health),
            footer,
        }
    } else {
        Areas {
            header,
            table: Rect::new(0, 1, width, middle_h),
            anomalies: None,
            health: None,
            footer,
        }
    }
}

/// Rows of data that fit in the table area (borders and header row excluded).
pub(crate) fn table_capacity(table: ratatui::layout::Rect) -> usize {
    usize::from(table.height.saturating_sub(3))
}

/// First visible row so that `selected` is on screen.
pub(crate) fn table_offset(selected: usize, capacity: usize) -> usize {
    if capacity == 0 {
        0
    } else {
        (selected + 1).saturating_sub(capacity)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_never_overflows() {
        for (w, h) in [(40, 10), (80, 24), (200, 60), (41, 17), (40, 18)] {
            let a = layout(w, h);
            for r in [
                Some(a.header),
                Some(a.table),
                a.anomalies,
                a.health,
                Some(a.footer),
            ]
            .into_iter()
            .flatten()
            {
                assert!(r.right() <= w && r.bottom() <= h, "{w}x{h}: {r:?}");
            }
        }
    }
}
