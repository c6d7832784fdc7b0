-- An event's position is (its transaction, its place within that transaction's append), so an
-- append needs no sequence, no function and no lock: it is one INSERT, written by the store
-- (backends/postgres/src/store.rs), whose expected version is checked in the statement itself.
-- docs/adr/0001-postgres-event-store.md explains why that order stays gap-safe.
--
-- Events stored before keep the positions the identity gave them: within one transaction those
-- count up too, so the order of the log and every stored checkpoint stay as they were.

DROP FUNCTION composable_append(text, bigint, uuid[], text[], integer[], text[], bytea[], text[]);

-- Also drops the identity's sequence, events_position_seq.
ALTER TABLE events ALTER COLUMN position DROP IDENTITY;
