//! Fan-out: one serialized `metrics_update` per subscription group per tick.
//!
//! Every distinct [`Subscription`] is a group with a `watch` channel holding
//! its latest [`Frame`]. A tick builds each group's frame once and replaces
//! the channel's value; sessions clone the shared bytes (an `Arc<str>`), so a
//! tick's JSON work grows with the number of groups, not of clients. A slow
//! session simply sees the newest value when it gets to it (latest wins), so
//! the hub never waits on, nor queues for, any session. Groups nobody
//! listens to are dropped at the next tick.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use chrono::Utc;
use tokio::sync::watch;

use crate::protocol::{EncodedUpdate, SkillStat, Subscription, format_timestamp};
use crate::store::Snapshot;

/// One group's update for one tick.
#[derive(Debug, Clone)]
pub struct Frame {
    /// The hub tick it was built at; a session that sees a jump of more
    /// than one skipped updates.
    pub tick: u64,
    pub update: EncodedUpdate,
}

struct Inner {
    tick: u64,
    snapshot: Arc<Snapshot>,
    groups: HashMap<Subscription, watch::Sender<Frame>>,
}

pub struct Hub {
    top_n: usize,
    inner: Mutex<Inner>,
}

impl Hub {
    pub fn new(top_n: usize) -> Self {
        Self {
            top_n,
            inner: Mutex::new(Inner {
                tick: 0,
                snapshot: Arc::new(Snapshot::empty()),
                groups: HashMap::new(),
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave Inner half-updated in
        // a way that matters (values are replaced whole), so recover.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn build(&self, snapshot: &Snapshot, sub: &Subscription, tick: u64) -> Frame {
        let now = Utc::now();
        let data = snapshot.view(sub, self.top_n, now);
        Frame {
            tick,
            update: EncodedUpdate::from_parts_team(&format_timestamp(now), &data, snapshot.team()),
        }
    }

    /// Join (or create) the group for `sub`. The receiver's current value is
    /// the group's latest frame, unseen, so the session can send it at once.
    pub fn subscribe(&self, sub: &Subscription) -> watch::Receiver<Frame> {
        let mut rx = self.subscribe_quiet(sub);
        rx.mark_changed();
        rx
    }

    /// Join (or create) the group for `sub` with its latest frame marked
    /// seen: the receiver wakes at the next tick. A compat session starts
    /// this way, so nothing comes between `connected` and its first reply.
    pub fn subscribe_quiet(&self, sub: &Subscription) -> watch::Receiver<Frame> {
        let mut inner = self.lock();
        if let Some(tx) = inner.groups.get(sub) {
            return tx.subscribe();
        }
        let frame = self.build(&inner.snapshot, sub, inner.tick);
        let (tx, rx) = watch::channel(frame);
        inner.groups.insert(sub.clone(), tx);
        rx
    }

    /// One skill's row in the latest snapshot, ranked or not (`get_metrics`);
    /// `None` when the skill has no invocations.
    pub fn skill(&self, name: &str) -> Option<SkillStat> {
        let snapshot = self.lock().snapshot.clone();
        let sub = Subscription::Skills(vec![name.to_owned()]);
        snapshot
            .view(&sub, self.top_n, Utc::now())
            .top_skills
            .into_iter()
            .next()
    }

    /// A new tick: build and hand out every live group's frame from
    /// `snapshot`. Returns the number of groups served. Frames are built
    /// outside the lock, so sessions joining meanwhile never wait on the
    /// serialization; call it off the async runtime (it is CPU work).
    pub fn publish(&self, snapshot: Arc<Snapshot>) -> usize {
        let (tick, groups) = {
            let mut inner = self.lock();
            inner.tick += 1;
            inner.snapshot = snapshot.clone();
            inner.groups.retain(|_, tx| tx.receiver_count() > 0);
            let groups: Vec<(Subscription, watch::Sender<Frame>)> = inner
                .groups
                .iter()
                .map(|(sub, tx)| (sub.clone(), tx.clone()))
                .collect();
            (inner.tick, groups)
        };
        // A group created after the lock was released built its own frame
        // from this snapshot and tick, so it is not missing from this list.
        for (sub, tx) in &groups {
            tx.send_replace(self.build(&snapshot, sub, tick));
        }
        groups.len()
    }

    /// Number of subscription groups alive now.
    pub fn groups(&self) -> usize {
        self.lock().groups.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_frame_per_group_shared_by_sessions() {
        let hub = Hub::new(10);
        let mut a = hub.subscribe(&Subscription::All);
        let mut b = hub.subscribe(&Subscription::All);
        let mut c = hub.subscribe(&Subscription::from_names(["x"]));
        assert_eq!(hub.groups(), 2);
        assert_eq!(hub.publish(Arc::new(Snapshot::empty())), 2);
        let fa = a.borrow_and_update().clone();
        let fb = b.borrow_and_update().clone();
        let fc = c.borrow_and_update().clone();
        assert_eq!(fa.tick, 1);
        assert!(
            std::ptr::eq(
                fa.update.without_seq().as_ptr(),
                fb.update.without_seq().as_ptr()
            ),
            "same bytes, not a copy"
        );
        assert_eq!(fc.tick, 1);
        drop(c);
        assert_eq!(
            hub.publish(Arc::new(Snapshot::empty())),
            1,
            "empty group dropped"
        );
    }

    #[test]
    fn quiet_subscriber_wakes_at_the_next_tick_only() {
        let hub = Hub::new(10);
        let mut loud = hub.subscribe(&Subscription::All);
        let mut quiet = hub.subscribe_quiet(&Subscription::All);
        let fresh = hub.subscribe_quiet(&Subscription::from_names(["y"]));
        assert!(loud.has_changed().unwrap());
        assert!(!quiet.has_changed().unwrap());
        assert!(!fresh.has_changed().unwrap());
        hub.publish(Arc::new(Snapshot::empty()));
        assert!(quiet.has_changed().unwrap());
        assert!(fresh.has_changed().unwrap());
        assert_eq!(quiet.borrow_and_update().tick, 1);
        assert_eq!(loud.borrow_and_update().tick, 1);
    }

    #[test]
    fn skill_lookup_reaches_beyond_the_top_n() {
        let hub = Hub::new(1);
        let stat = |name: &str, n: u64| SkillStat {
            skill_name: name.into(),
            total_invocations: n,
            completion_rate: 50.0,
            avg_duration_seconds: None,
            invocations_1h: None,
            invocations_24h: None,
            last_invoked_at: None,
        };
        hub.publish(Arc::new(Snapshot::new(
            vec![stat("a", 9), stat("b", 2)],
            vec![],
        )));
        assert_eq!(hub.skill("b").map(|s| s.total_invocations), Some(2));
        assert_eq!(hub.skill("a").map(|s| s.total_invocations), Some(9));
        assert_eq!(hub.skill("nope"), None);
    }

    #[test]
    fn new_subscriber_sees_a_frame_at_once() {
        let hub = Hub::new(10);
        let mut a = hub.subscribe(&Subscription::All);
        assert!(a.has_changed().unwrap());
        hub.publish(Arc::new(Snapshot::empty()));
        let mut b = hub.subscribe(&Subscription::All);
        assert!(b.has_changed().unwrap());
        assert_eq!(b.borrow_and_update().tick, 1);
        assert_eq!(a.borrow_and_update().tick, 1);
    }
}
