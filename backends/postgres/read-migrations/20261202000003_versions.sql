-- Versions of projections: which one serves queries, and what each version wrote, so a new
-- version builds beside the active one and the older ones can be dropped once it takes over.

-- The version of each projection that queries read.
CREATE TABLE projection_versions (
    projection  text        PRIMARY KEY,
    active      integer     NOT NULL,
    switched_at timestamptz NOT NULL DEFAULT now()
);

-- The projection each version of a document collection belongs to.
CREATE TABLE projection_collections (
    collection text    NOT NULL,
    version    integer NOT NULL,
    projection text    NOT NULL,
    PRIMARY KEY (collection, version)
);
CREATE INDEX projection_collections_projection ON projection_collections (projection, version);

-- The user's tables each version writes (`PostgresBatch::table`): `{name}_v{version}`, which
-- queries read through the view `{name}` of the active version.
CREATE TABLE projection_tables (
    projection text    NOT NULL,
    version    integer NOT NULL,
    name       text    NOT NULL,
    PRIMARY KEY (projection, version, name)
);

-- Documents are kept by version too. Documents written before versions existed were version 1
-- of a projection this table cannot name: rebuild their projection after this migration.
ALTER TABLE read_documents ADD COLUMN version integer NOT NULL DEFAULT 1;
ALTER TABLE read_documents DROP CONSTRAINT read_documents_pkey;
ALTER TABLE read_documents ADD PRIMARY KEY (collection, version, key);
ALTER TABLE read_documents ALTER COLUMN version DROP DEFAULT;
