"""Pool several validation runs of the same whole subnets into one store, as one run of more rounds would be.

usage: pool_runs.py OUT.db RUN1.db RUN2.db [...]
OUT is a copy of RUN1 whose rounds table gains the other runs' rounds (renumbered after RUN1's) and whose
measurement rows are recomputed from all of them by the collector's own ``TimingStats.from_rounds``. Only the
subnets every run has are kept."""
import json, shutil, sqlite3, sys
from spaceevo.datasets import STAT_FIELDS
from spaceevo.latency import TimingStats

out, runs = sys.argv[1], sys.argv[2:]
shutil.copyfile(runs[0], out)
c = sqlite3.connect(out)
def rounds_of(db):
    d = {}
    for k, r, s in sqlite3.connect(db).execute("select key, round, stats from rounds where kind='model'"):
        d.setdefault(k, {})[r] = s
    return d
per_run = [rounds_of(db) for db in runs]
keys = [k for k in per_run[0] if all(k in p for p in per_run)]
meta = c.execute("select device, dtype, threads from rounds where kind='model' limit 1").fetchone()
c.execute("delete from measurements where kind='model' and key not in (%s)" % ",".join("?" * len(keys)), keys)
with c:
    for k in keys:
        offset, stats = 0, []
        for p in per_run:
            for r in sorted(p[k]):
                c.execute("insert or replace into rounds (kind, key, device, dtype, threads, round, stats, created_at) "
                          "values ('model', ?, ?, ?, ?, ?, ?, datetime('now'))", (k, *meta, offset + r, p[k][r]))
                stats.append(TimingStats.from_dict(json.loads(p[k][r])))
            offset += max(p[k]) + 1
        pooled = TimingStats.from_rounds(stats).as_dict()
        c.execute("update measurements set %s where kind='model' and key=?" % ", ".join(f"{f}=?" for f in STAT_FIELDS),
                  [pooled.get(f) for f in STAT_FIELDS] + [k])
print(len(keys), "subnets pooled over", len(runs), "runs:",
      c.execute("select min(rounds), max(rounds) from measurements where kind='model'").fetchone())
