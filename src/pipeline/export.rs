//! `cinevec catalog export`: the store as a catalog JSONL file (the interchange format, and what
//! `cinevec embed --catalog` reads), ordered by id, written atomically.

use crate::catalog::store::Store;
use anyhow::{Context, Result};
use std::io::Write;
use std::path::Path;

/// Movies fetched per query while exporting.
const PAGE: u32 = 2000;

/// Write every movie of `store` to `out` as catalog JSONL; returns the number of lines written.
pub async fn export_jsonl(store: &Store, out: &Path) -> Result<u64> {
    let dir = out.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let name = out.file_name().context("export path has no file name")?.to_string_lossy();
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let result = async {
        let file = std::fs::File::create(&tmp).with_context(|| format!("cannot create {}", tmp.display()))?;
        let mut w = std::io::BufWriter::with_capacity(1 << 20, file);
        let bar = crate::progress::bar(store.count().await?, "export", "movies");
        let mut after: Option<String> = None;
        let mut n = 0u64;
        loop {
            let page = store.movies_after(after.as_deref(), PAGE).await?;
            let Some(last) = page.last() else { break };
            after = Some(last.id.clone());
            for movie in &page {
                writeln!(w, "{}", movie.to_record().to_line())?;
            }
            n += page.len() as u64;
            bar.inc(page.len() as u64);
        }
        bar.finish_and_clear();
        let file = w.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()?;
        std::fs::rename(&tmp, out).with_context(|| format!("cannot write {}", out.display()))?;
        anyhow::Ok(n)
    }
    .await;
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}
