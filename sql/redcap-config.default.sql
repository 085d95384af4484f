-- REDCap default configuration, applied ONCE by the container's start-time bootstrap
-- (container/bootstrap/config_sql.py), right after REDCap's own install.php, and only to a
-- database on which the bootstrap installed REDCap: a database where REDCap was already
-- installed (migrated, restored from an older snapshot) keeps its settings unless the stage
-- sets redcap:configurationSql to apply. It is used when no sql/redcap-config.sql was
-- generated (python sql/generate.py); see docs/configuration-sql.md.
--
-- :s3_bucket, :s3_access_key_id, :s3_secret_access_key and :aws_region are named
-- placeholders: the bootstrap binds them as query parameters at apply time (from S3_BUCKET,
-- the S3_SECRET_ID secret and AWS_REGION). They are never text-substituted.
--
-- In the same transaction, after this file, the bootstrap sets REDCap's universal From address
-- (from_email) to SMTP_EMAIL, the stack's sender: no other From address passes SES and DMARC.
--
-- After this file, at every start, the bootstrap sets the four amazon_s3_* rows again from
-- the current infrastructure while edoc_storage_option is '2' (a new bucket or key after a
-- restore or rotation); every other value here is applied once only.
--
-- No site-admin password here, deliberately: a password in a file shipped with every image
-- would be a known default (the original used MD5('changeme')). REDCap's installer creates
-- the site_admin account; in the same transaction as this file, the bootstrap gives it a
-- temporary table-login password from the REDCAP_ADMIN_SECRET_ID secret, which the Pulumi
-- program generates. Log in as site_admin with
--   aws secretsmanager get-secret-value --secret-id "$(pulumi stack output adminPasswordSecretArn)" --query SecretString --output text
-- REDCap asks for a new password at first login. Without REDCAP_ADMIN_SECRET_ID nobody can
-- log in (table-based login, no table user) until you generate sql/redcap-config.sql with a
-- temporary password. Locked is the safe failure for a system holding patient data:
-- REDCap's own default, auth_meth_global = 'none', lets anyone who reaches the URL act as
-- site_admin.

-- Uploaded files go to the application S3 bucket (edoc_storage_option 2 = Amazon S3). The
-- original left this off, so files landed on the container's ephemeral disk and were lost.
REPLACE INTO redcap_config (field_name, value) VALUES ('edoc_storage_option', '2');
REPLACE INTO redcap_config (field_name, value) VALUES ('amazon_s3_bucket', :s3_bucket);
REPLACE INTO redcap_config (field_name, value) VALUES ('amazon_s3_key', :s3_access_key_id);
REPLACE INTO redcap_config (field_name, value) VALUES ('amazon_s3_secret', :s3_secret_access_key);
REPLACE INTO redcap_config (field_name, value) VALUES ('amazon_s3_endpoint', :aws_region);

-- Username/password login (REDCap's table-based authentication).
REPLACE INTO redcap_config (field_name, value) VALUES ('auth_meth_global', 'table');

-- API off, no usage statistics reported to Vanderbilt, English user interface.
REPLACE INTO redcap_config (field_name, value) VALUES ('api_enabled', '0');
REPLACE INTO redcap_config (field_name, value) VALUES ('auto_report_stats', '0');
REPLACE INTO redcap_config (field_name, value) VALUES ('language_global', 'English');
