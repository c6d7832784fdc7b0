-- The global order becomes the primary key: (transaction_id, position) replaces position alone.
--
-- Since migration 4 every reader of the log goes through (transaction_id, position), and no
-- query looks an event up by its position alone; the key on position only cost each append an
-- index insertion. A position stays unique on its own (the identity hands each one out once),
-- so the pair is unique too. See docs/adr/0001-postgres-event-store.md.
ALTER TABLE events DROP CONSTRAINT events_pkey;
DROP INDEX events_global_order;
ALTER TABLE events ADD CONSTRAINT events_pkey PRIMARY KEY (transaction_id, position);
