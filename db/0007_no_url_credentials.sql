-- Repository URLs with credentials are refused from this version on (a token comes from token_env,
-- an ssh key from DROPHOST_GIT_SSH_KEY). Older versions stored such URLs in git_jobs and
-- managed_slots: the credentials are removed here, so none stays in PostgreSQL.
UPDATE git_jobs
   SET repo = regexp_replace(repo, '^([A-Za-z][A-Za-z0-9+.-]*://)[^/@]*@', '\1')
 WHERE repo ~ '^[A-Za-z][A-Za-z0-9+.-]*://[^/@]*:[^/@]*@' OR repo ~ '^[Hh][Tt][Tt][Pp][Ss]?://[^/@]*@';

UPDATE managed_slots
   SET repo = regexp_replace(repo, '^([A-Za-z][A-Za-z0-9+.-]*://)[^/@]*@', '\1')
 WHERE repo ~ '^[A-Za-z][A-Za-z0-9+.-]*://[^/@]*:[^/@]*@' OR repo ~ '^[Hh][Tt][Tt][Pp][Ss]?://[^/@]*@';
