-- sqlite3 workload for c_tests/real_programs.sh: run as `sqlite3 FILE.db < sqlite_work.sql`.
-- Inserts 300000 generated rows in one transaction (recursive CTE), indexes them, then runs
-- aggregates, a join, a sort on an unindexed expression, window functions and deletes.
-- Everything is computed from the row number, so the output is deterministic.
PRAGMA cache_size = -20000;
PRAGMA synchronous = OFF;
CREATE TABLE item(id INTEGER PRIMARY KEY, grp INTEGER, name TEXT, price REAL, note TEXT);
CREATE TABLE grp(id INTEGER PRIMARY KEY, label TEXT);
BEGIN;
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 300000)
INSERT INTO item(id, grp, name, price, note)
SELECT i, (i * 7919) % 1000, printf('item-%06d', (i * 104729) % 300007),
       ((i * 31337) % 100000) / 100.0, substr(hex(i * 2654435761), 1, 1 + i % 40)
FROM n;
WITH RECURSIVE g(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM g WHERE i < 999)
INSERT INTO grp(id, label) SELECT i, 'group-' || (i % 37) FROM g;
COMMIT;
CREATE INDEX item_grp ON item(grp);
CREATE INDEX item_name ON item(name);
SELECT 'rows', count(*), sum(price), min(name), max(name), sum(length(note)) FROM item;
SELECT 'groups', count(*), min(n), max(n), round(avg(total), 2)
  FROM (SELECT grp, count(*) AS n, sum(price) AS total FROM item GROUP BY grp);
SELECT 'join', g.label, count(*), round(sum(i.price), 2)
  FROM item i JOIN grp g ON g.id = i.grp GROUP BY g.label ORDER BY count(*) DESC, g.label LIMIT 5;
SELECT 'sorted', id, name FROM item ORDER BY note DESC, price, id LIMIT 3;
SELECT 'distinct', count(DISTINCT note), count(DISTINCT substr(name, 1, 8)) FROM item;
SELECT 'window', grp, id, rnk FROM (
  SELECT grp, id, rank() OVER (PARTITION BY grp ORDER BY price DESC, id) AS rnk FROM item
) WHERE rnk = 1 ORDER BY grp LIMIT 5;
SELECT 'concat', length(group_concat(name, ',')) FROM item WHERE grp < 100;
DELETE FROM item WHERE id % 3 = 0;
UPDATE item SET note = note || note WHERE grp % 10 = 1;
SELECT 'after', count(*), sum(length(note)) FROM item;
PRAGMA integrity_check;
