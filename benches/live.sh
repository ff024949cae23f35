#!/usr/bin/env bash
# Issue 18, live: wsnoop's CPU and kernel drops against tcpdump's, capturing the same traffic at
# the same packet rate and kernel buffer (benches/README.md). Needs root, tcpreplay, tcpdump.
#
#   benches/live.sh [--pps N] [--packets N] [--buffer KiB] [--rounds R] [--threads N] [--no-build]
#
# In a private network namespace, a veth pair (MTU 9000, offloads off); tcpreplay sends a
# bench capture (gen_corpus: 500 WebSocket connections, 20% deflate, enough of it for
# --packets) out of one end at --pps (150000) packets per second, and the capture runs on the
# other end: in turn, R rounds (3) of `tcpdump -i B -B KiB -w /dev/null` and of
# `wsnoop -i B -B KiB -q` (the same --buffer, default 32768, both libpcap, TPACKET_V3). Each
# round prints the sender's achieved rate, the capture's CPU seconds (user + sys, GNU time) and
# the drops it reports; then the medians and wsnoop's CPU over tcpdump's (target: at most 2x,
# and no drops where tcpdump has none).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
BENCH_DIR=${BENCH_DIR:-${TMPDIR:-/tmp}/wsnoop-bench}
PPS=150000 PACKETS=1500000 BUFFER=32768 ROUNDS=3 THREADS="" BUILD=1
while [[ $# -gt 0 ]]; do
    case $1 in
        --pps) PPS=$2; shift 2 ;;
        --packets) PACKETS=$2; shift 2 ;;
        --buffer) BUFFER=$2; shift 2 ;;
        --rounds) ROUNDS=$2; shift 2 ;;
        --threads) THREADS=$2; shift 2 ;;
        --no-build) BUILD=0; shift ;;
        *) sed -n '2,15p' "$0"; exit 2 ;;
    esac
done
[[ $(id -u) == 0 ]] || { echo "live.sh: needs root (a network namespace)" >&2; exit 1; }
for t in tcpreplay tcpdump ip ethtool /usr/bin/time; do
    command -v "$t" >/dev/null || { echo "live.sh: needs $t: apt-get install -y tcpreplay tcpdump iproute2 ethtool time" >&2; exit 1; }
done
mkdir -p "$BENCH_DIR"
cd "$ROOT"
if [[ $BUILD == 1 ]]; then
    cargo build --release --bin wsnoop --example gen_corpus
fi
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}/release
WSNOOP=${WSNOOP:-$TARGET_DIR/wsnoop}
GEN=$TARGET_DIR/examples/gen_corpus
GEN_HASH=$(sha1sum "$ROOT/benches/tools/gen_corpus.rs" | cut -c1-8)
# About 820 bytes a packet in this corpus: size it for --packets.
SIZE=$(( PACKETS * 830 / 1000000 + 1 ))
CAP="$BENCH_DIR/live-${SIZE}M-500c-d20-s1-$GEN_HASH.pcap"
if [[ ! -s $CAP ]]; then
    "$GEN" --size "$SIZE" --connections 500 --deflate 20 --seed 1 -o "$CAP.tmp" >&2
    mv "$CAP.tmp" "$CAP"
fi

NS=wsnoop-live-bench
TMP=$(mktemp -d)
cleanup() { ip netns del "$NS" 2>/dev/null || true; rm -rf "$TMP"; }
trap cleanup EXIT
ip netns del "$NS" 2>/dev/null || true
ip netns add "$NS"
IN="ip netns exec $NS"
$IN ip link add veth-a type veth peer name veth-b
for d in veth-a veth-b; do
    $IN ip link set "$d" mtu 9000 up
    $IN ethtool -K "$d" tso off gso off gro off tx off rx off >/dev/null 2>&1 || true
done
$IN ip link set lo up

# one NAME CMD...: runs the capture, replays into it, stops it; prints "pps cpu_s drops"
one() {
    local name=$1; shift
    /usr/bin/time -f '%U %S' -o "$TMP/$name.time" $IN "$@" >"$TMP/$name.out" 2>"$TMP/$name.err" &
    local pid=$!
    sleep 1.5   # the capture is open and its buffer mapped before the first packet
    $IN tcpreplay -i veth-a --pps="$PPS" -L "$PACKETS" "$CAP" >"$TMP/replay.out" 2>&1 || true
    sleep 0.5
    # The capture, not time(1) nor ip(8), gets the signal.
    pkill -INT -f "^$1 .*-i veth-b" || true
    wait "$pid" || true
    local rate cpu drops
    rate=$(awk '/Rated:/ { for (i = 1; i <= NF; i++) if ($i ~ /pps/) print $(i - 1) }' "$TMP/replay.out" | head -1)
    cpu=$(awk '{ printf "%.3f", $1 + $2 }' "$TMP/$name.time")
    drops=$(grep -ho '[0-9]* packets dropped by kernel' "$TMP/$name.err" "$TMP/$name.out" | awk '{ print $1 }' | head -1)
    echo "${rate:-?} $cpu ${drops:-?}"
}

declare -a TD_CPU=() WS_CPU=() TD_DROPS=() WS_DROPS=()
THREADS_ARG=()
[[ -n $THREADS ]] && THREADS_ARG=(--threads "$THREADS")
echo "replaying $PACKETS packets of $(basename "$CAP") at $PPS pps, -B $BUFFER, $ROUNDS rounds ($(nproc) CPUs, load $(cut -d' ' -f1 /proc/loadavg))"
printf '%-6s %-8s %12s %8s %8s\n' round capture sent_pps cpu_s drops
for ((r = 1; r <= ROUNDS; r++)); do
    read -r rate cpu drops < <(one tcpdump tcpdump -i veth-b -B "$BUFFER" -s 262144 -w /dev/null)
    printf '%-6s %-8s %12s %8s %8s\n' "$r" tcpdump "$rate" "$cpu" "$drops"
    TD_CPU+=("$cpu"); TD_DROPS+=("$drops")
    read -r rate cpu drops < <(one wsnoop "$WSNOOP" -i veth-b -B "$BUFFER" -q "${THREADS_ARG[@]}")
    printf '%-6s %-8s %12s %8s %8s\n' "$r" wsnoop "$rate" "$cpu" "$drops"
    WS_CPU+=("$cpu"); WS_DROPS+=("$drops")
done
median() { printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
TD=$(median "${TD_CPU[@]}") WS=$(median "${WS_CPU[@]}")
awk -v t="$TD" -v w="$WS" 'BEGIN { printf "CPU, median of rounds: tcpdump %.3f s, wsnoop %.3f s: %.2fx (target <= 2x)\n", t, w, w / t }'
echo "drops: tcpdump ${TD_DROPS[*]}, wsnoop ${WS_DROPS[*]} (target: none where tcpdump has none)"
echo "wsnoop's last summary:"; sed 's/^/  /' "$TMP/wsnoop.err" | tail -4
