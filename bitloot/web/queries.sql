-- name: take_from_bucket
-- GCRA in one statement. tat ("theoretical arrival time") moves forward by one emission
-- interval per allowed request; a request is allowed while the new tat stays within one
-- period of now, so a bucket allows a burst of period/interval requests, then one per
-- interval. ON CONFLICT DO UPDATE locks the row and works on its latest committed tat, so
-- concurrent requests from any number of processes serialise on the row: there is no
-- read-modify-write race. A refused request changes nothing (the DO UPDATE's WHERE is
-- false, so `taken` is empty) and the second branch says how long to wait; it reads the
-- statement's snapshot, so in a rare race it returns no row and the caller assumes one
-- interval.
WITH taken AS (
    INSERT INTO rate_limit_buckets AS b (bucket, tat)
    VALUES (%(bucket)s, statement_timestamp() + make_interval(secs => %(interval)s))
    ON CONFLICT (bucket) DO UPDATE
       SET tat = greatest(b.tat, statement_timestamp()) + make_interval(secs => %(interval)s)
     WHERE greatest(b.tat, statement_timestamp()) + make_interval(secs => %(interval)s)
           <= statement_timestamp() + make_interval(secs => %(period)s)
    RETURNING b.tat
)
SELECT true AS allowed, 0::float8 AS retry_after FROM taken
UNION ALL
SELECT false,
       extract(epoch FROM greatest(b.tat, statement_timestamp())
                          + make_interval(secs => %(interval)s)
                          - make_interval(secs => %(period)s)
                          - statement_timestamp())::float8
  FROM rate_limit_buckets b
 WHERE b.bucket = %(bucket)s AND NOT EXISTS (SELECT 1 FROM taken);

-- name: prune_buckets
-- A bucket whose tat has passed is full again, exactly as if it had no row, so deleting it
-- loses nothing. The outer tat test is re-checked on a row updated concurrently (READ
-- COMMITTED), so a bucket refilled meanwhile is kept.
DELETE FROM rate_limit_buckets
 WHERE tat < statement_timestamp()
   AND bucket IN (SELECT bucket FROM rate_limit_buckets
                   WHERE tat < statement_timestamp() LIMIT %(limit)s);
