//! Movie documents the service can show without the store, for `GET /v1/movies/{id}` while the store
//! cannot be reached (the store stays the source whenever it answers: it has the newest document).
//!
//! Not every document in memory: at the reference scale (242,552 movies, about 400 bytes of canonical
//! JSON each) that would be ~100 MiB more per replica, a sixth of its whole footprint. Instead:
//! - **Matrix rows** ([`BaseDocuments`]): the artifacts' `catalog.jsonl` (or the file `cinevec embed`
//!   was given, which the manifest names) is the file the embedding matrix was made from, one movie
//!   per line in matrix order. On the first read the store cannot answer, one pass over it checks its
//!   sha256 against the embedding manifest's and records where each line starts: 8 bytes per movie (1.9 MiB at 242,552), nothing before. A document is then one
//!   positioned read of its line. It is the document the movie's vector was embedded from; one
//!   changed in the store since the artifacts were built (a later ingest, not a run-time add) is
//!   shown as it was then until the store answers again.
//! - **Run-time rows** ([`RunTimeDocuments`]): the canonical document of each movie added or replaced
//!   at run time (here or, on PostgreSQL, by another replica), kept beside its vector (which takes
//!   4 bytes per dimension: 1.5 KiB at 384), the newest write of each id.

use crate::catalog::jsonl::CatalogRecord;
use serde_json::Value;
use std::collections::HashMap;
use std::io::BufRead;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock, RwLock};

/// The documents of the matrix rows, read from the artifacts' catalog file when needed.
#[derive(Debug)]
pub struct BaseDocuments {
    /// Where the catalog file may be, in order (the first with the right sha256 is used).
    candidates: Vec<PathBuf>,
    /// The embedding manifest's `input_sha256`: the file must still be the one embedded.
    sha256: String,
    rows: usize,
    /// The file used and the byte offset of each line, its length last (built on first use).
    offsets: OnceLock<Result<(PathBuf, Vec<u64>), String>>,
}

impl BaseDocuments {
    pub fn new(candidates: Vec<PathBuf>, sha256: String, rows: usize) -> Self {
        BaseDocuments { candidates, sha256, rows, offsets: OnceLock::new() }
    }

    /// The document of matrix row `row` if it is movie `id`; `Err` says why there is none (a missing
    /// or changed catalog file, a line of another movie). Blocking: reads the file (the whole of it
    /// the first time).
    pub fn get(&self, row: usize, id: &str) -> Result<Value, String> {
        let init = || {
            let mut why = Vec::new();
            for path in &self.candidates {
                match self.index(path) {
                    Ok(offsets) => return Ok((path.clone(), offsets)),
                    Err(e) => why.push(e),
                }
            }
            Err(why.join("; "))
        };
        let (path, offsets) = self.offsets.get_or_init(init).as_ref().map_err(Clone::clone)?;
        let (Some(&start), Some(&end)) = (offsets.get(row), offsets.get(row + 1)) else {
            return Err(format!("{} has no line {}", path.display(), row + 1));
        };
        let mut line = vec![0u8; (end - start) as usize];
        let file = std::fs::File::open(path).map_err(|e| format!("cannot open {}: {e}", path.display()))?;
        file.read_exact_at(&mut line, start).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let text = std::str::from_utf8(&line).map_err(|e| e.to_string())?;
        let record = CatalogRecord::parse_line(text.trim_end()).map_err(|e| format!("line {}: {e}", row + 1))?;
        if record.id != id {
            return Err(format!("line {} of {} is movie {}, not {id}", row + 1, path.display(), record.id));
        }
        Ok(record.movie.into_value())
    }

    /// One pass: the sha256 of the whole file and where each line starts.
    fn index(&self, path: &std::path::Path) -> Result<Vec<u64>, String> {
        use sha2::Digest;
        let started = std::time::Instant::now();
        let file = std::fs::File::open(path).map_err(|e| format!("cannot open {}: {e}", path.display()))?;
        let mut reader = std::io::BufReader::with_capacity(1 << 20, file);
        let mut hasher = sha2::Sha256::new();
        let mut offsets = Vec::with_capacity(self.rows + 1);
        let mut at = 0u64;
        let mut line_start = true;
        loop {
            let buf = reader.fill_buf().map_err(|e| format!("cannot read {}: {e}", path.display()))?;
            if buf.is_empty() {
                break;
            }
            hasher.update(buf);
            for (i, &b) in buf.iter().enumerate() {
                if line_start {
                    offsets.push(at + i as u64);
                    line_start = false;
                }
                if b == b'\n' {
                    line_start = true;
                }
            }
            at += buf.len() as u64;
            let n = buf.len();
            reader.consume(n);
        }
        offsets.push(at);
        if hex::encode(hasher.finalize()) != self.sha256 {
            return Err(format!("{} is not the catalog file the embedding matrix was made from", path.display()));
        }
        tracing::info!(
            "indexed {} lines of {} in {:.2}s, to show documents while the store cannot be reached",
            offsets.len() - 1,
            path.display(),
            started.elapsed().as_secs_f64()
        );
        Ok(offsets)
    }
}

/// The newest document of each movie added or replaced at run time, with the store generation it
/// was written at.
#[derive(Debug, Default)]
pub struct RunTimeDocuments {
    by_id: RwLock<HashMap<String, (u64, Arc<str>)>>,
}

impl RunTimeDocuments {
    /// Keep `document` (canonical JSON) for `id` unless a newer generation of it is kept already.
    pub fn remember(&self, id: &str, generation: u64, document: Arc<str>) {
        let mut by_id = self.by_id.write().unwrap_or_else(|e| e.into_inner());
        match by_id.get_mut(id) {
            Some(kept) if kept.0 > generation => {}
            Some(kept) => *kept = (generation, document),
            None => {
                by_id.insert(id.to_string(), (generation, document));
            }
        }
    }

    pub fn get(&self, id: &str) -> Option<Arc<str>> {
        self.by_id.read().unwrap_or_else(|e| e.into_inner()).get(id).map(|(_, d)| d.clone())
    }
}
