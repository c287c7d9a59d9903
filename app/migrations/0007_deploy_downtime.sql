-- How the public URL answered while the deploy ran (JSON of Downtime): how long EPSM's users were
-- without it.
ALTER TABLE deploys ADD COLUMN downtime TEXT;
