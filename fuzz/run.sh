#!/usr/bin/env bash
# Builds every fuzz target and runs each for FUZZ_SECONDS (default 60) seconds, starting from the
# committed seeds (fuzz/corpus/<target>/ and fuzz/regressions/<target>/) copied to a scratch
# directory, so the repository's corpus is never grown. Prints one line per target (executions,
# coverage) and exits non-zero if any target crashed; a crashing input is kept under
# fuzz/artifacts/<target>/ for `cargo fuzz tmin`.
#
# Needs cargo-fuzz. The toolchain may be stable: RUSTC_BOOTSTRAP=1 lets it take libFuzzer's -Z
# flags. Targets are built without a sanitizer (FUZZ_SANITIZER to change it): the crate is safe
# Rust, so a sanitizer would only halve the executions per second.
set -euo pipefail

cd "$(dirname "$0")"

seconds=${FUZZ_SECONDS:-60}
sanitizer=${FUZZ_SANITIZER:-none}
export RUSTC_BOOTSTRAP=1

mapfile -t targets < <(cargo fuzz list)
echo "== fuzz: building ${targets[*]}"
cargo fuzz build --sanitizer "$sanitizer"

scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT

# Scenario files are longer than protocol inputs; every seed must fit unshortened.
max_len() {
    case $1 in
        scenario_loader) echo 16384 ;;
        *) echo 4096 ;;
    esac
}

# Keywords that guide mutation towards meaningful input (libFuzzer -dict).
dict() {
    case $1 in
        scenario_loader) echo dicts/scenario_loader.dict ;;
        *) echo dicts/smtp.dict ;;
    esac
}

failed=()
summary=()
for target in "${targets[@]}"; do
    corpus="$scratch/$target"
    mkdir -p "$corpus" "artifacts/$target"
    for kind in corpus regressions; do
        if [ -d "$kind/$target" ]; then
            for seed in "$kind/$target"/*; do
                if [ -f "$seed" ]; then
                    cp -- "$seed" "$corpus/$kind-$(basename "$seed")"
                fi
            done
        fi
    done
    log="$scratch/$target.log"
    echo "== fuzz: $target for ${seconds}s from $(find "$corpus" -type f | wc -l) seeds"
    status=ok
    if ! cargo fuzz run --sanitizer "$sanitizer" "$target" "$corpus" -- \
        -max_total_time="$seconds" -max_len="$(max_len "$target")" -dict="$(dict "$target")" -timeout=10 \
        -print_final_stats=1 -artifact_prefix="artifacts/$target/" >"$log" 2>&1; then
        status=CRASH
        failed+=("$target")
        tail -n 60 "$log"
    fi
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
    cov=$(grep -o 'cov: [0-9]*' "$log" | tail -n 1 | cut -d' ' -f2)
    features=$(grep -o 'ft: [0-9]*' "$log" | tail -n 1 | cut -d' ' -f2)
    line=$(printf '%-16s %-5s executions=%s coverage=%s features=%s corpus=%s' \
        "$target" "$status" "${runs:-?}" "${cov:-?}" "${features:-?}" \
        "$(find "$corpus" -type f | wc -l)")
    summary+=("$line")
    echo "$line"
done

echo "== fuzz summary (${seconds}s each)"
printf '%s\n' "${summary[@]}"
if [ ${#failed[@]} -gt 0 ]; then
    echo "fuzz: crashes in ${failed[*]}; inputs are under fuzz/artifacts/" >&2
    exit 1
fi
