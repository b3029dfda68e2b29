//! Sort, filter and selection of the skills table: which rows are visible
//! and in what order, and the selected skill (by name, so it survives
//! re-sorting and new data). The order is computed when the data, the sort
//! or the filter changes ([`App::refresh_order`], after every event), not
//! per draw.

use crate::tui::layout::{layout, table_capacity};

use super::{App, Overlay, SkillRow};

/// Which column the table is sorted by, in the order `s` cycles through
/// them; the strum name is the label in the header ("sort: avg duration").
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, strum::EnumCount, strum::FromRepr, strum::IntoStaticStr,
)]
pub enum SortKey {
    #[strum(serialize = "rank")]
    Rank,
    #[strum(serialize = "skill")]
    Name,
    #[strum(serialize = "invocations")]
    Invocations,
    #[strum(serialize = "change")]
    Delta,
    #[strum(serialize = "completion")]
    Completion,
    #[strum(serialize = "avg duration")]
    Duration,
    #[strum(serialize = "1h")]
    Last1h,
    #[strum(serialize = "24h")]
    Last24h,
}

impl SortKey {
    /// The header's word for the column.
    pub fn as_str(self) -> &'static str {
        self.into()
    }

    /// The next column, wrapping around to rank.
    pub(super) fn next(self) -> SortKey {
        use strum::EnumCount as _;
        SortKey::from_repr((self as usize + 1) % SortKey::COUNT).unwrap_or(SortKey::Rank)
    }

    /// Rank and name read best ascending, numbers descending.
    pub fn natural_ascending(self) -> bool {
        matches!(self, SortKey::Rank | SortKey::Name)
    }
}

/// What the cached order was computed from.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct OrderKey {
    rows: usize,
    len: usize,
    updates: u64,
    frozen: bool,
    sort: SortKey,
    reversed: bool,
    filter: String,
}

impl App {
    fn order_key(&self) -> OrderKey {
        let view = self.view();
        OrderKey {
            rows: view.rows.as_ptr() as usize,
            len: view.rows.len(),
            updates: view.updates,
            frozen: self.frozen.is_some(),
            sort: self.sort,
            reversed: self.reversed,
            filter: self.filter.clone(),
        }
    }

    /// Recompute the visible order if the data, sort or filter changed.
    pub(super) fn refresh_order(&mut self) {
        let key = self.order_key();
        if self.order_key.as_ref() != Some(&key) {
            self.order = self.compute_order();
            self.order_key = Some(key);
        }
    }

    /// The rows on screen: filtered, then sorted.
    pub fn visible_rows(&self) -> Vec<&SkillRow> {
        if self.order_key.as_ref() == Some(&self.order_key()) {
            let rows = &self.view().rows;
            return self.order.iter().filter_map(|&i| rows.get(i)).collect();
        }
        // Not refreshed yet (between an edit and the end of `update`).
        let rows = &self.view().rows;
        self.compute_order()
            .into_iter()
            .filter_map(|i| rows.get(i))
            .collect()
    }

    /// The names of the rows the table shows now and the selected skill:
    /// the skills whose history must be kept.
    pub(super) fn wanted_history(&self) -> std::collections::HashSet<String> {
        let rows = self.visible_rows();
        let cap = self.table_capacity();
        let offset = crate::tui::layout::table_offset(self.selected_index(), cap);
        let mut names: std::collections::HashSet<String> = rows
            .iter()
            .skip(offset)
            .take(cap)
            .map(|r| r.stat.skill_name.clone())
            .collect();
        names.extend(self.selected.clone());
        if let Overlay::Detail(n) = &self.overlay {
            names.insert(n.clone());
        }
        names
    }

    /// Indices into `view().rows`: filtered, then sorted.
    fn compute_order(&self) -> Vec<usize> {
        let all = &self.view().rows;
        let needle = self.filter.to_lowercase();
        let mut rows: Vec<usize> = all
            .iter()
            .enumerate()
            .filter(|(_, r)| {
                needle.is_empty() || r.stat.skill_name.to_lowercase().contains(&needle)
            })
            .map(|(i, _)| i)
            .collect();
        let key = self.sort;
        rows.sort_by(|&a, &b| {
            use std::cmp::Ordering;
            let (a, b) = (&all[a], &all[b]);
            let f = |x: f64, y: f64| x.partial_cmp(&y).unwrap_or(Ordering::Equal);
            let ord = match key {
                SortKey::Rank => a.rank.cmp(&b.rank),
                SortKey::Name => a.stat.skill_name.cmp(&b.stat.skill_name),
                SortKey::Invocations => a.stat.total_invocations.cmp(&b.stat.total_invocations),
                SortKey::Delta => a.delta.unwrap_or(0).cmp(&b.delta.unwrap_or(0)),
                SortKey::Completion => f(a.stat.completion_rate, b.stat.completion_rate),
                SortKey::Duration => f(
                    a.stat.avg_duration_seconds.unwrap_or(-1.0),
                    b.stat.avg_duration_seconds.unwrap_or(-1.0),
                ),
                SortKey::Last1h => a.stat.invocations_1h.cmp(&b.stat.invocations_1h),
                SortKey::Last24h => a.stat.invocations_24h.cmp(&b.stat.invocations_24h),
            };
            let ord = if key.natural_ascending() {
                ord
            } else {
                ord.reverse()
            };
            let ord = if self.reversed { ord.reverse() } else { ord };
            ord.then(a.rank.cmp(&b.rank))
        });
        rows
    }

    /// Index of the selected row among the visible ones (0 when none matches).
    pub fn selected_index(&self) -> usize {
        let rows = self.visible_rows();
        self.selected
            .as_ref()
            .and_then(|name| rows.iter().position(|r| &r.stat.skill_name == name))
            .unwrap_or(0)
    }

    /// Is the sort order currently ascending?
    pub fn ascending(&self) -> bool {
        self.sort.natural_ascending() != self.reversed
    }

    pub(super) fn table_capacity(&self) -> usize {
        table_capacity(layout(self.size.0, self.size.1).table)
    }

    pub(super) fn select_index(&mut self, idx: usize) {
        let name = {
            let rows = self.visible_rows();
            if rows.is_empty() {
                return;
            }
            rows[idx.min(rows.len() - 1)].stat.skill_name.clone()
        };
        self.selected = Some(name);
        if let Overlay::Detail(_) = self.overlay
            && let Some(n) = &self.selected
        {
            self.overlay = Overlay::Detail(n.clone());
        }
    }

    pub(super) fn move_by(&mut self, delta: isize) {
        let len = self.visible_rows().len();
        if len == 0 {
            return;
        }
        let cur = self.selected_index() as isize;
        let next = (cur + delta).clamp(0, len as isize - 1) as usize;
        self.select_index(next);
    }
}
