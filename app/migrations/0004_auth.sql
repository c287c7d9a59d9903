-- Assertion ids accepted at the ACS, kept until the assertion expires: a second use is a replay.
CREATE TABLE saml_assertions (
    id TEXT PRIMARY KEY,
    expires_at TEXT NOT NULL
);
