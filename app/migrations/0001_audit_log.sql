-- Every action a person (or the console itself) takes: who, what, when, and how it ended.
CREATE TABLE audit_log (
    id      INTEGER PRIMARY KEY AUTOINCREMENT,
    at      TEXT    NOT NULL,               -- RFC 3339, UTC
    actor   TEXT    NOT NULL,               -- the person's stable id, or "system"
    action  TEXT    NOT NULL,               -- dotted verb: "console.start", "deploy.start", ...
    target  TEXT    NOT NULL DEFAULT '',    -- what it was done to (a service, a deploy id, ...)
    outcome TEXT    NOT NULL CHECK (outcome IN ('ok', 'failed', 'refused')),
    detail  TEXT    NOT NULL DEFAULT ''     -- scrubbed, one line
);
CREATE INDEX audit_log_at ON audit_log (at DESC);
