-- Every database backup: who, when, what, how big, its checksum, and how it ended.
CREATE TABLE backups (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    actor       TEXT    NOT NULL,
    started_at  TEXT    NOT NULL,               -- RFC 3339, UTC
    finished_at TEXT,
    database    TEXT    NOT NULL,
    format      TEXT    NOT NULL CHECK (format IN ('custom', 'plain')),
    outcome     TEXT    NOT NULL CHECK (outcome IN ('running', 'succeeded', 'failed', 'deleted')),
    reason      TEXT    NOT NULL DEFAULT '',    -- why it failed, scrubbed
    file_name   TEXT,                           -- in the backups directory, once it succeeded
    size_bytes  INTEGER,
    sha256      TEXT,
    duration_ms INTEGER,
    deploy_id   INTEGER                         -- the deploy that was current
);
CREATE INDEX backups_started ON backups (id DESC);
