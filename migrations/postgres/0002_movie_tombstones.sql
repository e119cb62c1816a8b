-- Movies deleted at run time, as migrations/sqlite/0004_movie_tombstones.sql, plus `generation`: like
-- a run-time embedding row, each tombstone is written at its own catalog generation under the
-- catalog_meta row lock and notifies at commit, so that replicas read deletes in the same feed, in
-- generation order, as adds (`generation > g`).
CREATE TABLE movie_tombstones (
    movie_id   TEXT COLLATE "C" PRIMARY KEY,
    deleted_at TEXT NOT NULL,
    generation BIGINT NOT NULL DEFAULT 0
);

CREATE INDEX movie_tombstones_generation ON movie_tombstones (generation);

-- The same trigger functions as the run-time embeddings (0001): a written tombstone takes the next
-- generation and notifies; one deleted (the id added again) moves the generation once per statement.
CREATE TRIGGER movie_tombstones_written BEFORE INSERT OR UPDATE ON movie_tombstones
    FOR EACH ROW EXECUTE FUNCTION cinevec_embedding_written();
CREATE TRIGGER movie_tombstones_deleted AFTER DELETE ON movie_tombstones
    REFERENCING OLD TABLE AS changed FOR EACH STATEMENT EXECUTE FUNCTION cinevec_movies_changed();
