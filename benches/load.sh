#!/usr/bin/env bash
# "Faster than smtp-sink": failmail must never be the bottleneck of a load test.
#
#   bash benches/load.sh            # everything, about 15 minutes on 2 cores
#   REPEAT=1 MSGS_1K=5000 MSGS_100K=500 bash benches/load.sh   # a quick look
#   SERVERS="failmail-scenario failmail-streamed" MODES="new-conn-1KiB reused-1KiB" \
#       SKIP_BENCHES=1 bash benches/load.sh                  # the cost of an open web page
#
# One run, loopback only, drives each server with the same external load generator, Postfix's
# smtp-source (Debian package postfix; postfix itself is never started), and prints:
#   1. a table: server, mode, messages/s (median of REPEAT runs), errors, peak RSS, the CPU the
#      server and the generator used, and failmail's ratio to smtp-sink and to aiosmtpd;
#   2. benches/idle_connections.rs: server RSS growth per idle connection (10,000 connections);
#   3. benches/latency.rs: p50/p99/max reply latency with 1,000 concurrent senders, first in a
#      closed loop (each sender sends its next command as soon as it has the reply: the server is
#      saturated, and the mean latency is senders ÷ replies/s by Little's law), then paced at one
#      message per sender every LAT_INTERVAL_MS ms (a fixed offered load below saturation).
#
# Servers (each started fresh for every mode, so its peak RSS is that mode's; runs interleaved
# round by round, so that the machine's noisy stretches fall on every server alike):
#   failmail-sink      target/release/failmail --smtp 127.0.0.1:0 --http 127.0.0.1:0 --no-store
#                      --limits none (the defaults would apply OVHcloud's limits)
#   failmail-scenario  the same without --no-store (journal, message store and attempt history
#                      on) with --scenario benches/scenario_1000.toml (1,000 rules that never
#                      match the load) --limits ovh --limit-account 100000000/1h --limit-ip
#                      100000000/1h
#   failmail-scenario-no-attempts  failmail-scenario with --no-attempts: the pair measures what
#                      the attempt history (behind the retry report) costs; the goal is at most
#                      10% of messages/s and of msgs/server CPU-s (printed after the table)
#   failmail-streamed  failmail-scenario with the web page's two live streams read while the load
#                      runs, as an open page would read them (not in SERVERS by default):
#                      curl -sN "http://HTTP/api/events/stream?since=0&brief=true" (the list
#                      of sessions; a transcript is read only when a session is opened) and
#                      /api/counters/stream.
#                      curl reads as fast as it can, so every event is sent: the most an open page
#                      can cost. The table then adds failmail-streamed ÷ failmail-scenario per mode
#                      (the web page's goal: at least 0.95). Needs curl.
#   smtp-sink          /usr/sbin/smtp-sink -u nobody 127.0.0.1:PORT 1000   (1000 = listen backlog)
#   aiosmtpd           /usr/bin/python3 -m aiosmtpd -n -l 127.0.0.1:PORT -c aiosmtpd.handlers.Sink
# Modes (smtp-source(1): "-d  Don't disconnect after sending a message; send the next message
# over the same connection"):
#   new-conn  1KiB     smtp-source -s 20 -m MSGS_1K   -l 1024     one connection per message
#   reused    1KiB     smtp-source -d -s 20 -m MSGS_1K -l 1024    20 connections, reused
#   new-conn  100KiB   smtp-source -s 20 -m MSGS_100K -l 102400
#   reused    100KiB   smtp-source -d -s 20 -m MSGS_100K -l 102400
#
# Columns: messages/s = messages ÷ wall time of smtp-source (date +%s.%N around it); errors =
# smtp-source's stderr lines plus 1 per non-zero exit, summed over the runs; peak RSS = the
# server's VmHWM after the mode's last run; server CPU / smtp-source CPU = CPU seconds ÷ wall
# seconds (100% = one core busy), median over the runs — a generator near 100% means the
# generator, not the server, set the pace (smtp-source is one single-threaded process);
# msgs/server CPU-s = messages ÷ the server's CPU seconds (efficiency, whatever set the pace).
#
# PIN=1 runs each server on CPU 0 (with the streams' readers: what they cost counts against
# the server) and smtp-source on CPU 1 (taskset(1)), so that where the scheduler puts them is
# the same for every run and every server (unpinned, the two share both CPUs as it pleases).
#
# FRESH=1 starts the servers afresh for every round, in that round's order (which rotates),
# rather than once per mode: a server started second was seen to run some 5% faster than one
# started first (new connections, 100 KiB, pinned), whichever it was; rounds then have both.
#
# Settings (environment): REPEAT (5), SESSIONS (20), MSGS_1K (20000), MSGS_100K (2000),
# SERVERS, MODES (subsets of the names above, space separated), IDLE_CONNECTIONS (10000),
# LAT_SENDERS (1000), LAT_MESSAGES (20), LAT_INTERVAL_MS ("200 100": one paced run each),
# RUN_TIMEOUT (120 s per smtp-source run),
# SKIP_BUILD=1 (use the binaries as they are), SKIP_BENCHES=1 (only the table),
# LOAD_RESULTS=FILE (keep the raw per-run results, TSV, in FILE).
set -euo pipefail

cd "$(dirname "$0")/.."

REPEAT=${REPEAT:-5}
SESSIONS=${SESSIONS:-20}
MSGS_1K=${MSGS_1K:-20000}
MSGS_100K=${MSGS_100K:-2000}
SERVERS=${SERVERS:-failmail-sink failmail-scenario failmail-scenario-no-attempts smtp-sink aiosmtpd}
MODES=${MODES:-new-conn-1KiB reused-1KiB new-conn-100KiB reused-100KiB}
IDLE_CONNECTIONS=${IDLE_CONNECTIONS:-10000}
LAT_SENDERS=${LAT_SENDERS:-1000}
LAT_MESSAGES=${LAT_MESSAGES:-20}
LAT_INTERVAL_MS=${LAT_INTERVAL_MS:-200 100}
RUN_TIMEOUT=${RUN_TIMEOUT:-120}
SKIP_BUILD=${SKIP_BUILD:-0}
SKIP_BENCHES=${SKIP_BENCHES:-0}
PIN=${PIN:-0}
FRESH=${FRESH:-0}
SERVER_CPU=()
SOURCE_CPU=()
if [[ $PIN == 1 ]]; then
    (($(nproc) >= 2)) || { echo "PIN=1 needs 2 CPUs" >&2; exit 1; }
    command -v taskset >/dev/null || { echo "PIN=1 needs taskset (util-linux)" >&2; exit 1; }
    SERVER_CPU=(taskset -c 0)
    SOURCE_CPU=(taskset -c 1)
fi

FAILMAIL=target/release/failmail
SCENARIO=benches/scenario_1000.toml
SMTP_SOURCE=/usr/sbin/smtp-source
SMTP_SINK=/usr/sbin/smtp-sink
PYTHON=/usr/bin/python3
SENDER=load-sender@load.example
RECIPIENT=load-rcpt@sink.example
HELO=load.example

for tool in "$SMTP_SOURCE" "$SMTP_SINK"; do
    [[ -x $tool ]] || { echo "missing $tool: apt-get install postfix (postfix itself need not run)" >&2; exit 1; }
done
"$PYTHON" -c 'import aiosmtpd' 2>/dev/null \
    || { echo "missing aiosmtpd for $PYTHON: apt-get install python3-aiosmtpd" >&2; exit 1; }

# 10,000 idle connections need 10,000 descriptors in the client and as many in the server.
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" || true

WORK=$(mktemp -d "${TMPDIR:-/tmp}/failmail-load.XXXXXX")
RESULTS=$WORK/results.tsv
: >"$RESULTS"
SERVER_PID=""
PORT=""
HTTP_ADDR=""
# Every server of the mode being measured: they run side by side, idle but for their turn.
declare -A PIDS=() PORTS=() STREAMERS=()

stop_server() {
    if [[ -n $SERVER_PID ]] && kill -0 "$SERVER_PID" 2>/dev/null; then
        kill "$SERVER_PID" 2>/dev/null || true
        for _ in $(seq 50); do
            kill -0 "$SERVER_PID" 2>/dev/null || break
            sleep 0.1
        done
        kill -9 "$SERVER_PID" 2>/dev/null || true
        wait "$SERVER_PID" 2>/dev/null || true
    fi
    SERVER_PID=""
}

stop_streamers() {
    local name=$1 pid
    for pid in ${STREAMERS[$name]:-}; do
        kill "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    unset "STREAMERS[$name]"
}

cleanup() {
    for name in "${!STREAMERS[@]}"; do
        stop_streamers "$name"
    done
    stop_server
    for name in "${!PIDS[@]}"; do
        SERVER_PID=${PIDS[$name]}
        stop_server
    done
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() {
    "$PYTHON" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

wait_port() {
    local port=$1
    for _ in $(seq 100); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            return 0
        fi
        kill -0 "$SERVER_PID" 2>/dev/null || { echo "server exited before listening" >&2; return 1; }
        sleep 0.1
    done
    echo "nothing listens on 127.0.0.1:$port after 10 s" >&2
    return 1
}

# Waits for failmail's ready line and sets PORT from its smtp= address.
wait_failmail() {
    local out=$1 line
    for _ in $(seq 100); do
        line=$(head -n1 "$out" 2>/dev/null || true)
        if [[ $line == "failmail ready "* ]]; then
            PORT=${line#*smtp=127.0.0.1:}
            PORT=${PORT%% *}
            HTTP_ADDR=${line#*http=}
            HTTP_ADDR=${HTTP_ADDR%% *}
            return 0
        fi
        kill -0 "$SERVER_PID" 2>/dev/null || { cat "${out%.out}.err" >&2; return 1; }
        sleep 0.1
    done
    echo "failmail printed no ready line in 10 s" >&2
    return 1
}

server_command() {
    case $1 in
        failmail-sink)
            echo "$FAILMAIL --smtp 127.0.0.1:0 --http 127.0.0.1:0 --no-store --limits none" ;;
        failmail-scenario|failmail-streamed)
            echo "$FAILMAIL --smtp 127.0.0.1:0 --http 127.0.0.1:0 --scenario $SCENARIO --limits ovh --limit-account 100000000/1h --limit-ip 100000000/1h" ;;
        failmail-scenario-no-attempts)
            echo "$(server_command failmail-scenario) --no-attempts" ;;
        smtp-sink)
            echo "$SMTP_SINK -u nobody 127.0.0.1:PORT 1000" ;;
        aiosmtpd)
            echo "$PYTHON -m aiosmtpd -n -l 127.0.0.1:PORT -c aiosmtpd.handlers.Sink" ;;
        *)
            echo "unknown server $1" >&2; return 1 ;;
    esac
}

start_server() {
    local name=$1 command
    command=$(server_command "$name")
    case $name in
        failmail-*)
            # shellcheck disable=SC2086 # the command is split on purpose
            "${SERVER_CPU[@]}" $command >"$WORK/$name.out" 2>"$WORK/$name.err" &
            SERVER_PID=$!
            wait_failmail "$WORK/$name.out"
            if [[ $name == failmail-streamed ]]; then
                # The web page's two streams, read to the end of the run.
                "${SERVER_CPU[@]}" curl -sN "http://$HTTP_ADDR/api/events/stream?since=0&brief=true" \
                    >/dev/null 2>&1 &
                STREAMERS[$name]=$!
                "${SERVER_CPU[@]}" curl -sN "http://$HTTP_ADDR/api/counters/stream" >/dev/null 2>&1 &
                STREAMERS[$name]+=" $!"
            fi
            ;;
        *)
            PORT=$(free_port)
            # shellcheck disable=SC2086
            "${SERVER_CPU[@]}" ${command//PORT/$PORT} >"$WORK/$name.out" 2>"$WORK/$name.err" &
            SERVER_PID=$!
            wait_port "$PORT"
            ;;
    esac
}

# The server's CPU time (user + system) in clock ticks.
server_ticks() {
    local stat
    stat=$(<"/proc/$SERVER_PID/stat")
    stat=${stat##*) }
    # shellcheck disable=SC2086
    set -- $stat
    echo $(( ${12} + ${13} ))
}

hwm_kib() {
    awk '/^VmHWM:/ { print $2 }' "/proc/$SERVER_PID/status"
}

mode_flags() {
    case $1 in
        new-conn-1KiB)    echo "-s $SESSIONS -m $MSGS_1K -l 1024" ;;
        reused-1KiB)      echo "-d -s $SESSIONS -m $MSGS_1K -l 1024" ;;
        new-conn-100KiB)  echo "-s $SESSIONS -m $MSGS_100K -l 102400" ;;
        reused-100KiB)    echo "-d -s $SESSIONS -m $MSGS_100K -l 102400" ;;
        *) echo "unknown mode $1" >&2; return 1 ;;
    esac
}

mode_messages() {
    case $1 in
        *-1KiB) echo "$MSGS_1K" ;;
        *-100KiB) echo "$MSGS_100K" ;;
    esac
}

source_command() {
    echo "$SMTP_SOURCE $(mode_flags "$1") -f $SENDER -t $RECIPIENT -M $HELO 127.0.0.1:PORT"
}

# One smtp-source run against the running server; appends a line to $RESULTS.
run_once() {
    local server=$1 mode=$2 last=$3 command rc=0 start end ticks0 ticks1 errors seconds rss
    command=$(source_command "$mode")
    command=${command//PORT/$PORT}
    ticks0=$(server_ticks)
    local TIMEFORMAT='%U %S'
    start=$(date +%s.%N)
    # shellcheck disable=SC2086
    { time timeout "$RUN_TIMEOUT" "${SOURCE_CPU[@]}" $command >/dev/null 2>"$WORK/source.err"; } \
        2>"$WORK/source.time" || rc=$?
    end=$(date +%s.%N)
    ticks1=$(server_ticks)
    errors=$(wc -l <"$WORK/source.err")
    if ((rc != 0)); then
        errors=$((errors + 1))
        echo "  $server $mode: smtp-source exited $rc: $(head -c 300 "$WORK/source.err")" >&2
    fi
    seconds=$(awk -v a="$start" -v b="$end" 'BEGIN { printf "%.6f", b - a }')
    rss=-
    [[ $last == 1 ]] && rss=$(hwm_kib)
    local tick
    tick=$(getconf CLK_TCK)
    read -r user system <"$WORK/source.time"
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$server" "$mode" "$(mode_messages "$mode")" "$seconds" \
        "$errors" "$rss" "$(awk -v t=$((ticks1 - ticks0)) -v hz="$tick" 'BEGIN { printf "%.3f", t / hz }')" \
        "$(awk -v u="$user" -v s="$system" 'BEGIN { printf "%.3f", u + s }')" >>"$RESULTS"
    printf '  %-18s %-16s run %s: %8.0f msg/s, %s errors\n' "$server" "$mode" "$4" \
        "$(awk -v n="$(mode_messages "$mode")" -v s="$seconds" 'BEGIN { print n / s }')" "$errors" >&2
}

echo "== failmail load test ($(date -u +%Y-%m-%dT%H:%M:%SZ))"
echo "machine: $(nproc) CPUs, $(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo), $(awk '/^MemTotal/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo), Linux $(uname -r)"
echo "failmail $(git rev-parse --short HEAD 2>/dev/null || echo '?')$(git diff --quiet HEAD -- src Cargo.toml 2>/dev/null || echo ' (+ uncommitted changes)'); smtp-source/smtp-sink from postfix $(dpkg-query -W -f '${Version}' postfix 2>/dev/null || echo '?'); aiosmtpd $("$PYTHON" -c 'import aiosmtpd; print(aiosmtpd.__version__)') on $("$PYTHON" -V 2>&1)"
echo "load average before the run: $(cut -d' ' -f1-3 /proc/loadavg) (other work on the machine skews every number)"
echo "ulimit -n: $(ulimit -n); REPEAT=$REPEAT SESSIONS=$SESSIONS MSGS_1K=$MSGS_1K MSGS_100K=$MSGS_100K PIN=$PIN FRESH=$FRESH"
echo

if [[ $SKIP_BUILD != 1 ]]; then
    echo "building (cargo build --release; cargo bench --no-run) ..." >&2
    cargo build --release >&2
    if [[ $SKIP_BENCHES != 1 ]]; then
        cargo bench --no-run --bench idle_connections --bench latency >&2
    fi
fi
[[ -x $FAILMAIL ]] || { echo "no $FAILMAIL: run cargo build --release" >&2; exit 1; }

echo "scenario check: $("$FAILMAIL" check "$SCENARIO")"
echo
echo "servers:"
for server in $SERVERS; do
    printf '  %-18s %s\n' "$server" "$(server_command "$server")"
done
echo "load (127.0.0.1:PORT is the server's port):"
for mode in $MODES; do
    printf '  %-18s %s\n' "$mode" "$(source_command "$mode")"
done
echo

# Runs are interleaved: for each mode every server is started fresh (so its peak RSS is that
# mode's), then round after round each server gets one run, the order rotating between rounds,
# so that a noisy stretch of the machine falls on all servers alike rather than on one.
# Starts the servers named, in that order.
start_all() {
    local server
    for server in "$@"; do
        start_server "$server"
        PIDS[$server]=$SERVER_PID
        PORTS[$server]=$PORT
        SERVER_PID=""
    done
}

# Stops the servers named (and their streams' readers).
stop_all() {
    local server
    for server in "$@"; do
        stop_streamers "$server"
        SERVER_PID=${PIDS[$server]}
        stop_server
        unset "PIDS[$server]"
    done
}

read -ra server_list <<<"$SERVERS"
for mode in $MODES; do
    if [[ $FRESH != 1 ]]; then start_all "${server_list[@]}"; fi
    for run in $(seq "$REPEAT"); do
        last=0
        ((run == REPEAT)) && last=1
        count=${#server_list[@]}
        round=()
        for ((i = 0; i < count; i++)); do
            round+=("${server_list[$(((i + run - 1) % count))]}")
        done
        if [[ $FRESH == 1 ]]; then start_all "${round[@]}"; fi
        for server in "${round[@]}"; do
            SERVER_PID=${PIDS[$server]}
            PORT=${PORTS[$server]}
            run_once "$server" "$mode" "$last" "$run"
        done
        if [[ $FRESH == 1 ]]; then stop_all "${round[@]}"; fi
    done
    if [[ $FRESH != 1 ]]; then stop_all "${server_list[@]}"; fi
done

echo "throughput (median of $REPEAT runs; ratio = failmail messages/s ÷ peer messages/s, same mode):"
# Status 3: the web page's goal was missed (load.sh then exits 3, after its other benchmarks).
status=0
"$PYTHON" benches/load_report.py table "$RESULTS" || status=$?
[[ -n ${LOAD_RESULTS:-} ]] && cp "$RESULTS" "$LOAD_RESULTS"
echo

if [[ $SKIP_BENCHES != 1 ]]; then
    echo "== cargo bench --bench idle_connections -- --binary $FAILMAIL --connections $IDLE_CONNECTIONS"
    timeout 300 cargo bench -q --bench idle_connections -- \
        --binary "$FAILMAIL" --connections "$IDLE_CONNECTIONS" 2> >(grep -v -E '^\s*(Finished|Running|Compiling)' >&2)
    for interval in 0 $LAT_INTERVAL_MS; do
        echo
        echo "== cargo bench --bench latency -- --binary $FAILMAIL --senders $LAT_SENDERS --messages $LAT_MESSAGES --interval-ms $interval"
        timeout 300 cargo bench -q --bench latency -- --binary "$FAILMAIL" --senders "$LAT_SENDERS" \
            --messages "$LAT_MESSAGES" --interval-ms "$interval" 2> >(grep -v -E '^\s*(Finished|Running|Compiling)' >&2)
    done
fi
exit "$status"
