-- The tables the projections of a read database need besides the user's own: where each
-- projection is in the log, who runs it, and the typed documents of `PostgresReadStore`.

-- A projection's position, moved in the same transaction as the changes of its batch.
CREATE TABLE projection_checkpoints (
    name           text        PRIMARY KEY,
    transaction_id bigint      NOT NULL,
    position       bigint      NOT NULL,
    updated_at     timestamptz NOT NULL DEFAULT now()
);

-- Which process runs a projection, until when (see `CheckpointStore::claim`).
CREATE TABLE projection_claims (
    name   text        PRIMARY KEY,
    holder uuid        NOT NULL,
    until  timestamptz NOT NULL
);

-- Documents by collection and key, encoded with the store's codec. `COLLATE "C"` keeps keys
-- in byte order, so listing by prefix reads the primary key in order.
CREATE TABLE read_documents (
    collection text  NOT NULL,
    key        text  COLLATE "C" NOT NULL,
    value      bytea NOT NULL,
    PRIMARY KEY (collection, key)
);
