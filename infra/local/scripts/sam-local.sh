#!/usr/bin/env bash
# `make sam-local`: the SAM CLI serving the Lambda Invoke API for every function, on the
# local stack. Run under with-emulator.sh with EDS_EMULATOR_HOST set to the Docker bridge
# gateway (the Makefile does), after `make sam-test-build`. Starts the Greenhouse
# simulator on that gateway, provisions the stage `local` and writes the --env-vars file
# (edsctl sam-env), then runs `sam local start-lambda` in the foreground; Ctrl-C stops SAM
# (which removes its containers), the simulator and, through with-emulator.sh, moto.
#
#   infra/local/scripts/sam-local.sh <bridge gateway address>
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)"
gw="$1"
port="${SAM_LOCAL_PORT:-3001}"
state="$root/.local/sam-local"
mkdir -p "$state" "$root/.local/sam-app"
echo '{"telemetryEnabled": false, "lastVersionCheck": 4102444800.0}' > "$root/.local/sam-app/metadata.json"

cd "$root"
cargo build --locked -q -p edsctl -p greenhouse-sim
rm -f "$state/simulator.json"
target/debug/greenhouse-sim --host "$gw" --out "$state/simulator.json" > "$state/simulator.log" 2>&1 &
sim=$!
# On the way out: the simulator, and any warm container SAM left behind (it does not always
# remove them all); ours carry SAM's label and this stage's table name.
cleanup() {
  kill "$sim" 2>/dev/null || true
  for id in $(docker ps -aq --filter label=sam.cli.container.type=lambda); do
    if docker inspect -f '{{range .Config.Env}}{{println .}}{{end}}' "$id" | grep -qx 'RECORDS_TABLE=eds-local-records'; then
      docker rm -f "$id" > /dev/null
    fi
  done
}
trap cleanup EXIT
for _ in $(seq 1 100); do [ -s "$state/simulator.json" ] && break; sleep 0.1; done
[ -s "$state/simulator.json" ] || { echo "the simulator did not start; its log:" >&2; cat "$state/simulator.log" >&2; exit 1; }
token_url="$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["token_url"])' "$state/simulator.json")"

target/debug/edsctl --stage local sam-env "$state/env.json" \
  --set EDS_LOCAL_TESTING=true --set "EDS_LOCAL_TESTING_ADDRS=$gw" --set "GREENHOUSE_TOKEN_URL=$token_url"

cat >&2 <<INFO
Local stack for the SAM CLI:
  AWS emulator:   $AWS_ENDPOINT_URL   (stage "local")
  Greenhouse sim: $state/simulator.json (endpoints and demo credentials)
  env-vars file:  $state/env.json
  Lambda API:     http://127.0.0.1:$port, e.g.
    AWS_ENDPOINT_URL=http://127.0.0.1:$port aws lambda invoke --function-name SchedulerFunction out.json
    (or the SDK's Lambda client with that endpoint; function names are the template's logical ids)
Ctrl-C stops everything.
INFO
env -u AWS_ACCESS_KEY_ID -u AWS_SECRET_ACCESS_KEY -u AWS_SESSION_TOKEN -u AWS_ENDPOINT_URL \
  __SAM_CLI_APP_DIR="$root/.local/sam-app" SAM_CLI_TELEMETRY=0 AWS_EC2_METADATA_DISABLED=true \
  "$root/.venv/bin/sam" local start-lambda --template-file .aws-sam/build/template.yaml \
    --env-vars "$state/env.json" --skip-pull-image --warm-containers EAGER \
    --host 127.0.0.1 --port "$port" --layer-cache-basedir "$root/.local/sam-layers"
