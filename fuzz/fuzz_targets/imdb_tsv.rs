//! The IMDb TSV readers on arbitrary bytes: the first byte picks a dump; the first line is tried as
//! that dump's header, and the rest are parsed as rows under the official header (so that row parsing
//! is reached whatever the header line was). Never a panic; parsed ids format back to their bytes.
#![no_main]

use cinevec::catalog::imdb::{self, Dump, Header, NameRow, PrincipalRow, RatingRow, TitleRow};
use libfuzzer_sys::fuzz_target;

const HEADERS: [&str; 4] = [
    "tconst\ttitleType\tprimaryTitle\toriginalTitle\tisAdult\tstartYear\tendYear\truntimeMinutes\tgenres",
    "tconst\taverageRating\tnumVotes",
    "tconst\tordering\tnconst\tcategory\tjob\tcharacters",
    "nconst\tprimaryName\tbirthYear\tdeathYear\tprimaryProfession\tknownForTitles",
];

fuzz_target!(|data: &[u8]| {
    let Some((&pick, rest)) = data.split_first() else { return };
    let which = usize::from(pick) % 4;
    let dump = Dump::ALL[which];
    let mut lines = rest.split(|&b| b == b'\n');
    if let Some(first) = lines.next() {
        let _ = Header::parse(dump, first);
        if let Some(n) = imdb::parse_id(first, b"tt") {
            assert_eq!(imdb::format_id("tt", n).as_bytes(), first, "a parsed id formats back to its bytes");
        }
    }
    let header = Header::parse(dump, HEADERS[which].as_bytes()).expect("the official header parses");
    for line in lines {
        match dump {
            Dump::TitleBasics => drop(TitleRow::parse(&header, line)),
            Dump::TitleRatings => drop(RatingRow::parse(&header, line)),
            Dump::TitlePrincipals => drop(PrincipalRow::parse(&header, line)),
            Dump::NameBasics => drop(NameRow::parse(&header, line)),
        }
    }
});
