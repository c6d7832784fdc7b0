-- The event store: the global log, the per-stream version used for optimistic concurrency, and
-- snapshots. docs/adr/0001-postgres-event-store.md explains this shape.

-- One row per stream, holding its current version: what an append's expected version is
-- checked against, before any global position is taken.
CREATE TABLE streams (
    stream_id text PRIMARY KEY,
    version   bigint NOT NULL
);

CREATE TABLE events (
    -- Taken by composable_append in the order of the writers' transaction ids (see there);
    -- the default only serves hand-written inserts.
    position        bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    stream_id       text NOT NULL,
    stream_version  bigint NOT NULL,
    event_id        uuid NOT NULL,
    event_name      text NOT NULL,
    event_version   integer NOT NULL,
    payload_format  text NOT NULL,
    payload         bytea NOT NULL,
    metadata        jsonb NOT NULL,
    recorded_at     timestamptz NOT NULL DEFAULT now(),
    -- The writing transaction: a gap-safe reader returns only rows written by transactions older
    -- than every transaction still running (pg_snapshot_xmin of its snapshot).
    transaction_id  xid8 NOT NULL DEFAULT pg_current_xact_id(),
    CONSTRAINT events_event_id_key UNIQUE (event_id),
    CONSTRAINT events_stream_version_key UNIQUE (stream_id, stream_version)
);

CREATE TABLE snapshots (
    stream_id       text PRIMARY KEY,
    version         bigint NOT NULL,
    schema_version  bigint NOT NULL,
    payload_format  text NOT NULL,
    state           bytea NOT NULL,
    taken_at        timestamptz NOT NULL
);

-- Appends events to one stream in one statement (one round trip), or reports the stream's
-- actual version when it is not at p_expected (NULL means any version).
--
-- 1. Writers of one stream queue on a transaction-scoped advisory lock keyed by the stream; it
--    takes no transaction id. Under it the stream's version is read fresh and checked, so a
--    refused append never touches the position sequence.
-- 2. The transaction id and all positions are taken together under a short global session
--    lock, so position order is transaction-id order: a reader that returns only rows of
--    transactions older than its snapshot's xmin can never skip a position committed later.
--    The lock is released before the rows are written and long before commit, so appends to
--    different streams still run in parallel. This only holds when the append is the first
--    write of its transaction (the transaction id is taken under the lock), so an append in a
--    transaction that already wrote is refused.
-- 3. The stream's row and the events are written. A repeated event id fails on
--    events_event_id_key; the caller decides whether that was a retry.
CREATE FUNCTION composable_append(
    p_stream    text,
    p_expected  bigint,
    p_event_ids uuid[],
    p_names     text[],
    p_versions  integer[],
    p_formats   text[],
    p_payloads  bytea[],
    p_metadata  text[]
) RETURNS TABLE (new_version bigint, first_position bigint, last_position bigint)
LANGUAGE plpgsql VOLATILE
AS $$
DECLARE
    v_count     bigint := cardinality(p_event_ids);
    v_actual    bigint;
    v_positions bigint[];
BEGIN
    PERFORM pg_advisory_xact_lock(hashtextextended(p_stream, 0));
    SELECT s.version INTO v_actual FROM streams s WHERE s.stream_id = p_stream;
    v_actual := coalesce(v_actual, 0);
    IF v_count = 0 OR (p_expected IS NOT NULL AND p_expected <> v_actual) THEN
        RETURN QUERY SELECT v_actual, NULL::bigint, NULL::bigint;
        RETURN;
    END IF;

    IF pg_current_xact_id_if_assigned() IS NOT NULL THEN
        RAISE EXCEPTION 'composable_append must be the first write of its transaction'
            USING ERRCODE = '25001';
    END IF;
    PERFORM pg_advisory_lock(1129270608, 1);
    BEGIN
        PERFORM pg_current_xact_id();
        SELECT array_agg(nextval('events_position_seq') ORDER BY i)
          INTO v_positions
          FROM generate_series(1, v_count) AS i;
    EXCEPTION WHEN OTHERS OR query_canceled THEN
        PERFORM pg_advisory_unlock(1129270608, 1);
        RAISE;
    END;
    PERFORM pg_advisory_unlock(1129270608, 1);

    INSERT INTO streams AS s (stream_id, version) VALUES (p_stream, v_actual + v_count)
        ON CONFLICT (stream_id) DO UPDATE SET version = EXCLUDED.version;
    INSERT INTO events (position, stream_id, stream_version, event_id, event_name,
                        event_version, payload_format, payload, metadata)
        OVERRIDING SYSTEM VALUE
        SELECT v_positions[e.ord], p_stream, v_actual + e.ord, e.event_id, e.event_name,
               e.event_version, e.payload_format, e.payload, e.metadata::jsonb
          FROM unnest(p_event_ids, p_names, p_versions, p_formats, p_payloads, p_metadata)
               WITH ORDINALITY AS e(event_id, event_name, event_version, payload_format,
                                    payload, metadata, ord);
    RETURN QUERY SELECT v_actual + v_count, v_positions[1], v_positions[v_count];
END;
$$;
