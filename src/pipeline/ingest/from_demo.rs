//! The demo source: the rated films of the pinned npm package, joined into documents by
//! `crate::catalog::demo`.

use super::*;

pub(super) fn ingest_demo(cache_dir: &Path, opts: &IngestOptions, writer: &mut Writer) -> Result<IngestReport> {
    let started = Instant::now();
    let spinner = progress::spinner("fetch");
    spinner.set_message(format!("{} with npm", demo::PACKAGE));
    let tarball = demo::fetch(cache_dir);
    spinner.finish_and_clear();
    let tarball = tarball?;
    let bytes = demo::read_movies_json(&tarball)?;
    let films = demo::parse_films(&bytes)?;
    let label = format!("{}!package/data/movies.json", tarball.display());
    let mut report = IngestReport { source: demo::PACKAGE.to_string(), ..Default::default() };

    // Map every film before writing any (the file is small), so --strict never half-writes.
    let bar = progress::bar(films.len() as u64, "demo", "films");
    let mut rejects = Rejects { unit: Some("film"), ..Rejects::new(Path::new(&label), opts.strict, &bar) };
    let mut records: Vec<CatalogRecord> = Vec::new();
    for (i, film) in films.iter().enumerate() {
        report.read += 1;
        bar.inc(1);
        match demo::map_film(i, film) {
            Ok(Some(record)) => records.push(record),
            Ok(None) => report.skip(SkipReason::NoRating),
            Err(e) => {
                report.skip(SkipReason::Malformed);
                rejects.reject(i as u64 + 1, e)?;
            }
        }
    }
    bar.finish_and_clear();
    let malformed = rejects.count;
    rejects.finish();
    report.kept = records.len() as u64;
    report.files.push(FileReport {
        stats: FileStats {
            path: PathBuf::from(label),
            bytes: bytes.len() as u64,
            text_bytes: 0,
            gzipped: false,
            rows: films.len() as u64,
            wall: started.elapsed(),
            decode_busy: Duration::ZERO,
            parse_busy: Duration::ZERO,
        },
        malformed,
    });
    for record in records {
        writer.push(MovieRow::from_record(record, demo::PACKAGE))?;
    }
    Ok(report)
}
