#!/usr/bin/env bash
# Runs wsnoop's cargo-fuzz targets (see fuzz/README.md).
#
#   fuzz/run.sh [SECONDS] [TARGET...]     each TARGET for SECONDS (default 300), one after the
#                                         other; default targets: all four
#   fuzz/run.sh --check                   only check that the targets compile (stable is enough)
#
# Targets: frame_decoder, handshake, pipeline, pcap_file (fuzz/harness.rs says what each does).
# Needs the nightly toolchain and cargo-fuzz:
#   rustup toolchain install nightly && cargo install cargo-fuzz
# The corpora (fuzz/corpus/TARGET, git-ignored) are seeded from the repository's captures by
# fuzz/make_seeds.py on the first run and grow as the fuzzer finds new coverage. A crash is
# written to fuzz/artifacts/TARGET/; keep it as a regression with
#   cp fuzz/artifacts/TARGET/crash-* fuzz/regressions/TARGET/
# and tests/hostile.rs replays it on every `cargo test` (stable, no libFuzzer).
# Each target runs on one core; FUZZ_JOBS=N runs N processes of it (logs in fuzz-N.log).
# FUZZ_MAX_LEN=N overrides the largest input (default: 8 KiB handshake, 16 KiB frame_decoder,
# 64 KiB pipeline and pcap_file; smaller inputs run faster).
set -euo pipefail

cd "$(dirname "$0")"
ALL=(frame_decoder handshake pipeline pcap_file)

if [[ ${1:-} == --check ]]; then
    exec cargo check --bins
fi

SECS=300
if [[ ${1:-} =~ ^[0-9]+$ ]]; then
    SECS=$1
    shift
fi
TARGETS=("$@")
[[ ${#TARGETS[@]} -gt 0 ]] || TARGETS=("${ALL[@]}")

if ! cargo +nightly --version >/dev/null 2>&1; then
    echo "run.sh: the nightly toolchain is needed: rustup toolchain install nightly" >&2
    exit 2
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "run.sh: cargo-fuzz is needed: cargo install cargo-fuzz" >&2
    exit 2
fi

for t in "${TARGETS[@]}"; do
    if [[ ! -d corpus/$t ]] || [[ -z $(ls -A "corpus/$t" 2>/dev/null) ]]; then
        python3 make_seeds.py corpus
        break
    fi
done

max_len() {
    case $1 in
        handshake) echo 8192 ;;
        frame_decoder) echo 16384 ;;
        *) echo 65536 ;;
    esac
}

parallel=()
if [[ ${FUZZ_JOBS:-1} -gt 1 ]]; then
    parallel=(-jobs="$FUZZ_JOBS" -workers="$FUZZ_JOBS")
fi

status=0
for t in "${TARGETS[@]}"; do
    mkdir -p "corpus/$t" "artifacts/$t"
    echo "== $t for ${SECS}s"
    # -rss_limit_mb: wsnoop's memory is bounded by design; a leak or a length-sized allocation
    # past 2 GB is a bug. -timeout: a single input taking 10 s is a hang.
    if ! cargo +nightly fuzz run "$t" "corpus/$t" -- \
        -max_total_time="$SECS" -max_len="${FUZZ_MAX_LEN:-$(max_len "$t")}" -timeout=10 -rss_limit_mb=2048 \
        "${parallel[@]}" -print_final_stats=1 \
        -artifact_prefix="artifacts/$t/"; then
        status=1
        echo "== $t: a crash, in fuzz/artifacts/$t/ (cargo fuzz fmt $t FILE shows it)" >&2
    fi
done
exit $status
