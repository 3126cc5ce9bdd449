-- BitLoot's database roles for the compose file's PostgreSQL: the postgres image runs this
-- once, as POSTGRES_USER (bitloot, a superuser and the owner the migrate service logs in
-- as), when its data volume is new (/docker-entrypoint-initdb.d). The group roles are those
-- of bitloot/db/roles.sql; bitloot_api is the login of the api and worker services. Their
-- rights come from `bitloot migrate` (the migrate service), which grants them. \getenv needs
-- psql 15 or newer (the postgres:16 image has it).
\getenv app_password POSTGRES_APP_PASSWORD
CREATE ROLE bitloot_app NOLOGIN;
CREATE ROLE bitloot_auditor NOLOGIN;
CREATE ROLE bitloot_api LOGIN PASSWORD :'app_password' IN ROLE bitloot_app;
