-- procrastinate's fetch function keeps one cached plan per session. Planned while the
-- queue was empty (its statistics say "one row"), that plan scans every waiting job, runs
-- the lock check for each and sorts, which made each fetch cost ~21 ms with 900 jobs queued
-- and a burst quadratic. With sorting off the planner walks the priority index and stops
-- at the first eligible job: 0.6 ms (measured with `bitloot bench pipeline --pg-stats`).
-- A function-level setting, so it applies to this function only; upstream procrastinate
-- is unchanged and a later upgrade keeps it unless it replaces the function.
ALTER FUNCTION procrastinate_fetch_job_v2(character varying[], bigint) SET enable_sort = off;
