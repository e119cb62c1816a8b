-- The catalog's identity and generation: a random id given to this database when it is created, and a
-- counter that every write to `movies` or `movie_embeddings` moves. A server keeps a snapshot of the
-- catalog it read from the store and, at its next start, reads that snapshot instead of the store
-- only while both are unchanged. Triggers (not the application) move the counter, so a write from any
-- tool counts. (SQLite syntax; a PostgreSQL migration set would use a trigger function.)
CREATE TABLE catalog_meta (
    id         INTEGER PRIMARY KEY CHECK (id = 1),
    identity   TEXT NOT NULL,
    generation BIGINT NOT NULL
);

INSERT INTO catalog_meta (id, identity, generation) VALUES (1, lower(hex(randomblob(16))), 0);

CREATE TRIGGER movies_inserted AFTER INSERT ON movies
BEGIN
    UPDATE catalog_meta SET generation = generation + 1 WHERE id = 1;
END;

CREATE TRIGGER movies_updated AFTER UPDATE ON movies
BEGIN
    UPDATE catalog_meta SET generation = generation + 1 WHERE id = 1;
END;

CREATE TRIGGER movies_deleted AFTER DELETE ON movies
BEGIN
    UPDATE catalog_meta SET generation = generation + 1 WHERE id = 1;
END;

CREATE TRIGGER movie_embeddings_inserted AFTER INSERT ON movie_embeddings
BEGIN
    UPDATE catalog_meta SET generation = generation + 1 WHERE id = 1;
END;

CREATE TRIGGER movie_embeddings_updated AFTER UPDATE ON movie_embeddings
BEGIN
    UPDATE catalog_meta SET generation = generation + 1 WHERE id = 1;
END;

CREATE TRIGGER movie_embeddings_deleted AFTER DELETE ON movie_embeddings
BEGIN
    UPDATE catalog_meta SET generation = generation + 1 WHERE id = 1;
END;
