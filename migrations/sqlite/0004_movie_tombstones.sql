-- Movies deleted at run time (DELETE /v1/movies/{id}): the movie's row (and its run-time embedding) is
-- deleted with it, and this row says the id is gone, so that a start which finds the id among the
-- embedding matrix's rows leaves it out (the graph is not rebuilt until the next `cinevec build`, whose
-- embedding matrix no longer has the movie). Adding the id again deletes its tombstone in the same
-- transaction. The triggers move the catalog generation like every other write (see 0003).
CREATE TABLE movie_tombstones (
    movie_id   TEXT PRIMARY KEY,
    -- RFC 3339 UTC text, like the other timestamps.
    deleted_at TEXT NOT NULL
);

CREATE TRIGGER movie_tombstones_inserted AFTER INSERT ON movie_tombstones
BEGIN
    UPDATE catalog_meta SET generation = generation + 1 WHERE id = 1;
END;

CREATE TRIGGER movie_tombstones_updated AFTER UPDATE ON movie_tombstones
BEGIN
    UPDATE catalog_meta SET generation = generation + 1 WHERE id = 1;
END;

CREATE TRIGGER movie_tombstones_deleted AFTER DELETE ON movie_tombstones
BEGIN
    UPDATE catalog_meta SET generation = generation + 1 WHERE id = 1;
END;
