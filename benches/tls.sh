#!/usr/bin/env bash
# wss benchmark of issue 13 (see benches/README.md).
#
#   benches/tls.sh [--size MB] [--connections N] [--seed S] [--runs R] [--no-build]
#                  [--no-tshark] [--callgrind MB]
#
# Generates two captures with gen_corpus from the same settings: plaintext ws on 8080 and
# wss on 8443 (--tls: TLS 1.2, AES-128-GCM, with its key log), cached in $BENCH_DIR (default
# /tmp/wsnoop-bench). Then, in one run:
#   tls-q / plain-q   median of R paired rounds of `wsnoop -q` on each (target <= 1.5x)
#   json              `wsnoop -r TLS --keylog KEYS --json`, best of R
#   tshark            `tshark -o tls.keylog_file:KEYS -d tcp.port==8443,tls -Y websocket
#                      -T fields ...` decrypting the same file, once (target >= 20x json)
# and checks that both tools see the same number of WebSocket frames. --callgrind MB also
# counts instructions (valgrind --tool=callgrind) of -q on an MB-sized pair: stable where
# wall clocks are not.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
BENCH_DIR=${BENCH_DIR:-${TMPDIR:-/tmp}/wsnoop-bench}
SIZE=100 CONNS=500 SEED=1 RUNS=5 BUILD=1 TSHARK=1 CALLGRIND=0
while [[ $# -gt 0 ]]; do
    case $1 in
        --size) SIZE=$2; shift 2 ;;
        --connections) CONNS=$2; shift 2 ;;
        --seed) SEED=$2; shift 2 ;;
        --runs) RUNS=$2; shift 2 ;;
        --no-build) BUILD=0; shift ;;
        --no-tshark) TSHARK=0; shift ;;
        --callgrind) CALLGRIND=$2; shift 2 ;;
        *) sed -n '2,18p' "$0"; exit 2 ;;
    esac
done
TARGET_TSHARK_RATIO=20
TARGET_PLAIN_RATIO=1.5

cd "$ROOT"
[[ $BUILD == 1 ]] && cargo build --release --bin wsnoop --example gen_corpus
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}/release
WSNOOP=${WSNOOP:-$TARGET_DIR/wsnoop}
GEN=$TARGET_DIR/examples/gen_corpus
mkdir -p "$BENCH_DIR"
GEN_HASH=$(cat benches/tools/gen_corpus.rs benches/tools/tls_records.rs | sha1sum | cut -c1-8)
corpus() { # MB TLS(0/1) -> path
    local f="$BENCH_DIR/corpus-$1M-${CONNS}c-s$SEED-$GEN_HASH$([[ $2 == 1 ]] && echo -tls).pcap"
    if [[ ! -s $f ]]; then
        "$GEN" --size "$1" --connections "$CONNS" --seed "$SEED" $([[ $2 == 1 ]] && echo --tls) \
            -o "$f.tmp" >&2
        [[ $2 == 1 ]] && mv "$f.tmp.keys" "$f.keys"
        mv "$f.tmp" "$f"
    fi
    echo "$f"
}
PLAIN=$(corpus "$SIZE" 0)
TLS=$(corpus "$SIZE" 1)
KEYS=$TLS.keys
cat "$PLAIN" "$TLS" > /dev/null
echo "== machine: nproc $(nproc), load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "wsnoop: $WSNOOP ($(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?'))"
echo "plain: $PLAIN ($(stat -c %s "$PLAIN" | awk '{printf "%.0f MB", $1 / 1e6}'))"
"$WSNOOP" -r "$PLAIN" -q 2>&1 | head -1 | sed 's/^/  /'
echo "wss:   $TLS ($(stat -c %s "$TLS" | awk '{printf "%.0f MB", $1 / 1e6}'))"
"$WSNOOP" -r "$TLS" --keylog "$KEYS" -q 2>&1 | head -2 | sed 's/^/  /'

TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
now() { date +%s%N; }
# Paired rounds: plain -q, then wss -q; the ratio within each round; the first warms up.
for ((r = 0; r <= RUNS; r++)); do
    a=$(now); "$WSNOOP" -r "$PLAIN" -q > /dev/null 2>&1
    b=$(now); "$WSNOOP" -r "$TLS" --keylog "$KEYS" -q > /dev/null 2>&1
    c=$(now); "$WSNOOP" -r "$TLS" --keylog "$KEYS" --json > /dev/null 2>&1
    d=$(now)
    [[ $r -gt 0 ]] && echo "$((b - a)) $((c - b)) $((d - c))" >> "$TMP/rounds"
done
read -r PAIR_MEDIAN PAIR_LOW PAIR_HIGH < <(awk '{print $2 / $1}' "$TMP/rounds" | sort -n | awk '
    {v[NR] = $1}
    END {m = NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2; printf "%.2f %.2f %.2f\n", m, v[1], v[NR]}')
JSON_BEST=$(awk 'NR == 1 || $3 < m {m = $3} END {printf "%.3f", m / 1e9}' "$TMP/rounds")
PLAIN_BEST=$(awk 'NR == 1 || $1 < m {m = $1} END {printf "%.3f", m / 1e9}' "$TMP/rounds")
TLS_BEST=$(awk 'NR == 1 || $2 < m {m = $2} END {printf "%.3f", m / 1e9}' "$TMP/rounds")
verdict() { if awk "BEGIN {exit !($1)}"; then echo PASS; else echo FAIL; fi; }
echo
echo "== $RUNS paired rounds (wall clock, best)"
printf '%-52s %8s s\n' "wsnoop -r plain -q" "$PLAIN_BEST" "wsnoop -r wss --keylog -q" "$TLS_BEST" \
    "wsnoop -r wss --keylog --json > /dev/null" "$JSON_BEST"
printf '%-52s %7sx  (rounds: %s to %s; target <= %sx)  %s\n' "wss -q / plain -q, median of rounds" \
    "$PAIR_MEDIAN" "$PAIR_LOW" "$PAIR_HIGH" "$TARGET_PLAIN_RATIO" \
    "$(verdict "$PAIR_MEDIAN <= $TARGET_PLAIN_RATIO")"
if [[ $TSHARK == 1 ]] && command -v tshark > /dev/null; then
    mkdir -p "$TMP/wireshark"
    s=$(now)
    WIRESHARK_CONFIG_DIR=$TMP/wireshark tshark -r "$TLS" -o "tls.keylog_file:$KEYS" \
        -d tcp.port==8443,tls -Y websocket -T fields -e tcp.stream -e websocket.opcode \
        -e websocket.payload_length 2> /dev/null > "$TMP/tshark.out"
    e=$(now)
    TS=$(awk -v a="$s" -v b="$e" 'BEGIN {printf "%.3f", (b - a) / 1e9}')
    TS_FRAMES=$(awk -F'\t' '{n += split($2, x, ",")} END {print n + 0}' "$TMP/tshark.out")
    WS_FRAMES=$("$WSNOOP" -r "$TLS" --keylog "$KEYS" -q 2>&1 | head -1 | sed -E 's/.* ([0-9]+) frames.*/\1/')
    printf '%-52s %8s s  (%s frames; wsnoop: %s)\n' "tshark decrypting, -Y websocket -T fields (once)" \
        "$TS" "$TS_FRAMES" "$WS_FRAMES"
    RATIO=$(awk -v a="$TS" -v b="$JSON_BEST" 'BEGIN {printf "%.1f", a / b}')
    printf '%-52s %7sx  (target >= %sx)  %s\n' "tshark / wsnoop --json" "$RATIO" \
        "$TARGET_TSHARK_RATIO" "$(verdict "$RATIO >= $TARGET_TSHARK_RATIO")"
fi
if [[ $CALLGRIND -gt 0 ]] && command -v valgrind > /dev/null; then
    SP=$(corpus "$CALLGRIND" 0) ST=$(corpus "$CALLGRIND" 1)
    ir() { valgrind --tool=callgrind --callgrind-out-file=/dev/null "$@" 2>&1 >/dev/null |
        awk '/Collected/ {print $NF}'; }
    IP=$(ir "$WSNOOP" -r "$SP" -q --threads 1)
    IT=$(ir "$WSNOOP" -r "$ST" --keylog "$ST.keys" -q --threads 1)
    printf '\n== callgrind, -q --threads 1 on %s MB: plain %s, wss %s instructions: %sx\n' \
        "$CALLGRIND" "$IP" "$IT" "$(awk -v a="$IT" -v b="$IP" 'BEGIN {printf "%.2f", a / b}')"
fi
