#!/usr/bin/env python3
# Regenerates the runtime tests' fixtures (tests/events/runtime-*.json): each starts as the
# output of `sam local generate-event` and is then edited to carry our payloads.
# Run from the repository root: python3 tests/events/generate_runtime_fixtures.py
import json, subprocess, os
SAM = os.path.join(os.path.dirname(os.path.abspath(__file__)), "../../.venv/bin/sam")
env = dict(os.environ, SAM_CLI_TELEMETRY="0")
def gen(*args):
    return json.loads(subprocess.check_output([SAM, "local", "generate-event", *args], env=env))
out = "tests/events"
def write(name, v):
    with open(f"{out}/{name}", "w") as f:
        json.dump(v, f, indent=2); f.write("\n")

def sqs(queue, bodies, fifo):
    ev = gen("sqs", "receive-message", "--queue-name", queue, "--body", "BODY")
    tmpl = ev["Records"][0]
    recs = []
    for i, (mid, body) in enumerate(bodies):
        r = json.loads(json.dumps(tmpl))
        r["messageId"] = mid
        r["body"] = body if isinstance(body, str) else json.dumps(body, separators=(",", ":"))
        r.pop("md5OfBody", None)
        if fifo:
            r["attributes"]["MessageGroupId"] = "acme"
            r["attributes"]["MessageDeduplicationId"] = f"{mid}-dedup"
            r["attributes"]["SequenceNumber"] = str(18849496460467696128 + i)
        recs.append(r)
    ev["Records"] = recs
    return ev

pull_job = {"tenant": "acme", "epoch": 0, "run_id": "run-fixture", "steps": [{"step": "pull", "stream": "candidates"}]}
write("runtime-sqs-pull-job.json", sqs("eds-dev-pull.fifo", [("pull-1", pull_job)], True))
write("runtime-sqs-pull-poison.json", sqs("eds-dev-pull.fifo", [("pull-poison", "this is not a pull job")], True))
push_ok = {"tenant": "acme", "records": [{"entity": "candidate", "id": "42", "op": "upsert",
           "updated_at": "2026-03-01T10:00:00.000Z", "fields": {"first_name": "Ada", "last_name": "Lovelace"}}]}
write("runtime-sqs-push-batch.json", sqs("eds-dev-push", [("push-ok", push_ok), ("push-poison", {"tenant": "acme", "records": "nope"})], False))
dis = {"kind": "disable", "tenant": "acme", "epoch": 2, "shard": 0}
write("runtime-sqs-disable-continuation.json", sqs("eds-dev-disable.fifo", [("disable-1", dis)], True))
dele = {"kind": "delete", "tenant": "acme", "request_id": "req-fixture", "requested_at": "2026-03-01T10:00:00Z", "phase": "wait_writers"}
write("runtime-sqs-delete-continuation.json", sqs("eds-dev-delete.fifo", [("delete-1", dele)], True))
write("runtime-sqs-lifecycle-poison.json", sqs("eds-dev-disable.fifo", [("lifecycle-poison", {"kind": "explode", "tenant": "acme"})], True))

sched = gen("cloudwatch", "scheduled-event", "--rule", "eds-dev-scheduler")
write("runtime-scheduled-event.json", sched)

def bridge(detail_type, detail):
    # No EventBridge generator: the envelope is the scheduled event's, with our source,
    # detail-type and detail (the shape EventBridge gives any rule target).
    e = gen("cloudwatch", "scheduled-event", "--rule", "eds-dev-settings-events")
    e["version"] = "0"
    e["id"] = f"fixture-{detail_type}"
    e["source"] = "eds.settings"
    e["detail-type"] = detail_type
    e["time"] = "2026-03-01T10:00:00Z"
    e["resources"] = []
    e["detail"] = detail
    return e
write("runtime-eventbridge-tenant-enabled.json", bridge("tenant.enabled", {
    "tenant_id": "acme", "ats_kind": "greenhouse", "api_version": "v1",
    "api_base_url": "https://harvest.greenhouse.io", "secret_name": "eds/tenants/acme", "interval_secs": 900}))
write("runtime-eventbridge-tenant-interval-changed.json", bridge("tenant.interval_changed", {"tenant_id": "acme", "interval_secs": 3600}))
write("runtime-eventbridge-tenant-malformed.json", bridge("tenant.enabled", {
    "tenant_id": "ghost", "ats_kind": "greenhouse", "api_version": "v1",
    "api_base_url": "https://harvest.greenhouse.io", "secret_name": "eds/tenants/ghost", "interval_secs": 900,
    "unexpected": "member"}))
write("runtime-eventbridge-tenant-disable-requested.json", bridge("tenant.disable_requested", {"tenant_id": "acme"}))
write("runtime-eventbridge-tenant-deletion-requested.json", bridge("tenant.deletion_requested", {"tenant_id": "acme", "request_id": "req-fixture"}))

url = gen("apigateway", "http-api-proxy", "--path", "tenants/acme/status", "--method", "GET")
url.pop("routeKey", None)
url["rawQueryString"] = ""
url.pop("queryStringParameters", None)
url.pop("cookies", None)
url["headers"] = {"accept": "application/json"}
url["requestContext"]["http"]["method"] = "GET"
url["requestContext"]["http"]["path"] = "/tenants/acme/status"
url["requestContext"].pop("authentication", None)
url["requestContext"]["authorizer"] = {"iam": {"accessKey": "AKIAEXAMPLE", "accountId": "123456789012",
    "callerId": "AIDAEXAMPLE", "userArn": "arn:aws:iam::123456789012:user/reporting", "userId": "AIDAEXAMPLE"}}
url["requestContext"]["domainName"] = "abc123.lambda-url.us-east-1.on.aws"
url["requestContext"]["domainPrefix"] = "abc123"
url["body"] = None
url["isBase64Encoded"] = False
write("runtime-function-url-status.json", url)
