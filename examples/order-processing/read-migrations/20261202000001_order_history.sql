-- The application's own read model: one row per order, kept by version 1 of the
-- `order_history` projection in its table `order_history_v1`. Queries read the view
-- `order_history`, which points at the version that serves: a version 2 would add a migration
-- creating `order_history_v2`, fill it beside this one, and take the view over once caught up.
-- `events` counts the events applied to the row, so applying one twice shows.
CREATE TABLE order_history_v1 (
    order_id text   PRIMARY KEY,
    customer text   NOT NULL,
    status   text   NOT NULL,
    items    bigint NOT NULL,
    total    bigint NOT NULL,
    events   bigint NOT NULL
);

CREATE INDEX order_history_v1_by_customer ON order_history_v1 (customer, order_id);

-- Queries work before the first event; the projection points the view at its version.
CREATE VIEW order_history AS SELECT * FROM order_history_v1;
