#!/usr/bin/env python3
"""Runs the Nexmark queries of examples/nexmark/ on real Apache Flink (PyFlink's MiniCluster).

Development aid, not used by CI. Needs the PyFlink install of ../shared/tools/flink/install.sh
(/tmp/flinkenv) and the Nexmark connector jar built as benches/flink/README.md describes
(/tmp/nexmark-flink.jar).

Two kinds of run, each query in its own Python + JVM process:

* results: the query's sink becomes a print sink, the JVM's stdout goes to a file, and the
  changelog is folded (+I/+U add a row, -U/-D remove one) into the final table: its row count and
  the md5 of its sorted rows ("\n"-joined, each followed by "\n"), the same fold `streamsql bench`
  applies to its own print output.
* timing: the query as written (blackhole sink); Flink's net runtime of the job and the CPU time
  the JVM used from submission to the end of the job (utime + stime of /proc/<jvm pid>/stat).

    /tmp/flinkenv/bin/python benches/flink/nexmark_flink.py --mode results -p 1 \\
        --events 1000000 --out benches/flink/nexmark-flink-results.csv
    /tmp/flinkenv/bin/python benches/flink/nexmark_flink.py --mode timing -p 1 \\
        --events 1000000 --out benches/flink/nexmark-flink-timing.csv

Output rows are appended to --out (CSV, header written when the file is new).
"""

import argparse
import collections
import csv
import hashlib
import json
import os
import re
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
DEFAULT_QUERIES = ["q%d" % i for i in range(23) if i != 6]
JAR = "/tmp/nexmark-flink.jar"

RESULT_FIELDS = ["query", "parallelism", "events", "rows", "md5", "changelog_rows", "load", "error"]
TIMING_FIELDS = ["query", "parallelism", "events", "checkpointing", "repetition", "net_s",
                 "job_wall_s", "cpu_s", "events_per_s", "events_per_cpu_s", "load", "error"]


def rewrite(sql, events, base_time, results):
    """The query file as run: events.num, the generator's base time, the side input's
    absolute path, and for results runs a print sink instead of the query's own sink."""
    sql = re.sub(r"'events\.num'\s*=\s*'\d+'", "'events.num' = '%d'" % events, sql)
    extra = ""
    if base_time is not None and base_time >= 0:
        extra += "\n    'base-time' = '%d'," % base_time
    sql = sql.replace("'connector' = 'nexmark',", "'connector' = 'nexmark'," + extra, 1)
    side = os.path.join(ROOT, "examples", "nexmark", "data", "side_input.txt")
    sql = sql.replace("'examples/nexmark/data/side_input.txt'", "'file://%s'" % side)
    if results:
        sql = print_sink(sql)
    return sql


def print_sink(sql):
    """Replaces the options (and PARTITIONED BY) of the CREATE TABLE nexmark_qN with a print sink."""
    m = re.search(r"CREATE TABLE nexmark_q\d+\s*\(", sql)
    if not m:
        raise SystemExit("no CREATE TABLE nexmark_qN in the query file")
    # The column list ends at the first line that is ")" followed by PARTITIONED BY or WITH.
    end_cols = re.compile(r"\n\)\s*(PARTITIONED BY|WITH)", re.S).search(sql, m.end())
    close = sql.index(");", end_cols.end())
    return sql[:end_cols.start()] + "\n) WITH (\n  'connector' = 'print'\n" + sql[close:]


def statements(sql):
    """Splits on ';' at the end of a line, outside comments (the example files need no more)."""
    lines = [l for l in sql.split("\n") if not l.strip().startswith("--")]
    text = "\n".join(lines)
    return [s.strip() for s in re.split(r";\s*\n", text + "\n") if s.strip()]


def fold(path):
    """Final table of a print connector changelog: (rows, md5 of the sorted rows, changelog rows)."""
    table = collections.Counter()
    changes = 0
    prefix = re.compile(r"^\d+> ")
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            line = prefix.sub("", line.rstrip("\n"))
            if len(line) < 3 or line[2] != "[" or line[0] not in "+-":
                continue
            kind, row = line[:2], line[2:]
            changes += 1
            if kind in ("+I", "+U"):
                table[row] += 1
            else:
                table[row] -= 1
                if table[row] == 0:
                    del table[row]
    h = hashlib.md5()
    rows = 0
    for row in sorted(table):
        n = table[row]
        if n < 0:
            raise SystemExit("the changelog retracts a row it never added: %s" % row)
        rows += n
        for _ in range(n):
            h.update((row + "\n").encode("utf-8"))
    return rows, h.hexdigest(), changes


def jvm_cpu_seconds(pid):
    """utime + stime of a process, from /proc/<pid>/stat."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


def load():
    return "%.2f" % os.getloadavg()[0]


def run_one(a):
    """Child: one query in this process's JVM; prints one JSON line on fd 3's file."""
    os.environ.setdefault("FLINK_LOG_DIR", "/tmp/flink-sql-logs/nexmark")
    os.makedirs(os.environ["FLINK_LOG_DIR"], exist_ok=True)
    from pyflink.java_gateway import get_gateway
    if a.print_to:
        sys.stdout.flush()
        saved = os.dup(1)
        fd = os.open(a.print_to, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.dup2(fd, 1)
        try:
            gw = get_gateway()
        finally:
            os.dup2(saved, 1)
            os.close(fd)
            os.close(saved)
    else:
        gw = get_gateway()
    pid = int(gw.jvm.java.lang.ProcessHandle.current().pid())
    from pyflink.common import Configuration
    from pyflink.table import EnvironmentSettings, TableEnvironment
    conf = Configuration()
    pairs = [("parallelism.default", str(a.parallelism)), ("pipeline.jars", "file://" + JAR),
             ("table.local-time-zone", "UTC")]
    if a.checkpoint_interval:
        pairs += [("execution.checkpointing.interval", a.checkpoint_interval),
                  ("execution.checkpointing.dir", "file:///tmp/flink-nexmark-ckpt"),
                  ("state.backend.type", a.state_backend)]
    for k, v in pairs:
        conf.set_string(k, v)
    t_env = TableEnvironment.create(
        EnvironmentSettings.new_instance().in_streaming_mode().with_configuration(conf).build())
    for k, v in pairs:
        t_env.get_config().set(k, v)
    with open(os.path.join(ROOT, "examples", "nexmark", a.query + ".sql")) as f:
        sql = rewrite(f.read(), a.events, a.base_time, a.print_to is not None)
    recs = []
    for stmt in statements(sql):
        if not stmt.upper().startswith("INSERT"):
            t_env.execute_sql(stmt)
            continue
        for rep in range(a.repeat):
            cpu0 = jvm_cpu_seconds(pid)
            t0 = time.perf_counter()
            res = t_env.execute_sql(stmt)
            jc = res.get_job_client()
            res.wait()
            wall = time.perf_counter() - t0
            cpu = jvm_cpu_seconds(pid) - cpu0
            net = jc.get_job_execution_result().result().get_net_runtime() / 1000.0
            recs.append({"repetition": rep, "net_s": round(net, 3), "job_wall_s": round(wall, 3),
                         "cpu_s": round(cpu, 3)})
    with open(a.child_out, "w") as f:
        json.dump(recs, f)


def append(path, fields, row):
    new = not os.path.exists(path) or os.path.getsize(path) == 0
    with open(path, "a", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields, extrasaction="ignore")
        if new:
            w.writeheader()
        w.writerow(row)


def render(path):
    """A markdown table of a timing CSV: per query and parallelism the cold (first) and warm
    (fastest later) job, as docs/performance.md shows them."""
    rows = list(csv.DictReader(open(path)))
    by = collections.OrderedDict()
    for r in rows:
        by.setdefault((r["query"], r["parallelism"], r["checkpointing"]), []).append(r)
    print("| query | p | checkpointing | cold net s | warm net s | warm CPU s | events/s (warm) "
          "| events/CPU-s (warm) | load |")
    print("|---|---|---|---|---|---|---|---|---|")
    for (q, par, ck), rs in by.items():
        if rs[0].get("error"):
            print("| %s | %s | %s | %s |  |  |  |  | %s |" % (q, par, ck, "fails: " + rs[0]["error"]
                  .strip(": ").split(",")[0][:90], rs[0]["load"]))
            continue
        cold = rs[0]
        warm = min(rs[1:] or rs, key=lambda r: float(r["net_s"]))
        print("| %s | %s | %s | %.2f | %.2f | %.2f | %s | %s | %s |" % (
            q, par, ck, float(cold["net_s"]), float(warm["net_s"]), float(warm["cpu_s"]),
            "{:,}".format(int(warm["events_per_s"])), "{:,}".format(int(warm["events_per_cpu_s"])),
            warm["load"]))


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--mode", choices=["results", "timing"], default="timing")
    p.add_argument("--queries", default=",".join(DEFAULT_QUERIES))
    p.add_argument("--events", type=int, default=1000000)
    p.add_argument("-p", "--parallelism", type=int, default=1)
    p.add_argument("--base-time", type=int, default=1700000000000,
                   help="the generator's base time, epoch millis (option base-time of the jar "
                        "build_nexmark_jar.sh builds); -1: the wall clock")
    p.add_argument("--checkpoint-interval", default=None, help="e.g. 10s; default off")
    p.add_argument("--state-backend", default="hashmap")
    p.add_argument("--repeat", type=int, default=1, help="jobs per JVM (timing); all recorded")
    p.add_argument("--timeout", type=int, default=900)
    p.add_argument("--out", required=False)
    p.add_argument("--render", metavar="TIMING_CSV", help="print a timing CSV as a markdown table")
    # child-only
    p.add_argument("--query")
    p.add_argument("--print-to")
    p.add_argument("--child-out")
    a = p.parse_args()
    if a.child_out:
        run_one(a)
        return
    if a.render:
        render(a.render)
        return
    for q in a.queries.split(","):
        tmp = tempfile.mkdtemp(prefix="nexmark-flink-")
        child_out = os.path.join(tmp, "rec.json")
        cmd = [sys.executable, os.path.abspath(__file__), "--query", q, "--events", str(a.events),
               "-p", str(a.parallelism), "--base-time", str(a.base_time),
               "--repeat", str(a.repeat if a.mode == "timing" else 1), "--child-out", child_out,
               "--state-backend", a.state_backend]
        if a.checkpoint_interval:
            cmd += ["--checkpoint-interval", a.checkpoint_interval]
        printed = os.path.join(tmp, "print.txt")
        if a.mode == "results":
            cmd += ["--print-to", printed]
        before = load()
        err = ""
        try:
            r = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                               timeout=a.timeout, text=True)
            if r.returncode != 0 or not os.path.exists(child_out):
                lines = [l for l in r.stderr.splitlines() if "Exception" in l or "Error" in l]
                err = (lines[-1] if lines else r.stderr.strip()[-300:]).strip()
        except subprocess.TimeoutExpired:
            err = "timeout after %d s" % a.timeout
        base = {"query": q, "parallelism": a.parallelism, "events": a.events,
                "checkpointing": a.checkpoint_interval or "off", "load": before}
        if a.mode == "results":
            if err:
                row = dict(base, rows="", md5="", changelog_rows="", error=err)
            else:
                rows, md5, changes = fold(printed)
                row = dict(base, rows=rows, md5=md5, changelog_rows=changes)
            print(json.dumps(row), flush=True)
            if a.out:
                append(a.out, RESULT_FIELDS, row)
        else:
            recs = [] if err else json.load(open(child_out))
            for rec in recs or [{"repetition": 0}]:
                row = dict(base, **rec, error=err)
                if rec.get("net_s"):
                    row["events_per_s"] = round(a.events / rec["net_s"])
                if rec.get("cpu_s"):
                    row["events_per_cpu_s"] = round(a.events / rec["cpu_s"])
                print(json.dumps(row), flush=True)
                if a.out:
                    append(a.out, TIMING_FIELDS, row)
        subprocess.run(["rm", "-rf", tmp])


if __name__ == "__main__":
    main()
