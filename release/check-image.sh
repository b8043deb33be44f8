#!/usr/bin/env bash
# Builds the container image (Containerfile) with podman and checks that it serves a message.
#
# 1. release/build-static.sh builds the static binary the image holds.
# 2. podman builds the image (vfs storage: no kernel overlay support needed; no registry: the
#    image is FROM scratch).
# 3. The image runs with `podman run --network host`, as it is. First a probe: a trivial
#    container of the same image (`/failmail --version`). If it runs, containers work here and
#    any failure after it is the image's: the check fails. If it cannot start because the
#    container runtime itself is refused what it needs (the error of crun/runc setting up the
#    container: setrlimit, cgroups, namespaces, mounts "Operation not permitted", as in a
#    sandbox without privileges), this machine cannot start containers at all: the image's root
#    filesystem is exported and run with chroot instead, with the image's own entrypoint,
#    environment and user. Any other failure of the probe (the binary missing, not executable,
#    or failing) fails the check.
# 4. Its health check command answers, and release/smoke.py sends a message with smtplib and
#    finds it through the API with the image's token.
#
# Needs: podman, python3, and ports 1025 and 8025 free on 127.0.0.1.
# Usage: release/check-image.sh
set -euo pipefail

cd "$(dirname "$0")/.."

image=localhost/failmail:check
podman=(podman --storage-driver vfs --cgroup-manager cgroupfs --events-backend file)
work="$(mktemp -d "${TMPDIR:-/tmp}/failmail-image.XXXXXX")"
name="failmail-check-$$"
chroot_pid=""

cleanup() {
    local status=$?
    "${podman[@]}" rm -f "$name" "$name-probe" >/dev/null 2>&1 || true
    if [ -n "$chroot_pid" ]; then
        kill -TERM "$chroot_pid" 2>/dev/null || true
        wait "$chroot_pid" 2>/dev/null || true
    fi
    if [ "$status" -ne 0 ] && [ -s "$work/server.log" ]; then
        echo "-- failmail's output:"
        tail -n 40 "$work/server.log"
    fi
    rm -rf "$work"
    exit "$status"
}
trap cleanup EXIT

echo "== static binary"
release/build-static.sh

echo "== image"
# --format docker keeps the HEALTHCHECK (the OCI format has no field for it).
"${podman[@]}" build --format docker -f Containerfile -t "$image" .
"${podman[@]}" image inspect --format '{{json .Config}}' "$image" > "$work/config.json"
size=$("${podman[@]}" image inspect --format '{{.Size}}' "$image")
echo "image $image: $size bytes"

token=$(python3 -c '
import json, sys
config = json.load(open(sys.argv[1]))
env = dict(e.split("=", 1) for e in config.get("Env") or [])
print(env["FAILMAIL_HTTP_TOKEN"])' "$work/config.json")

# The errors of a container runtime that this machine refuses what every container needs (as
# opposed to an error of the image): printed by crun or runc, or by podman setting up a user
# namespace, before anything of the image runs.
cannot_start_containers='^Error: ((crun|runc): .*(Operation not permitted|Read-only file system)|cannot (set up|setup) namespace|.*(newuidmap|newgidmap|cgroup.*(not supported|Operation not permitted)))'

echo "== run"
echo "probe: podman run --rm --entrypoint /failmail $image --version"
probe_status=0
"${podman[@]}" run --rm --name "$name-probe" --network host --entrypoint /failmail "$image" --version \
    > "$work/probe.out" 2> "$work/probe.err" || probe_status=$?
if [ "$probe_status" -eq 0 ]; then
    echo "containers start here: $(cat "$work/probe.out")"
    if ! "${podman[@]}" run -d --name "$name" --network host "$image" > "$work/run.out" 2> "$work/run.err"; then
        echo "podman run failed, though a container of the image started:" >&2
        cat "$work/run.err" >&2
        exit 1
    fi
    echo "started with podman run"
    health=("${podman[@]}" healthcheck run "$name")
    logs() { "${podman[@]}" logs "$name" > "$work/server.log" 2>&1 || true; }
elif grep -Eiq "$cannot_start_containers" "$work/probe.err"; then
    echo "podman cannot start any container here (exit $probe_status: $(tail -n 1 "$work/probe.err")): chroot into the image's root filesystem"
    mkdir "$work/rootfs"
    container=$("${podman[@]}" create "$image")
    "${podman[@]}" export "$container" | tar -x -C "$work/rootfs"
    # (podman's complaint that no systemd removes the health check's timer is of no interest.)
    "${podman[@]}" rm "$container" > /dev/null 2> "$work/rm.err" || { cat "$work/rm.err" >&2; exit 1; }
    # The image's entrypoint, environment and user, as the container would have them.
    mapfile -t entrypoint < <(python3 -c '
import json, sys
for arg in json.load(open(sys.argv[1]))["Entrypoint"]:
    print(arg)' "$work/config.json")
    user=$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["User"])' "$work/config.json")
    chroot=$(command -v chroot)
    # Only the image's environment (env -i), as in the container.
    env -i FAILMAIL_HTTP_TOKEN="$token" "$chroot" --userspec="$user" "$work/rootfs" "${entrypoint[@]}" \
        > "$work/server.log" 2>&1 &
    chroot_pid=$!
    health=("$chroot" --userspec="$user" "$work/rootfs" /failmail health --http 127.0.0.1:8025)
    logs() { :; }
else
    echo "the image's container failed (exit $probe_status), not the machine's runtime:" >&2
    cat "$work/probe.out" "$work/probe.err" >&2
    exit 1
fi

echo "== serve one message"
if ! python3 release/smoke.py 127.0.0.1:1025 127.0.0.1:8025 "$token"; then
    logs
    exit 1
fi
echo "== health check"
"${health[@]}"
logs
echo "the image serves"
