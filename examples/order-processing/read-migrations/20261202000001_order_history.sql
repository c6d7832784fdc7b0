-- The application's own read model: one row per order, kept by the `order_history`
-- projection. `events` counts the events applied to the row, so applying one twice shows.
CREATE TABLE order_history (
    order_id text   PRIMARY KEY,
    customer text   NOT NULL,
    status   text   NOT NULL,
    items    bigint NOT NULL,
    total    bigint NOT NULL,
    events   bigint NOT NULL
);

CREATE INDEX order_history_by_customer ON order_history (customer, order_id);
