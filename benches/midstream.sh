#!/usr/bin/env bash
# Mid-stream benchmark of issue 14 (see benches/README.md): long permessage-deflate sessions
# (context takeover, 15-bit windows) decoded from their start, and the same capture cut in the
# middle so that every session is already open and its deflate history unseen.
#
#   benches/midstream.sh [--size MB] [--connections N] [--seed S] [--runs R] [--no-build]
#                        [--callgrind]
#
# gen_corpus writes the capture (every connection deflating); editcap (Wireshark's) keeps its
# second half of packets. Then, in one run:
#   full  `wsnoop -r FULL -q`    decoded from the start: zlib inflates everything
#   cut   `wsnoop -r CUT -q`     every session picked up mid-stream: the recovering inflater
# and the ratio of their costs per captured MB, median of R paired rounds (target <= 1.5x);
# how many of the cut capture's compressed messages came out exact, and after how many
# messages each session's first exact one came; --callgrind adds instruction counts
# (valgrind --tool=callgrind, --threads 1), stable where wall clocks are not.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
BENCH_DIR=${BENCH_DIR:-${TMPDIR:-/tmp}/wsnoop-bench}
SIZE=40 CONNS=20 SEED=3 RUNS=7 BUILD=1 CALLGRIND=0
while [[ $# -gt 0 ]]; do
    case $1 in
        --size) SIZE=$2; shift 2 ;;
        --connections) CONNS=$2; shift 2 ;;
        --seed) SEED=$2; shift 2 ;;
        --runs) RUNS=$2; shift 2 ;;
        --no-build) BUILD=0; shift ;;
        --callgrind) CALLGRIND=1; shift ;;
        *) sed -n '2,16p' "$0"; exit 2 ;;
    esac
done
TARGET_RATIO=1.5
for tool in editcap capinfos jq; do
    command -v "$tool" > /dev/null || {
        echo "midstream.sh: needs $tool (apt-get install -y tshark jq)" >&2
        exit 1
    }
done

cd "$ROOT"
[[ $BUILD == 1 ]] && cargo build --release --bin wsnoop --example gen_corpus
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}/release
WSNOOP=${WSNOOP:-$TARGET_DIR/wsnoop}
GEN=$TARGET_DIR/examples/gen_corpus
mkdir -p "$BENCH_DIR"
GEN_HASH=$(sha1sum benches/tools/gen_corpus.rs | cut -c1-8)
FULL=$BENCH_DIR/midstream-$SIZE"M"-${CONNS}c-s$SEED-$GEN_HASH.pcap
CUT=${FULL%.pcap}-cut.pcap
if [[ ! -s $FULL ]]; then
    "$GEN" --size "$SIZE" --connections "$CONNS" --deflate 100 --seed "$SEED" -o "$FULL.tmp" >&2
    mv "$FULL.tmp" "$FULL"
fi
if [[ ! -s $CUT ]]; then
    PACKETS=$(capinfos -M -c "$FULL" | awk '/Number of packets/ {print $NF}')
    editcap -r "$FULL" "$CUT.tmp" "$((PACKETS / 2 + 1))-$PACKETS"
    mv "$CUT.tmp" "$CUT"
fi
cat "$FULL" "$CUT" > /dev/null
MB_FULL=$(stat -c %s "$FULL") MB_CUT=$(stat -c %s "$CUT")
echo "== machine: nproc $(nproc), load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "wsnoop: $WSNOOP ($(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?'))"
echo "full: $FULL ($(awk -v b="$MB_FULL" 'BEGIN {printf "%.1f MB", b / 1e6}'))"
"$WSNOOP" -r "$FULL" -q 2>&1 | head -1 | sed 's/^/  /'
echo "cut:  $CUT ($(awk -v b="$MB_CUT" 'BEGIN {printf "%.1f MB", b / 1e6}'), its second half of packets)"
"$WSNOOP" -r "$CUT" -q 2>&1 | head -1 | sed 's/^/  /'

TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
now() { date +%s%N; }
for ((r = 0; r <= RUNS; r++)); do
    a=$(now); "$WSNOOP" -r "$FULL" -q > /dev/null 2>&1
    b=$(now); "$WSNOOP" -r "$CUT" -q > /dev/null 2>&1
    c=$(now)
    [[ $r -gt 0 ]] && echo "$((b - a)) $((c - b))" >> "$TMP/rounds"
done
# Cost per captured byte, cut over full, in each round.
read -r MEDIAN LOW HIGH < <(awk -v f="$MB_FULL" -v c="$MB_CUT" '{print ($2 / c) / ($1 / f)}' \
    "$TMP/rounds" | sort -n | awk '{v[NR] = $1}
    END {m = NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2; printf "%.2f %.2f %.2f\n", m, v[1], v[NR]}')
best() { awk -v k="$1" -v b="$2" 'NR == 1 || $k < m {m = $k} END {printf "%.3f s, %.0f MB/s", m / 1e9, b / 1e6 / (m / 1e9)}' "$TMP/rounds"; }
verdict() { if awk "BEGIN {exit !($1)}"; then echo PASS; else echo FAIL; fi; }
echo
echo "== $RUNS paired rounds (wall clock, default threads)"
printf '%-44s %s\n' "full -q (best)" "$(best 1 "$MB_FULL")" "cut -q (best)" "$(best 2 "$MB_CUT")"
printf '%-44s %5sx  (rounds: %s to %s; target <= %sx)  %s\n' "cut / full, cost per MB, median" \
    "$MEDIAN" "$LOW" "$HIGH" "$TARGET_RATIO" "$(verdict "$MEDIAN <= $TARGET_RATIO")"

# How the cut capture's compressed messages came out, and how soon each session's first exact one.
"$WSNOOP" -r "$CUT" --json --show messages --max-payload 0 |
    jq -r 'select(.type == "message" and .compressed) | [.flow, (if .partial then "partial" elif .undecodable then "undecodable" else "exact" end)] | @tsv' \
    > "$TMP/messages"
echo
echo "== compressed messages after the cut"
awk -F'\t' '{n[$2]++; t++} END {for (k in n) printf "  %-12s %7d  %5.1f%%\n", k, n[k], 100 * n[k] / t}' \
    "$TMP/messages" | sort
awk -F'\t' '!($1 in seen) {seen[$1] = 0} $2 == "exact" && !($1 in first) {first[$1] = count[$1]}
    {count[$1]++}
    END {
        for (f in seen) { total++; if (f in first) { exact++; s = s " " first[f] } }
        printf "  sessions with an exact message: %d of %d; compressed messages before the first:%s\n", exact, total, s
    }' "$TMP/messages"

if [[ $CALLGRIND == 1 ]] && command -v valgrind > /dev/null; then
    ir() { valgrind --tool=callgrind --callgrind-out-file=/dev/null "$@" 2>&1 >/dev/null |
        awk '/Collected/ {print $NF}'; }
    IF=$(ir "$WSNOOP" -r "$FULL" -q --threads 1)
    IC=$(ir "$WSNOOP" -r "$CUT" -q --threads 1)
    printf '\n== callgrind, -q --threads 1: full %s, cut %s instructions; per MB cut / full: %sx\n' \
        "$IF" "$IC" "$(awk -v a="$IC" -v b="$IF" -v f="$MB_FULL" -v c="$MB_CUT" 'BEGIN {printf "%.2f", (a / c) / (b / f)}')"
fi
