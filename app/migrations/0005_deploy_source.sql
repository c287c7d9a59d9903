-- The commit a deploy checked out (git_commit is the one the project directory was at before it), and
-- what the deploy changes as its card showed it before the click (JSON of ChangeCard).
ALTER TABLE deploys ADD COLUMN to_commit TEXT;
ALTER TABLE deploys ADD COLUMN change_card TEXT;
-- The process that runs the deploy (the server, or `epsm-ops deploy`): a deploy is only marked
-- interrupted when that process is gone.
ALTER TABLE deploys ADD COLUMN owner_pid INTEGER;
-- The env file's keys at the deploy, each with its value's fingerprint (JSON {key: fingerprint}): the
-- next deploy's card names the keys added, removed or changed since (never a value).
ALTER TABLE deploys ADD COLUMN env_fingerprints TEXT;
