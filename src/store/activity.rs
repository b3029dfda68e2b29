//! The last 24 hours of `skill_invocation`, held in memory per skill so
//! that the 1 h / 24 h windows and the live anomaly rules can be recomputed
//! as time passes without querying the database.
//!
//! Loading is incremental: session-buddy only ever appends invocations, so
//! after the first load only rows with a higher rowid are read (a rowid range
//! scan, cheap whatever the table's size). If the highest rowid goes down
//! (rows deleted, file rewritten) everything is read again.
//!
//! Next to each skill's samples it keeps their one-minute buckets
//! ([`Minutes`], shared copy-on-write with the snapshots), so a `history`
//! is cut from at most 1440 buckets per skill, never from the samples.

use std::collections::HashMap;
use std::sync::Arc;

use rusqlite::Connection;

use super::anomaly::{DAY, Sample};
use super::history::Minutes;

/// Largest UTC offset a timestamp may carry (±14:00), for the text prefilter.
const MAX_OFFSET_SECS: i64 = 14 * 3600;

#[derive(Debug, Default)]
pub(super) struct Activity {
    /// Highest rowid read so far (0 = nothing read).
    last_rowid: i64,
    per_skill: HashMap<String, Vec<Sample>>,
    /// The same samples in one-minute buckets (may also hold buckets up to
    /// an hour older than the day: trimmed in batches, see [`Self::evict`]).
    minutes: HashMap<String, Arc<Minutes>>,
}

impl Activity {
    pub(super) fn reset(&mut self) {
        self.last_rowid = 0;
        self.per_skill.clear();
        self.minutes.clear();
    }

    /// Every skill's one-minute buckets, shared (cheap to clone).
    pub(super) fn minutes(&self) -> &HashMap<String, Arc<Minutes>> {
        &self.minutes
    }

    pub(super) fn skills(&self) -> impl Iterator<Item = (&String, &Vec<Sample>)> {
        self.per_skill.iter()
    }

    pub(super) fn samples(&self, skill: &str) -> &[Sample] {
        self.per_skill.get(skill).map_or(&[], Vec::as_slice)
    }

    /// Samples held (invocations of the last day).
    pub(super) fn len(&self) -> usize {
        self.per_skill.values().map(Vec::len).sum()
    }

    /// Read the invocations added since the last call (all of the last day
    /// on the first call). Returns the number of rows read.
    pub(super) fn load(&mut self, conn: &Connection, now: f64) -> rusqlite::Result<usize> {
        let result = self.try_load(conn, now);
        if result.is_err() {
            // Samples of a half-read batch would be read (and counted) again
            // on the retry: start over from nothing instead.
            self.reset();
        }
        result
    }

    fn try_load(&mut self, conn: &Connection, now: f64) -> rusqlite::Result<usize> {
        let max: i64 = conn.query_row(
            "SELECT COALESCE(MAX(rowid), 0) FROM skill_invocation",
            [],
            |r| r.get(0),
        )?;
        if max < self.last_rowid {
            self.reset();
        }
        if max == self.last_rowid {
            return Ok(0);
        }
        let cutoff = now - DAY;
        let mut read = 0;
        let per_skill = &mut self.per_skill;
        let minutes = &mut self.minutes;
        let mut take = |r: &rusqlite::Row<'_>| -> rusqlite::Result<()> {
            read += 1;
            let Some(t) = r.get::<_, Option<f64>>(1)?.filter(|t| *t >= cutoff) else {
                return Ok(());
            };
            let sample = Sample {
                t,
                completed: r.get(2)?,
                duration: r.get(3)?,
            };
            // Borrow the name; allocate only for a skill not seen before. A
            // name that is not text (a BLOB) is skipped, not fatal.
            let Ok(name) = r.get_ref(0)?.as_str() else {
                return Ok(());
            };
            match per_skill.get_mut(name) {
                Some(v) => v.push(sample),
                None => {
                    per_skill.insert(name.to_owned(), vec![sample]);
                }
            }
            // Copy-on-write: the first sample after a snapshot took the
            // buckets clones them once; later ones add in place.
            if let Some(m) = minutes.get_mut(name) {
                Arc::make_mut(m).add(&sample);
            } else {
                let mut m = Minutes::default();
                m.add(&sample);
                minutes.insert(name.to_owned(), Arc::new(m));
            }
            Ok(())
        };
        const COLS: &str = "skill_name, unixepoch(invoked_at, 'subsec'),
                            COALESCE(CAST(completed AS INTEGER), 0) != 0,
                            CAST(duration_seconds AS REAL)";
        if self.last_rowid == 0 {
            // First load: the invoked_at index narrows to about the last day.
            // The text bound is early enough for any UTC offset; as `T`
            // sorts after a space, the space form and the `T` form each get
            // their own range so neither lets a whole extra day through. The
            // exact cut is made on the parsed instant.
            let bound = chrono::DateTime::from_timestamp(cutoff as i64 - MAX_OFFSET_SECS, 0)
                .unwrap_or_default();
            let mut stmt = conn.prepare(&format!(
                "SELECT {COLS} FROM skill_invocation
                  WHERE ((invoked_at >= ?1 AND invoked_at < ?2) OR invoked_at >= ?3)
                    AND skill_name IS NOT NULL"
            ))?;
            // Inside the read transaction no row beyond `max` can appear.
            let mut rows = stmt.query(rusqlite::params![
                bound.format("%Y-%m-%d %H:%M:%S").to_string(),
                bound.format("%Y-%m-%dT").to_string(),
                bound.format("%Y-%m-%dT%H:%M:%S").to_string(),
            ])?;
            while let Some(r) = rows.next()? {
                take(r)?;
            }
        } else {
            let mut stmt = conn.prepare_cached(&format!(
                "SELECT {COLS} FROM skill_invocation
                  WHERE rowid > ?1 AND skill_name IS NOT NULL"
            ))?;
            let mut rows = stmt.query(rusqlite::params![self.last_rowid])?;
            while let Some(r) = rows.next()? {
                take(r)?;
            }
        }
        self.last_rowid = max;
        Ok(read)
    }

    /// Forget samples older than a day. Buckets go with their skill's last
    /// sample; otherwise they are trimmed only once they reach an hour past
    /// the day, so a shared copy is cloned at most once an hour per skill.
    pub(super) fn evict(&mut self, now: f64) {
        let cutoff = now - DAY;
        self.per_skill.retain(|_, v| {
            v.retain(|s| s.t >= cutoff);
            !v.is_empty()
        });
        let per_skill = &self.per_skill;
        let cutoff_minute = (cutoff / 60.0).floor() as i64;
        self.minutes.retain(|name, m| {
            if !per_skill.contains_key(name) {
                return false;
            }
            if m.first_minute().is_some_and(|f| f < cutoff_minute - 60) {
                Arc::make_mut(m).trim_before(cutoff_minute);
            }
            true
        });
    }
}
