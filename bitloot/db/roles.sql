-- BitLoot's group roles, for an administrator to create once: `bitloot migrate` creates
-- them itself when its login is a superuser or has CREATEROLE, and prints this otherwise.
-- Run it as a superuser (or a role with CREATEROLE), e.g. `psql -d bitloot -f roles.sql`,
-- then run `bitloot migrate` again: it grants each role its rights
-- (bitloot_grant_roles(); a superuser may also run `SELECT bitloot_grant_roles();`).
CREATE ROLE bitloot_app NOLOGIN;
CREATE ROLE bitloot_auditor NOLOGIN;
-- Then one login per use, a member of its group (names and passwords are yours):
--   CREATE ROLE bitloot_api LOGIN PASSWORD '...' IN ROLE bitloot_app;     -- serve, worker
--   CREATE ROLE alice LOGIN PASSWORD '...' IN ROLE bitloot_auditor;       -- a person auditing
-- or make an existing login a member: GRANT bitloot_app TO existing_login;
