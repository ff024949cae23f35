#!/usr/bin/env bash
# Issue 18: does wsnoop's cost stay flat in the number of connections? (benches/README.md)
#
#   benches/connections.sh [--few N] [--many N] [--size MB] [--deflate PCT] [--runs R]
#                          [--threads N] [--callgrind] [--no-build]
#
# Generates two captures with gen_corpus, the same seed, mix and size asked for: FEW (500)
# and MANY (50,000) interleaved connections. The generator gives every connection at least
# its handshake and one exchange, so MANY's file comes out larger than --size (about 1 GB at
# 50,000): costs are compared per MB. All of MANY's connections are open together for most of
# the capture. Runs `wsnoop -r F -q --threads N` (1 unless --threads) R times on each, in
# turn, and prints per file: CPU seconds (user + sys) per MB, median of the runs; peak RSS
# (GNU time's %M, a run of its own); then the ratio MANY / FEW of CPU per MB (the
# target is at most 1.5x) and MANY's peak RSS against 64 MB + 1 KiB per connection.
# --deflate (0 by default) is the per cent of connections with permessage-deflate: their
# inflaters (up to 2^window_bits bytes of window each way, and zlib's tables) are counted apart
# from the per-connection target, so run it at 0 for that target and at 20 to see them.
# --callgrind also counts instructions per MB of each file (valgrind; slow: minutes at 1 GB).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
BENCH_DIR=${BENCH_DIR:-${TMPDIR:-/tmp}/wsnoop-bench}
FEW=500 MANY=50000 SIZE=200 DEFLATE=0 RUNS=5 THREADS=1 CALLGRIND=0 BUILD=1 SEED=1
while [[ $# -gt 0 ]]; do
    case $1 in
        --few) FEW=$2; shift 2 ;;
        --many) MANY=$2; shift 2 ;;
        --size) SIZE=$2; shift 2 ;;
        --deflate) DEFLATE=$2; shift 2 ;;
        --runs) RUNS=$2; shift 2 ;;
        --threads) THREADS=$2; shift 2 ;;
        --callgrind) CALLGRIND=1; shift ;;
        --no-build) BUILD=0; shift ;;
        *) sed -n '2,19p' "$0"; exit 2 ;;
    esac
done

[[ -x /usr/bin/time ]] || { echo "connections.sh: needs GNU time: apt-get install -y time" >&2; exit 1; }
mkdir -p "$BENCH_DIR"
cd "$ROOT"
if [[ $BUILD == 1 ]]; then
    cargo build --release --bin wsnoop --example gen_corpus
fi
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}/release
WSNOOP=${WSNOOP:-$TARGET_DIR/wsnoop}
GEN=$TARGET_DIR/examples/gen_corpus
GEN_HASH=$(sha1sum "$ROOT/benches/tools/gen_corpus.rs" | cut -c1-8)

capture() {   # capture CONNECTIONS -> path (cached by the generator's hash)
    local f="$BENCH_DIR/conns-${SIZE}M-$1c-d$DEFLATE-s$SEED-$GEN_HASH.pcap"
    if [[ ! -s $f ]]; then
        "$GEN" --size "$SIZE" --connections "$1" --deflate "$DEFLATE" --seed "$SEED" -o "$f.tmp" >&2
        mv "$f.tmp" "$f"
    fi
    echo "$f"
}

F_FEW=$(capture "$FEW")
F_MANY=$(capture "$MANY")
mb() { awk -v b="$(stat -c %s "$1")" 'BEGIN { printf "%.3f", b / 1e6 }'; }
MB_FEW=$(mb "$F_FEW") MB_MANY=$(mb "$F_MANY")

declare -a CPU_FEW=() CPU_MANY=()
rss() {   # rss FILE -> peak RSS in KB (GNU time's %M)
    /usr/bin/time -f '%M' -o "$BENCH_DIR/.time" "$WSNOOP" -r "$1" -q --threads "$THREADS" \
        >/dev/null 2>&1
    cat "$BENCH_DIR/.time"
}
cpu() {   # cpu FILE -> CPU seconds (user + sys)
    # bash's `times` gives milliseconds where GNU time gives hundredths, which are 17% of the
    # few connections' 0.06 s; the subshell's only child is wsnoop.
    ( "$WSNOOP" -r "$1" -q --threads "$THREADS" >/dev/null 2>&1; times ) |
        awk 'NR == 2 { split($1, u, /[ms]/); split($2, s, /[ms]/); printf "%.3f\n", 60 * (u[1] + s[1]) + u[2] + s[2] }'
}
RSS_FEW=$(rss "$F_FEW")   # also warms the page cache
RSS_MANY=$(rss "$F_MANY")
for ((r = 0; r < RUNS; r++)); do
    CPU_FEW+=("$(cpu "$F_FEW")")
    CPU_MANY+=("$(cpu "$F_MANY")")
done
median() { printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
C_FEW=$(median "${CPU_FEW[@]}") C_MANY=$(median "${CPU_MANY[@]}")

echo "wsnoop -q --threads $THREADS, $RUNS runs each, deflate on $DEFLATE% of connections ($(nproc) CPUs, load $(cut -d' ' -f1 /proc/loadavg))"
printf '%-11s %10s %9s %12s %10s\n' connections MB cpu_s cpu_ms/MB rss_MB
printf '%-11s %10s %9s %12.3f %10.1f\n' "$FEW" "$MB_FEW" "$C_FEW" "$(awk -v c="$C_FEW" -v m="$MB_FEW" 'BEGIN { print 1000 * c / m }')" "$(awk -v k="$RSS_FEW" 'BEGIN { print k / 1024 }')"
printf '%-11s %10s %9s %12.3f %10.1f\n' "$MANY" "$MB_MANY" "$C_MANY" "$(awk -v c="$C_MANY" -v m="$MB_MANY" 'BEGIN { print 1000 * c / m }')" "$(awk -v k="$RSS_MANY" 'BEGIN { print k / 1024 }')"
awk -v cf="$C_FEW" -v mf="$MB_FEW" -v cm="$C_MANY" -v mm="$MB_MANY" -v r="$RSS_MANY" -v n="$MANY" 'BEGIN {
    printf "CPU per MB, %d connections over %s: %.2fx (target <= 1.5x)\n", n, "the few", (cm / mm) / (cf / mf)
    printf "peak RSS at %d connections: %.1f MB against 64 MB + 1 KiB each = %.1f MB\n", n, r / 1024, 64 + n / 1024
}'

if [[ $CALLGRIND == 1 ]]; then
    command -v valgrind >/dev/null || { echo "connections.sh: --callgrind needs valgrind" >&2; exit 1; }
    for f in "$F_FEW" "$F_MANY"; do
        ir=$(valgrind --tool=callgrind --callgrind-out-file=/dev/null "$WSNOOP" -r "$f" -q --threads 1 2>&1 \
            >/dev/null | awk '/Collected/ { gsub(",", "", $4); print $4 }')
        awk -v ir="$ir" -v m="$(mb "$f")" -v f="$(basename "$f")" \
            'BEGIN { printf "callgrind %s: %s instructions, %.2f M per MB\n", f, ir, ir / m / 1e6 }'
    done
fi
