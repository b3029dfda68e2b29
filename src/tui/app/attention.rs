//! Anomalies that ask for attention: which (skill, type) pairs are new
//! (not on screen in the previous update), how long their rows stay
//! highlighted, the count of new ones since the user last acknowledged the
//! panel, and whether the terminal bell is due. Pure: times are the feed
//! events' timestamps; the BEL byte itself is written by the tui loop.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};

use crate::protocol::Anomaly;

/// How long a new anomaly's row stays highlighted (and the panel title flashes).
pub const HIGHLIGHT_SECS: i64 = 5;

/// An anomaly's identity on screen.
pub(super) type AnomalyKey = (String, String);

pub(super) fn key_of(a: &Anomaly) -> AnomalyKey {
    (a.skill_name.clone(), a.anomaly_type.clone())
}

/// Attention state; lives in [`super::App`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Attention {
    /// New anomalies still highlighted: key → when it first appeared.
    pub fresh: HashMap<AnomalyKey, DateTime<Utc>>,
    /// New anomalies since the user last acknowledged them (the header count).
    pub unseen: usize,
    /// Ring the terminal bell on new anomalies (`--bell`, config `bell`).
    pub bell: bool,
    /// A bell is due: the tui loop writes BEL and clears this.
    pub bell_pending: bool,
}

impl Attention {
    /// Compare the incoming anomalies with those on screen (`previous`).
    /// `first` = the dashboard's first picture: it sets the baseline and
    /// nothing in it counts as new.
    pub(super) fn observe(
        &mut self,
        previous: &[Anomaly],
        incoming: &[Anomaly],
        first: bool,
        at: DateTime<Utc>,
    ) {
        let before: HashSet<AnomalyKey> = previous.iter().map(key_of).collect();
        let now_keys: HashSet<AnomalyKey> = incoming.iter().map(key_of).collect();
        // Highlights end when they expire or their anomaly leaves the screen.
        self.fresh.retain(|k, since| {
            now_keys.contains(k) && (at - *since).num_seconds() < HIGHLIGHT_SECS
        });
        if first {
            return;
        }
        let mut new = 0usize;
        for k in now_keys {
            if !before.contains(&k) {
                self.fresh.insert(k, at);
                new += 1;
            }
        }
        if new > 0 {
            self.unseen = self.unseen.saturating_add(new);
            if self.bell {
                self.bell_pending = true;
            }
        }
    }

    /// The clock moved: drop expired highlights. True when one ended.
    pub(super) fn tick(&mut self, now: DateTime<Utc>) -> bool {
        let n = self.fresh.len();
        self.fresh
            .retain(|_, since| (now - *since).num_seconds() < HIGHLIGHT_SECS);
        n != self.fresh.len()
    }

    /// The user looked: clear the count and the highlights.
    pub(super) fn acknowledge(&mut self) {
        self.unseen = 0;
        self.fresh.clear();
        self.bell_pending = false;
    }

    /// Is this anomaly's row highlighted at `now`?
    pub fn is_fresh(&self, a: &Anomaly, now: DateTime<Utc>) -> bool {
        self.fresh
            .get(&key_of(a))
            .is_some_and(|since| (now - *since).num_seconds() < HIGHLIGHT_SECS)
    }

    /// Is the panel title in the "on" phase of its flash at `now`? It
    /// flashes once a second while any highlight lasts.
    pub fn title_flash(&self, now: DateTime<Utc>) -> bool {
        self.fresh
            .values()
            .filter(|since| (now - **since).num_seconds() < HIGHLIGHT_SECS)
            .max()
            .is_some_and(|newest| (now - *newest).num_seconds().rem_euclid(2) == 0)
    }
}
