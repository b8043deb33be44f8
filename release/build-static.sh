#!/usr/bin/env bash
# Builds failmail as one statically linked release binary: dist/failmail-x86_64-unknown-linux-gnu.
#
# glibc with crt-static (musl would need a target the toolchain may not have): the binary needs
# no shared library, so it runs on any x86_64 Linux and alone in a `FROM scratch` image
# (Containerfile). Host names (a --state redis://HOST) resolve through glibc's built-in DNS and
# /etc/hosts support, which needs no NSS module.
#
# Usage: release/build-static.sh     (from anywhere; prints the binary's path on its last line)
# The build goes to target/x86_64-unknown-linux-gnu/ (under $CARGO_TARGET_DIR when it is set),
# apart from the usual target/release, so that it does not invalidate the everyday build.
set -euo pipefail

cd "$(dirname "$0")/.."

target=x86_64-unknown-linux-gnu
locked=()
if [ -f Cargo.lock ]; then
    locked=(--locked)
fi

# RUSTFLAGS for this target only: build scripts and proc macros (host) stay dynamic.
CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_RUSTFLAGS="-C target-feature=+crt-static" \
    cargo build --release --bin failmail --target "$target" "${locked[@]}"

mkdir -p dist
out="dist/failmail-$target"
cp "${CARGO_TARGET_DIR:-target}/$target/release/failmail" "$out"
strip "$out" 2>/dev/null || true

# Proof that it is static: the dynamic loader finds nothing to load, and it runs.
if ldd "$out" 2>&1 | grep -q '=>'; then
    echo "release/build-static.sh: $out is dynamically linked:" >&2
    ldd "$out" >&2
    exit 1
fi
"$out" --version >/dev/null
ls -l "$out" >&2
echo "$out"
