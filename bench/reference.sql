-- pgbench reference transaction for bench/run.py: the least a ledger write can cost here,
-- one appended entry plus one balance update, in one transaction.
-- Run by: pgbench -M prepared -c 32 -j 2 -T <seconds> -n -f bench/reference.sql -D accounts=N
\set aid random(1, :accounts)
BEGIN;
INSERT INTO bench_entries (account_id, points) VALUES (:aid, 100);
UPDATE bench_accounts SET balance = balance + 100 WHERE id = :aid RETURNING balance;
END;
