-- What a run of the deploy machinery was: 'deploy' (a rollback included) or 'restore' (of the
-- database from a backup). "The last deploy" (drift, a backup's deploy, the last downtime) reads
-- deploys only.
ALTER TABLE deploys ADD COLUMN kind TEXT NOT NULL DEFAULT 'deploy';
