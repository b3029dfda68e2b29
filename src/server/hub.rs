//! Fan-out: one serialized `metrics_update` per subscription group per tick.
//!
//! Every distinct [`Subscription`] is a group with a `watch` channel holding
//! its latest [`Frame`]. A tick builds each group's frame once and replaces
//! the channel's value; sessions clone the shared bytes (an `Arc<str>`), so a
//! tick's JSON work grows with the number of groups, not of clients. A slow
//! session simply sees the newest value when it gets to it (latest wins), so
//! the hub never waits on, nor queues for, any session. Groups nobody
//! listens to are dropped at the next tick.
//!
//! (ext) `history` replies follow the same rule: one per (sorted skills,
//! window, current bucket) per tick, built once off the runtime and shared
//! by every session that asks for it in that tick (a small cache emptied at
//! each tick).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, OnceLock};

use chrono::Utc;
use tokio::sync::{OnceCell, watch};
use tokio_tungstenite::tungstenite::Utf8Bytes;

use crate::deflate::compress::{self, Deflated};
use crate::protocol::{
    EncodedUpdate, ErrorCode, ErrorFrame, HistoryWindow, MAX_HISTORY_SKILLS, ServerMessage,
    SkillStat, Subscription, format_timestamp,
};
use crate::store::{Snapshot, history, unix_now};

/// Most distinct histories cached in one tick; past it a request builds
/// its own (still off the runtime), so memory stays bounded.
const MAX_CACHED_HISTORIES: usize = 64;

/// What makes two `history` requests get the same bytes within a tick.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct HistoryKey {
    window: HistoryWindow,
    /// The bucket holding now: a new bucket is a new history.
    bucket: i64,
    /// Sorted and deduplicated.
    skills: Vec<String>,
}

/// One group's update for one tick.
#[derive(Debug, Clone)]
pub struct Frame {
    /// The hub tick it was built at; a session that sees a jump of more
    /// than one skipped updates.
    pub tick: u64,
    pub update: EncodedUpdate,
    /// Its compressed forms, for deflate sessions.
    pub(crate) packed: Arc<Packed>,
}

/// A frame's compressed forms (`crate::deflate::compress`), each made by
/// the first deflate session that needs it and shared by the rest: at most
/// two compressions per group and tick, none when no client of the group
/// negotiated deflate.
#[derive(Debug)]
pub(crate) struct Packed {
    /// Unique among the hub's frames (never 0): a session that got this
    /// frame compressed at the fixed `seq` width is "in step" for the
    /// group's next frame.
    pub(crate) id: u64,
    /// The group's previous frame: its id and update.
    prev: Option<(u64, EncodedUpdate)>,
    /// Compressed with the previous update as the dictionary.
    dict: OnceLock<Option<Deflated>>,
    /// Compressed on its own.
    free: OnceLock<Option<Deflated>>,
}

impl Packed {
    /// The id of the group's previous frame, if there was one.
    pub(crate) fn prev_id(&self) -> Option<u64> {
        self.prev.as_ref().map(|(id, _)| *id)
    }

    /// The frame compressed against the previous one (`update`: this
    /// frame's update); `None` when there is no previous frame or zlib
    /// failed.
    pub(crate) fn dict(&self, update: &EncodedUpdate) -> Option<&Deflated> {
        self.dict
            .get_or_init(|| {
                let (_, prev) = self.prev.as_ref()?;
                let (start, prev_rest) = prev.seq_parts();
                if start.is_empty() {
                    return None;
                }
                compress::update(Some(prev_rest), update.seq_parts().1)
            })
            .as_ref()
    }

    /// The frame compressed on its own.
    pub(crate) fn free(&self, update: &EncodedUpdate) -> Option<&Deflated> {
        self.free
            .get_or_init(|| compress::update(None, update.seq_parts().1))
            .as_ref()
    }
}

struct Inner {
    tick: u64,
    snapshot: Arc<Snapshot>,
    groups: HashMap<Subscription, watch::Sender<Frame>>,
    /// Set by [`Hub::close`]: no group is kept or made any more.
    closed: bool,
    /// This tick's `history` frames (emptied by `publish`).
    histories: HashMap<HistoryKey, Arc<OnceCell<Utf8Bytes>>>,
}

/// A tick's frames, built by [`Hub::prepare`], not yet handed out.
pub struct Prepared {
    frames: Vec<(watch::Sender<Frame>, Frame)>,
}

impl Prepared {
    /// Hand every group its frame, waking its sessions; returns the number
    /// of groups. Call it from a runtime worker: the sessions it wakes go
    /// to that worker's own run queue (from a blocking thread they would
    /// all go through the runtime's shared queue, a measurable share of the
    /// broadcast latency: `docs/BENCHMARKS.md`).
    pub fn send(self) -> usize {
        let n = self.frames.len();
        for (tx, frame) in self.frames {
            tx.send_replace(frame);
        }
        n
    }
}

pub struct Hub {
    top_n: usize,
    inner: Mutex<Inner>,
    /// The last frame id handed out ([`Packed::id`]).
    frame_ids: AtomicU64,
}

impl Hub {
    pub fn new(top_n: usize) -> Self {
        Self {
            top_n,
            inner: Mutex::new(Inner {
                tick: 0,
                snapshot: Arc::new(Snapshot::empty()),
                groups: HashMap::new(),
                closed: false,
                histories: HashMap::new(),
            }),
            frame_ids: AtomicU64::new(0),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave Inner half-updated in
        // a way that matters (values are replaced whole), so recover.
        crate::sync::lock(&self.inner)
    }

    /// A group's frame for `tick`; `prev`: the group's previous frame.
    fn build(
        &self,
        snapshot: &Snapshot,
        sub: &Subscription,
        tick: u64,
        prev: Option<&Frame>,
    ) -> Frame {
        let now = Utc::now();
        let data = snapshot.view(sub, self.top_n, now);
        Frame {
            tick,
            update: EncodedUpdate::from_parts_team(&format_timestamp(now), &data, snapshot.team()),
            packed: Arc::new(Packed {
                id: self.frame_ids.fetch_add(1, Relaxed) + 1,
                prev: prev.map(|f| (f.packed.id, f.update.clone())),
                dict: OnceLock::new(),
                free: OnceLock::new(),
            }),
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
        let frame = self.build(&inner.snapshot, sub, inner.tick, None);
        let (tx, rx) = watch::channel(frame);
        if !inner.closed {
            inner.groups.insert(sub.clone(), tx);
        }
        // (Closed: the sender is dropped here, and the session hears that
        // the server is stopping at its first wait.)
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
    /// `snapshot`. Returns the number of groups served. CPU work: call it
    /// off the async runtime, or use [`Hub::prepare`] there and
    /// [`Prepared::send`] on it.
    pub fn publish(&self, snapshot: Arc<Snapshot>) -> usize {
        self.prepare(snapshot).send()
    }

    /// The tick's first half: make `snapshot` current and build every live
    /// group's frame, outside the lock (sessions joining meanwhile never
    /// wait on the serialization; they build their new group's frame from
    /// this snapshot). Nothing reaches a session until [`Prepared::send`].
    pub fn prepare(&self, snapshot: Arc<Snapshot>) -> Prepared {
        let (tick, groups) = {
            let mut inner = self.lock();
            inner.tick += 1;
            inner.snapshot = snapshot.clone();
            inner.histories.clear();
            inner.groups.retain(|_, tx| tx.receiver_count() > 0);
            let groups: Vec<(Subscription, watch::Sender<Frame>)> = inner
                .groups
                .iter()
                .map(|(sub, tx)| (sub.clone(), tx.clone()))
                .collect();
            (inner.tick, groups)
        };
        Prepared {
            frames: groups
                .into_iter()
                .map(|(sub, tx)| {
                    // Cloned (two Arcs), not borrowed across the build.
                    let prev = tx.borrow().clone();
                    let frame = self.build(&snapshot, &sub, tick, Some(&prev));
                    (tx, frame)
                })
                .collect(),
        }
    }

    /// The skills a client with `sub` sees now: its names, or the top N
    /// rows of the latest snapshot for all (at most
    /// [`MAX_HISTORY_SKILLS`], as a request may name, so a large `--top`
    /// cannot make a history frame too big for a client).
    pub fn visible_skills(&self, sub: &Subscription) -> Vec<String> {
        match sub {
            Subscription::Skills(names) => names.clone(),
            Subscription::All => self
                .lock()
                .snapshot
                .skills
                .iter()
                .take(self.top_n.min(MAX_HISTORY_SKILLS))
                .map(|s| s.skill_name.clone())
                .collect(),
        }
    }

    /// The encoded `history` frame of `skills` over `window`, as of now and
    /// the latest snapshot. Requests for the same (skills, window, bucket)
    /// in one tick share one build and one set of bytes; the build runs on
    /// a blocking thread.
    pub async fn history(&self, mut skills: Vec<String>, window: HistoryWindow) -> Utf8Bytes {
        skills.sort();
        skills.dedup();
        let now = unix_now();
        let key = HistoryKey {
            window,
            bucket: window.bucket_of(now),
            skills,
        };
        let (cell, snapshot) = {
            let mut inner = self.lock();
            let snapshot = inner.snapshot.clone();
            let cell = match inner.histories.get(&key) {
                Some(c) => c.clone(),
                None if inner.histories.len() < MAX_CACHED_HISTORIES => {
                    let c = Arc::new(OnceCell::new());
                    inner.histories.insert(key.clone(), c.clone());
                    c
                }
                None => Arc::new(OnceCell::new()),
            };
            (cell, snapshot)
        };
        let skills = key.skills;
        cell.get_or_init(|| async move {
            let built = tokio::task::spawn_blocking(move || {
                ServerMessage::History(history::build(&snapshot, &skills, window, now)).encode()
            })
            .await;
            match built {
                Ok(text) => Utf8Bytes::from(text),
                Err(e) => {
                    tracing::warn!("building a history failed: {e}");
                    Utf8Bytes::from(
                        ServerMessage::Error(ErrorFrame {
                            code: ErrorCode::Other,
                            message: "the history could not be built; try again".into(),
                        })
                        .encode(),
                    )
                }
            }
        })
        .await
        .clone()
    }

    /// The server is stopping: drop every group's sender, so every
    /// session's wait on its group ends (`changed()` fails) and it closes
    /// with 1001. This is how sessions hear of shutdown: it costs their
    /// loop nothing per tick.
    pub fn close(&self) {
        let groups = {
            let mut inner = self.lock();
            inner.closed = true;
            std::mem::take(&mut inner.groups)
        };
        drop(groups);
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

#[cfg(test)]
mod history_tests {
    use super::*;

    #[tokio::test]
    async fn a_history_is_built_once_per_tick_and_shared() {
        let hub = Hub::new(10);
        let a = hub
            .history(vec!["b".into(), "a".into()], HistoryWindow::Hour)
            .await;
        let b = hub
            .history(
                vec!["a".into(), "b".into(), "a".into()],
                HistoryWindow::Hour,
            )
            .await;
        assert!(
            std::ptr::eq(a.as_str().as_ptr(), b.as_str().as_ptr()),
            "same bytes, not a second build"
        );
        let ServerMessage::History(h) = ServerMessage::parse(a.as_str()).unwrap() else {
            panic!("not a history: {}", a.as_str())
        };
        let names: Vec<_> = h.skills.iter().map(|s| s.skill_name.as_str()).collect();
        assert_eq!(names, ["a", "b"]);
        assert!(h.skills.iter().all(|s| s.buckets.len() == 60));
        let day = hub.history(vec!["a".into()], HistoryWindow::Day).await;
        assert!(!std::ptr::eq(a.as_str().as_ptr(), day.as_str().as_ptr()));
        hub.publish(Arc::new(Snapshot::empty()));
        let c = hub
            .history(vec!["a".into(), "b".into()], HistoryWindow::Hour)
            .await;
        assert!(
            !std::ptr::eq(a.as_str().as_ptr(), c.as_str().as_ptr()),
            "a new tick builds anew"
        );
    }

    #[test]
    fn default_history_skills_are_the_visible_rows_capped_at_64() {
        let hub = Hub::new(100);
        let stat = |i: u64| SkillStat {
            skill_name: format!("s{i:03}"),
            total_invocations: 1000 - i,
            completion_rate: 50.0,
            avg_duration_seconds: None,
            invocations_1h: None,
            invocations_24h: None,
            last_invoked_at: None,
        };
        hub.publish(Arc::new(Snapshot::new((0..80).map(stat).collect(), vec![])));
        let all = hub.visible_skills(&Subscription::All);
        assert_eq!(all.len(), MAX_HISTORY_SKILLS);
        assert_eq!(all[0], "s000", "in rank order");
        let some = Subscription::from_names(["s079", "zzz"]);
        assert_eq!(hub.visible_skills(&some), ["s079", "zzz"]);
        let few = Hub::new(3);
        few.publish(Arc::new(Snapshot::new((0..80).map(stat).collect(), vec![])));
        assert_eq!(few.visible_skills(&Subscription::All).len(), 3);
    }
}
