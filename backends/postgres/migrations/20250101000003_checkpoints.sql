-- Checkpoints: how far a reader of the global log got, by name. The outbox relay saves its
-- position here only after the bus acknowledged every event up to it (docs/adr/0005-event-bus.md).
CREATE TABLE checkpoints (
    name        text PRIMARY KEY,
    position    bigint NOT NULL CHECK (position >= 0),
    updated_at  timestamptz NOT NULL DEFAULT now()
);
