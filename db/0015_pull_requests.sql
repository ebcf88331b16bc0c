-- What a git job fetches when it is not the head of its branch: a release tag (refs/tags/v1.2)
-- or a pull request's head in the base repository (refs/pull/7/head, refs/merge-requests/7/head).
-- NULL: refs/heads/<branch>, as before. A site following tags reads the tags its slot was given
-- here, so a tag push older than those never rolls it back.
ALTER TABLE git_jobs ADD COLUMN ref text;
CREATE INDEX git_jobs_slot_tags ON git_jobs (slot) WHERE ref LIKE 'refs/tags/%';
