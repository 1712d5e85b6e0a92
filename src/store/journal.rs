//! The journal: an append-only file in `DATA_DIR` that takes blocked events when their queue
//! is full or the database cannot be written, replayed exactly once when it can.
//!
//! Exactly once: each entry carries a sequence number, and the replay stores the highest
//! sequence it wrote in `meta` in the same transaction as the rows, so a crash between the
//! commit and the file's removal only makes the next replay skip what is already in.
//! Before a replay the writer renames `journal.jsonl` to `journal.replaying`, so new
//! entries go to a fresh file while the old one is read.

use std::{
    fs::{File, OpenOptions},
    io::{BufRead, Write},
    net::IpAddr,
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
    time::{Duration, Instant, SystemTime},
};

use rusqlite::{Connection, OptionalExtension};
use serde::Deserialize;

use crate::{
    clock::from_unix_millis,
    event::{EventName, QueryEvent},
};

use super::{disposition_of, reason_of, severity_of, transport_of, Shared, StoreError};

const ACTIVE: &str = "journal.jsonl";
const REPLAYING: &str = "journal.replaying";
/// The `meta` key holding the last replayed sequence number.
pub(crate) const LAST_REPLAYED: &str = "journal_last_replayed";

mod line;

/// One journal line, as read back. Written by [`line::write`] (by hand, for the DNS thread's
/// sake); `serde_json` writes the same bytes from this type, which the tests hold to.
#[derive(Debug, Deserialize)]
#[cfg_attr(test, derive(serde::Serialize))]
pub(crate) struct Entry {
    pub seq: u64,
    at: i64,
    client: IpAddr,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    device: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    group: Option<String>,
    /// `None`: withheld (the illegal tier is never written in clear, here either).
    name: Option<String>,
    qtype: u16,
    transport: String,
    disposition: String,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    reason: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    category: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    rule: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    severity: Option<String>,
    rcode: u16,
    us: u64,
}

impl Entry {
    #[cfg(test)]
    fn from_event(seq: u64, e: &QueryEvent) -> Entry {
        Entry {
            seq,
            at: crate::clock::unix_millis(e.at),
            client: e.client,
            device: e.device.as_deref().map(str::to_string),
            group: e.group.as_deref().map(str::to_string),
            name: match &e.name {
                EventName::Clear(n) => Some(n.clone()),
                EventName::Withheld => None,
            },
            qtype: e.qtype,
            transport: e.transport.label().into(),
            disposition: e.disposition.label().into(),
            reason: e.reason.map(|r| r.label().into()),
            category: e.category.clone(),
            rule: e.rule.clone(),
            severity: e.severity.map(|s| s.label().into()),
            rcode: e.rcode,
            us: u64::try_from(e.duration.as_micros()).unwrap_or(u64::MAX),
        }
    }

    /// The event back; `None` if a label is unknown (a damaged line).
    pub fn to_event(&self) -> Option<QueryEvent> {
        Some(QueryEvent {
            at: from_unix_millis(self.at),
            client: self.client,
            device: self.device.as_deref().map(Arc::from),
            group: self.group.as_deref().map(Arc::from),
            name: match &self.name {
                Some(n) => EventName::Clear(n.clone()),
                None => EventName::Withheld,
            },
            qtype: self.qtype,
            transport: transport_of(&self.transport)?,
            disposition: disposition_of(&self.disposition)?,
            reason: match &self.reason {
                Some(r) => Some(reason_of(r)?),
                None => None,
            },
            category: self.category.clone(),
            rule: self.rule.clone(),
            severity: match &self.severity {
                Some(s) => Some(severity_of(s)?),
                None => None,
            },
            rcode: self.rcode,
            duration: Duration::from_micros(self.us),
        })
    }
}

/// Bytes the DNS path's appends gather before a `write` (about 250 entries).
const BUFFER_BYTES: usize = 64 * 1024;
/// The oldest buffered entry is written after this long at most, by the next append or by
/// the writer thread (it checks at least every batch interval), so a `kill -9` loses at
/// most this much more than the events still queued.
const BUFFER_AGE: Duration = Duration::from_millis(100);

struct Inner {
    file: Option<File>,
    next_seq: u64,
    /// Serialized entries not yet written, in sequence order. Everything that writes to the
    /// file writes these first, so the file stays in sequence order: the replay skips what
    /// is at or below the last sequence it stored, and an entry written after a higher one
    /// would be skipped, lost.
    buffer: Vec<u8>,
    buffered_since: Option<Instant>,
    /// The oldest buffered entry's own time: what the DNS path's appends compare their
    /// event's time with, rather than read the clock once more per blocked query.
    oldest: Option<SystemTime>,
    /// Set when the writer has stopped: nothing will write the buffer later, so appends
    /// write at once.
    unbuffered: bool,
}

impl Inner {
    /// Writes `buffer` to the active file (opened on first use).
    fn write_out(&mut self, path: &Path) -> Result<(), StoreError> {
        if self.buffer.is_empty() {
            return Ok(());
        }
        if self.file.is_none() {
            use std::os::unix::fs::OpenOptionsExt;
            let file = OpenOptions::new()
                .create(true)
                .append(true)
                .mode(0o600)
                .open(path)
                .map_err(|e| StoreError::io(path, e))?;
            self.file = Some(file);
        }
        if let Some(file) = self.file.as_mut() {
            file.write_all(&self.buffer)
                .map_err(|e| StoreError::io(path, e))?;
        }
        self.buffer.clear();
        self.buffered_since = None;
        self.oldest = None;
        Ok(())
    }

    fn serialize(&mut self, path: &Path, e: &QueryEvent) -> Result<(), StoreError> {
        let start = self.buffer.len();
        if let Err(error) = line::write(&mut self.buffer, self.next_seq, e) {
            // No half line left for the next entry to follow.
            self.buffer.truncate(start);
            return Err(StoreError::io(path, std::io::Error::other(error)));
        }
        self.next_seq += 1;
        if self.buffered_since.is_none() {
            self.buffered_since = Some(Instant::now());
            self.oldest = Some(e.at);
        }
        Ok(())
    }
}

/// The journal files and the next sequence number.
pub(crate) struct Journal {
    active: PathBuf,
    replaying: PathBuf,
    inner: Mutex<Inner>,
}

/// The last replayed sequence stored in the database.
pub(crate) fn last_replayed(conn: &Connection) -> Result<u64, StoreError> {
    let v: Option<String> = conn
        .query_row(
            "SELECT value FROM meta WHERE key = ?1",
            [LAST_REPLAYED],
            |r| r.get(0),
        )
        .optional()?;
    Ok(v.and_then(|v| v.parse().ok()).unwrap_or(0))
}

impl Journal {
    /// The journal in `data_dir`; numbering continues after both the files and the database.
    pub fn open(data_dir: &Path, last_replayed: u64) -> Result<Journal, StoreError> {
        let active = data_dir.join(ACTIVE);
        let replaying = data_dir.join(REPLAYING);
        let mut max = last_replayed;
        for path in [&active, &replaying] {
            let mut entries = Entries::open(path)?;
            loop {
                let chunk = entries.next_chunk(SCAN_CHUNK)?;
                let Some(last) = chunk.iter().map(|e| e.seq).max() else {
                    break;
                };
                max = max.max(last);
            }
        }
        Ok(Journal {
            active,
            replaying,
            inner: Mutex::new(Inner {
                file: None,
                next_seq: max + 1,
                buffer: Vec::new(),
                buffered_since: None,
                oldest: None,
                unbuffered: false,
            }),
        })
    }

    /// Appends events and writes them with anything buffered; `sync` makes them durable
    /// before returning (the writer's path).
    pub fn append(&self, events: &[&QueryEvent], sync: bool) -> Result<(), StoreError> {
        // A poisoned lock only means another appender panicked mid-write; the file is still
        // line-oriented and a torn line is skipped on replay.
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        for e in events {
            inner.serialize(&self.active, e)?;
        }
        inner.write_out(&self.active)?;
        if sync {
            if let Some(file) = inner.file.as_ref() {
                file.sync_data()
                    .map_err(|e| StoreError::io(&self.active, e))?;
            }
        }
        Ok(())
    }

    /// Appends one event from the DNS path, buffered: one `write` per [`BUFFER_BYTES`] or
    /// [`BUFFER_AGE`], not per event (a `write` per blocked query cost the DNS thread more
    /// than the query itself under overload). Returns whether the buffer was written.
    pub fn append_buffered(&self, event: &QueryEvent) -> Result<bool, StoreError> {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        inner.serialize(&self.active, event)?;
        let due = inner.unbuffered
            || inner.buffer.len() >= BUFFER_BYTES
            || inner
                .oldest
                .is_some_and(|t| event.at.duration_since(t).is_ok_and(|d| d >= BUFFER_AGE));
        if due {
            inner.write_out(&self.active)?;
        }
        Ok(due)
    }

    /// Writes what is buffered if its oldest entry is [`BUFFER_AGE`] old, or at once when
    /// `now`.
    pub fn write_buffered(&self, now: bool) -> Result<(), StoreError> {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if now
            || inner
                .buffered_since
                .is_some_and(|t| t.elapsed() >= BUFFER_AGE)
        {
            inner.write_out(&self.active)?;
        }
        Ok(())
    }

    /// Writes what is buffered and makes every later append write at once (the writer is
    /// stopping: nobody would write the buffer later).
    pub fn unbuffer(&self) -> Result<(), StoreError> {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        inner.unbuffered = true;
        inner.write_out(&self.active)
    }

    /// Whether anything waits to be replayed.
    pub fn pending(&self) -> bool {
        [&self.active, &self.replaying]
            .iter()
            .any(|p| std::fs::metadata(p).is_ok_and(|m| m.len() > 0))
    }

    /// Bytes in both files.
    pub fn bytes(&self) -> u64 {
        [&self.active, &self.replaying]
            .iter()
            .filter_map(|p| std::fs::metadata(p).ok())
            .map(|m| m.len())
            .sum()
    }

    /// Moves the active file aside (unless a previous replay left one) and returns its
    /// entries, to be read a chunk at a time.
    pub fn take_for_replay(&self) -> Result<Entries, StoreError> {
        if !self.replaying.exists() {
            let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
            inner.write_out(&self.active)?;
            if self.active.exists() {
                inner.file = None;
                std::fs::rename(&self.active, &self.replaying)
                    .map_err(|e| StoreError::io(&self.active, e))?;
            }
        }
        Entries::open(&self.replaying)
    }

    /// Removes the replayed file (after the replay's transaction committed).
    pub fn replayed(&self) -> Result<(), StoreError> {
        match std::fs::remove_file(&self.replaying) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(StoreError::io(&self.replaying, e)),
        }
    }
}

/// A journal file read a chunk of entries at a time: a replay holds one chunk, never the
/// file. A long outage's journal holds millions of entries; read whole, a journal larger than
/// the memory limit would have made every restart fail the same way.
pub struct Entries {
    lines: Option<std::io::Lines<std::io::BufReader<File>>>,
    path: PathBuf,
    bad: usize,
}

impl Entries {
    /// The entries of `path`; none if it does not exist.
    fn open(path: &Path) -> Result<Entries, StoreError> {
        let lines = match File::open(path) {
            Ok(f) => Some(std::io::BufReader::new(f).lines()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(StoreError::io(path, e)),
        };
        Ok(Entries {
            lines,
            path: path.to_path_buf(),
            bad: 0,
        })
    }

    /// The next `max` parseable entries at most; empty at the end of the file.
    pub fn next_chunk(&mut self, max: usize) -> Result<Vec<Entry>, StoreError> {
        let mut out = Vec::new();
        let Some(lines) = self.lines.as_mut() else {
            return Ok(out);
        };
        while out.len() < max {
            let Some(line) = lines.next() else { break };
            let line = line.map_err(|e| StoreError::io(&self.path, e))?;
            if line.trim().is_empty() {
                continue;
            }
            match serde_json::from_str::<Entry>(&line) {
                Ok(entry) => out.push(entry),
                Err(_) => self.bad += 1,
            }
        }
        Ok(out)
    }

    /// Lines read so far that did not parse (a torn last line after a crash).
    pub fn bad(&self) -> usize {
        self.bad
    }
}

/// Entries per chunk when a file is read only for its sequence numbers.
const SCAN_CHUNK: usize = 16_384;

impl Drop for Journal {
    fn drop(&mut self) {
        let inner = self.inner.get_mut().unwrap_or_else(|p| p.into_inner());
        if let Err(error) = inner.write_out(&self.active) {
            tracing::error!(%error, "store: cannot write the journal's last entries; they are LOST");
        }
    }
}

impl Shared {
    /// Journals events that must not be lost, counting them; a failure here is the one way a
    /// blocked event can be lost, so it is logged as an error naming the file.
    pub(crate) fn journal_events(&self, events: &[&QueryEvent], sync: bool) {
        if events.is_empty() {
            return;
        }
        match self.journal.append(events, sync) {
            Ok(()) => {
                self.metrics.journalled.inc_by(events.len() as u64);
                self.update_journal_bytes();
            }
            Err(error) => {
                tracing::error!(%error, lost = events.len(), "store: cannot journal blocked queries; they are LOST");
            }
        }
    }

    /// Journals one event from the DNS path (buffered; see [`Journal::append_buffered`]).
    pub(crate) fn journal_event(&self, event: &QueryEvent) {
        match self.journal.append_buffered(event) {
            Ok(written) => {
                self.metrics.journalled.inc();
                if written {
                    self.update_journal_bytes();
                }
            }
            Err(error) => {
                tracing::error!(%error, "store: cannot journal blocked queries; they are LOST");
            }
        }
    }

    pub(crate) fn update_journal_bytes(&self) {
        self.metrics
            .journal_bytes
            .set(i64::try_from(self.journal.bytes()).unwrap_or(i64::MAX));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::test_event as event;

    /// Every entry of a replay, read in chunks of 2, and the damaged lines skipped.
    fn all(mut entries: Entries) -> (Vec<Entry>, usize) {
        let mut out = Vec::new();
        loop {
            let chunk = entries.next_chunk(2).unwrap();
            assert!(chunk.len() <= 2);
            if chunk.is_empty() {
                return (out, entries.bad());
            }
            out.extend(chunk);
        }
    }

    #[test]
    fn entries_round_trip_and_withheld_stays_withheld() {
        for e in [
            event(EventName::Withheld),
            event(EventName::Clear("a.example".into())),
        ] {
            let line = serde_json::to_string(&Entry::from_event(7, &e)).unwrap();
            let back: Entry = serde_json::from_str(&line).unwrap();
            assert_eq!(back.seq, 7);
            assert_eq!(back.to_event().unwrap(), e);
        }
        let line =
            serde_json::to_string(&Entry::from_event(1, &event(EventName::Withheld))).unwrap();
        assert!(line.contains("\"name\":null"), "{line}");
    }

    #[test]
    fn sequence_numbers_continue_after_the_files_and_the_database() {
        let dir = std::env::temp_dir().join(format!("hedgerow-journal-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let j = Journal::open(&dir, 0).unwrap();
        j.append(
            &[&event(EventName::Withheld), &event(EventName::Withheld)],
            true,
        )
        .unwrap();
        // A torn last line (a crash mid-write) is skipped, not fatal.
        std::fs::OpenOptions::new()
            .append(true)
            .open(dir.join(ACTIVE))
            .unwrap()
            .write_all(b"{\"seq\":3,\"at\"")
            .unwrap();
        let j = Journal::open(&dir, 0).unwrap();
        let (entries, bad) = all(j.take_for_replay().unwrap());
        assert_eq!((entries.len(), bad), (2, 1));
        assert_eq!(entries[1].seq, 2);
        j.replayed().unwrap();
        assert!(!j.pending());
        let j = Journal::open(&dir, 10).unwrap();
        j.append(&[&event(EventName::Withheld)], false).unwrap();
        assert_eq!(all(j.take_for_replay().unwrap()).0[0].seq, 11);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn buffered_entries_reach_the_file_in_sequence_order() {
        let dir = std::env::temp_dir().join(format!("hedgerow-journal-buf-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let j = Journal::open(&dir, 0).unwrap();
        let e = event(EventName::Clear("a.example".into()));
        assert!(!j.append_buffered(&e).unwrap(), "a single entry waits");
        assert!(!j.append_buffered(&e).unwrap());
        assert!(!j.pending(), "nothing written yet");
        // A direct append writes the buffer first: the file stays in sequence order.
        j.append(&[&e], false).unwrap();
        assert!(!j.append_buffered(&e).unwrap());
        std::thread::sleep(BUFFER_AGE);
        j.write_buffered(false).unwrap();
        assert!(j.append_buffered(&e).is_ok());
        // Taking the file for replay writes what is buffered first.
        let (entries, bad) = all(j.take_for_replay().unwrap());
        assert_eq!(bad, 0);
        let seqs: Vec<u64> = entries.iter().map(|e| e.seq).collect();
        assert_eq!(seqs, vec![1, 2, 3, 4, 5]);
        j.replayed().unwrap();
        // Once unbuffered (the writer stopped), each append is written at once.
        j.unbuffer().unwrap();
        assert!(j.append_buffered(&e).unwrap());
        assert!(j.pending());
        // Dropping the journal writes a buffer nobody wrote.
        let j = Journal::open(&dir, 0).unwrap();
        assert!(!j.append_buffered(&e).unwrap());
        drop(j);
        let j = Journal::open(&dir, 0).unwrap();
        assert_eq!(all(j.take_for_replay().unwrap()).0.len(), 2);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
