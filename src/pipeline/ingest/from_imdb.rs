//! The IMDb source: the four official dumps joined into reference documents, in four streaming
//! passes (see the parent module's header); this file owns the join (titles × ratings × principals
//! × names), `crate::catalog::imdb` the dump formats.

use super::*;

/// A growable bit set over ids (tconst / nconst integer parts, at most ~10^9).
#[derive(Default)]
struct IdSet {
    words: Vec<u64>,
    len: u64,
}

impl IdSet {
    fn contains(&self, id: u32) -> bool {
        self.words.get((id >> 6) as usize).is_some_and(|w| w & (1 << (id & 63)) != 0)
    }

    /// Add `id`; false if it was there already.
    fn insert(&mut self, id: u32) -> bool {
        let word = (id >> 6) as usize;
        if word >= self.words.len() {
            self.words.resize((word + 1).next_power_of_two(), 0);
        }
        let bit = 1u64 << (id & 63);
        let fresh = self.words[word] & bit == 0;
        self.words[word] |= bit;
        self.len += u64::from(fresh);
        fresh
    }

    fn remove(&mut self, id: u32) -> bool {
        let Some(w) = self.words.get_mut((id >> 6) as usize) else { return false };
        let bit = 1u64 << (id & 63);
        let was = *w & bit != 0;
        *w &= !bit;
        self.len -= u64::from(was);
        was
    }
}

/// A title that passed the filter, with what its document needs.
struct KeptTitle {
    tconst: u32,
    title: Box<str>,
    is_adult: bool,
    start_year: Option<u32>,
    runtime_minutes: Option<u32>,
    genres: Option<Box<str>>,
    rating: f64,
    votes: u32,
}

/// One principal row of a kept title, in 16 bytes.
#[derive(Clone, Copy)]
struct Credit {
    tconst: u32,
    ordering: u32,
    nconst: u32,
    category: u32,
}

/// The four dump files of a folder, in reading order.
pub(super) struct DumpPaths {
    pub(super) ratings: PathBuf,
    pub(super) basics: PathBuf,
    pub(super) principals: PathBuf,
    pub(super) names: PathBuf,
}

pub(super) fn ingest_imdb(paths: &DumpPaths, opts: &IngestOptions, writer: &mut Writer) -> Result<IngestReport> {
    let mut report = IngestReport { source: IMDB_SOURCE.to_string(), ..Default::default() };

    // Pass 1: ratings of every rated title.
    let mut ratings: HashMap<u32, (f64, u32)> = HashMap::new();
    let file = read_pass(&paths.ratings, Dump::TitleRatings, "ratings", opts, |rejects, line, header, row| {
        match RatingRow::parse(header, row) {
            Ok(r) => {
                if ratings.insert(r.tconst, (r.rating, r.votes)).is_some() {
                    rejects.reject(line, format!("a second rating for {}", imdb::format_id("tt", r.tconst)))?;
                }
            }
            Err(e) => rejects.reject(line, e)?,
        }
        Ok(())
    })?;
    report.files.push(file);

    // Pass 2: the titles that pass the filter.
    let mut kept_ids = IdSet::default();
    let mut titles: Vec<KeptTitle> = Vec::new();
    let file = read_pass(&paths.basics, Dump::TitleBasics, "basics", opts, |rejects, line, header, row| {
        report.read += 1;
        let t = match TitleRow::parse(header, row) {
            Ok(t) => t,
            Err(e) => {
                report.skip(SkipReason::Malformed);
                return rejects.reject(line, e);
            }
        };
        if !MOVIE_TYPES.contains(&t.title_type) {
            report.skip(SkipReason::NotAMovie);
            return Ok(());
        }
        match ratings.get(&t.tconst) {
            None => report.skip(SkipReason::NoRating),
            Some(&(_, votes)) if votes < MIN_VOTES => report.skip(SkipReason::TooFewVotes),
            Some(_) if !kept_ids.insert(t.tconst) => report.skip(SkipReason::DuplicateId),
            Some(&(rating, votes)) => titles.push(KeptTitle {
                tconst: t.tconst,
                title: t.primary_title.into(),
                is_adult: t.is_adult,
                start_year: t.start_year,
                runtime_minutes: t.runtime_minutes,
                genres: t.genres.map(Into::into),
                rating,
                votes,
            }),
        }
        Ok(())
    })?;
    report.files.push(file);
    report.kept = titles.len() as u64;
    drop(ratings);

    // Pass 3: principals of kept titles; the people they name.
    let mut credits: Vec<Credit> = Vec::new();
    let mut categories: Vec<String> = Vec::new();
    let mut needed = IdSet::default();
    let file =
        read_pass(&paths.principals, Dump::TitlePrincipals, "principals", opts, |rejects, line, header, row| {
            match PrincipalRow::parse(header, row) {
                Ok(p) if kept_ids.contains(p.tconst) => {
                    let category = match categories.iter().position(|c| c == p.category) {
                        Some(i) => i,
                        None => {
                            categories.push(p.category.to_string());
                            categories.len() - 1
                        }
                    } as u32;
                    credits.push(Credit { tconst: p.tconst, ordering: p.ordering, nconst: p.nconst, category });
                    needed.insert(p.nconst);
                }
                Ok(_) => {}
                Err(e) => rejects.reject(line, e)?,
            }
            Ok(())
        })?;
    report.files.push(file);
    let people = needed.len;

    // Pass 4: names of those people only, in one string arena.
    let mut arena = String::new();
    let mut names: HashMap<u32, (u32, u32)> = HashMap::with_capacity(people as usize);
    let file = read_pass(&paths.names, Dump::NameBasics, "names", opts, |rejects, line, header, row| {
        match NameRow::parse(header, row) {
            // The first row of a person wins; removing it from `needed` ignores later duplicates.
            Ok(n) if needed.remove(n.nconst) => {
                let start = arena.len() as u32;
                arena.push_str(n.primary_name);
                names.insert(n.nconst, (start, n.primary_name.len() as u32));
            }
            Ok(_) => {}
            Err(e) => rejects.reject(line, e)?,
        }
        Ok(())
    })?;
    report.files.push(file);
    drop(needed);

    // Group: credits in (tconst, ordering) order; equal orderings keep file order (stable sort).
    let t = Instant::now();
    titles.sort_unstable_by_key(|t| t.tconst);
    credits.sort_by_key(|c| (c.tconst, c.ordering));
    report.phases.push(("group", t.elapsed()));

    let t = Instant::now();
    let bar = progress::bar(titles.len() as u64, "write", "movies");
    let name_of = |nconst: u32| names.get(&nconst).map(|&(start, len)| &arena[start as usize..(start + len) as usize]);
    let mut credit_report = CreditReport { people, ..Default::default() };
    let mut next = 0;
    for title in &titles {
        let start = next;
        while next < credits.len() && credits[next].tconst == title.tconst {
            next += 1;
        }
        let movie = imdb_document(title, &credits[start..next], &categories, &name_of, &mut credit_report)
            .with_context(|| format!("{}: cannot build its document", imdb::format_id("tt", title.tconst)))?;
        writer.push(MovieRow {
            id: imdb::format_id("tt", title.tconst),
            rating: Some(title.rating),
            votes: Some(u64::from(title.votes)),
            movie,
            source: IMDB_SOURCE.to_string(),
        })?;
        bar.inc(1);
    }
    writer.flush()?;
    bar.finish_and_clear();
    report.phases.push(("documents", t.elapsed()));
    report.credits = Some(credit_report);
    Ok(report)
}

/// The reference document of one movie: keys `title, genres, is_adult, release_year,
/// runtime_minutes, directors, writers, producers, actors, principals`, people in billing order.
fn imdb_document<'n>(
    title: &KeptTitle,
    credits: &[Credit],
    categories: &[String],
    name_of: &impl Fn(u32) -> Option<&'n str>,
    report: &mut CreditReport,
) -> Result<MovieDoc> {
    let (mut directors, mut writers, mut producers, mut actors, mut principals) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for c in credits {
        let Some(name) = name_of(c.nconst) else {
            report.missing_name += 1;
            continue;
        };
        report.used += 1;
        let name = Value::String(name.to_string());
        match categories[c.category as usize].as_str() {
            "director" => directors.push(name),
            "writer" => writers.push(name),
            "producer" => producers.push(name),
            "actor" | "actress" => actors.push(name),
            other => {
                let Value::String(name) = name else { unreachable!() };
                principals.push(Value::Object(Map::from_iter([(name, Value::String(other.to_string()))])));
            }
        }
    }
    let opt = |v: Option<u32>| v.map_or(Value::Null, Value::from);
    let genres = match &title.genres {
        None => Value::Null,
        Some(g) => Value::Array(g.split(',').map(|s| Value::String(s.to_string())).collect()),
    };
    let mut doc = Map::with_capacity(10);
    doc.insert("title".into(), Value::String(title.title.to_string()));
    doc.insert("genres".into(), genres);
    doc.insert("is_adult".into(), Value::Bool(title.is_adult));
    doc.insert("release_year".into(), opt(title.start_year));
    doc.insert("runtime_minutes".into(), opt(title.runtime_minutes));
    doc.insert("directors".into(), Value::Array(directors));
    doc.insert("writers".into(), Value::Array(writers));
    doc.insert("producers".into(), Value::Array(producers));
    doc.insert("actors".into(), Value::Array(actors));
    doc.insert("principals".into(), Value::Array(principals));
    Ok(MovieDoc::from_value(Value::Object(doc))?)
}

/// One streaming pass over a dump with a progress bar; `on_row` gets the file's reject counter.
fn read_pass(
    path: &Path,
    dump: Dump,
    label: &str,
    opts: &IngestOptions,
    mut on_row: impl FnMut(&mut Rejects, u64, &imdb::Header, &[u8]) -> Result<()>,
) -> Result<FileReport> {
    let bar = progress::bytes_bar(0, label);
    let mut rejects = Rejects::new(path, opts.strict, &bar);
    let stats = imdb::read_dump(path, dump, &bar, |line, header, row| on_row(&mut rejects, line, header, row))?;
    bar.finish_and_clear();
    let malformed = rejects.count;
    rejects.finish();
    tracing::debug!("{}: {} rows in {:.1} s", path.display(), stats.rows, stats.wall.as_secs_f64());
    Ok(FileReport { stats, malformed })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn id_set_grows_and_forgets() {
        let mut s = IdSet::default();
        assert!(!s.contains(36_000_000));
        assert!(s.insert(36_000_000));
        assert!(!s.insert(36_000_000));
        assert!(s.insert(1));
        assert!(s.contains(1) && s.contains(36_000_000) && !s.contains(2));
        assert_eq!(s.len, 2);
        assert!(s.remove(1) && !s.remove(1) && !s.remove(4_000_000_000));
        assert_eq!(s.len, 1);
    }
}
