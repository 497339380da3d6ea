#!/usr/bin/env bash
# Builds the native extension (Rust crates + the Cython protocol) with AddressSanitizer into
# fuzz/asan/site/, a package tree proxy_fuzz.py runs the gateway from (PYTHONPATH), leaving the
# normal build alone. The Python process gets clang's ASan runtime by LD_PRELOAD (see
# asan_env in proxy_fuzz.py), so every bad copy is reported where it happens.
#   Rust: -Zsanitizer=address (a nightly flag; RUSTC_BOOTSTRAP=1 lets stable take it), with an
#         explicit --target so build scripts and proc-macros are not instrumented.
#   C (Cython): CFLAGS=-fsanitize=address (gcc's instrumentation calls the same __asan_* ABI).
# Needs: maturin (the project's build backend), Cython, libclang-rt-14-dev.
set -euo pipefail
cd "$(dirname "$0")/.."
out=fuzz/asan
target=$(rustc -vV | sed -n 's/^host: //p')
export RUSTC_BOOTSTRAP=1
export RUSTFLAGS="-Zsanitizer=address -Cforce-frame-pointers=yes -Cdebuginfo=1"
export CFLAGS="-fsanitize=address -fno-omit-frame-pointer -g -O1"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}/asan"
python -m maturin build --profile dev --target "$target" --interpreter "$(command -v python)" \
    --out "$out/wheel" --quiet
rm -rf "$out/site"
mkdir -p "$out/site"
python -m zipfile -e "$(ls -t "$out"/wheel/*.whl | head -1)" "$out/site"
echo "build_asan: $out/site"
