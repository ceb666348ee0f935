//! The simulator's own guarantees, exercised over HTTP as a connector would: paging,
//! cursor rules, windows, rate limits, OAuth, scopes, attachments, the removed v1,
//! faults and mutations. Timing is never asserted (rate windows follow the simulated clock here).

use std::collections::BTreeSet;
use std::time::Duration;

use greenhouse_sim::*;
use reqwest::{Client, Response, StatusCode};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

const ID: &str = "client-a";
const SECRET: &str = "secret-a";

fn spec(n: usize) -> ScenarioSpec {
    ScenarioSpec {
        candidates: n,
        ..Default::default()
    }
}

async fn start(cfg: SimConfig, n: usize) -> (SimHandle, Scenario) {
    let s = Scenario::generate(&spec(n));
    let sim = Simulator::start(
        SimConfig {
            rate_clock: RateClock::Simulated,
            ..cfg
        },
        s.truth.clone(),
    )
    .await
    .unwrap();
    sim.add_oauth_client(ID, SECRET, ALL_SCOPES);
    (sim, s)
}

async fn token_for(sim: &SimHandle, id: &str, secret: &str) -> String {
    let r = Client::new()
        .post(sim.token_url())
        .basic_auth(id, Some(secret))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    r.json::<Value>().await.unwrap()["access_token"]
        .as_str()
        .unwrap()
        .to_string()
}

async fn get(url: &str, token: &str) -> Response {
    Client::new()
        .get(url)
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
}

fn next_link(r: &Response) -> Option<String> {
    let h = r.headers().get("link")?.to_str().ok()?;
    h.split(',').find(|p| p.contains("rel=\"next\"")).map(|p| {
        let s = p.trim();
        s[s.find('<').unwrap() + 1..s.find('>').unwrap()].to_string()
    })
}

fn ids(v: &Value) -> Vec<u64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x["id"].as_u64().unwrap())
        .collect()
}

async fn crawl(first: &str, token: &str) -> (Vec<u64>, usize) {
    let mut url = first.to_string();
    let mut all = vec![];
    let mut pages = 0;
    loop {
        let r = get(&url, token).await;
        assert_eq!(r.status(), 200, "{url}");
        let next = next_link(&r);
        all.extend(ids(&r.json::<Value>().await.unwrap()));
        pages += 1;
        match next {
            Some(n) => url = n,
            None => return (all, pages),
        }
    }
}

fn truth_ids(s: &AtsData, e: Entity) -> Vec<u64> {
    let mut v: Vec<u64> = s
        .records(e)
        .iter()
        .map(|r| r["id"].as_u64().unwrap())
        .collect();
    v.sort_unstable_by(|a, b| b.cmp(a));
    v
}

#[tokio::test]
async fn paging_reaches_the_end_with_every_record_once_in_id_descending_order() {
    let (sim, s) = start(SimConfig::default(), 60).await;
    let tok = token_for(&sim, ID, SECRET).await;
    for e in [
        Entity::Candidate,
        Entity::Application,
        Entity::Job,
        Entity::Attachment,
    ] {
        let (got, pages) = crawl(
            &format!("{}/v3/{}?per_page=7", sim.api_base(), e.path()),
            &tok,
        )
        .await;
        let want = truth_ids(&s.truth, e);
        assert_eq!(got, want, "{e:?}");
        assert_eq!(
            pages,
            want.len().div_ceil(7).max(1),
            "no empty trailing page, no Link on the last page"
        );
    }
    // Bare arrays with the v3 fields.
    let r = get(
        &format!("{}/v3/candidates?per_page=1", sim.api_base()),
        &tok,
    )
    .await;
    let body: Value = r.json().await.unwrap();
    assert!(
        body.is_array()
            && body[0]["email_addresses"].is_array()
            && body[0]["custom_fields"].is_object()
    );
    let st = sim.stats();
    assert!(st.count("GET /v3/candidates", 200) >= 9 && st.records_served > 0 && st.bytes_sent > 0);
}

#[tokio::test]
async fn changes_mid_crawl_move_records_in_and_out_of_the_window() {
    let (sim, s) = start(SimConfig::default(), 80).await;
    let tok = token_for(&sim, ID, SECRET).await;
    // Window: everything updated at or after the median updated_at.
    let mut upd: Vec<String> = s
        .truth
        .candidates
        .iter()
        .map(|c| c["updated_at"].as_str().unwrap().to_string())
        .collect();
    upd.sort();
    let from = upd[upd.len() / 2].clone();
    let url = format!(
        "{}/v3/candidates?per_page=5&updated_at=gte|{from}",
        sim.api_base()
    );
    let r = get(&url, &tok).await;
    let first_page = ids(&r.json::<Value>().await.unwrap_or_default());
    let r = get(&url, &tok).await;
    let next = next_link(&r).expect("more than one page");
    let lowest_seen = *first_page.last().unwrap();
    let in_window = |c: &Value| c["updated_at"].as_str().unwrap() >= from.as_str();
    let below: Vec<&Value> = s
        .truth
        .candidates
        .iter()
        .filter(|c| c["id"].as_u64().unwrap() < lowest_seen)
        .collect();
    let moving_in = below.iter().find(|c| !in_window(c)).unwrap()["id"]
        .as_u64()
        .unwrap();
    let deleted = below.iter().find(|c| in_window(c)).unwrap()["id"]
        .as_u64()
        .unwrap();
    let seen_then_updated = first_page[0];

    sim.clock().advance(Duration::from_secs(60));
    let m = sim.mutate();
    m.update(Entity::Candidate, moving_in, "title", json!("Moved in"))
        .unwrap();
    m.delete(Entity::Candidate, deleted).unwrap();
    m.update(
        Entity::Candidate,
        seen_then_updated,
        "title",
        json!("Seen already"),
    )
    .unwrap();
    let inserted = m
        .insert(
            Entity::Candidate,
            json!({"first_name": "New", "last_name": "Person"}),
        )
        .unwrap();

    let (rest, _) = crawl(&next, &tok).await;
    let mut expected: Vec<u64> = below
        .iter()
        .filter(|c| in_window(c))
        .map(|c| c["id"].as_u64().unwrap())
        .collect();
    expected.retain(|id| *id != deleted);
    expected.push(moving_in);
    expected.sort_unstable_by(|a, b| b.cmp(a));
    assert_eq!(
        rest, expected,
        "moved-in record appears, deleted one vanishes, records above the cursor are not revisited"
    );
    assert!(!rest.contains(&inserted) && !rest.contains(&seen_then_updated));

    // A fresh crawl sees the new state: the inserted and updated records, not the deleted one.
    let (fresh, _) = crawl(&url, &tok).await;
    assert!(
        fresh.contains(&inserted)
            && fresh.contains(&moving_in)
            && fresh.contains(&seen_then_updated)
            && !fresh.contains(&deleted)
    );
    assert_eq!(
        get(&format!("{}/v3/candidates/{deleted}", sim.api_base()), &tok)
            .await
            .status(),
        404
    );
}

#[tokio::test]
async fn a_cursor_must_be_the_only_query_parameter_and_valid() {
    let (sim, _) = start(SimConfig::default(), 30).await;
    let tok = token_for(&sim, ID, SECRET).await;
    let r = get(
        &format!("{}/v3/candidates?per_page=5", sim.api_base()),
        &tok,
    )
    .await;
    let next = next_link(&r).unwrap();
    assert!(
        next.contains("?cursor=") && !next.contains('&'),
        "the next link carries only the cursor: {next}"
    );
    let r = get(&format!("{next}&per_page=5"), &tok).await;
    assert_eq!(r.status(), 422);
    let body: Value = r.json().await.unwrap();
    assert_eq!(
        body["errors"][0],
        "When passing a cursor, do not include other query params."
    );
    assert_eq!(
        get(
            &format!("{}/v3/candidates?cursor=garbage", sim.api_base()),
            &tok
        )
        .await
        .status(),
        422
    );
    // A candidates cursor is not valid for another resource.
    let cur = next.split("cursor=").nth(1).unwrap();
    assert_eq!(
        get(&format!("{}/v3/jobs?cursor={cur}", sim.api_base()), &tok)
            .await
            .status(),
        422
    );
    assert_eq!(
        get(&next, &tok).await.status(),
        200,
        "used verbatim it works"
    );
}

#[tokio::test]
async fn cursors_expire_by_lifetime_or_on_demand() {
    let (sim, _) = start(
        SimConfig {
            cursor_ttl: Some(Duration::from_secs(60)),
            ..Default::default()
        },
        30,
    )
    .await;
    let tok = token_for(&sim, ID, SECRET).await;
    let next = next_link(
        &get(
            &format!("{}/v3/candidates?per_page=5", sim.api_base()),
            &tok,
        )
        .await,
    )
    .unwrap();
    assert_eq!(get(&next, &tok).await.status(), 200);
    sim.clock().advance(Duration::from_secs(61));
    let r = get(&next, &tok).await;
    assert_eq!(r.status(), 422);
    assert_eq!(
        r.json::<Value>().await.unwrap()["errors"][0],
        "Cursor expired"
    );
    let next = next_link(
        &get(
            &format!("{}/v3/candidates?per_page=5", sim.api_base()),
            &tok,
        )
        .await,
    )
    .unwrap();
    sim.expire_cursors();
    assert_eq!(get(&next, &tok).await.status(), 422);
}

#[tokio::test]
async fn per_page_must_be_between_1_and_500() {
    let (sim, s) = start(SimConfig::default(), 20).await;
    let n = s.truth.candidates.len();
    let tok = token_for(&sim, ID, SECRET).await;
    for bad in ["0", "501", "abc", "-1"] {
        let r = get(
            &format!("{}/v3/candidates?per_page={bad}", sim.api_base()),
            &tok,
        )
        .await;
        assert_eq!(r.status(), 422, "per_page={bad}");
    }
    let r = get(
        &format!("{}/v3/candidates?per_page=1", sim.api_base()),
        &tok,
    )
    .await;
    assert_eq!(
        r.json::<Value>().await.unwrap().as_array().unwrap().len(),
        1
    );
    let r = get(
        &format!("{}/v3/candidates?per_page=500", sim.api_base()),
        &tok,
    )
    .await;
    assert_eq!(
        r.json::<Value>().await.unwrap().as_array().unwrap().len(),
        n
    );
    let r = get(&format!("{}/v3/candidates", sim.api_base()), &tok).await;
    assert_eq!(
        r.json::<Value>().await.unwrap().as_array().unwrap().len(),
        n,
        "default 100"
    );
}

#[tokio::test]
async fn window_filters_apply_gt_gte_lt_lte_and_ids() {
    let (sim, s) = start(SimConfig::default(), 50).await;
    let tok = token_for(&sim, ID, SECRET).await;
    let pick = &s.truth.candidates[20];
    let (pid, t) = (
        pick["id"].as_u64().unwrap(),
        pick["updated_at"].as_str().unwrap().to_string(),
    );
    let base = format!("{}/v3/candidates?per_page=500", sim.api_base());
    let fetch = |q: String| {
        let tok = tok.clone();
        async move { ids(&get(&q, &tok).await.json::<Value>().await.unwrap()) }
    };
    let upd = |c: &Value| model::parse_ts(c["updated_at"].as_str().unwrap()).unwrap();
    let tt = model::parse_ts(&t).unwrap();
    for (op, f) in [
        (
            "gte",
            (|a, b| a >= b)
                as fn(chrono::DateTime<chrono::Utc>, chrono::DateTime<chrono::Utc>) -> bool,
        ),
        ("gt", |a, b| a > b),
        ("lte", |a, b| a <= b),
        ("lt", |a, b| a < b),
    ] {
        let got: BTreeSet<u64> = fetch(format!("{base}&updated_at={op}|{t}"))
            .await
            .into_iter()
            .collect();
        let want: BTreeSet<u64> = s
            .truth
            .candidates
            .iter()
            .filter(|c| f(upd(c), tt))
            .map(|c| c["id"].as_u64().unwrap())
            .collect();
        assert_eq!(got, want, "{op}");
        assert_eq!(
            got.contains(&pid),
            op.len() == 3,
            "{op} inclusive only with e"
        );
    }
    let both = fetch(format!("{base}&updated_at=gte|{t}|lte|{t}")).await;
    assert!(both.contains(&pid));
    // Percent-encoded pipes work too.
    assert_eq!(
        fetch(format!("{base}&updated_at=gte%7C{t}%7Clte%7C{t}")).await,
        both
    );
    for bad in [
        "updated_at=gte",
        "updated_at=eq|2026-01-01T00:00:00Z",
        "updated_at=gte|yesterday",
    ] {
        assert_eq!(
            get(&format!("{base}&{bad}"), &tok).await.status(),
            422,
            "{bad}"
        );
    }
    let r = get(
        &format!("{base}&updated_at=gte|{t}&created_at=gte|{t}"),
        &tok,
    )
    .await;
    assert_eq!(
        r.status(),
        422,
        "created_at and updated_at cannot be combined"
    );
    // ids: at most 50, results id-descending.
    let some: Vec<u64> = s
        .truth
        .candidates
        .iter()
        .take(3)
        .map(|c| c["id"].as_u64().unwrap())
        .collect();
    let q: Vec<String> = some.iter().map(u64::to_string).collect();
    let mut want = some.clone();
    want.reverse();
    assert_eq!(fetch(format!("{base}&ids={}", q.join(","))).await, want);
    let many: Vec<String> = (1..=51).map(|i: u64| i.to_string()).collect();
    assert_eq!(
        get(&format!("{base}&ids={}", many.join(",")), &tok)
            .await
            .status(),
        422
    );
    // Single reads.
    let r = get(&format!("{}/v3/candidates/{pid}", sim.api_base()), &tok).await;
    assert_eq!(r.json::<Value>().await.unwrap()["id"], json!(pid));
    assert_eq!(
        get(&format!("{}/v3/candidates/1", sim.api_base()), &tok)
            .await
            .status(),
        404
    );
}

#[tokio::test]
async fn rate_limit_is_per_credential_with_headers_on_every_response_and_retry_after() {
    let (sim, _) = start(SimConfig::default(), 10).await;
    sim.set_rate_limit_v3(3);
    sim.add_oauth_client("client-b", "secret-b", ALL_SCOPES);
    let tok = token_for(&sim, ID, SECRET).await;
    let url = format!("{}/v3/jobs", sim.api_base());
    for remaining in [2, 1, 0] {
        let r = get(&url, &tok).await;
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["x-ratelimit-limit"], "3");
        assert_eq!(
            r.headers()["x-ratelimit-remaining"],
            remaining.to_string().as_str()
        );
        assert!(
            r.headers()["x-ratelimit-reset"]
                .to_str()
                .unwrap()
                .parse::<i64>()
                .unwrap()
                > 0
        );
    }
    let r = get(&url, &tok).await;
    assert_eq!(r.status(), 429);
    let retry: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=30).contains(&retry));
    assert!(r.headers().contains_key("x-ratelimit-limit"));
    assert_eq!(
        r.json::<Value>().await.unwrap()["message"],
        "Rate limit exceeded"
    );
    // Another credential has its own budget; errors also carry the headers.
    let tok_b = token_for(&sim, "client-b", "secret-b").await;
    assert_eq!(get(&url, &tok_b).await.status(), 200);
    let unauth = get(&url, "nonsense").await;
    assert_eq!(unauth.status(), 401);
    assert!(unauth.headers().contains_key("x-ratelimit-remaining"));
    // After Retry-After seconds (simulated clock drives the window here) it works again.
    sim.clock().advance(Duration::from_secs(retry));
    assert_eq!(get(&url, &tok).await.status(), 200);
    assert_eq!(sim.stats().rate_limited, 1);
    assert_eq!(sim.stats().count("GET /v3/jobs", 429), 1);
}

async fn token_req(
    sim: &SimHandle,
    id: &str,
    secret: &str,
    form: &[(&str, &str)],
) -> (StatusCode, Value) {
    let r = Client::new()
        .post(sim.token_url())
        .basic_auth(id, Some(secret))
        .form(form)
        .send()
        .await
        .unwrap();
    (r.status(), r.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn refresh_tokens_rotate_and_reuse_gives_invalid_grant() {
    let (sim, _) = start(SimConfig::default(), 5).await;
    let code = sim.issue_authorization_code(ID, 1_000_100);
    let (st, t1) = token_req(
        &sim,
        ID,
        SECRET,
        &[("grant_type", "authorization_code"), ("code", &code)],
    )
    .await;
    assert_eq!(st, 200);
    assert_eq!(t1["token_type"], "Bearer");
    assert!(
        t1["expires_at"].is_string()
            && t1["scope"]
                .as_str()
                .unwrap()
                .contains("harvest:candidates:list")
    );
    let rt1 = t1["refresh_token"].as_str().unwrap().to_string();
    let (st, again) = token_req(
        &sim,
        ID,
        SECRET,
        &[("grant_type", "authorization_code"), ("code", &code)],
    )
    .await;
    assert_eq!(
        (st, again["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_grant")),
        "codes are single use"
    );
    let (st, t2) = token_req(
        &sim,
        ID,
        SECRET,
        &[("grant_type", "refresh_token"), ("refresh_token", &rt1)],
    )
    .await;
    assert_eq!(st, 200);
    let rt2 = t2["refresh_token"].as_str().unwrap().to_string();
    assert_ne!(rt1, rt2, "rotated");
    let (st, e) = token_req(
        &sim,
        ID,
        SECRET,
        &[("grant_type", "refresh_token"), ("refresh_token", &rt1)],
    )
    .await;
    assert_eq!(
        (st, e["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_grant")),
        "reuse of a rotated token"
    );
    // The new access token works; after an hour it does not.
    let at = t2["access_token"].as_str().unwrap();
    assert_eq!(at.split('.').count(), 3, "JWT-shaped");
    assert_eq!(
        get(&format!("{}/v3/jobs", sim.api_base()), at)
            .await
            .status(),
        200
    );
    sim.clock().advance(Duration::from_secs(3601));
    let r = get(&format!("{}/v3/jobs", sim.api_base()), at).await;
    assert_eq!(r.status(), 401);
    assert_eq!(r.json::<Value>().await.unwrap()["message"], "Unauthorized");
    // Refresh tokens die after 24 h without use.
    sim.clock().advance(Duration::from_secs(24 * 3600));
    let (st, e) = token_req(
        &sim,
        ID,
        SECRET,
        &[("grant_type", "refresh_token"), ("refresh_token", &rt2)],
    )
    .await;
    assert_eq!(
        (st, e["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_grant"))
    );
    // An expired authorization code is refused.
    let code = sim.issue_authorization_code(ID, 1);
    sim.clock().advance(Duration::from_secs(61));
    let (st, _) = token_req(
        &sim,
        ID,
        SECRET,
        &[("grant_type", "authorization_code"), ("code", &code)],
    )
    .await;
    assert_eq!(st, 400);
}

#[tokio::test]
async fn token_endpoint_errors_revocation_expiry_style_and_own_rate_limit() {
    let (sim, _) = start(
        SimConfig {
            token_expiry_style: ExpiryStyle::ExpiresIn,
            ..Default::default()
        },
        5,
    )
    .await;
    let (st, e) = token_req(&sim, ID, "wrong", &[("grant_type", "client_credentials")]).await;
    assert_eq!(
        (st, e["error"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("invalid_client"))
    );
    let (st, e) = token_req(&sim, ID, SECRET, &[("grant_type", "password")]).await;
    assert_eq!(
        (st, e["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("unsupported_grant_type"))
    );
    let (st, t) = token_req(
        &sim,
        ID,
        SECRET,
        &[("grant_type", "client_credentials"), ("sub", "1000100")],
    )
    .await;
    assert_eq!(st, 200);
    assert_eq!(t["expires_in"], 3600);
    assert!(t.get("refresh_token").is_none());
    let at = t["access_token"].as_str().unwrap().to_string();
    sim.expire_access_tokens();
    assert_eq!(
        get(&format!("{}/v3/jobs", sim.api_base()), &at)
            .await
            .status(),
        401
    );
    let code = sim.issue_authorization_code(ID, 5);
    let (_, t) = token_req(
        &sim,
        ID,
        SECRET,
        &[("grant_type", "authorization_code"), ("code", &code)],
    )
    .await;
    sim.revoke_refresh_tokens(ID);
    let (st, _) = token_req(
        &sim,
        ID,
        SECRET,
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", t["refresh_token"].as_str().unwrap()),
        ],
    )
    .await;
    assert_eq!(st, 400);
    sim.set_token_rate_limit(1);
    let (first, _) = token_req(&sim, ID, SECRET, &[("grant_type", "client_credentials")]).await;
    let (second, _) = token_req(&sim, ID, SECRET, &[("grant_type", "client_credentials")]).await;
    assert_eq!(
        (first, second),
        (StatusCode::OK, StatusCode::TOO_MANY_REQUESTS)
    );
    assert!(sim.stats().token_requests >= 7);
}

#[tokio::test]
async fn a_missing_scope_or_non_admin_user_gets_403() {
    let (sim, _) = start(SimConfig::default(), 5).await;
    sim.add_oauth_client("jobs-only", "s", &["harvest:jobs:list"]);
    let tok = token_for(&sim, "jobs-only", "s").await;
    assert_eq!(
        get(&format!("{}/v3/jobs", sim.api_base()), &tok)
            .await
            .status(),
        200
    );
    for e in ["candidates", "applications", "attachments"] {
        let r = get(&format!("{}/v3/{e}", sim.api_base()), &tok).await;
        assert_eq!(r.status(), 403, "{e}");
        assert!(
            r.json::<Value>().await.unwrap()["errors"][0]
                .as_str()
                .unwrap()
                .contains(&format!("harvest:{e}:list"))
        );
    }
    sim.set_site_admin(77, false);
    let (_, t) = token_req(
        &sim,
        ID,
        SECRET,
        &[("grant_type", "client_credentials"), ("sub", "77")],
    )
    .await;
    assert_eq!(
        get(
            &format!("{}/v3/jobs", sim.api_base()),
            t["access_token"].as_str().unwrap()
        )
        .await
        .status(),
        403
    );
}

#[tokio::test]
async fn attachment_urls_serve_pdf_bytes_until_they_expire() {
    let (sim, s) = start(SimConfig::default(), 20).await;
    let tok = token_for(&sim, ID, SECRET).await;
    let rows: Value = get(
        &format!("{}/v3/attachments?per_page=500", sim.api_base()),
        &tok,
    )
    .await
    .json()
    .await
    .unwrap();
    let row = &rows[0];
    let id = row["id"].as_u64().unwrap();
    assert!(row["filename"].is_string() && row["type"].is_string() && row["candidate_id"].is_u64());
    let url = row["url"].as_str().unwrap().to_string();
    assert!(
        url.starts_with(&sim.storage_base()),
        "served by the second listener"
    );
    let r = Client::new().get(&url).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let bytes = r.bytes().await.unwrap();
    assert!(bytes.starts_with(b"%PDF-") && (30 * 1024..=2 * 1024 * 1024).contains(&bytes.len()));
    assert_eq!(
        hex::encode(Sha256::digest(&bytes)),
        sim.attachment_sha256(id)
    );
    assert_eq!(bytes.len(), attachment_size(s.truth.file_seed, id));
    let tampered = url.replace("sig=", "sig=0");
    assert_eq!(
        Client::new().get(&tampered).send().await.unwrap().status(),
        403
    );
    let later = url.replace("expires=", "expires=9");
    assert_eq!(
        Client::new().get(&later).send().await.unwrap().status(),
        403,
        "expiry is signed"
    );
    sim.clock().advance(Duration::from_secs(7 * 24 * 3600 + 1));
    assert_eq!(
        Client::new().get(&url).send().await.unwrap().status(),
        403,
        "expired after 7 days"
    );
    // A fresh listing (with a fresh token: a week has passed) gives a fresh URL.
    let tok = token_for(&sim, ID, SECRET).await;
    let fresh: Value = get(&format!("{}/v3/attachments?ids={id}", sim.api_base()), &tok)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        Client::new()
            .get(fresh[0]["url"].as_str().unwrap())
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert!(sim.stats().storage_bytes >= 2 * bytes.len() as u64);
}

/// Greenhouse removed Harvest v1/v2 on 2026-08-31: its paths are gone, with any
/// credential (D28).
#[tokio::test]
async fn v1_paths_answer_404_as_greenhouse_does_since_its_removal() {
    let (sim, _) = start(SimConfig::default(), 10).await;
    let tok = token_for(&sim, ID, SECRET).await;
    let c = Client::new();
    for path in ["v1/candidates", "v1/applications?per_page=1", "v1/jobs/1"] {
        let url = format!("{}/{path}", sim.api_base());
        let basic = c
            .get(&url)
            .basic_auth("any-key", Some(""))
            .send()
            .await
            .unwrap();
        assert_eq!(basic.status(), 404, "{path} with an API key");
        assert_eq!(get(&url, &tok).await.status(), 404, "{path} with a token");
    }
    assert_eq!(
        get(&format!("{}/v3/jobs", sim.api_base()), &tok)
            .await
            .status(),
        200
    );
}

#[tokio::test]
async fn seeded_faults_give_5xx_malformed_bodies_and_429_bursts() {
    let (sim, _) = start(SimConfig::default(), 10).await;
    let tok = token_for(&sim, ID, SECRET).await;
    let url = format!("{}/v3/candidates", sim.api_base());
    sim.set_faults(Faults {
        seed: 1,
        error_5xx_rate: 1.0,
        ..Default::default()
    });
    assert!(get(&url, &tok).await.status().is_server_error());
    sim.set_faults(Faults {
        seed: 1,
        malformed_body_rate: 1.0,
        ..Default::default()
    });
    let r = get(&url, &tok).await;
    assert_eq!(r.status(), 200);
    assert!(serde_json::from_slice::<Value>(&r.bytes().await.unwrap()).is_err());
    sim.set_faults(Faults {
        seed: 1,
        burst_429: Some(Burst429 {
            probability: 1.0,
            length: 3,
            retry_after_secs: 2,
        }),
        ..Default::default()
    });
    let r = get(&url, &tok).await;
    assert_eq!(
        (r.status(), r.headers()["retry-after"].to_str().unwrap()),
        (StatusCode::TOO_MANY_REQUESTS, "2")
    );
    sim.set_faults(Faults::default());
    assert_eq!(get(&url, &tok).await.status(), 200);
    sim.set_faults(Faults {
        seed: 3,
        cursor_expiry_rate: 1.0,
        ..Default::default()
    });
    let next = next_link(&get(&format!("{url}?per_page=2"), &tok).await).unwrap();
    assert_eq!(get(&next, &tok).await.status(), 422);
}

#[tokio::test]
async fn merges_anonymisation_and_deletes_behave_like_greenhouse() {
    let (sim, s) = start(SimConfig::default(), 40).await;
    let tok = token_for(&sim, ID, SECRET).await;
    let with_apps: Vec<u64> = s
        .truth
        .candidates
        .iter()
        .map(|c| c["id"].as_u64().unwrap())
        .filter(|id| {
            s.truth
                .applications
                .iter()
                .any(|a| a["candidate_id"] == json!(id))
        })
        .collect();
    let (winner, loser, anon) = (with_apps[0], with_apps[1], with_apps[2]);
    sim.clock().advance(Duration::from_secs(600));
    let now = model::ts(sim.clock().now());
    let m = sim.mutate();
    m.merge_candidates(winner, loser).unwrap();
    m.anonymise(anon).unwrap();
    assert_eq!(
        get(&format!("{}/v3/candidates/{loser}", sim.api_base()), &tok)
            .await
            .status(),
        404
    );
    let moved: Value = get(
        &format!(
            "{}/v3/applications?per_page=500&candidate_ids={winner}",
            sim.api_base()
        ),
        &tok,
    )
    .await
    .json()
    .await
    .unwrap();
    let loser_apps = s
        .truth
        .applications
        .iter()
        .filter(|a| a["candidate_id"] == json!(loser))
        .count();
    let winner_apps = s
        .truth
        .applications
        .iter()
        .filter(|a| a["candidate_id"] == json!(winner))
        .count();
    assert_eq!(moved.as_array().unwrap().len(), loser_apps + winner_apps);
    let changed: Value = get(
        &format!("{}/v3/candidates?updated_at=gte|{now}", sim.api_base()),
        &tok,
    )
    .await
    .json()
    .await
    .unwrap();
    let mut changed_ids = ids(&changed);
    changed_ids.sort_unstable();
    let mut want = vec![winner, anon];
    want.sort_unstable();
    assert_eq!(
        changed_ids, want,
        "updated_at moved on the winner and the anonymised candidate"
    );
    let a: Value = get(&format!("{}/v3/candidates/{anon}", sim.api_base()), &tok)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        (a["first_name"].as_str(), a["email_addresses"].clone()),
        (Some("Anonymized"), json!([]))
    );
    m.delete(Entity::Candidate, winner).unwrap();
    let gone: Value = get(
        &format!(
            "{}/v3/applications?per_page=500&candidate_ids={winner}",
            sim.api_base()
        ),
        &tok,
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(
        gone,
        json!([]),
        "a deleted candidate takes its applications"
    );
    let att = m.add_attachment(anon, None, "new.pdf", "resume").unwrap();
    let snap = sim.snapshot();
    assert!(
        snap.get(Entity::Attachment, att).is_some()
            && snap.get(Entity::Candidate, winner).is_none()
    );
    let view = canonical_view(&snap, Entity::Candidate, anon).unwrap();
    assert!(
        view["attachments"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["id"] == json!(att.to_string()))
    );
}

#[tokio::test]
async fn scenario_truth_served_over_http_matches_the_manifest_for_untouched_records() {
    let s = Scenario::generate(&spec(120));
    let sim = Simulator::start(SimConfig::default(), s.truth.clone())
        .await
        .unwrap();
    sim.add_oauth_client(ID, SECRET, ALL_SCOPES);
    let tok = token_for(&sim, ID, SECRET).await;
    let served: Value = get(&format!("{}/v3/jobs?per_page=500", sim.api_base()), &tok)
        .await
        .json()
        .await
        .unwrap();
    for j in served.as_array().unwrap() {
        let id = j["id"].as_u64().unwrap().to_string();
        let view = canonical::record_fields(Entity::Job, j);
        assert!(
            s.manifest.check("job", &id, Some(&view)).is_empty(),
            "job {id}"
        );
    }
    // Tombstones exist for deleted/merged records and the pushed snapshot holds them.
    for (k, e) in &s.manifest.expected_views {
        if e == ExpectedRecord::Tombstone {
            assert_eq!(
                get(&format!("{}/v3/{}s/{}", sim.api_base(), k.0, k.1), &tok)
                    .await
                    .status(),
                404
            );
            assert!(
                s.pushed
                    .iter()
                    .any(|p| p["entity"] == k.0.as_str() && p["id"] == k.1.as_str())
            );
        }
    }
}
