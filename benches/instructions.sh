#!/usr/bin/env bash
# failmail's own work per message, in instructions: repeatable where wall-clock numbers are not.
#
#   bash benches/instructions.sh            # about 2 minutes
#   MESSAGES=500 bash benches/instructions.sh
#
# Runs target/release/failmail under valgrind's callgrind (which counts the instructions the
# process executes, in user space only: the kernel's TCP work is not in them), sends MESSAGES
# messages of 1 KiB with Postfix's smtp-source on loopback, and subtracts a run that only starts
# and stops the server, so what is left is per message. Two servers as in benches/load.sh
# (failmail-sink: --no-store --limits none; failmail-scenario: journal and store on, 1,000 rules,
# OVH limits raised out of reach) and two modes (a new connection per message; 20 reused connections).
#
# Needs valgrind and smtp-source (Debian packages valgrind and postfix; postfix is never started).
set -euo pipefail

cd "$(dirname "$0")/.."

MESSAGES=${MESSAGES:-2000}
FAILMAIL=target/release/failmail
SMTP_SOURCE=/usr/sbin/smtp-source
SCENARIO_ARGS="--scenario benches/scenario_1000.toml --limits ovh --limit-account 100000000/1h --limit-ip 100000000/1h"

for tool in valgrind callgrind_annotate "$SMTP_SOURCE"; do
    command -v "$tool" >/dev/null || { echo "missing $tool: apt-get install valgrind postfix" >&2; exit 1; }
done
if [[ ${SKIP_BUILD:-0} != 1 ]]; then
    cargo build --release --quiet
fi

WORK=$(mktemp -d "${TMPDIR:-/tmp}/failmail-instructions.XXXXXX")
SERVER_PID=""
cleanup() {
    if [[ -n $SERVER_PID ]]; then
        kill "$SERVER_PID" 2>/dev/null || true
        wait "$SERVER_PID" 2>/dev/null || true
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT

# Runs the server under callgrind, sends `messages` messages with smtp-source `flags`, stops the
# server with SIGTERM, and prints the instructions the whole run took.
count() {
    local messages=$1 flags=$2
    shift 2
    local out=$WORK/callgrind.out port line
    rm -f "$out" "$WORK/ready"
    # shellcheck disable=SC2068 # the server arguments are split on purpose
    valgrind --tool=callgrind --callgrind-out-file="$out" "$FAILMAIL" \
        --smtp 127.0.0.1:0 --http 127.0.0.1:0 $@ >"$WORK/ready" 2>"$WORK/stderr" &
    SERVER_PID=$!
    for _ in $(seq 300); do
        line=$(head -n1 "$WORK/ready" 2>/dev/null || true)
        [[ $line == "failmail ready "* ]] && break
        sleep 0.1
    done
    [[ $line == "failmail ready "* ]] || { cat "$WORK/stderr" >&2; exit 1; }
    port=${line#*smtp=127.0.0.1:}
    port=${port%% *}
    if ((messages > 0)); then
        # shellcheck disable=SC2086
        "$SMTP_SOURCE" $flags -m "$messages" -l 1024 -f load-sender@load.example \
            -t load-rcpt@sink.example "127.0.0.1:$port"
    fi
    kill -TERM "$SERVER_PID"
    wait "$SERVER_PID" || true
    SERVER_PID=""
    callgrind_annotate "$out" 2>/dev/null | awk '/PROGRAM TOTALS/ { gsub(",", "", $1); print $1 }'
}

printf '%-18s %-9s %14s %14s %12s\n' server mode "run (instr)" "startup" "per message"
for server in failmail-sink failmail-scenario; do
    case $server in
        failmail-sink) args="--no-store --limits none" ;;
        failmail-scenario) args=$SCENARIO_ARGS ;;
    esac
    # shellcheck disable=SC2086
    startup=$(count 0 "" $args)
    for mode in new-conn reused; do
        case $mode in
            new-conn) flags="-s 20" ;;
            reused) flags="-d -s 20" ;;
        esac
        # shellcheck disable=SC2086
        total=$(count "$MESSAGES" "$flags" $args)
        printf '%-18s %-9s %14d %14d %12d\n' "$server" "$mode" "$total" "$startup" \
            $(((total - startup) / MESSAGES))
    done
done
