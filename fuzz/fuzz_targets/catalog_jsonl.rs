//! The catalog JSONL reader on arbitrary bytes (several lines, any encoding): every line is a record
//! or a bad line, never a panic, and an accepted record's line round-trips.
#![no_main]

use cinevec::catalog::jsonl::{records, CatalogRecord};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for item in records(data) {
        let Ok(Ok(record)) = item else { continue };
        let line = record.to_line();
        let back = CatalogRecord::parse_line(&line).expect("a written line parses");
        assert_eq!(back.to_line(), line, "an accepted record round-trips");
    }
});
