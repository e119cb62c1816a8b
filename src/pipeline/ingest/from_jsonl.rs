//! The catalog JSONL source: one `{"id", "rating", "votes", "movie"}` object per line.

use super::*;

pub(super) fn ingest_catalog(path: &Path, opts: &IngestOptions, writer: &mut Writer) -> Result<IngestReport> {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let mut report = IngestReport { source: format!("catalog:{name}"), ..Default::default() };
    let open = |bar: &ProgressBar| -> Result<_> {
        let file = std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
        bar.set_length(file.metadata().map(|m| m.len()).unwrap_or(0));
        Ok(jsonl::records(std::io::BufReader::with_capacity(1 << 20, progress::ReadProgress::new(file, bar.clone()))))
    };
    if opts.strict {
        // Check every line before writing any.
        let bar = progress::bytes_bar(0, "check");
        for item in open(&bar)? {
            if let Err(bad) = item.with_context(|| format!("cannot read {}", path.display()))? {
                bail!("{}:{}: {} (--strict: nothing was written)", path.display(), bad.line, bad.error);
            }
        }
        bar.finish_and_clear();
    }
    let started = Instant::now();
    let bar = progress::bytes_bar(0, "catalog");
    let mut rejects = Rejects::new(path, opts.strict, &bar);
    let mut seen = HashSet::new();
    let mut lines = 0;
    for item in open(&bar)? {
        let item = item.with_context(|| format!("cannot read {}", path.display()))?;
        report.read += 1;
        lines += 1;
        match item {
            Ok(record) => {
                if !seen.insert(record.id.clone()) {
                    report.skip(SkipReason::DuplicateId);
                    continue;
                }
                report.kept += 1;
                writer.push(MovieRow::from_record(record, &report.source))?;
            }
            Err(bad) => {
                report.skip(SkipReason::Malformed);
                rejects.reject(bad.line as u64, bad.error)?;
            }
        }
    }
    bar.finish_and_clear();
    let malformed = rejects.count;
    rejects.finish();
    let bytes = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
    report.files.push(FileReport {
        stats: FileStats {
            path: path.to_path_buf(),
            bytes,
            text_bytes: 0,
            gzipped: false,
            rows: lines,
            wall: started.elapsed(),
            decode_busy: Duration::ZERO,
            parse_busy: Duration::ZERO,
        },
        malformed,
    });
    Ok(report)
}
