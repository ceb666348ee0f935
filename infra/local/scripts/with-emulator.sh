#!/usr/bin/env bash
# Runs a command with the local AWS emulator (moto server) started on a free loopback
# port, and stops the emulator when the command ends, also on failure or Ctrl-C.
# A run killed with SIGKILL leaves a pid file behind; the next run stops that stale
# emulator first, so no emulator outlives two runs.
#
#   infra/local/scripts/with-emulator.sh cargo test --workspace
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)"
state="$root/.local"
pidfile="$state/moto.pid"
mkdir -p "$state"

stop_pid() {
  local pid="$1"
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null \
     && tr '\0' ' ' < "/proc/$pid/cmdline" 2>/dev/null | grep -q moto_server; then
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
  fi
}

if [ -f "$pidfile" ]; then
  stop_pid "$(cat "$pidfile")"
  rm -f "$pidfile"
fi

port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
"$root/.venv/bin/moto_server" -H 127.0.0.1 -p "$port" > "$state/moto.log" 2>&1 &
moto_pid=$!
echo "$moto_pid" > "$pidfile"
cleanup() {
  stop_pid "$moto_pid"
  rm -f "$pidfile"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

for _ in $(seq 1 100); do
  if curl -fsS "http://127.0.0.1:$port/moto-api/" > /dev/null 2>&1; then break; fi
  if ! kill -0 "$moto_pid" 2>/dev/null; then
    echo "the AWS emulator failed to start; its log:" >&2
    cat "$state/moto.log" >&2
    exit 1
  fi
  sleep 0.1
done

export AWS_ENDPOINT_URL="http://127.0.0.1:$port"
export AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test AWS_REGION=us-east-1 AWS_DEFAULT_REGION=us-east-1
export AWS_EC2_METADATA_DISABLED=true
echo "AWS emulator: $AWS_ENDPOINT_URL (pid $moto_pid)" >&2
"$@"
