-- A hosted push deploys in its pre-receive hook, before the branch moves: its job names the pushed
-- commit (never coalesced with another push) and the quarantine folder git keeps the pushed objects
-- in until the hook accepts them. Both NULL for every other job (the branch head is fetched).
ALTER TABLE git_jobs ADD COLUMN commit_sha text;
ALTER TABLE git_jobs ADD COLUMN objects text;
