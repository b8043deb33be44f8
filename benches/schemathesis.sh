#!/usr/bin/env bash
# Fuzzes the HTTP API against its own OpenAPI document with Schemathesis (from PyPI).
#
# Builds and starts `failmail` on loopback port 0, sends a few messages over SMTP so that the
# message routes have something to return, then runs `schemathesis run --checks all` against
# http://ADDR/api/openapi.json: every response must be documented (status, content type, schema),
# no request may cause a 5xx, schema-invalid requests must be refused with a 4xx, undocumented
# methods must get 405 with an Allow header. Any failure makes the script exit non-zero.
#
# Bounded: at most SCHEMATHESIS_MAX_EXAMPLES cases per operation (default 50) and at most
# SCHEMATHESIS_TIMEOUT seconds for the run (default 300); the whole script takes a minute or two
# once the build is done. Reproducible: SCHEMATHESIS_SEED (default 1).
#
# Usage: benches/schemathesis.sh        (from anywhere; needs python3 with venv, and cargo)
# Set SCHEMATHESIS_VENV=DIR to reuse a virtualenv between runs instead of a fresh one.
set -euo pipefail

cd "$(dirname "$0")/.."

max_examples="${SCHEMATHESIS_MAX_EXAMPLES:-50}"
run_timeout="${SCHEMATHESIS_TIMEOUT:-300}"
seed="${SCHEMATHESIS_SEED:-1}"

work="$(mktemp -d "${TMPDIR:-/tmp}/failmail-schemathesis.XXXXXX")"
server_pid=""

cleanup() {
    local status=$?
    if [ -n "$server_pid" ] && kill -0 "$server_pid" 2>/dev/null; then
        kill -TERM "$server_pid" 2>/dev/null || true
        for _ in $(seq 50); do
            kill -0 "$server_pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$server_pid" 2>/dev/null || true
        wait "$server_pid" 2>/dev/null || true
    fi
    if [ "$status" -ne 0 ] && [ -s "$work/server.err" ]; then
        echo "-- failmail stderr (last 40 lines):"
        tail -n 40 "$work/server.err"
    fi
    rm -rf "$work"
    exit "$status"
}
trap cleanup EXIT

echo "== schemathesis: install"
venv="${SCHEMATHESIS_VENV:-$work/venv}"
if [ ! -x "$venv/bin/schemathesis" ]; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check "schemathesis>=4.32,<5"
fi
"$venv/bin/schemathesis" --version

echo "== build"
locked=()
if [ -f Cargo.lock ] && [ "${CI:-}" = "true" ]; then
    locked=(--locked)
fi
cargo build --bin failmail "${locked[@]}"
binary="${CARGO_TARGET_DIR:-target}/debug/failmail"

echo "== start failmail"
"$binary" --smtp 127.0.0.1:0 --http 127.0.0.1:0 --shutdown-grace 1 \
    >"$work/server.out" 2>"$work/server.err" &
server_pid=$!
ready=""
for _ in $(seq 300); do
    ready="$(grep -m1 '^failmail ready ' "$work/server.out" || true)"
    [ -n "$ready" ] && break
    if ! kill -0 "$server_pid" 2>/dev/null; then
        echo "failmail exited before it was ready" >&2
        exit 1
    fi
    sleep 0.1
done
if [ -z "$ready" ]; then
    echo "failmail printed no ready line within 30 s" >&2
    exit 1
fi
echo "$ready"
http="$(sed -n 's/.* http=\([^ ]*\).*/\1/p' <<<"$ready")"
smtp="$(sed -n 's/.* smtp=\([^ ]*\).*/\1/p' <<<"$ready")"
if [ -z "$http" ] || [ -z "$smtp" ]; then
    echo "cannot read the addresses from the ready line" >&2
    exit 1
fi

echo "== seed: three messages over SMTP"
python3 - "$smtp" <<'PY'
import smtplib
import sys

host, port = sys.argv[1].rsplit(":", 1)
with smtplib.SMTP(host, int(port), timeout=10) as client:
    for n in range(3):
        client.sendmail(
            "sender@example.com",
            ["rcpt@example.net"],
            f"Subject: seed {n}\r\n\r\nbody {n}\r\n",
        )
PY

# Runs schemathesis with config file $1 and the remaining arguments; fails the script on any
# failure or when it does not finish in time.
run_schemathesis() {
    local config="$1"
    shift
    local status=0
    (
        cd "$work"
        timeout --kill-after=10 "$run_timeout" \
            "$venv/bin/schemathesis" --config-file "$config" --no-color \
            run "http://$http/api/openapi.json" \
            --checks all \
            --max-examples "$max_examples" \
            --seed "$seed" \
            --request-timeout 10 \
            --generation-database none \
            "$@"
    ) || status=$?
    if [ "$status" -eq 124 ] || [ "$status" -eq 137 ]; then
        echo "schemathesis did not finish within $run_timeout s" >&2
        exit 1
    fi
    if [ "$status" -ne 0 ]; then
        echo "schemathesis found failures (exit $status)" >&2
        exit "$status"
    fi
}

# Pass 1: the message reads, with the id of a seeded message, so that the 200 answers (envelope
# JSON, raw message/rfc822) are checked too, before pass 2 deletes messages.
cat >"$work/messages.toml" <<'TOML'
[parameters]
"path.id" = 1
TOML
echo "== schemathesis run 1: GET /api/messages/{id}[/raw] with a known id"
run_schemathesis "$work/messages.toml" --include-path-regex '^/api/messages/'

# Pass 2: every route (but the endless event and counter streams, which tests/api_streams.rs covers: a
# request to them never completes). The body of PUT /api/scenario is any string by schema, but only a valid
# scenario is accepted: a schema-valid string that is not a scenario is answered 400 with its
# line and column, as documented, so 400 counts as an expected answer to valid data there.
cat >"$work/all.toml" <<'TOML'
[[operations]]
include-path = "/api/scenario"
include-method = "PUT"
checks.positive_data_acceptance.expected-statuses = [200, 400]
TOML
echo "== schemathesis run 2: every route (max $max_examples examples per operation, seed $seed)"
run_schemathesis "$work/all.toml" --exclude-path /api/events/stream --exclude-path /api/counters/stream

echo "== failmail still healthy"
if ! kill -0 "$server_pid" 2>/dev/null; then
    echo "failmail died during the run" >&2
    exit 1
fi
if grep -q 'panicked' "$work/server.err"; then
    echo "failmail panicked during the run:" >&2
    grep -A5 'panicked' "$work/server.err" >&2
    exit 1
fi
python3 - "$http" <<'PY'
import sys
import urllib.request

with urllib.request.urlopen(f"http://{sys.argv[1]}/healthz", timeout=10) as response:
    assert response.status == 200 and response.read() == b"ok tls=off\n", "healthz"
PY
echo "schemathesis: no failures"
