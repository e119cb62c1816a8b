//! The embedding cache: every vector `cinevec embed` computes is appended, with the SHA-256 of the
//! document text it came from, to a log beside the embedding set. A run reads the log first and embeds
//! only documents it does not hold, so an interrupted run (Ctrl-C, a crash, a reboot) resumes where it
//! stopped, and a catalog that changed by a few movies costs a few embeddings, not all of them.
//!
//! One log per model: its header records everything a vector depends on besides the text (weights,
//! pooling, maximum tokens, number format, document format); a log whose header differs is started
//! afresh. Records are fixed-size, so a record torn by a kill is detected by length and cut off.
//!
//! Layout: `MAGIC`, header length (u32 LE), header JSON, then records of
//! `[sha256: 32 bytes][flags: u32 LE][vector: dim × f32 LE]`; flag bit 0 = the text was truncated.

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, HashSet};
use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

const MAGIC: &[u8; 8] = b"CVECACHE";
const FLAG_TRUNCATED: u32 = 1;

/// The SHA-256 of a document's text: the cache key.
pub type DocHash = [u8; 32];

pub fn doc_hash(text: &str) -> DocHash {
    crate::hash::sha256(text.as_bytes())
}

/// What a cached vector depends on besides the text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CacheKey {
    pub weights_sha256: String,
    pub dim: usize,
    pub pooling: String,
    pub max_tokens: usize,
    pub dtype: String,
    pub doc_format: String,
}

/// A cached embedding.
#[derive(Debug, Clone, Copy)]
pub struct Cached<'a> {
    pub vector: &'a [f32],
    pub truncated: bool,
}

/// An open cache log: its records in memory, the file open for appending.
pub struct EmbedCache {
    path: PathBuf,
    key: CacheKey,
    rows: HashMap<DocHash, usize>,
    vectors: Vec<f32>,
    truncated: Vec<bool>,
    writer: BufWriter<File>,
}

impl EmbedCache {
    /// The log's path for a model in `dir`.
    pub fn path_in(dir: &Path, key: &CacheKey) -> PathBuf {
        let sha = &key.weights_sha256[..16.min(key.weights_sha256.len())];
        dir.join(format!("embed-cache-{sha}.bin"))
    }

    /// Open (or create) the log for `key` in `dir`.
    pub fn open(dir: &Path, key: &CacheKey) -> Result<EmbedCache> {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let path = Self::path_in(dir, key);
        match Self::read(&path, key) {
            Ok(Some(cache)) => Ok(cache),
            Ok(None) => Self::create(&path, key),
            Err(e) => {
                tracing::warn!("embedding cache {} is unreadable ({e:#}): starting a new one", path.display());
                Self::create(&path, key)
            }
        }
    }

    fn header(key: &CacheKey) -> Result<Vec<u8>> {
        let json = serde_json::to_vec(key)?;
        let mut out = Vec::with_capacity(12 + json.len());
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&(json.len() as u32).to_le_bytes());
        out.extend_from_slice(&json);
        Ok(out)
    }

    fn record_len(dim: usize) -> usize {
        32 + 4 + 4 * dim
    }

    fn create(path: &Path, key: &CacheKey) -> Result<EmbedCache> {
        let mut file = File::create(path).with_context(|| format!("cannot create {}", path.display()))?;
        file.write_all(&Self::header(key)?)?;
        file.flush()?;
        Ok(EmbedCache {
            path: path.to_path_buf(),
            key: key.clone(),
            rows: HashMap::new(),
            vectors: Vec::new(),
            truncated: Vec::new(),
            writer: BufWriter::with_capacity(1 << 20, file),
        })
    }

    /// Read an existing log; `None` when there is none or it belongs to another model.
    fn read(path: &Path, key: &CacheKey) -> Result<Option<EmbedCache>> {
        let mut file = match OpenOptions::new().read(true).append(true).open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e).with_context(|| format!("cannot open {}", path.display())),
        };
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)?;
        if bytes.len() < 12 || &bytes[..8] != MAGIC {
            bail!("not an embedding cache");
        }
        let header_len = u32::from_le_bytes(bytes[8..12].try_into().unwrap()) as usize;
        let Some(header) = bytes.get(12..12 + header_len) else { bail!("header cut off") };
        let stored: CacheKey = serde_json::from_slice(header).context("bad header")?;
        if &stored != key {
            return Ok(None);
        }
        let dim = key.dim;
        let body = &bytes[12 + header_len..];
        let record = Self::record_len(dim);
        let complete = body.len() / record;
        let torn = body.len() % record;
        if torn > 0 {
            // A record cut short by a kill: drop it so appends stay aligned.
            file.set_len((bytes.len() - torn) as u64)?;
            file.seek(SeekFrom::End(0))?;
            tracing::debug!("embedding cache {}: dropped a torn record", path.display());
        }
        let mut cache = EmbedCache {
            path: path.to_path_buf(),
            key: key.clone(),
            rows: HashMap::with_capacity(complete),
            vectors: Vec::with_capacity(complete * dim),
            truncated: Vec::with_capacity(complete),
            writer: BufWriter::with_capacity(1 << 20, file),
        };
        for rec in body.chunks_exact(record) {
            let hash: DocHash = rec[..32].try_into().unwrap();
            let flags = u32::from_le_bytes(rec[32..36].try_into().unwrap());
            let vector = rec[36..].chunks_exact(4).map(|b| f32::from_le_bytes(b.try_into().unwrap()));
            cache.insert(hash, vector, flags & FLAG_TRUNCATED != 0);
        }
        Ok(Some(cache))
    }

    fn insert(&mut self, hash: DocHash, vector: impl Iterator<Item = f32>, truncated: bool) {
        let dim = self.key.dim;
        match self.rows.get(&hash) {
            Some(&row) => {
                // A later record for the same text (only after a compaction race): keep the newest.
                for (slot, v) in self.vectors[row * dim..(row + 1) * dim].iter_mut().zip(vector) {
                    *slot = v;
                }
                self.truncated[row] = truncated;
            }
            None => {
                self.rows.insert(hash, self.truncated.len());
                self.vectors.extend(vector);
                self.truncated.push(truncated);
            }
        }
    }

    pub fn len(&self) -> usize {
        self.rows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn get(&self, hash: &DocHash) -> Option<Cached<'_>> {
        let dim = self.key.dim;
        self.rows
            .get(hash)
            .map(|&row| Cached { vector: &self.vectors[row * dim..(row + 1) * dim], truncated: self.truncated[row] })
    }

    /// Append records and push them to the file (not fsync'd: they survive the process being killed,
    /// which is what resuming needs; a lost tail after a power cut only costs re-embedding it).
    pub fn append(&mut self, items: &[(DocHash, &[f32], bool)]) -> Result<()> {
        for (hash, vector, truncated) in items {
            if vector.len() != self.key.dim {
                bail!("cache append: vector of dimension {}, expected {}", vector.len(), self.key.dim);
            }
            let flags = if *truncated { FLAG_TRUNCATED } else { 0 };
            self.writer.write_all(hash)?;
            self.writer.write_all(&flags.to_le_bytes())?;
            for v in *vector {
                self.writer.write_all(&v.to_le_bytes())?;
            }
            self.insert(*hash, vector.iter().copied(), *truncated);
        }
        self.writer.flush().with_context(|| format!("cannot write {}", self.path.display()))
    }

    /// Rewrite the log with only the `live` texts when more than a quarter of it is stale (movies
    /// removed or changed since). Written to a temporary file and renamed.
    pub fn compact(&mut self, live: &HashSet<DocHash>) -> Result<bool> {
        let stale = self.rows.keys().filter(|h| !live.contains(*h)).count();
        if stale == 0 || stale * 4 <= self.rows.len() {
            return Ok(false);
        }
        let tmp = self.path.with_extension("bin.tmp");
        let mut out = BufWriter::with_capacity(1 << 20, File::create(&tmp)?);
        out.write_all(&Self::header(&self.key)?)?;
        let mut kept: Vec<(&DocHash, &usize)> = self.rows.iter().filter(|(h, _)| live.contains(*h)).collect();
        kept.sort_by_key(|(_, row)| **row);
        let dim = self.key.dim;
        for (hash, &row) in &kept {
            let flags = if self.truncated[row] { FLAG_TRUNCATED } else { 0 };
            out.write_all(*hash)?;
            out.write_all(&flags.to_le_bytes())?;
            for v in &self.vectors[row * dim..(row + 1) * dim] {
                out.write_all(&v.to_le_bytes())?;
            }
        }
        let file = out.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()?;
        drop(file);
        std::fs::rename(&tmp, &self.path)?;
        let reopened = Self::read(&self.path, &self.key)?.context("compacted cache did not read back")?;
        *self = reopened;
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(dim: usize) -> CacheKey {
        CacheKey {
            weights_sha256: "ab".repeat(32),
            dim,
            pooling: "mean".into(),
            max_tokens: 256,
            dtype: "f32".into(),
            doc_format: "movie-doc/1".into(),
        }
    }

    fn tempdir(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("cinevec-cache-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn records_survive_reopening_and_a_torn_tail_is_cut() {
        let dir = tempdir("torn");
        let k = key(3);
        let (a, b) = (doc_hash("a"), doc_hash("b"));
        {
            let mut c = EmbedCache::open(&dir, &k).unwrap();
            c.append(&[(a, &[1.0, 2.0, 3.0], false), (b, &[4.0, 5.0, 6.0], true)]).unwrap();
        }
        // A kill in the middle of a third record.
        let path = EmbedCache::path_in(&dir, &k);
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(&[7u8; 20]).unwrap();
        drop(f);
        let mut c = EmbedCache::open(&dir, &k).unwrap();
        assert_eq!(c.len(), 2);
        assert_eq!(c.get(&a).unwrap().vector, &[1.0, 2.0, 3.0]);
        assert!(c.get(&b).unwrap().truncated);
        assert!(!c.get(&a).unwrap().truncated);
        // Appends after the cut stay aligned.
        let d = doc_hash("d");
        c.append(&[(d, &[0.5, 0.25, 0.125], false)]).unwrap();
        drop(c);
        let c = EmbedCache::open(&dir, &k).unwrap();
        assert_eq!(c.len(), 3);
        assert_eq!(c.get(&d).unwrap().vector, &[0.5, 0.25, 0.125]);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn another_model_starts_afresh() {
        let dir = tempdir("model");
        let k = key(2);
        EmbedCache::open(&dir, &k).unwrap().append(&[(doc_hash("x"), &[1.0, 0.0], false)]).unwrap();
        let mut other = k.clone();
        other.pooling = "cls".into();
        assert_eq!(EmbedCache::open(&dir, &other).unwrap().len(), 0);
        // The same model again: the pooling change replaced the log, so it is empty too.
        assert_eq!(EmbedCache::open(&dir, &k).unwrap().len(), 0);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn compaction_keeps_only_live_texts() {
        let dir = tempdir("compact");
        let k = key(1);
        let mut c = EmbedCache::open(&dir, &k).unwrap();
        let hashes: Vec<DocHash> = (0..8).map(|i| doc_hash(&i.to_string())).collect();
        let items: Vec<(DocHash, Vec<f32>)> = hashes.iter().enumerate().map(|(i, h)| (*h, vec![i as f32])).collect();
        let refs: Vec<(DocHash, &[f32], bool)> = items.iter().map(|(h, v)| (*h, v.as_slice(), false)).collect();
        c.append(&refs).unwrap();
        let live: HashSet<DocHash> = hashes[..6].iter().copied().collect();
        // 2 of 8 stale: not worth a rewrite.
        assert!(!c.compact(&live).unwrap());
        let live: HashSet<DocHash> = hashes[..3].iter().copied().collect();
        assert!(c.compact(&live).unwrap());
        assert_eq!(c.len(), 3);
        drop(c);
        let c = EmbedCache::open(&dir, &k).unwrap();
        assert_eq!(c.len(), 3);
        assert_eq!(c.get(&hashes[2]).unwrap().vector, &[2.0]);
        assert!(c.get(&hashes[5]).is_none());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
