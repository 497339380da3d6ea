#!/usr/bin/env bash
# The fuzz smoke run of CI (.ci/run): every target for FUZZ_SECONDS (default 30) each; any
# finding (a crash, a failed assertion, ASan's report, a hung client) fails the run.
#
# The cargo-fuzz targets are built with the flags `cargo fuzz build` passes (release, debug
# assertions, ASan, libFuzzer's coverage), by plain cargo: a fresh machine then needs no
# `cargo install cargo-fuzz` (minutes of compiling), and stable rustc takes -Zsanitizer
# through RUSTC_BOOTSTRAP=1, so no nightly either. Seeds: make_seeds.py, from
# ../shared/conformance and the tests. Needs the project installed (pip install -e '.[test,fuzz]').
set -euo pipefail
cd "$(dirname "$0")"
secs=${FUZZ_SECONDS:-30}
triple=$(rustc -vV | sed -n 's/^host: //p')
bin="${CARGO_TARGET_DIR:-target}/$triple/release"

python make_seeds.py

echo "== fuzz: building the cargo-fuzz targets"
RUSTC_BOOTSTRAP=1 RUSTFLAGS="-Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 \
-Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table \
-Cllvm-args=-sanitizer-coverage-trace-compares --cfg fuzzing \
-Cllvm-args=-simplifycfg-branch-fold-threshold=0 -Zsanitizer=address \
-Cllvm-args=-sanitizer-coverage-stack-depth -Cdebug-assertions -Ccodegen-units=1" \
    cargo build --quiet --locked --release --config 'profile.release.debug="line-tables-only"' \
    --target "$triple" --bins

for target in request_head response_head chunked path_normalise router; do
    echo "== fuzz: $target, ${secs} s"
    mkdir -p "artifacts/$target"
    extra=()
    [ "$target" = router ] && extra=(-max_len=512)
    if ! "$bin/$target" -max_total_time="$secs" -print_final_stats=1 \
            -artifact_prefix="artifacts/$target/" "${extra[@]}" "corpus/$target" \
            > "artifacts/$target/log" 2>&1; then
        tail -60 "artifacts/$target/log"
        echo "fuzz: $target found a crash, input in fuzz/artifacts/$target/"
        exit 1
    fi
    grep -E '^#[0-9]+[[:space:]]+DONE' "artifacts/$target/log" || true
done

echo "== fuzz: the config loader (atheris), ${secs} s"
mkdir -p artifacts/config
python config_fuzz.py -max_total_time="$secs" -artifact_prefix=artifacts/config/ corpus/config \
    > artifacts/config/log 2>&1 || { tail -40 artifacts/config/log; exit 1; }
grep -E '^#[0-9]+[[:space:]]+DONE' artifacts/config/log || true

echo "== fuzz: the whole proxy under ASan, ${secs} s"
./build_asan.sh
python proxy_fuzz.py --duration "$secs"
