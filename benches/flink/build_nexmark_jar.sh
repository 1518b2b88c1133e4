#!/usr/bin/env bash
# Builds /tmp/nexmark-flink.jar: the Nexmark table source of github.com/nexmark/nexmark
# (nexmark-flink), compiled with javac against PyFlink's jars, with two changes so that it
# generates exactly the events of streamsql's `nexmark` connector:
#
#   * the random fields of each event come from `new java.util.Random(eventSeed(eventId))`, with
#     streamsql's SplitMix64 `event_seed` (the published
#     generator draws them from one unseeded SplittableRandom per source subtask, so they differ
#     between runs), the hot and channel URL tables from `new Random(0)` and the 1 MiB text the
#     `extra` fields are cut from from `new Random(1)`;
#   * an option 'base-time' (epoch milliseconds) fixes the generator's base time, which is
#     otherwise the wall clock when the table is planned.
#
# Usage: build_nexmark_jar.sh <nexmark checkout or git directory> [output jar]
# Nothing of the nexmark repository is kept in this repository; the sources are copied to
# /tmp/nexmark-src and changed there.
set -euo pipefail

SRC_REPO=${1:?usage: build_nexmark_jar.sh <nexmark checkout or git dir> [out.jar]}
OUT=${2:-/tmp/nexmark-flink.jar}
WORK=/tmp/nexmark-src
PYFLINK_LIB=${PYFLINK_LIB:-/tmp/flinkenv/lib/python3.11/site-packages/pyflink/lib}
JAVA_ROOT=nexmark-flink/src/main/java
PKG=com/github/nexmark/flink

rm -rf "$WORK"
mkdir -p "$WORK/src" "$WORK/classes/META-INF/services"

# The files the table source needs: configuration, generator, model, source, utils, the UDF.
files() {
  grep -E "^$JAVA_ROOT/$PKG/(NexmarkConfiguration\.java|generator/|model/|source/|utils/NexmarkUtils\.java|udf/)" |
    grep -v SideInputGenerator
}
if git -C "$SRC_REPO" rev-parse --git-dir >/dev/null 2>&1 && [ ! -d "$SRC_REPO/$JAVA_ROOT" ]; then
  # A bare mirror: read the files from HEAD.
  git -C "$SRC_REPO" ls-tree -r --name-only HEAD | files | while read -r f; do
    mkdir -p "$WORK/src/$(dirname "${f#$JAVA_ROOT/}")"
    git -C "$SRC_REPO" show "HEAD:$f" >"$WORK/src/${f#$JAVA_ROOT/}"
  done
  git -C "$SRC_REPO" rev-parse HEAD >"$WORK/COMMIT"
else
  (cd "$SRC_REPO" && find "$JAVA_ROOT" -name '*.java' | sort) | files | while read -r f; do
    mkdir -p "$WORK/src/$(dirname "${f#$JAVA_ROOT/}")"
    cp "$SRC_REPO/$f" "$WORK/src/${f#$JAVA_ROOT/}"
  done
fi

python3 - "$WORK/src/$PKG" <<'EOF'
import pathlib, re, sys
root = pathlib.Path(sys.argv[1])

def edit(rel, old, new, count=1):
    p = root / rel
    s = p.read_text()
    if old not in s:
        sys.exit("build_nexmark_jar: %s: expected text not found: %r" % (rel, old))
    p.write_text(s.replace(old, new, count))

# One java.util.Random per event, seeded with the event id.
for p in (root / "generator").rglob("*.java"):
    s = p.read_text()
    s = s.replace("import java.util.SplittableRandom;", "import java.util.Random;")
    s = re.sub(r"\bSplittableRandom\b", "Random", s)
    p.write_text(s)
edit("generator/NexmarkGenerator.java",
     "  private final Random random = new Random();\n", "")
edit("generator/NexmarkGenerator.java",
     "    long newEventId = getNextEventId();\n",
     "    long newEventId = getNextEventId();\n    Random random = new Random(eventSeed(newEventId));\n")
# streamsql's event_seed: SplitMix64's output for the id (consecutive bare ids would give nearly
# equal first draws, so hot-or-random choices would come in long runs).
edit("generator/NexmarkGenerator.java",
     "  public NexmarkGenerator(",
     "  private static long eventSeed(long id) {\n"
     "    long z = id + 0x9E3779B97F4A7C15L;\n"
     "    z = (z ^ (z >>> 30)) * 0xBF58476D1CE4E5B9L;\n"
     "    z = (z ^ (z >>> 27)) * 0x94D049BB133111EBL;\n"
     "    return z ^ (z >>> 31);\n"
     "  }\n\n"
     "  public NexmarkGenerator(")
edit("generator/model/BidGenerator.java",
     "private static final Random random = new Random();",
     "private static final Random random = new Random(0);")
edit("generator/model/StringsGenerator.java",
     "nextExactString(new Random(), 1024 * 1024)", "nextExactString(new Random(1), 1024 * 1024)")

# Option 'base-time'.
edit("source/NexmarkSourceOptions.java",
     "\tpublic static NexmarkConfiguration convertToNexmarkConfiguration(",
     "\tpublic static final ConfigOption<Long> BASE_TIME = ConfigOptions\n"
     "\t\t\t.key(\"base-time\")\n\t\t\t.longType()\n\t\t\t.defaultValue(-1L);\n\n"
     "\tpublic static NexmarkConfiguration convertToNexmarkConfiguration(")
edit("source/NexmarkTableSourceFactory.java",
     "\t\t\tSystem.currentTimeMillis(),",
     "\t\t\tconfig.get(NexmarkSourceOptions.BASE_TIME) >= 0\n"
     "\t\t\t\t? config.get(NexmarkSourceOptions.BASE_TIME) : System.currentTimeMillis(),")
edit("source/NexmarkTableSourceFactory.java",
     "\t\tsets.add(NexmarkSourceOptions.MAX_EMIT_SPEED);",
     "\t\tsets.add(NexmarkSourceOptions.MAX_EMIT_SPEED);\n\t\tsets.add(NexmarkSourceOptions.BASE_TIME);")
EOF

CP=$(ls "$PYFLINK_LIB"/*.jar | tr '\n' ':')
javac -nowarn -encoding UTF-8 -d "$WORK/classes" -cp "$CP" $(find "$WORK/src" -name '*.java') 2>&1 | grep -v '^Note:' || true
test -f "$WORK/classes/$PKG/source/NexmarkTableSourceFactory.class"
echo com.github.nexmark.flink.source.NexmarkTableSourceFactory \
  >"$WORK/classes/META-INF/services/org.apache.flink.table.factories.Factory"
jar cf "$OUT" -C "$WORK/classes" .
echo "built $OUT ($(find "$WORK/src" -name '*.java' | wc -l) source files)"
