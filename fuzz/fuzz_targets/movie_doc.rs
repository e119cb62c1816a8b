//! The movie-document canonicaliser on arbitrary bytes: whatever parses as JSON is accepted or refused
//! without a panic, and an accepted document's canonical text is a fixed point.
#![no_main]

use cinevec::movie::MovieDoc;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(data) else { return };
    if let Ok(doc) = MovieDoc::from_value(value) {
        assert!(!doc.title().trim().is_empty(), "an accepted document has a title");
        let rendered = doc.render();
        let again = MovieDoc::from_value(serde_json::from_str(&rendered).expect("canonical text is JSON"))
            .expect("a canonical document parses");
        assert_eq!(again.render(), rendered, "the canonical form is a fixed point");
    }
});
