-- Claims on the work behind a checkpoint: when a consumer of the log runs in several processes,
-- the one holding the claim does the work and the others stand by until it lapses. Times are the
-- server's, so the processes' clocks need not agree.
CREATE TABLE checkpoint_claims (
    name     text PRIMARY KEY,
    holder   uuid NOT NULL,
    until    timestamptz NOT NULL
);
