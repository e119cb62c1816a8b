-- The movie catalog: one row per movie, whatever the source (IMDb dumps, catalog JSONL, demo, and later
-- movies added at run time). Portable SQL: the same statements run on SQLite and PostgreSQL
-- (TEXT, BIGINT, DOUBLE PRECISION; timestamps as RFC 3339 UTC text, which sorts chronologically).
CREATE TABLE movies (
    -- IMDb tconst (`tt0111161`) or the catalog's own id (`vega-movies-17`).
    id           TEXT PRIMARY KEY,
    -- Copies of document fields, for lookups and listings without parsing JSON.
    title        TEXT NOT NULL,
    release_year BIGINT,
    -- Average IMDb user rating (1-10) and number of votes, when the source has them. Not part of the
    -- document: the rating is what the models predict.
    rating       DOUBLE PRECISION,
    votes        BIGINT,
    -- The canonical movie document exactly as embedded (MovieDoc::render), its rendering version
    -- (DOC_FORMAT_VERSION) and SHA-256 (hex): an embedding stored with the hash it was computed from is
    -- stale exactly when the hashes differ.
    document     TEXT NOT NULL,
    doc_format   TEXT NOT NULL,
    doc_sha256   TEXT NOT NULL,
    -- Where the row came from: `imdb`, `catalog:<file name>`, `vega-datasets@3.2.1`, ...
    source       TEXT NOT NULL,
    -- First written, and last changed (an identical re-ingest changes nothing, not even this).
    added_at     TEXT NOT NULL,
    updated_at   TEXT NOT NULL
);

-- Case-insensitive title lookups (`WHERE lower(title) = lower($1)`); expression indexes exist in both
-- SQLite and PostgreSQL.
CREATE INDEX movies_title_lower ON movies (lower(title));
CREATE INDEX movies_source ON movies (source);
