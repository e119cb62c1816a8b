//! The live catalog saved as one file (`catalog.snapshot` beside the artifacts), so that a restart
//! reads a few compact arrays instead of every stored document (parsing JSON, folding titles and
//! interning names of every movie: most of a start at 242k movies).
//!
//! It is a cache of the store, never a source: it is trusted only when it was made from this very
//! database (its random identity), at its current generation (every write moves it, see migration
//! 0003), for this embedding set (run id), and when its rows are the matrix's movies in order.
//! Anything else, damage included, means "read the store" (and write a new snapshot).
//!
//! Layout (after the [`crate::index::sidecar`] header, whose fields are the generation, the row count
//! and the matrix rows, and whose run id is `"<embedding run id> <store identity>"`): the genre names,
//! the people names and the sources (each a count and strings), then per row its entry, then the
//! checksum.

use super::{Entry, LiveCatalog, Names, Traits};
use crate::index::sidecar::{self, StreamReader};
use crate::index::SharedMatrix;
use anyhow::{ensure, Context, Result};
use std::collections::HashMap;
use std::io::{Read, Write};
use std::path::Path;

const MAGIC: &[u8; 8] = b"CVCATSN2";
/// The file's name beside the artifacts.
pub const FILE: &str = "catalog.snapshot";

/// What a snapshot must have been made from to be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotKey {
    /// The embedding set's run id.
    pub run_id: String,
    /// The store's identity and generation ([`crate::catalog::store::Store::generation`]).
    pub store: String,
    pub generation: u64,
}

impl SnapshotKey {
    pub(super) fn id(&self) -> String {
        format!("{} {}", self.run_id, self.store)
    }
}

/// The store generation the snapshot at `path` was made at, if it is a snapshot of `key`'s embedding
/// set and store (its header only: the rest is checked when it is loaded).
pub fn snapshot_generation(path: &Path, key: &SnapshotKey) -> Option<u64> {
    sidecar::open::<3>(path, MAGIC, &key.id()).ok().map(|(_, [generation, _, _])| generation)
}

fn put_str(w: &mut impl Write, s: &str) -> std::io::Result<()> {
    w.write_all(&(s.len() as u32).to_le_bytes())?;
    w.write_all(s.as_bytes())
}

fn put_names(w: &mut impl Write, names: &[Box<str>]) -> std::io::Result<()> {
    w.write_all(&(names.len() as u32).to_le_bytes())?;
    names.iter().try_for_each(|n| put_str(w, n))
}

/// Presence byte then the value's 8 bytes (zero when absent).
fn put_opt(w: &mut impl Write, v: Option<u64>) -> std::io::Result<()> {
    w.write_all(&[u8::from(v.is_some())])?;
    w.write_all(&v.unwrap_or(0).to_le_bytes())
}

impl LiveCatalog {
    /// Save this catalog (as loaded from the store described by `key`) into `path`.
    pub fn save_snapshot(&self, path: &Path, key: &SnapshotKey) -> Result<u64> {
        let fields = [key.generation, self.entries.len() as u64, self.matrix_rows() as u64];
        sidecar::write_atomic_with(path, |w| {
            w.write_all(&sidecar::header(MAGIC, &fields, &key.id()))?;
            put_names(w, &self.genres.spelling)?;
            put_names(w, &self.people.spelling)?;
            put_names(w, &self.sources)?;
            for (e, &alive) in self.entries.iter().zip(&self.alive) {
                put_str(w, e.id())?;
                put_str(w, e.title())?;
                put_str(w, e.folded_title())?;
                put_opt(w, e.rating.map(f64::to_bits))?;
                put_opt(w, e.votes)?;
                put_opt(w, e.traits.year.map(|y| y as u32 as u64))?;
                put_opt(w, e.traits.runtime.map(u64::from))?;
                w.write_all(&[e.traits.genres, e.traits.directors, u8::from(alive)])?;
                w.write_all(&e.source.to_le_bytes())?;
                w.write_all(&(e.traits.ids.len() as u32).to_le_bytes())?;
                for id in e.traits.ids.iter() {
                    w.write_all(&id.to_le_bytes())?;
                }
            }
            Ok(())
        })
    }

    /// The catalog saved in `path`, if it was made from `key` and its matrix rows are the movies `ids`
    /// (the embedding set's, in order). Rows after the matrix's (added at run time) take their
    /// vectors from `added` (the store's, by id). Returns the catalog and its added rows; any
    /// mismatch or damage is an error (the caller reads the store instead).
    pub fn load_snapshot(
        path: &Path,
        key: &SnapshotKey,
        ids: &[String],
        matrix: SharedMatrix,
        dim: usize,
        added: &[(String, Vec<f32>)],
    ) -> Result<(LiveCatalog, Vec<usize>)> {
        let (mut r, [generation, rows, matrix_rows]) = sidecar::open::<3>(path, MAGIC, &key.id())?;
        ensure!(generation == key.generation, "the store changed since the snapshot was made");
        ensure!(matrix_rows as usize == ids.len() && rows >= matrix_rows, "the snapshot is of another matrix");
        ensure!(matrix.len() == ids.len() * dim, "the matrix does not match its ids");
        let rows = rows as usize;
        // Each row takes at least 48 bytes: a damaged count cannot make us reserve much.
        ensure!(rows as u64 <= r.left() / 48, "catalog snapshot is damaged");
        let mut catalog = LiveCatalog::new(matrix, dim);
        catalog.genres = names(&mut r)?;
        catalog.people = names(&mut r)?;
        catalog.sources = strings(&mut r)?;
        catalog.reserve(rows);
        let added: HashMap<&str, &[f32]> = added.iter().map(|(id, v)| (id.as_str(), v.as_slice())).collect();
        let mut added_rows = Vec::new();
        let zeros = vec![0f32; dim];
        for row in 0..rows {
            let id = string(&mut r)?;
            if row < ids.len() {
                ensure!(id == ids[row], "the snapshot is of another matrix (row {row})");
            }
            let (title, folded_title) = (string(&mut r)?, string(&mut r)?);
            let rating = opt(&mut r)?.map(f64::from_bits);
            let votes = opt(&mut r)?;
            let year = opt(&mut r)?.map(|y| y as u32 as i32);
            let runtime = opt(&mut r)?.and_then(|m| u16::try_from(m).ok());
            let mut b = [0u8; 5];
            r.fill(&mut b)?;
            let (genres, directors, alive, source) = (b[0], b[1], b[2] != 0, u16::from_le_bytes([b[3], b[4]]));
            let n = r.u32()? as usize;
            let trait_ids = r.u32s(n)?; // bounded by the bytes left
            let people = catalog.people.spelling.len() as u32;
            let known = usize::from(genres) + usize::from(directors) <= n
                && trait_ids[..usize::from(genres)].iter().all(|&g| (g as usize) < catalog.genres.spelling.len())
                && trait_ids[usize::from(genres)..].iter().all(|&p| p < people)
                && usize::from(source) < catalog.sources.len();
            ensure!(known, "catalog snapshot is damaged (row {row})");
            let traits = Traits { ids: trait_ids.into_boxed_slice(), genres, directors, year, runtime };
            let entry = Entry::new(&id, &title, &folded_title, rating, votes, traits, source);
            if row < ids.len() {
                catalog.push_entry(entry);
            } else {
                // A deleted run-time movie's vector is gone from the store; its dead row is never read.
                let vector = match added.get(entry.id()).copied() {
                    Some(v) => v,
                    None if !alive => &zeros[..],
                    None => anyhow::bail!("a movie added at run time has no stored vector"),
                };
                ensure!(vector.len() == dim, "stored embedding of {} has dimension {}", entry.id(), vector.len());
                added_rows.push(catalog.push_entry_with_vector(entry, vector).0);
            }
            if !alive {
                let row = catalog.alive.len() - 1;
                catalog.alive[row] = false;
            }
        }
        r.finish("catalog snapshot")?;
        // An id whose newest row is dead was deleted: it points nowhere.
        let before = catalog.by_id.len();
        let alive = &catalog.alive;
        catalog.by_id.retain(|row| alive[*row as usize]);
        catalog.deleted = before - catalog.by_id.len();
        let live = catalog.alive.iter().filter(|&&a| a).count();
        ensure!(catalog.by_id.len() == live, "catalog snapshot is damaged (live rows and ids disagree)");
        // Every live row is the one its id points to.
        ensure!(
            catalog.by_id.iter().all(|&row| catalog.alive[row as usize]),
            "catalog snapshot is damaged (an id points to a replaced row)"
        );
        Ok((catalog, added_rows))
    }
}

fn string(r: &mut StreamReader<impl Read>) -> Result<String> {
    let n = r.u32()? as usize;
    ensure!(n as u64 <= r.left(), "catalog snapshot is damaged");
    let mut bytes = vec![0u8; n];
    r.fill(&mut bytes)?;
    String::from_utf8(bytes).context("catalog snapshot is damaged (text)")
}

fn strings(r: &mut StreamReader<impl Read>) -> Result<Vec<Box<str>>> {
    let n = r.u32()? as usize;
    ensure!(n as u64 * 4 <= r.left(), "catalog snapshot is damaged");
    (0..n).map(|_| string(r).map(String::into_boxed_str)).collect()
}

fn names(r: &mut StreamReader<impl Read>) -> Result<Names> {
    let spelling = strings(r)?;
    let mut by_key = HashMap::with_capacity(spelling.len());
    for (i, name) in spelling.iter().enumerate() {
        let fresh = by_key.insert(Names::key(name).into_owned().into_boxed_str(), i as u32).is_none();
        ensure!(fresh, "catalog snapshot is damaged (a name twice)");
    }
    Ok(Names { by_key, spelling, scratch: String::new() })
}

fn opt(r: &mut StreamReader<impl Read>) -> Result<Option<u64>> {
    let mut b = [0u8; 9];
    r.fill(&mut b)?;
    let v = u64::from_le_bytes(b[1..].try_into().expect("8 bytes"));
    Ok((b[0] != 0).then_some(v))
}

#[cfg(test)]
mod tests {
    use super::super::{Facts, Filter, NewMovie};
    use super::*;
    use crate::movie::MovieDoc;
    use serde_json::json;
    use std::sync::Arc;

    fn movie(id: &str, value: serde_json::Value, votes: Option<u64>) -> NewMovie<'static> {
        let doc = MovieDoc::parse(&value).unwrap();
        let facts = Facts::parse(Box::leak(doc.render().into_boxed_str())).unwrap();
        NewMovie { id: id.into(), rating: votes.map(|v| v as f64 / 100.0), votes, facts, source: "test" }
    }

    /// Stored run-time vectors, by id.
    type Added = Vec<(String, Vec<f32>)>;

    /// Three matrix rows (the second replaced at run time), one movie added at run time.
    fn catalog() -> (LiveCatalog, Vec<String>, Added) {
        let matrix: SharedMatrix = Arc::new(vec![1.0, 0.0, 0.0, 1.0, 0.6, 0.8]);
        let mut cat = LiveCatalog::new(matrix, 2);
        let ids: Vec<String> = ["a", "b", "c"].map(String::from).to_vec();
        let docs = [
            json!({"title": "Amélie", "genres": ["Comedy", "Romance"], "release_year": 2001, "directors": ["Jean-Pierre Jeunet"], "actors": ["Audrey Tautou"]}),
            json!({"title": "B", "genres": ["Drama"], "release_year": -5}),
            json!({"title": "Ça", "genres": ["comedy"], "actors": ["audrey tautou", "Mathieu Kassovitz"]}),
        ];
        for (id, doc) in ids.iter().zip(docs) {
            let m = movie(id, doc, if id == "b" { None } else { Some(1234) });
            let folded = super::super::fold(&m.facts.title);
            let e = cat.entry_for(m, folded);
            cat.push_matrix_row(e);
        }
        let added = vec![("b".to_string(), vec![0.8, 0.6]), ("d".to_string(), vec![0.0, -1.0])];
        cat.push(movie("b", json!({"title": "B again", "genres": ["Thriller"]}), Some(7)), &added[0].1);
        cat.push(movie("d", json!({"title": "D", "directors": ["Jean-Pierre JEUNET"]}), Some(9)), &added[1].1);
        (cat, ids, added)
    }

    fn key(generation: u64) -> SnapshotKey {
        SnapshotKey { run_id: "run-1".into(), store: "abc".into(), generation }
    }

    /// Everything a request can see of a catalog.
    fn seen(cat: &LiveCatalog) -> String {
        let rows: Vec<String> = (0..cat.rows())
            .map(|r| {
                let e = cat.entry(r);
                format!(
                    "{} {} {:?} {:?} {:?} {} {} {:?} {:?} {:?}",
                    e.id(),
                    e.title(),
                    e.year(),
                    e.rating,
                    e.votes,
                    cat.source(r),
                    cat.keep(r, &Filter::default(), &[]),
                    cat.vector(r),
                    cat.why(cat.traits(0), r),
                    cat.row_of(e.id())
                )
            })
            .collect();
        let genre = Filter { genres: vec!["comedy".into()], ..Default::default() };
        let kept: Vec<usize> = (0..cat.rows()).filter(|&r| cat.keep(r, &genre, &[])).collect();
        format!(
            "{rows:#?} {kept:?} {:?} {:?} {}",
            cat.search_titles("amelie", 5),
            cat.search_titles("ca", 5),
            cat.live_count()
        )
    }

    #[test]
    fn a_snapshot_loads_back_the_same_catalog() {
        let (cat, ids, added) = catalog();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FILE);
        cat.save_snapshot(&path, &key(7)).unwrap();
        let (back, added_rows) =
            LiveCatalog::load_snapshot(&path, &key(7), &ids, cat.matrix.clone(), 2, &added).unwrap();
        assert_eq!(added_rows, [3, 4]);
        assert_eq!(seen(&back), seen(&cat));
        // Names new to the snapshot are interned after the saved ones, as in the original.
        let (mut a, mut b) = (cat, back);
        let m = || movie("e", json!({"title": "E", "actors": ["Audrey TAUTOU", "Nobody"]}), None);
        a.push(m(), &[1.0, 0.0]);
        b.push(m(), &[1.0, 0.0]);
        assert_eq!(seen(&b), seen(&a));
    }

    #[test]
    fn a_snapshot_of_another_store_state_matrix_or_damaged_is_refused() {
        let (cat, ids, added) = catalog();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FILE);
        cat.save_snapshot(&path, &key(7)).unwrap();
        let load = |key: &SnapshotKey, ids: &[String], added: &[(String, Vec<f32>)]| {
            LiveCatalog::load_snapshot(&path, key, ids, cat.matrix.clone(), 2, added)
                .map(|_| ())
                .unwrap_err()
                .to_string()
        };
        assert!(load(&key(8), &ids, &added).contains("changed"));
        assert!(load(&SnapshotKey { store: "xyz".into(), ..key(7) }, &ids, &added).contains("another"));
        assert!(load(&SnapshotKey { run_id: "run-2".into(), ..key(7) }, &ids, &added).contains("another"));
        let other_ids: Vec<String> = ["a", "x", "c"].map(String::from).to_vec();
        assert!(load(&key(7), &other_ids, &added).contains("another matrix"));
        assert!(load(&key(7), &ids, &added[..1]).contains("no stored vector"));
        let good = std::fs::read(&path).unwrap();
        for at in [20, good.len() / 2, good.len() - 3] {
            let mut bad = good.clone();
            bad[at] ^= 0x21;
            std::fs::write(&path, &bad).unwrap();
            assert!(
                LiveCatalog::load_snapshot(&path, &key(7), &ids, cat.matrix.clone(), 2, &added).is_err(),
                "byte {at}"
            );
        }
        for len in [0, 10, good.len() / 2, good.len() - 1] {
            std::fs::write(&path, &good[..len]).unwrap();
            assert!(
                LiveCatalog::load_snapshot(&path, &key(7), &ids, cat.matrix.clone(), 2, &added).is_err(),
                "{len} bytes"
            );
        }
    }
}
