-- Refusals repeated by one client for one reason are folded into one row: how many more times, and
-- the last time. `fold_key` names the reason's kind (never the poster's text).
ALTER TABLE audit_log ADD COLUMN repeats INTEGER NOT NULL DEFAULT 0;
ALTER TABLE audit_log ADD COLUMN last_at TEXT;
ALTER TABLE audit_log ADD COLUMN fold_key TEXT;
