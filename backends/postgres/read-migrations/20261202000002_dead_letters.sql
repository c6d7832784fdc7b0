-- Events a projection parked: stored whole, so a replay needs nothing else, with why. A
-- stream with a letter here has its later events parked too, in order.
CREATE TABLE projection_dead_letters (
    projection     text        NOT NULL,
    transaction_id bigint      NOT NULL,
    position       bigint      NOT NULL,
    stream_id      text        NOT NULL,
    stream_version bigint      NOT NULL,
    event_id       uuid        NOT NULL,
    event_name     text        NOT NULL,
    event_version  integer     NOT NULL,
    payload_format text        NOT NULL,
    payload        bytea       NOT NULL,
    correlation_id uuid        NOT NULL,
    causation_id   uuid,
    occurred_at    timestamptz NOT NULL,
    recorded_at    timestamptz NOT NULL,
    reason         text        NOT NULL,
    parked_at      timestamptz NOT NULL,
    PRIMARY KEY (projection, transaction_id, position)
);

CREATE UNIQUE INDEX projection_dead_letters_event ON projection_dead_letters (projection, event_id);
CREATE INDEX projection_dead_letters_stream ON projection_dead_letters (projection, stream_id);
