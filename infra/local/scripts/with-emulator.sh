#!/usr/bin/env bash
# Runs a command with the local AWS emulator (moto server) started on a free loopback
# port, and stops the emulator when the command ends, also on failure or Ctrl-C.
#
# Each run records "<this script's pid> <emulator pid>" in .local/moto.<pid>.pid. A run
# killed with SIGKILL cannot stop its emulator, so every run first stops the emulators
# whose recording script is gone: no emulator outlives the next run, and concurrent runs
# in one checkout never stop each other's emulator.
#
#   infra/local/scripts/with-emulator.sh cargo test --workspace
#
# EDS_EMULATOR_HOST (default 127.0.0.1) is the address it listens on; the SAM CLI tests
# set the Docker bridge gateway, which both this host and the Lambda containers reach.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)"
state="$root/.local"
mkdir -p "$state"

is_moto() {
  kill -0 "$1" 2>/dev/null && tr '\0' ' ' < "/proc/$1/cmdline" 2>/dev/null | grep -q moto_server
}

# The recording script is still running (not a zombie, not a reused pid).
owner_alive() {
  [ -r "/proc/$1/status" ] && ! grep -q '^State:[[:space:]]*Z' "/proc/$1/status" \
    && tr '\0' ' ' < "/proc/$1/cmdline" 2>/dev/null | grep -q with-emulator
}

stop_pid() {
  local pid="$1"
  if [ -n "$pid" ] && is_moto "$pid"; then
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
  fi
}

for f in "$state"/moto.*.pid; do
  [ -e "$f" ] || continue
  read -r owner emulator < "$f" || true
  if [ -z "${owner:-}" ] || ! owner_alive "$owner"; then
    stop_pid "${emulator:-}"
    rm -f "$f" "${f%.pid}.log"
  fi
done

host="${EDS_EMULATOR_HOST:-127.0.0.1}"
port="$(python3 -c 'import socket,sys; s=socket.socket(); s.bind((sys.argv[1],0)); print(s.getsockname()[1])' "$host")"
log="$state/moto.$$.log"
# moto_server.py: moto with DynamoDB's conditional writes made atomic (see the file).
"$root/.venv/bin/python" "$root/infra/local/scripts/moto_server.py" -H "$host" -p "$port" > "$log" 2>&1 &
moto_pid=$!
pidfile="$state/moto.$$.pid"
echo "$$ $moto_pid" > "$pidfile"
cleanup() {
  stop_pid "$moto_pid"
  rm -f "$pidfile" "$log"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

for _ in $(seq 1 100); do
  if curl -fsS "http://$host:$port/moto-api/" > /dev/null 2>&1; then break; fi
  if ! kill -0 "$moto_pid" 2>/dev/null; then
    echo "the AWS emulator failed to start; its log:" >&2
    cat "$log" >&2
    exit 1
  fi
  sleep 0.1
done

export AWS_ENDPOINT_URL="http://$host:$port"
export AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test AWS_REGION=us-east-1 AWS_DEFAULT_REGION=us-east-1
export AWS_EC2_METADATA_DISABLED=true
echo "AWS emulator: $AWS_ENDPOINT_URL (pid $moto_pid)" >&2
"$@"
