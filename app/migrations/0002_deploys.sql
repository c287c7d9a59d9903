-- Every deploy: who, when, with which options, from which files, how each step went, and its log.
CREATE TABLE deploys (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    actor         TEXT    NOT NULL,
    started_at    TEXT    NOT NULL,               -- RFC 3339, UTC
    finished_at   TEXT,
    options       TEXT    NOT NULL,               -- JSON of DeployOptions
    outcome       TEXT    NOT NULL CHECK (outcome IN ('running', 'succeeded', 'failed', 'cancelled', 'interrupted')),
    summary       TEXT    NOT NULL DEFAULT '',    -- one scrubbed line: why it failed, what state it left
    git_commit    TEXT,
    version       TEXT,
    env_sha256    TEXT,
    compose_sha256 TEXT,
    images        TEXT    NOT NULL DEFAULT '[]',  -- JSON [[service, image id], ...] after the deploy
    child_group   INTEGER                         -- process group of the running compose step, if any
);
CREATE INDEX deploys_started ON deploys (id DESC);
-- At most one deploy runs: the store says so too, so a restart can tell what it interrupted.
CREATE UNIQUE INDEX deploys_one_running ON deploys (outcome) WHERE outcome = 'running';

CREATE TABLE deploy_steps (
    deploy_id   INTEGER NOT NULL REFERENCES deploys (id) ON DELETE CASCADE,
    position    INTEGER NOT NULL,
    name        TEXT    NOT NULL,
    status      TEXT    NOT NULL CHECK (status IN ('pending', 'running', 'succeeded', 'failed', 'skipped', 'cancelled')),
    exit_code   INTEGER,
    started_at  TEXT,
    duration_ms INTEGER,
    PRIMARY KEY (deploy_id, position)
);

CREATE TABLE deploy_log (
    deploy_id INTEGER NOT NULL REFERENCES deploys (id) ON DELETE CASCADE,
    seq       INTEGER NOT NULL,
    step      INTEGER NOT NULL,
    stderr    INTEGER NOT NULL,
    at        TEXT    NOT NULL,
    text      TEXT    NOT NULL,                   -- scrubbed
    PRIMARY KEY (deploy_id, seq)
);
