-- What a backup's tables held when it was taken (JSON of TableCount rows), and its last restore drill:
-- when, whether it passed (NULL while it runs), and what it found.
ALTER TABLE backups ADD COLUMN table_counts TEXT;
ALTER TABLE backups ADD COLUMN drill_at TEXT;
ALTER TABLE backups ADD COLUMN drill_ok INTEGER;
ALTER TABLE backups ADD COLUMN drill_detail TEXT;
