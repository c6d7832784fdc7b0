-- Durable saga timers: a step's timeout, fired once even across restarts.
-- docs/adr/0006-sagas.md explains how they are claimed and fired.
CREATE TABLE timers (
    timer_id        uuid PRIMARY KEY,
    saga            text NOT NULL,
    saga_key        text NOT NULL,
    step            text NOT NULL,
    correlation_id  uuid NOT NULL,
    due_at          timestamptz NOT NULL,
    -- A runner that claimed the timer owns it until then; after that another may fire it.
    leased_until    timestamptz,
    -- Set when the saga recorded the timeout; a fired timer is never offered again.
    fired_at        timestamptz
);

-- The claim query: one saga's unfired timers in due order.
CREATE INDEX timers_due ON timers (saga, due_at) WHERE fired_at IS NULL;
