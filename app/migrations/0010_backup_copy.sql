-- A backup's off-site copy: when, whether it was copied and checked on the remote (NULL while it
-- runs), and what was checked or why it failed.
ALTER TABLE backups ADD COLUMN copy_at TEXT;
ALTER TABLE backups ADD COLUMN copy_ok INTEGER;
ALTER TABLE backups ADD COLUMN copy_detail TEXT;
