//! The movies added at run time since the catalog snapshot was saved, appended one record per write
//! (`catalog.journal` beside the snapshot), so that a start after writes reads the snapshot and this
//! short log instead of every stored document.
//!
//! Like the snapshot, a cache of the store, never a source: the store is written first, and a record
//! is appended (and synced) after that write and before it is acknowledged. Each record carries the
//! store's generation before and after its write; a start uses snapshot + journal only when the
//! records chain from the snapshot's generation to the store's current one without a gap (a write by
//! another program, or one whose record was never appended, breaks the chain: the store is read).
//! Not detected: a write by another program that lands between this server's generation read before
//! its own write and that write's transaction (the "after" generation is read inside it): its movie
//! would be missing until the store is read again.
//! A torn or damaged tail (a crash mid-append) ends the journal where its last whole record ends: its
//! write, if it reached the store, is then missing from the chain, so the store is read; nothing
//! acknowledged is lost either way.
//!
//! Layout (version 2, `CVCATJN2`): the [`crate::index::sidecar`] header (its one field the snapshot's
//! generation, its id the snapshot's), the header's checksum, then records: `u32` length, the payload,
//! its `u64` checksum. A payload: its kind (0 an add or replacement, 1 a delete), the generations
//! before and after, then the movie's id, title, rating, votes, year, genres, directors, actors and
//! source (a delete's are empty). A journal of version 1 (`CVCATJN1`, no kinds, before deletes) is
//! refused with that reason, and the start reads the store (it then writes a new snapshot and a
//! version 2 journal); version 1 readers refuse a version 2 journal the same way (another magic).

use super::{Facts, NewMovie, SnapshotKey};
use crate::index::sidecar::{self, Fnv};
use anyhow::{ensure, Context, Result};
use std::borrow::Cow;
use std::io::Write;
use std::path::{Path, PathBuf};

const MAGIC: &[u8; 8] = b"CVCATJN2";
/// The first format's magic (records without a kind): refused, by name.
const MAGIC_V1: &[u8; 8] = b"CVCATJN1";
/// The file's name beside the artifacts.
pub const FILE: &str = "catalog.journal";

/// One movie added (or replaced, or deleted) at run time, as journaled.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    /// A delete of the movie `id` (the other movie fields are empty).
    pub deleted: bool,
    /// The store's generation before and after the write.
    pub before: u64,
    pub after: u64,
    pub id: String,
    pub title: String,
    pub rating: Option<f64>,
    pub votes: Option<u64>,
    pub year: Option<i64>,
    pub runtime: Option<i64>,
    pub genres: Vec<String>,
    pub directors: Vec<String>,
    pub actors: Vec<String>,
    pub source: String,
}

impl Record {
    /// The record of `movie`, written between generations `before` and `after`.
    pub fn of(movie: &NewMovie, before: u64, after: u64) -> Record {
        let list = |l: &[Cow<str>]| l.iter().map(|s| s.to_string()).collect();
        let f = &movie.facts;
        Record {
            deleted: false,
            before,
            after,
            id: movie.id.clone(),
            title: f.title.to_string(),
            rating: movie.rating,
            votes: movie.votes,
            year: f.release_year,
            runtime: f.runtime_minutes,
            genres: list(&f.genres),
            directors: list(&f.directors),
            actors: list(&f.actors),
            source: movie.source.to_string(),
        }
    }

    /// The record of deleting `id`, written between generations `before` and `after`.
    pub fn deletion(id: &str, before: u64, after: u64) -> Record {
        Record {
            deleted: true,
            before,
            after,
            id: id.to_string(),
            title: String::new(),
            rating: None,
            votes: None,
            year: None,
            runtime: None,
            genres: Vec::new(),
            directors: Vec::new(),
            actors: Vec::new(),
            source: String::new(),
        }
    }

    /// The movie to push into the catalog.
    pub fn movie(&self) -> NewMovie<'_> {
        fn list(l: &[String]) -> Vec<Cow<'_, str>> {
            l.iter().map(|s| Cow::Borrowed(s.as_str())).collect()
        }
        NewMovie {
            id: self.id.clone(),
            rating: self.rating,
            votes: self.votes,
            facts: Facts {
                title: Cow::Borrowed(&self.title),
                genres: list(&self.genres),
                release_year: self.year,
                directors: list(&self.directors),
                actors: list(&self.actors),
                runtime_minutes: self.runtime,
            },
            source: &self.source,
        }
    }

    fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(128);
        let opt = |out: &mut Vec<u8>, v: Option<u64>| {
            out.push(u8::from(v.is_some()));
            out.extend_from_slice(&v.unwrap_or(0).to_le_bytes());
        };
        out.push(u8::from(self.deleted));
        out.extend_from_slice(&self.before.to_le_bytes());
        out.extend_from_slice(&self.after.to_le_bytes());
        put_str(&mut out, &self.id);
        put_str(&mut out, &self.title);
        opt(&mut out, self.rating.map(f64::to_bits));
        opt(&mut out, self.votes);
        opt(&mut out, self.year.map(|y| y as u64));
        opt(&mut out, self.runtime.map(|m| m as u64));
        for list in [&self.genres, &self.directors, &self.actors] {
            out.extend_from_slice(&(list.len() as u32).to_le_bytes());
            list.iter().for_each(|s| put_str(&mut out, s));
        }
        put_str(&mut out, &self.source);
        out
    }

    fn decode(bytes: &[u8]) -> Option<Record> {
        let mut r = Cursor(bytes);
        let deleted = match r.take(1)?[0] {
            0 => false,
            1 => true,
            _ => return None,
        };
        let (before, after) = (r.u64()?, r.u64()?);
        let (id, title) = (r.string()?, r.string()?);
        let (rating, votes, year) = (r.opt()?.map(f64::from_bits), r.opt()?, r.opt()?.map(|y| y as i64));
        let runtime = r.opt()?.map(|m| m as i64);
        let mut lists = [Vec::new(), Vec::new(), Vec::new()];
        for list in lists.iter_mut() {
            let n = r.u32()? as usize;
            if n > r.0.len() / 4 {
                return None;
            }
            *list = (0..n).map(|_| r.string()).collect::<Option<_>>()?;
        }
        let source = r.string()?;
        let [genres, directors, actors] = lists;
        r.0.is_empty().then_some(Record {
            deleted,
            before,
            after,
            id,
            title,
            rating,
            votes,
            year,
            runtime,
            genres,
            directors,
            actors,
            source,
        })
    }
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u32).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

/// Reads a payload; `None` at any shortfall.
struct Cursor<'a>(&'a [u8]);

impl Cursor<'_> {
    fn take(&mut self, n: usize) -> Option<&[u8]> {
        if self.0.len() < n {
            return None;
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Some(head)
    }
    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.take(4)?.try_into().ok()?))
    }
    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }
    fn opt(&mut self) -> Option<Option<u64>> {
        let present = self.take(1)?[0] != 0;
        let v = self.u64()?;
        Some(present.then_some(v))
    }
    fn string(&mut self) -> Option<String> {
        let n = self.u32()? as usize;
        String::from_utf8(self.take(n)?.to_vec()).ok()
    }
}

fn checksum(bytes: &[u8]) -> u64 {
    let mut sum = Fnv::new();
    sum.feed(bytes);
    sum.finish()
}

/// A journal as read back: the snapshot generation it continues, its whole records, and the bytes
/// they end at (a torn tail after them is cut off before appending).
#[derive(Debug)]
pub struct Replay {
    pub snapshot_generation: u64,
    pub records: Vec<Record>,
    pub valid_len: u64,
    /// Damage before the end: a record whose checksum or contents are wrong with more bytes after it
    /// (not a torn tail, which is always the last record). The start then does not use the journal.
    pub damage: Option<Damage>,
}

/// Where a journal is damaged in the middle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Damage {
    /// The byte offset of the damaged record (where [`Replay::valid_len`] ends the whole ones).
    pub at: u64,
    /// The bytes from there to the end of the file, none of them read.
    pub unread: u64,
}

impl std::fmt::Display for Damage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "a damaged record at byte {} with {} bytes after it", self.at, self.unread)
    }
}

impl Replay {
    /// Whether the records chain from the snapshot's generation to `generation` without a gap.
    pub fn reaches(&self, generation: u64) -> bool {
        let mut at = self.snapshot_generation;
        for r in &self.records {
            if r.before != at || r.after < r.before {
                return false;
            }
            at = r.after;
        }
        at == generation
    }
}

/// Read the journal at `path` if it continues a snapshot of `key`'s embedding set and store (any
/// generation). A damaged or torn record ends it (the records before it are returned, and damage
/// before the last record is told apart in [`Replay::damage`]); a damaged header or another
/// snapshot's journal is an error.
pub fn read(path: &Path, key: &SnapshotKey) -> Result<Replay> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    ensure!(
        !bytes.starts_with(MAGIC_V1),
        "the journal is of version 1 (CVCATJN1, before deletes were journaled); this version reads only version 2"
    );
    let header_len = sidecar::header(MAGIC, &[0], &key.id()).len();
    ensure!(bytes.len() >= header_len + 8, "the journal is truncated");
    let (header, rest) = bytes.split_at(header_len);
    ensure!(rest[..8] == checksum(header).to_le_bytes(), "the journal's header is damaged");
    let generation = u64::from_le_bytes(header[8..16].try_into().expect("8 bytes"));
    ensure!(header == sidecar::header(MAGIC, &[generation], &key.id()), "the journal is of another snapshot");
    let mut at = header_len + 8;
    let mut records = Vec::new();
    let mut damage = None;
    while let Some(len) = bytes.get(at..at + 4).map(|b| u32::from_le_bytes(b.try_into().expect("4 bytes")) as usize) {
        // A record that runs past the end is a torn tail (an append cut short).
        let Some(payload) = bytes.get(at + 4..at + 4 + len) else { break };
        let Some(sum) = bytes.get(at + 4 + len..at + 12 + len) else { break };
        let record = (sum == checksum(payload).to_le_bytes()).then(|| Record::decode(payload)).flatten();
        let Some(record) = record else {
            // Whole but wrong: the last record is a torn tail too (its bytes allocated, not all written);
            // one with bytes after it is damage in the middle.
            if at + 12 + len < bytes.len() {
                damage = Some(Damage { at: at as u64, unread: (bytes.len() - at) as u64 });
            }
            break;
        };
        records.push(record);
        at += 12 + len;
    }
    Ok(Replay { snapshot_generation: generation, records, valid_len: at as u64, damage })
}

/// A journal open for appending.
#[derive(Debug)]
pub struct Journal {
    file: std::fs::File,
    path: PathBuf,
}

impl Journal {
    /// A new, empty journal continuing the snapshot of `key` (its generation), replacing any other.
    pub fn create(path: &Path, key: &SnapshotKey) -> Result<Journal> {
        let header = sidecar::header(MAGIC, &[key.generation], &key.id());
        let mut bytes = header.clone();
        bytes.extend_from_slice(&checksum(&header).to_le_bytes());
        crate::artifacts::write_atomic(path, &bytes)?;
        Journal::append_to(path, bytes.len() as u64)
    }

    /// Open the journal at `path` for appending after its first `valid_len` bytes (a torn tail after
    /// them is cut off).
    pub fn append_to(path: &Path, valid_len: u64) -> Result<Journal> {
        let file = std::fs::OpenOptions::new()
            .write(true)
            .open(path)
            .with_context(|| format!("cannot open {}", path.display()))?;
        file.set_len(valid_len)?;
        file.sync_all()?;
        let mut journal = Journal { file, path: path.to_path_buf() };
        use std::io::Seek;
        journal.file.seek(std::io::SeekFrom::Start(valid_len))?;
        Ok(journal)
    }

    /// Append `record` and sync it to disk.
    pub fn append(&mut self, record: &Record) -> Result<()> {
        let payload = record.encode();
        let mut bytes = Vec::with_capacity(payload.len() + 12);
        bytes.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        bytes.extend_from_slice(&payload);
        bytes.extend_from_slice(&checksum(&payload).to_le_bytes());
        self.file.write_all(&bytes)?;
        self.file.sync_data().with_context(|| format!("cannot sync {}", self.path.display()))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(generation: u64) -> SnapshotKey {
        SnapshotKey { run_id: "run-1".into(), store: "abc".into(), generation }
    }

    fn record(i: u64) -> Record {
        Record {
            deleted: false,
            before: 10 + 2 * i,
            after: 12 + 2 * i,
            id: format!("m{i}"),
            title: format!("Amélie {i}"),
            rating: i.is_multiple_of(2).then_some(7.5),
            votes: Some(i * 100),
            year: Some(-5 + i as i64),
            runtime: i.is_multiple_of(3).then_some(90 + i as i64),
            genres: vec!["Drama".into(), "Crime".into()],
            directors: vec![],
            actors: vec!["Audrey Tautou".into()],
            source: "api".into(),
        }
    }

    #[test]
    fn records_read_back_and_chain_to_the_store_generation() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FILE);
        let mut j = Journal::create(&path, &key(10)).unwrap();
        for i in 0..3 {
            j.append(&record(i)).unwrap();
        }
        let deletion = Record::deletion("m1", 16, 17);
        j.append(&deletion).unwrap();
        let replay = read(&path, &key(99)).unwrap();
        assert_eq!(replay.snapshot_generation, 10);
        let mut expected: Vec<Record> = (0..3).map(record).collect();
        expected.push(deletion);
        assert_eq!(replay.records, expected);
        assert_eq!(replay.valid_len, std::fs::metadata(&path).unwrap().len());
        assert!(replay.reaches(17) && !replay.reaches(16) && !replay.reaches(18));
        let movie = replay.records[1].movie();
        assert_eq!(Record::of(&movie, 12, 14), replay.records[1]);
        assert!(read(&path, &SnapshotKey { store: "xyz".into(), ..key(10) }).is_err(), "another store");
        // A gap (a write with no record) breaks the chain.
        let mut j = Journal::append_to(&path, replay.valid_len).unwrap();
        j.append(&Record { before: 18, after: 20, ..record(9) }).unwrap();
        assert!(!read(&path, &key(10)).unwrap().reaches(20));
    }

    #[test]
    fn bad_bytes_in_a_middle_record_are_damage_not_a_torn_tail() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FILE);
        let mut j = Journal::create(&path, &key(10)).unwrap();
        let mut ends = vec![std::fs::metadata(&path).unwrap().len() as usize];
        for i in 0..3 {
            j.append(&record(i)).unwrap();
            ends.push(std::fs::metadata(&path).unwrap().len() as usize);
        }
        let full = std::fs::read(&path).unwrap();
        assert_eq!(read(&path, &key(10)).unwrap().damage, None);
        // Every byte of the first two records (length, payload, checksum), flipped: the records before
        // it are whole, the damage is told, and nothing after it is read.
        for record in 0..2 {
            for at in ends[record]..ends[record + 1] {
                let mut bad = full.clone();
                bad[at] ^= 0x40;
                std::fs::write(&path, &bad).unwrap();
                let replay = read(&path, &key(10)).unwrap();
                assert_eq!(replay.records.len(), record, "byte {at}");
                assert_eq!(replay.valid_len, ends[record] as u64, "byte {at}");
                // A length made larger than the rest of the file reads as a torn tail; the chain then
                // still misses the later writes, so the store is read either way.
                if let Some(damage) = replay.damage {
                    assert_eq!(damage, Damage { at: ends[record] as u64, unread: (full.len() - ends[record]) as u64 });
                } else {
                    assert!((ends[record]..ends[record] + 4).contains(&at), "byte {at}: damage not told");
                }
                assert!(!replay.reaches(16), "byte {at}");
            }
        }
        // The last record's payload and checksum bytes are a torn tail, not damage (its length made
        // shorter leaves bytes after it: damage, as it cannot be told apart).
        for at in ends[2]..ends[3] {
            let mut bad = full.clone();
            bad[at] ^= 0x40;
            std::fs::write(&path, &bad).unwrap();
            let replay = read(&path, &key(10)).unwrap();
            assert_eq!(replay.records.len(), 2, "byte {at}");
            if at >= ends[2] + 4 {
                assert_eq!(replay.damage, None, "byte {at}");
            }
        }
    }

    #[test]
    fn a_torn_or_damaged_tail_ends_the_journal_at_the_last_whole_record() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FILE);
        let mut j = Journal::create(&path, &key(10)).unwrap();
        j.append(&record(0)).unwrap();
        let one = std::fs::metadata(&path).unwrap().len() as usize;
        j.append(&record(1)).unwrap();
        let full = std::fs::read(&path).unwrap();
        for len in one..full.len() {
            std::fs::write(&path, &full[..len]).unwrap();
            let replay = read(&path, &key(10)).unwrap();
            assert_eq!((replay.records.len(), replay.valid_len), (1, one as u64), "{len} bytes");
            assert!(replay.reaches(12));
        }
        for at in one..full.len() {
            let mut bad = full.clone();
            bad[at] ^= 0x40;
            std::fs::write(&path, &bad).unwrap();
            assert_eq!(read(&path, &key(10)).unwrap().records.len(), 1, "byte {at}");
        }
        // Appending after a torn tail cuts it off first.
        std::fs::write(&path, &full[..full.len() - 3]).unwrap();
        let replay = read(&path, &key(10)).unwrap();
        let mut j = Journal::append_to(&path, replay.valid_len).unwrap();
        j.append(&record(1)).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), full);
        // A journal of the first format is refused, by name.
        let mut old = full.clone();
        old[..8].copy_from_slice(MAGIC_V1);
        std::fs::write(&path, &old).unwrap();
        assert!(read(&path, &key(10)).unwrap_err().to_string().contains("version 1"));
        // A damaged header is refused.
        for at in [0, 9, 20] {
            let mut bad = full.clone();
            bad[at] ^= 0x01;
            std::fs::write(&path, &bad).unwrap();
            assert!(read(&path, &key(10)).is_err(), "header byte {at}");
        }
    }
}
