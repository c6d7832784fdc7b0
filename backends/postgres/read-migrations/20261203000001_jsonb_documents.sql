-- Typed documents as JSONB beside bytes: a `PostgresReadStore` keeps each document in the form
-- it was made with (`DocumentForm`), bincode bytes in `value` or JSON in `doc`, never both.
ALTER TABLE read_documents ALTER COLUMN value DROP NOT NULL;
ALTER TABLE read_documents ADD COLUMN doc jsonb;
ALTER TABLE read_documents
    ADD CONSTRAINT read_documents_one_form CHECK ((value IS NULL) <> (doc IS NULL));

-- The documents queries read: those of the version of their projection that serves. SQL of the
-- application's own reads JSONB documents here (`doc->>'status'`).
CREATE VIEW served_documents AS
SELECT d.collection, d.key, d.value, d.doc
FROM read_documents d
JOIN projection_collections c ON c.collection = d.collection AND c.version = d.version
JOIN projection_versions v ON v.projection = c.projection AND v.active = c.version;
