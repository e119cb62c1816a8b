-- Embeddings of movies added or replaced at run time (POST /v1/movies). Movies ingested offline have
-- their vectors in the embedding matrix; these rows let a restart serve run-time additions without
-- embedding them again. A row is valid only for the model whose weights hash it carries.
-- (SQLite BLOB; a PostgreSQL migration set would use BYTEA.)
CREATE TABLE movie_embeddings (
    movie_id     TEXT PRIMARY KEY REFERENCES movies (id) ON DELETE CASCADE,
    -- sha256 of the model.safetensors that produced the vector.
    model_sha256 TEXT NOT NULL,
    dim          BIGINT NOT NULL,
    -- sha256 of the rendered document the vector was computed from (movies.doc_sha256 at the time).
    doc_sha256   TEXT NOT NULL,
    -- dim little-endian f32 values.
    vector       BLOB NOT NULL,
    created_at   TEXT NOT NULL
);

CREATE INDEX movie_embeddings_model ON movie_embeddings (model_sha256);
