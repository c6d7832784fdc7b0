-- The global log is ordered by (transaction_id, position) instead of position alone, so appends
-- need no global lock: docs/adr/0001-postgres-event-store.md explains why the order is gap-safe.
--
-- Until this migration, positions were taken in transaction-id order under a global lock, so the
-- old order and the new one agree on every stored event and checkpoints carry over.

CREATE INDEX events_global_order ON events (transaction_id, position);

-- A checkpoint is now a (transaction_id, position) pair. An old checkpoint at position p meant
-- "every event up to p"; the newest transaction among those events completes the pair.
ALTER TABLE checkpoints ADD COLUMN transaction_id bigint NOT NULL DEFAULT 0
    CHECK (transaction_id >= 0);
UPDATE checkpoints c
   SET transaction_id = coalesce(
       (SELECT max(e.transaction_id)::text::bigint FROM events e WHERE e.position <= c.position),
       0);
ALTER TABLE checkpoints ALTER COLUMN transaction_id DROP DEFAULT;

DROP FUNCTION composable_append(text, bigint, uuid[], text[], integer[], text[], bytea[], text[]);

-- A stream's version is its highest stream_version, read through events_stream_version_key.
DROP TABLE streams;

-- Appends events to one stream in one statement (one round trip), or reports the stream's
-- actual version when it is not at p_expected (NULL means any version).
--
-- 1. The append must be the first write of its transaction: the transaction id is then taken
--    by the INSERT below, after the stream's previous append committed, so one stream's events
--    are in version order in the global log too.
-- 2. Writers of one stream queue on a transaction-scoped advisory lock keyed by the stream; it
--    takes no transaction id. Under it the stream's version is read fresh and checked, so a
--    refused append never touches the position sequence.
-- 3. The events are written, their positions taken in order from the identity. A repeated event
--    id fails on events_event_id_key; the caller decides whether that was a retry.
CREATE FUNCTION composable_append(
    p_stream    text,
    p_expected  bigint,
    p_event_ids uuid[],
    p_names     text[],
    p_versions  integer[],
    p_formats   text[],
    p_payloads  bytea[],
    p_metadata  text[],
    OUT new_version   bigint,
    OUT last_position bigint,
    OUT writer        bigint
)
LANGUAGE plpgsql VOLATILE
AS $$
BEGIN
    IF pg_current_xact_id_if_assigned() IS NOT NULL THEN
        RAISE EXCEPTION 'composable_append must be the first write of its transaction'
            USING ERRCODE = '25001';
    END IF;
    PERFORM pg_advisory_xact_lock(hashtextextended(p_stream, 0));
    SELECT coalesce(max(e.stream_version), 0) INTO new_version
      FROM events e WHERE e.stream_id = p_stream;
    IF cardinality(p_event_ids) = 0 OR (p_expected IS NOT NULL AND p_expected <> new_version)
    THEN
        RETURN; -- the actual version, and no positions
    END IF;

    INSERT INTO events (stream_id, stream_version, event_id, event_name, event_version,
                        payload_format, payload, metadata)
        SELECT p_stream, new_version + e.ord, e.event_id, e.event_name, e.event_version,
               e.payload_format, e.payload, e.metadata::jsonb
          FROM unnest(p_event_ids, p_names, p_versions, p_formats, p_payloads, p_metadata)
               WITH ORDINALITY AS e(event_id, event_name, event_version, payload_format,
                                    payload, metadata, ord)
         ORDER BY e.ord;
    new_version := new_version + cardinality(p_event_ids);
    -- The rows took their positions in order, so the session's last one is the batch's last.
    last_position := currval('events_position_seq');
    writer := pg_current_xact_id()::text::bigint;
END;
$$;
