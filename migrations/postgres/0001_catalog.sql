-- The catalog on PostgreSQL: the same tables as migrations/sqlite/ (0001 to 0003 there), in one
-- migration, in PostgreSQL's dialect (BYTEA, trigger functions), plus what replicas need to follow
-- each other's writes (see `generation` on movie_embeddings).

-- One row per movie, whatever the source. Columns as in migrations/sqlite/0001_catalog.sql. Ids
-- compare byte by byte ("C"), as SQLite compares TEXT: the export and keyset pages have one order.
CREATE TABLE movies (
    id           TEXT COLLATE "C" PRIMARY KEY,
    title        TEXT NOT NULL,
    release_year BIGINT,
    rating       DOUBLE PRECISION,
    votes        BIGINT,
    document     TEXT NOT NULL,
    doc_format   TEXT NOT NULL,
    doc_sha256   TEXT NOT NULL,
    source       TEXT NOT NULL,
    added_at     TEXT NOT NULL,
    updated_at   TEXT NOT NULL
);

CREATE INDEX movies_title_lower ON movies (lower(title));
CREATE INDEX movies_source ON movies (source);

-- Embeddings of movies added or replaced at run time (POST /v1/movies), as in
-- migrations/sqlite/0002_movie_embeddings.sql, plus `generation`: the catalog generation this row was
-- written at (set by a trigger, below). Writers take the catalog_meta row lock when they move the
-- generation and keep it until they commit, so rows become visible in generation order: a replica
-- that has applied every row up to generation g misses nothing by reading `generation > g` next.
CREATE TABLE movie_embeddings (
    movie_id     TEXT COLLATE "C" PRIMARY KEY REFERENCES movies (id) ON DELETE CASCADE,
    model_sha256 TEXT NOT NULL,
    dim          BIGINT NOT NULL,
    doc_sha256   TEXT NOT NULL,
    -- dim little-endian f32 values.
    vector       BYTEA NOT NULL,
    created_at   TEXT NOT NULL,
    generation   BIGINT NOT NULL DEFAULT 0
);

CREATE INDEX movie_embeddings_model ON movie_embeddings (model_sha256);
CREATE INDEX movie_embeddings_generation ON movie_embeddings (generation);

-- The catalog's identity and generation (as migrations/sqlite/0003_catalog_generation.sql): triggers,
-- not the application, move the counter, so a write from any tool counts.
CREATE TABLE catalog_meta (
    id         INTEGER PRIMARY KEY CHECK (id = 1),
    identity   TEXT NOT NULL,
    generation BIGINT NOT NULL
);

INSERT INTO catalog_meta (id, identity, generation) VALUES (1, replace(gen_random_uuid()::text, '-', ''), 0);

-- Movies: once per statement that changed at least one row (a bulk ingest writes thousands of rows
-- per statement; an identical re-ingest changes none and leaves the generation alone).
CREATE FUNCTION cinevec_movies_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM changed) THEN
        UPDATE catalog_meta SET generation = generation + 1 WHERE id = 1;
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER movies_inserted AFTER INSERT ON movies
    REFERENCING NEW TABLE AS changed FOR EACH STATEMENT EXECUTE FUNCTION cinevec_movies_changed();
CREATE TRIGGER movies_updated AFTER UPDATE ON movies
    REFERENCING NEW TABLE AS changed FOR EACH STATEMENT EXECUTE FUNCTION cinevec_movies_changed();
CREATE TRIGGER movies_deleted AFTER DELETE ON movies
    REFERENCING OLD TABLE AS changed FOR EACH STATEMENT EXECUTE FUNCTION cinevec_movies_changed();

-- Run-time embeddings: each written row gets its own generation and tells the listening replicas
-- (NOTIFY is delivered at commit, and only then).
CREATE FUNCTION cinevec_embedding_written() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE catalog_meta SET generation = generation + 1 WHERE id = 1 RETURNING generation INTO NEW.generation;
    PERFORM pg_notify('cinevec_movies', NEW.generation::text);
    RETURN NEW;
END
$$;

CREATE TRIGGER movie_embeddings_written BEFORE INSERT OR UPDATE ON movie_embeddings
    FOR EACH ROW EXECUTE FUNCTION cinevec_embedding_written();
CREATE TRIGGER movie_embeddings_deleted AFTER DELETE ON movie_embeddings
    REFERENCING OLD TABLE AS changed FOR EACH STATEMENT EXECUTE FUNCTION cinevec_movies_changed();
