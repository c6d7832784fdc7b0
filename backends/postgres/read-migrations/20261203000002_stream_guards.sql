-- The version of each stream a projection's version has applied, moved in the transaction of
-- each batch: what lets a projection that follows the bus (at least once, ordered by stream
-- only) apply each event once. `checkpoint` names the version (`projection.{name}[.v{N}]`).
CREATE TABLE projection_streams (
    checkpoint text NOT NULL,
    stream_id text NOT NULL,
    version bigint NOT NULL,
    PRIMARY KEY (checkpoint, stream_id)
);
