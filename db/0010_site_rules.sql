-- The rules a config version was compiled from: the deploy.yaml/API `site` keys and the texts of
-- the release's _redirects and _headers (removed from the release itself, so never served). A
-- PATCH of a slot's `site` compiles a new config version over the same release from them.
ALTER TABLE config_versions ADD COLUMN site jsonb;
-- A folder (digest) upload's `site` keys, until it is finalized.
ALTER TABLE uploads ADD COLUMN site jsonb;
