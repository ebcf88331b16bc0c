-- What the client called a digest upload (a folder's name), shown as the deployment's source.
ALTER TABLE uploads ADD COLUMN source_name text;
