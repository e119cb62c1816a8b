//! The file shape of the arrays saved beside the graph (`index.q8`, `index.knn`) and of the server's
//! catalog snapshot: a magic, a few `u64` header fields, the run id of the embedding set they were
//! made from, the payload bytes, and an FNV-1a checksum of all of it (the graph file uses the same
//! checksum and reader). Written to a temporary file and renamed; read back
//! only when every part checks out, so a damaged, truncated or stale file is an error (the caller
//! rebuilds), never a wrong answer.

use anyhow::{bail, ensure, Context, Result};
use std::io::{Read, Write};
use std::path::Path;

/// Longest embedding-set run id a header holds.
const MAX_RUN_ID: usize = 256;

/// Save `payload` into `path` under `magic` with header `fields`, for the embedding set `run_id`.
/// Returns the bytes written.
pub fn save(path: &Path, magic: &[u8; 8], fields: &[u64], run_id: &str, payload: &[u8]) -> Result<u64> {
    ensure!(run_id.len() <= MAX_RUN_ID, "embedding set run id too long for {}", path.display());
    write_atomic_with(path, |w| {
        w.write_all(&header(magic, fields, run_id))?;
        w.write_all(payload)
    })
}

/// Write a file through `body`, then its checksum (of everything `body` wrote), into a temporary file
/// renamed to `path` once complete. Returns the bytes written.
pub fn write_atomic_with(path: &Path, body: impl FnOnce(&mut SumWriter<'_>) -> std::io::Result<()>) -> Result<u64> {
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let name = path.file_name().context("no file name")?.to_string_lossy();
    // Unique within the process too (two servers of one process may save the same file at once).
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let tmp = dir.join(format!(".{name}.tmp-{}-{n}", std::process::id()));
    let result = (|| -> Result<u64> {
        let mut file = std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(&tmp)?);
        let mut w = SumWriter { inner: &mut file, sum: Fnv::new(), written: 0 };
        body(&mut w)?;
        let (sum, written) = (w.sum.finish(), w.written);
        file.write_all(&sum.to_le_bytes())?;
        file.into_inner().map_err(|e| e.into_error())?.sync_all()?;
        std::fs::rename(&tmp, path)?;
        Ok(written + 8)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.with_context(|| format!("cannot write {}", path.display()))
}

/// Load `path` if it is a `magic` file of `N` header fields made from the embedding set `run_id`.
/// `payload_len` checks the fields (e.g. rows and dimension) and says how many payload bytes they
/// mean. Returns the fields and the payload.
pub fn load<const N: usize>(
    path: &Path,
    magic: &[u8; 8],
    run_id: &str,
    payload_len: impl FnOnce(&[u64; N]) -> Result<usize>,
) -> Result<([u64; N], Vec<u8>)> {
    let what = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let (mut r, fields) = open(path, magic, run_id)?;
    let n = payload_len(&fields)?;
    ensure!(r.left == n as u64, "{what} has {} payload bytes, expected {n}", r.left);
    let mut payload = vec![0u8; n];
    r.fill(&mut payload)?;
    r.finish(&what)?;
    Ok((fields, payload))
}

/// Open `path`, check its magic and run id, and return a reader positioned at the payload (to read
/// it all, then [`StreamReader::finish`]) with the header fields.
pub fn open<const N: usize>(
    path: &Path,
    magic: &[u8; 8],
    run_id: &str,
) -> Result<(StreamReader<std::io::BufReader<std::fs::File>>, [u64; N])> {
    let what = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let file = std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let len = file.metadata()?.len();
    ensure!(len >= 8 * (N as u64 + 3), "{what} is truncated");
    let mut r = StreamReader::new(std::io::BufReader::with_capacity(1 << 20, file), len - 8);
    let mut m = [0u8; 8];
    r.fill(&mut m)?;
    ensure!(&m == magic, "{what} is not a file of this format");
    let mut fields = [0u64; N];
    for f in fields.iter_mut() {
        *f = r.u64()?;
    }
    let id_len = r.u64()?;
    ensure!(id_len as usize <= MAX_RUN_ID, "{what}: header is damaged");
    let mut id = vec![0u8; id_len as usize];
    r.fill(&mut id)?;
    if id != run_id.as_bytes() {
        bail!("{what} was made from another embedding set");
    }
    Ok((r, fields))
}

/// The header [`save`] writes and [`open`] reads.
pub fn header(magic: &[u8; 8], fields: &[u64], run_id: &str) -> Vec<u8> {
    let mut h = Vec::with_capacity(16 + 8 * fields.len() + run_id.len());
    h.extend_from_slice(magic);
    for v in fields.iter().chain([&(run_id.len() as u64)]) {
        h.extend_from_slice(&v.to_le_bytes());
    }
    h.extend_from_slice(run_id.as_bytes());
    h
}

/// A writer that checksums what passes through it.
pub struct SumWriter<'w> {
    inner: &'w mut dyn Write,
    sum: Fnv,
    written: u64,
}

impl Write for SumWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.sum.feed(&buf[..n]);
        self.written += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// The files' checksum: FNV-1a over 8-byte little-endian words (then the trailing bytes one by one),
/// fed in pieces of any length. Cheap (a file is read once at start) and catches any damage.
pub struct Fnv {
    h: u64,
    pending: [u8; 8],
    n: usize,
}

impl Default for Fnv {
    fn default() -> Self {
        Self::new()
    }
}

impl Fnv {
    pub fn new() -> Self {
        Fnv { h: 0xcbf2_9ce4_8422_2325, pending: [0; 8], n: 0 }
    }
    fn word(&mut self, w: u64) {
        self.h = (self.h ^ w).wrapping_mul(0x0000_0100_0000_01b3);
    }
    pub fn feed(&mut self, mut bytes: &[u8]) {
        if self.n > 0 {
            let take = (8 - self.n).min(bytes.len());
            self.pending[self.n..self.n + take].copy_from_slice(&bytes[..take]);
            self.n += take;
            bytes = &bytes[take..];
            if self.n < 8 {
                return;
            }
            self.word(u64::from_le_bytes(self.pending));
            self.n = 0;
        }
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            self.word(u64::from_le_bytes(c.try_into().expect("8 bytes")));
        }
        let rest = chunks.remainder();
        self.pending[..rest.len()].copy_from_slice(rest);
        self.n = rest.len();
    }
    pub fn finish(mut self) -> u64 {
        for i in 0..self.n {
            self.h = (self.h ^ u64::from(self.pending[i])).wrapping_mul(0x0000_0100_0000_01b3);
        }
        self.h
    }
}

/// Reads a file's body (`left` bytes before the 8-byte checksum) and checksums it on the way. Every
/// read is bounded by what is left, so a damaged length can never ask for more than the file holds.
pub struct StreamReader<R> {
    inner: R,
    left: u64,
    sum: Fnv,
}

impl<R: Read> StreamReader<R> {
    pub fn new(inner: R, left: u64) -> Self {
        StreamReader { inner, left, sum: Fnv::new() }
    }
    /// Bytes of the body not read yet.
    pub fn left(&self) -> u64 {
        self.left
    }
    pub fn fill(&mut self, buf: &mut [u8]) -> Result<()> {
        ensure!(buf.len() as u64 <= self.left, "file is truncated");
        self.inner.read_exact(buf).context("file is truncated")?;
        self.left -= buf.len() as u64;
        self.sum.feed(buf);
        Ok(())
    }
    pub fn u64(&mut self) -> Result<u64> {
        let mut b = [0u8; 8];
        self.fill(&mut b)?;
        Ok(u64::from_le_bytes(b))
    }
    pub fn u32(&mut self) -> Result<u32> {
        let mut b = [0u8; 4];
        self.fill(&mut b)?;
        Ok(u32::from_le_bytes(b))
    }
    pub fn u32s(&mut self, n: usize) -> Result<Vec<u32>> {
        let bytes = n.checked_mul(4).filter(|&b| b as u64 <= self.left).context("file is truncated")?;
        let mut out = vec![0u32; n];
        // SAFETY: the byte view covers exactly the vector's initialised u32s; any bytes are a valid u32.
        let view = unsafe { std::slice::from_raw_parts_mut(out.as_mut_ptr().cast::<u8>(), bytes) };
        self.fill(view)?;
        if cfg!(target_endian = "big") {
            out.iter_mut().for_each(|v| *v = u32::from_le(*v));
        }
        Ok(out)
    }
    /// After the whole body was read: the stored checksum must match.
    pub fn finish(mut self, what: &str) -> Result<()> {
        ensure!(self.left == 0, "trailing bytes in {what}");
        let mut tail = [0u8; 8];
        self.inner.read_exact(&mut tail).with_context(|| format!("{what} is truncated"))?;
        ensure!(self.sum.finish() == u64::from_le_bytes(tail), "{what}: checksum mismatch");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_every_kind_of_damage() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.bin");
        let magic = b"CVTEST01";
        let payload: Vec<u8> = (0..1000u32).map(|i| (i * 7) as u8).collect();
        save(&path, magic, &[10, 100], "run-a", &payload).unwrap();
        let len = |f: &[u64; 2]| Ok((f[0] * f[1]) as usize);
        let (fields, back) = load::<2>(&path, magic, "run-a", len).unwrap();
        assert_eq!((fields, back), ([10, 100], payload.clone()));
        assert!(load::<2>(&path, magic, "run-b", len).is_err(), "another embedding set");
        assert!(load::<2>(&path, b"CVTEST02", "run-a", len).is_err(), "another format");
        assert!(load::<2>(&path, magic, "run-a", |_| Ok(999)).is_err(), "other sizes");
        let good = std::fs::read(&path).unwrap();
        let mut flipped = good.clone();
        flipped[good.len() / 2] ^= 1;
        std::fs::write(&path, &flipped).unwrap();
        assert!(load::<2>(&path, magic, "run-a", len).unwrap_err().to_string().contains("checksum"));
        std::fs::write(&path, &good[..good.len() - 3]).unwrap();
        assert!(load::<2>(&path, magic, "run-a", len).is_err(), "truncated");
        std::fs::write(&path, &good[..5]).unwrap();
        assert!(load::<2>(&path, magic, "run-a", len).is_err(), "shorter than a header");
    }
}
