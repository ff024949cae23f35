#!/usr/bin/env bash
# Memory check of issue 5 (see benches/README.md): wsnoop's peak RSS under a SYN flood and
# under half-open connections that hold out-of-order data behind a hole that never fills.
#
#   benches/memory.sh [--syns N] [--half-open M] [--ooo-bytes B] [--threads N] [--no-build]
#                     [--no-bounds]
#
# Defaults: one million SYNs from distinct addresses and ports, 32 half-open connections each
# holding 1,000,000 bytes out of order in each direction (just under the 1 MiB --max-ooo
# default). Runs, all with `wsnoop -r F -q`:
#   base      a capture of one SYN: the fixed cost
#   flood     N SYNs: the flow table fills to --max-flows (100000) and evicts
#   flood2x   2N SYNs: must cost no more than N (the table is full either way)
#   flood10k  N SYNs with --max-flows 10000: the table's share of memory shrinks tenfold
#   held      M half-open connections only: M x 2 x B bytes held
#   over      M half-open connections sending 3B per direction: the hole is given up at
#             --max-ooo, so no more than `held` stays in memory
#   both      N SYNs and M half-open connections interleaved: the headline
# and prints the bound the documented limits imply:
#   base + max_flows x (bytes per tracked flow, measured from flood - flood10k)
#        + M x 2 x max_ooo
# Every run uses `wsnoop --threads N`, 1 unless --threads says (the decoders share --max-flows out; the
# reader's table of connection numbers adds to the bytes per tracked flow).
#
# Then (issue 19, unless --no-bounds), each with --threads 1 and --threads N, at 1x, 4x, 16x:
#   frag      60,000 x K lone 8-byte IP fragments at offset 65,520 (datagrams that never
#             complete): bound base + 2 x --max-frag-bytes (4 MiB; the allocator's slack)
#   heads     K connections sending a 65,000-byte request head a byte per segment: bound
#             base + K x 2 x 64 KiB (a head held per direction)
# and the global budget (--max-memory 16M; BUDGET_CASES=0 skips it): holes, deflate, uris and
# heads held by open connections, each with --threads 1 and 2, at 1x/4x/16x: bound base +
# --max-memory + 25% (+ the batches with threads); see the block below.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
BENCH_DIR=${BENCH_DIR:-${TMPDIR:-/tmp}/wsnoop-bench}
SYNS=1000000 HALF=32 OOO=1000000 BUILD=1 SEED=1 THREADS=1 BOUNDS=1
MAX_FLOWS=100000 MAX_OOO=$((1 << 20))   # wsnoop's defaults (--max-flows, --max-ooo)
while [[ $# -gt 0 ]]; do
    case $1 in
        --syns) SYNS=$2; shift 2 ;;
        --half-open) HALF=$2; shift 2 ;;
        --ooo-bytes) OOO=$2; shift 2 ;;
        --threads) THREADS=$2; shift 2 ;;
        --no-build) BUILD=0; shift ;;
        --no-bounds) BOUNDS=0; shift ;;
        *) sed -n '2,32p' "$0"; exit 2 ;;
    esac
done

[[ -x /usr/bin/time ]] || { echo "memory.sh: needs GNU time: apt-get install -y time" >&2; exit 1; }
mkdir -p "$BENCH_DIR"
cd "$ROOT"
if [[ $BUILD == 1 ]]; then
    cargo build --release --bin wsnoop --example gen_corpus --example gen_bounds
fi
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}/release
WSNOOP=${WSNOOP:-$TARGET_DIR/wsnoop}
GEN=$TARGET_DIR/examples/gen_corpus
GEN_HASH=$(sha1sum "$ROOT/benches/tools/gen_corpus.rs" | cut -c1-8)
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT

flood() { # SYNS HALF_OPEN OOO_BYTES -> path (cached)
    local f="$BENCH_DIR/flood-$1syn-$2half-$3ooo-s$SEED-$GEN_HASH.pcap"
    if [[ ! -s $f ]]; then
        "$GEN" --syn-flood "$1" --half-open "$2" --ooo-bytes "$3" --seed "$SEED" -o "$f.tmp" >&2
        mv "$f.tmp" "$f"
    fi
    echo "$f"
}

declare -A KB
measure() { # NAME FILE [wsnoop options...]
    local name=$1 file=$2
    shift 2
    # Always said: without it wsnoop would use one decoder per CPU.
    local threads=(--threads "$THREADS")
    /usr/bin/time -f '%e %M' -o "$TMP/t" "$WSNOOP" -r "$file" -q "${threads[@]}" "$@" 2> "$TMP/err"
    read -r wall kb < "$TMP/t"
    KB[$name]=$kb
    printf '%-9s %8.1f MB  %6.2f s  %-44s %s\n' "$name" "$(awk -v k="$kb" 'BEGIN {print k / 1024}')" \
        "$wall" "$(basename "$file") $*" "$(head -1 "$TMP/err" | cut -d, -f1-2)"
}

echo "== machine: nproc $(nproc), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'), load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "== wsnoop -q peak RSS (GNU time); limits: --max-flows $MAX_FLOWS, --max-ooo $MAX_OOO; --threads $THREADS"
measure base "$(flood 1 0 0)"
measure flood "$(flood "$SYNS" 0 0)"
measure flood2x "$(flood $((2 * SYNS)) 0 0)"
measure flood10k "$(flood "$SYNS" 0 0)" --max-flows 10000
measure held "$(flood 0 "$HALF" "$OOO")"
measure over "$(flood 0 "$HALF" $((3 * OOO)))"
measure both "$(flood "$SYNS" "$HALF" "$OOO")"

mb() { awk -v b="$1" 'BEGIN {printf "%.1f MB", b / 1048576}'; }
PER_FLOW=$(( (KB[flood] - KB[flood10k]) * 1024 / (MAX_FLOWS - 10000) ))
BASE=$((KB[base] * 1024))
TABLE=$((MAX_FLOWS * PER_FLOW))
HELD=$((HALF * 2 * MAX_OOO))
# With --threads, segments wait in batches between the reader and each worker: at most 11
# batches per worker (4 queued, 1 being decoded, 1 filling, 5 returned for reuse), each with
# room for 320 KiB of payload and 2048 segment records (about 240 KiB); src/parallel/mod.rs.
PIPELINE=0
[[ $THREADS -gt 1 ]] && PIPELINE=$(((THREADS - 1) * 11 * (320 + 240) * 1024))
BOUND=$((BASE + TABLE + HELD + PIPELINE))
BOTH=$((KB[both] * 1024))
echo
echo "== bound implied by the documented limits"
row() { printf '%-56s %s\n' "$1" "$2"; }
row "bytes per tracked flow ((flood - flood10k) / 90000)" "$PER_FLOW B (measured, not documented)"
row "fixed cost (base)" "$(mb $BASE)"
row "flow table: $MAX_FLOWS flows x $PER_FLOW B" "$(mb $TABLE)"
row "out of order: $HALF connections x 2 x $MAX_OOO B" "$(mb $HELD)"
[[ $THREADS -gt 1 ]] && row "batches between reader and $((THREADS - 1)) worker(s)" "$(mb $PIPELINE)"
row "bound" "$(mb $BOUND)"
verdict() { if awk "BEGIN {exit !($1)}"; then echo PASS; else echo FAIL; fi; }
echo
printf '%-58s %s  %s\n' "both (flood + half-open) peak RSS vs bound" "$(mb $BOTH) <= $(mb $BOUND)" \
    "$(verdict "$BOTH <= $BOUND")"
printf '%-58s %s  %s\n' "flood2x vs flood (no growth past --max-flows; +5% slack)" \
    "$(mb $((KB[flood2x] * 1024))) vs $(mb $((KB[flood] * 1024)))" \
    "$(verdict "${KB[flood2x]} <= ${KB[flood]} * 1.05")"
printf '%-58s %s  %s\n' "over vs held (--max-ooo caps what a hole holds; +5%)" \
    "$(mb $((KB[over] * 1024))) vs $(mb $((KB[held] * 1024)))" \
    "$(verdict "${KB[over]} <= ${KB[held]} * 1.05")"
printf '%-58s %s  %s\n' "held - base vs $HALF x 2 x --ooo-bytes ($OOO)" \
    "$(mb $(((KB[held] - KB[base]) * 1024))) vs $(mb $((HALF * 2 * OOO)))" \
    "$(verdict "(${KB[held]} - ${KB[base]}) * 1024 <= $HALF * 2 * $MAX_OOO * 1.1")"
printf '%-58s %s  %s\n' "flood peak RSS vs issue 6's 64 MB (default --max-flows)" \
    "$(mb $((KB[flood] * 1024))) vs 64.0 MB" "$(verdict "${KB[flood]} < 64 * 1024")"

# ---------------------------------------------------------------------------------------------
# Issue 19 (part A): fragment floods and byte-wise heads, with --threads 1 and --threads N.
# frag's base is the 1x flood with --max-frag-bytes 0 (every datagram dropped at once: the
# same reading, no fragment held); heads' is the 1x run, each further connection adding at
# most a head per direction. With threads, the batches between reader and workers (as above)
# are added; PASS allows 5% for the allocator, as the checks above do.
if [[ $BOUNDS == 1 ]]; then
    GEN_BOUNDS=$TARGET_DIR/examples/gen_bounds
    BOUNDS_HASH=$(sha1sum "$ROOT/benches/tools/gen_bounds.rs" | cut -c1-8)
    MAX_FRAG=$((4 << 20)) MAX_HEAD=$((64 << 10))   # --max-frag-bytes, the HTTP head limit
    bounds_capture() { # KIND N -> path (cached)
        local f="$BENCH_DIR/bounds-$1-$2-$BOUNDS_HASH.pcap"
        if [[ ! -s $f ]]; then
            "$GEN_BOUNDS" "--$1" "$2" -o "$f.tmp" >&2
            mv "$f.tmp" "$f"
        fi
        echo "$f"
    }
    bounds_kb() { # THREADS FILE [wsnoop options...] -> peak RSS in KB; wall time in $TMP/wall
        local threads=$1 file=$2
        shift 2
        /usr/bin/time -f '%e %M' -o "$TMP/t" "$WSNOOP" -r "$file" -q --threads "$threads" "$@" \
            2> "$TMP/err"
        read -r wall kb < "$TMP/t"
        echo "$wall" > "$TMP/wall"
        echo "$kb"
    }
    echo
    echo "== issue 19: peak RSS under fragment floods and byte-wise heads; --max-frag-bytes $MAX_FRAG"
    printf '%-6s %-4s %3s %8s %9s %7s %9s  %-44s %s\n' case size thr "RSS MB" "input MB" wall \
        "bound MB" "bound" verdict
    thread_counts=(1)
    [[ $THREADS != 1 ]] && thread_counts+=("$THREADS")
    for threads in "${thread_counts[@]}"; do
        batches=0
        [[ $threads -gt 1 ]] && batches=$(((threads - 1) * 11 * (320 + 240)))
        frag_base=$(bounds_kb "$threads" "$(bounds_capture frag 60000)" --max-frag-bytes 0)
        heads_base=
        for scale in 1 4 16; do
            for kind in frag heads; do
                if [[ $kind == frag ]]; then
                    file=$(bounds_capture frag $((60000 * scale)))
                    kb=$(bounds_kb "$threads" "$file")
                    bound=$((frag_base + 2 * MAX_FRAG / 1024 + batches))
                    how="base $((frag_base / 1024)) MB + 2 x --max-frag-bytes"
                else
                    file=$(bounds_capture heads "$scale")
                    kb=$(bounds_kb "$threads" "$file")
                    heads_base=${heads_base:-$kb}
                    bound=$((heads_base + (scale - 1) * 2 * MAX_HEAD / 1024 + batches))
                    how="1x + $((scale - 1)) conns x 2 x 64 KiB"
                fi
                [[ $batches -gt 0 ]] && how+=" + batches"
                printf '%-6s %-4s %3s %8.1f %9.1f %6ss %9.1f  %-44s %s\n' "$kind" "${scale}x" \
                    "$threads" "$(awk -v k="$kb" 'BEGIN {print k / 1024}')" \
                    "$(awk -v b="$(stat -c %s "$file")" 'BEGIN {print b / 1048576}')" \
                    "$(cat "$TMP/wall")" "$(awk -v k="$bound" 'BEGIN {print k / 1024}')" "$how" \
                    "$(verdict "$kb <= $bound * 1.05")"
            done
        done
    done
fi

# ---------------------------------------------------------------------------------------------
# Issue 19, the global budget (--max-memory): what connections hold, each case at 1x, 4x, 16x
# with --threads 1 and 2 (or --threads N), against --max-memory $BUDGET (16 MiB):
#   holes    1x: 32 WebSocket connections, each holding 250,000 bytes out of order behind a
#            hole that never fills (given up, longest idle first)
#   deflate  1x: 500 deflating WebSocket connections kept open (an inflater, 2^15 + 8 KiB
#            charged, each; dropped longest idle first)
#   uris     1x: 500 open WebSocket connections with 20,000-byte URIs (cut to 256 bytes)
#   openhead 1x: 250 connections holding an unfinished 30,000-byte head (ended as evicted)
# bound: base (a capture of one connection) + --max-memory + 25% (the allocator's slack, as
# tests/budget.rs allows) + the batches of each worker (as above). The stderr line says how
# many connections lost how many bytes.
if [[ ${BUDGET_CASES:-1} == 1 && $BOUNDS == 1 ]]; then
    GEN_BOUNDS=$TARGET_DIR/examples/gen_bounds
    BOUNDS_HASH=$(cat "$ROOT/benches/tools/gen_bounds.rs" "$ROOT/benches/tools/budget_caps.rs" \
        "$ROOT/benches/tools/hostile.rs" | sha1sum | cut -c1-8)
    BUDGET=$((16 << 20))
    budget_capture() { # KIND N [gen_bounds options...] -> path (cached)
        local kind=$1 n=$2
        shift 2
        local f="$BENCH_DIR/budget-$kind-$n-$BOUNDS_HASH.pcap"
        if [[ ! -s $f ]]; then
            "$GEN_BOUNDS" "--$kind" "$n" "$@" -o "$f.tmp" >&2
            mv "$f.tmp" "$f"
        fi
        echo "$f"
    }
    echo
    echo "== issue 19: peak RSS against --max-memory $BUDGET ($(mb $BUDGET))"
    printf '%-8s %-4s %3s %8s %9s %7s %9s  %s\n' case size thr "RSS MB" "input MB" wall \
        "bound MB" "verdict; what stderr said"
    budget_threads=(1 2)
    [[ $THREADS -gt 2 ]] && budget_threads=(1 "$THREADS")
    for threads in "${budget_threads[@]}"; do
        batches=0
        [[ $threads -gt 1 ]] && batches=$(((threads - 1) * 11 * (320 + 240)))
        base=$(bounds_kb "$threads" "$(budget_capture holes 1 --hole-bytes 10)")
        bound=$((base + BUDGET / 1024 * 5 / 4 + batches))
        for scale in 1 4 16; do
            for kind in holes deflate open-uris open-heads; do
                case $kind in
                    holes) file=$(budget_capture holes $((32 * scale)) --hole-bytes 250000) ;;
                    deflate) file=$(budget_capture deflate $((500 * scale))) ;;
                    open-uris) file=$(budget_capture open-uris $((500 * scale)) --uri-bytes 20000) ;;
                    open-heads) file=$(budget_capture open-heads $((250 * scale)) --head-bytes 30000) ;;
                esac
                kb=$(bounds_kb "$threads" "$file" --max-memory "$BUDGET")
                said=$(grep -o '[0-9]* connections lost [0-9]* bytes' "$TMP/err" || echo "nothing lost")
                printf '%-8s %-4s %3s %8.1f %9.1f %6ss %9.1f  %s; %s\n' "${kind#open-}" "${scale}x" \
                    "$threads" "$(awk -v k="$kb" 'BEGIN {print k / 1024}')" \
                    "$(awk -v b="$(stat -c %s "$file")" 'BEGIN {print b / 1048576}')" \
                    "$(cat "$TMP/wall")" "$(awk -v k="$bound" 'BEGIN {print k / 1024}')" \
                    "$(verdict "$kb <= $bound")" "$said"
            done
        done
    done
fi

# ---------------------------------------------------------------------------------------------
# Issue 19, part B: output under hostile input, each case at 1x, 4x and 16x input, every run
# with stdout to /dev/null (`-q` would skip what is measured) and --threads as above unless
# the case says. HOSTILE_OUTPUT=0 skips the block; its captures (benches/tools/hostile.rs,
# written by `gen_hostile`) are cached in $BENCH_DIR like the others.
#   uris     N closed connections with 60,000-byte URIs, --summary (1x: 1000; before: 63 MB)
#   onebyte  N connections that carry one byte each and stay open (1x: 25,000); past
#            --max-flows the longest-idle are evicted, so 16x costs what 4x does
#   tiny     3 connections of two-byte frames (1x: 250,000 each), --json --threads 2
output_cases() {
    if [[ $BUILD == 1 ]]; then
        cargo build --release --example gen_hostile
    fi
    local gen=$TARGET_DIR/examples/gen_hostile
    local hash
    hash=$(cat "$ROOT/benches/tools/hostile.rs" "$ROOT/benches/tools/gen_hostile.rs" | sha1sum | cut -c1-8)
    hostile() { # KIND ARGS... -> path (cached)
        local f="$BENCH_DIR/hostile-$(IFS=-; echo "$*")-$hash.pcap"
        if [[ ! -s $f ]]; then
            "$gen" "$@" "$f.tmp" >&2
            mv "$f.tmp" "$f"
        fi
        echo "$f"
    }
    declare -gA OKB
    measure_out() { # NAME FILE [wsnoop options...]
        local name=$1 file=$2
        shift 2
        local threads=(--threads "$THREADS")
        [[ " $* " == *" --threads "* ]] && threads=()
        /usr/bin/time -f '%e %M' -o "$TMP/t" "$WSNOOP" -r "$file" "${threads[@]}" "$@" > /dev/null 2> "$TMP/err"
        read -r wall kb < "$TMP/t"
        OKB[$name]=$kb
        printf '%-12s %8.1f MB  %6.2f s  %s\n' "$name" "$(awk -v k="$kb" 'BEGIN {print k / 1024}')" \
            "$wall" "$(basename "$file") $*"
    }
    echo
    echo "== issue 19 B: output under hostile input, peak RSS (GNU time); --threads $THREADS unless said"
    local x
    for x in 1 4 16; do
        measure_out "uris${x}x" "$(hostile uris $((1000 * x)) 60000)" --summary
    done
    for x in 1 4 16; do
        measure_out "onebyte${x}x" "$(hostile onebyte $((25000 * x)))"
    done
    for x in 1 4 16; do
        measure_out "tiny${x}x" "$(hostile tiny 3 $((250000 * x)))" --json --threads 2
    done
    per() { awk -v a="$1" -v b="$2" -v n="$3" 'BEGIN {printf "%.0f", (b - a) * 1024 / n}'; }
    local uri_per one_per
    uri_per=$(per "${OKB[uris1x]}" "${OKB[uris16x]}" 15000)
    one_per=$(per "${OKB[onebyte1x]}" "${OKB[onebyte4x]}" 75000)
    echo
    printf '%-66s %s  %s\n' "uris: bytes per connection ((16x - 1x) / 15000) vs 6 KiB" \
        "$uri_per B" "$(verdict "$uri_per <= 6144")"
    printf '%-66s %s\n' "  (a row: the URI cut to 256 bytes and numbers; a closed connection" ""
    printf '%-66s %s\n' "  waits in the flow table for the next sweep, every 5 s of capture)" ""
    printf '%-66s %s\n' "onebyte: bytes per tracked connection ((4x - 1x) / 75000)" "$one_per B"
    # Past the table's size, evictions leave the allocator some slack (64x: 62.9 MB against
    # 61.4 MB at 16x and 54.4 MB at 4x, one thread).
    printf '%-66s %s  %s\n' "onebyte16x vs onebyte4x (both past --max-flows $MAX_FLOWS; +25%)" \
        "$(mb $((OKB[onebyte16x] * 1024))) vs $(mb $((OKB[onebyte4x] * 1024)))" \
        "$(verdict "${OKB[onebyte16x]} <= ${OKB[onebyte4x]} * 1.25")"
    # Two decoders, each at most its 4 MiB budget plus a chunk (1 MiB and one segment's
    # output) in flight, the chunk it fills, two spare buffers; the batches as above.
    local out_bound=$(( KB[base] * 1024 + 2 * (4 + 1 + 1 + 2) * 1048576 + 11 * (320 + 240) * 1024 ))
    # Buffers keep the largest chunk they held: a few MB more as the input grows (64x:
    # 18.5 MB against 17.0 MB at 16x), all within the bound below.
    printf '%-66s %s  %s\n' "tiny16x vs tiny4x (flat: +30%)" \
        "$(mb $((OKB[tiny16x] * 1024))) vs $(mb $((OKB[tiny4x] * 1024)))" \
        "$(verdict "${OKB[tiny16x]} <= ${OKB[tiny4x]} * 1.3")"
    printf '%-66s %s  %s\n' "tiny16x vs base + 2 decoders x (budget + chunks) + batches" \
        "$(mb $((OKB[tiny16x] * 1024))) <= $(mb "$out_bound")" \
        "$(verdict "${OKB[tiny16x]} * 1024 <= $out_bound")"
}
if [[ ${HOSTILE_OUTPUT:-1} == 1 ]]; then
    output_cases
fi
