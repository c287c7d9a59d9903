-- Alerts waiting for (or done with) delivery, one row per message and channel: a console restart
-- loses none. `next_at` is when the next attempt is due; `delivered_at` ends it; after the last
-- attempt `given_up_at` ends it as undelivered (shown on the Overview).
CREATE TABLE alerts_outbox (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    channel      TEXT    NOT NULL,
    message      TEXT    NOT NULL,               -- JSON of alerts::Message
    created_at   TEXT    NOT NULL,
    attempts     INTEGER NOT NULL DEFAULT 0,
    next_at      TEXT    NOT NULL,
    last_error   TEXT    NOT NULL DEFAULT '',
    delivered_at TEXT,
    given_up_at  TEXT
);
CREATE INDEX alerts_outbox_due ON alerts_outbox (next_at) WHERE delivered_at IS NULL AND given_up_at IS NULL;
