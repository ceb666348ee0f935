//! The simulator's traps, exercised over HTTP the way a connector meets them:
//! confidentiality, null `updatedAt`, inclusive millisecond windows, opaque page tokens,
//! resumes beyond one page, authenticated downloads, OAuth refresh rotation and
//! offline_access, API keys, the token bucket, deletes, mutations, faults and stats.
//! Timing is never asserted: the rate-limit buckets follow the simulated clock here.

use std::collections::{BTreeSet, HashSet};
use std::time::Duration;

use lever_sim::model::{Opportunity, ResumeRec, SCOPE_CONFIDENTIAL, SCOPE_OPPORTUNITIES};
use lever_sim::*;
use reqwest::{Client, Response};
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

const KEY: &str = "key-all";
const CLIENT: &str = "client-a";
const SECRET: &str = "secret-a";
const REDIRECT: &str = "https://eds.example/callback";

/// A simulator over the default scenario, rate limit off unless the test sets it, on
/// the simulated clock, with an all-scopes API key and OAuth client.
async fn start(cfg: SimConfig) -> (SimHandle, Scenario) {
    let s = Scenario::generate(&ScenarioSpec::default());
    let sim = Simulator::start(
        SimConfig {
            rate_clock: RateClock::Simulated,
            ..cfg
        },
        s.truth.clone(),
    )
    .await
    .unwrap();
    sim.add_api_key(KEY, ALL_SCOPES);
    sim.add_oauth_client(CLIENT, SECRET, ALL_SCOPES);
    (sim, s)
}

fn no_limit() -> SimConfig {
    SimConfig {
        rate_per_sec: 0.0,
        ..Default::default()
    }
}

async fn get_key(url: &str, key: &str) -> Response {
    Client::new()
        .get(url)
        .basic_auth(key, None::<&str>)
        .send()
        .await
        .unwrap()
}

async fn get_bearer(url: &str, token: &str) -> Response {
    Client::new()
        .get(url)
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
}

async fn json_of(r: Response) -> Value {
    r.json().await.unwrap()
}

fn with_offset(url: &str, next: &str) -> String {
    let sep = if url.contains('?') { '&' } else { '?' };
    format!(
        "{url}{sep}offset={}",
        url::form_urlencoded::byte_serialize(next.as_bytes()).collect::<String>()
    )
}

/// Every item of a list, following `next` as `offset` (re-sending the query); and the
/// number of pages.
async fn crawl(url: &str, key: &str) -> (Vec<Value>, usize) {
    let mut all = vec![];
    let mut pages = 0;
    let mut next: Option<String> = None;
    loop {
        let u = match &next {
            None => url.to_string(),
            Some(n) => with_offset(url, n),
        };
        let r = get_key(&u, key).await;
        assert_eq!(r.status(), 200, "{u}");
        let v = json_of(r).await;
        pages += 1;
        all.extend(v["data"].as_array().unwrap().iter().cloned());
        if v["hasNext"] == true {
            next = Some(v["next"].as_str().expect("next when hasNext").to_string());
        } else {
            assert!(v.get("next").is_none(), "no next on the last page");
            break;
        }
    }
    (all, pages)
}

fn ids(items: &[Value]) -> BTreeSet<String> {
    items
        .iter()
        .map(|x| x["id"].as_str().unwrap().to_string())
        .collect()
}

async fn token_post(sim: &SimHandle, form: &[(&str, &str)]) -> (u16, Value) {
    let r = Client::new()
        .post(sim.token_url())
        .form(form)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

async fn code_grant(sim: &SimHandle, code: &str) -> (u16, Value) {
    token_post(
        sim,
        &[
            ("grant_type", "authorization_code"),
            ("client_id", CLIENT),
            ("client_secret", SECRET),
            ("code", code),
            ("redirect_uri", REDIRECT),
            ("audience", AUDIENCE),
        ],
    )
    .await
}

async fn refresh(sim: &SimHandle, rt: &str) -> (u16, Value) {
    token_post(
        sim,
        &[
            ("grant_type", "refresh_token"),
            ("client_id", CLIENT),
            ("client_secret", SECRET),
            ("refresh_token", rt),
        ],
    )
    .await
}

#[tokio::test]
async fn the_default_omits_confidential_and_confidentiality_all_includes_them() {
    let (sim, s) = start(no_limit()).await;
    let conf: BTreeSet<String> = s
        .manifest
        .trap(Trap::Confidential)
        .iter()
        .cloned()
        .collect();
    assert!(!conf.is_empty());
    let base = format!("{}/opportunities", sim.api_base());
    let (default, _) = crawl(&base, KEY).await;
    assert!(ids(&default).is_disjoint(&conf));
    assert!(
        default
            .iter()
            .all(|o| o["confidentiality"] == "non-confidential")
    );
    let (all, _) = crawl(&format!("{base}?confidentiality=all"), KEY).await;
    assert!(ids(&all).is_superset(&conf));
    assert_eq!(all.len(), s.truth.opportunities.len());
    let (only, _) = crawl(&format!("{base}?confidentiality=confidential"), KEY).await;
    assert_eq!(ids(&only), conf);

    // Without confidential:access:admin they are silently left out, and refused by id.
    let scopes: Vec<&str> = ALL_SCOPES
        .iter()
        .copied()
        .filter(|s| *s != SCOPE_CONFIDENTIAL)
        .collect();
    sim.add_api_key("no-conf", &scopes);
    let (all_nc, _) = crawl(&format!("{base}?confidentiality=all"), "no-conf").await;
    assert_eq!(ids(&all_nc), ids(&default));
    let one = conf.iter().next().unwrap();
    let r = get_key(&format!("{base}/{one}"), "no-conf").await;
    assert_eq!(r.status(), 403);
    assert_eq!(json_of(r).await["code"], "ForbiddenError");
    assert_eq!(get_key(&format!("{base}/{one}"), KEY).await.status(), 200);
    // The alternative policy refuses the list instead.
    sim.set_config(SimConfig {
        confidential_policy: ConfidentialPolicy::Forbid,
        ..sim.config()
    });
    let r = get_key(&format!("{base}?confidentiality=all"), "no-conf").await;
    assert_eq!(r.status(), 403);
    let r = get_key(&format!("{base}?confidentiality=bogus"), KEY).await;
    assert_eq!(r.status(), 400);
    // Postings follow the same rule.
    let (posts, _) = crawl(&format!("{}/postings", sim.api_base()), KEY).await;
    assert!(
        posts
            .iter()
            .all(|p| p["confidentiality"] == "non-confidential")
    );
    let (posts, _) = crawl(
        &format!("{}/postings?confidentiality=all", sim.api_base()),
        KEY,
    )
    .await;
    assert_eq!(posts.len(), s.truth.postings.len());
}

#[tokio::test]
async fn an_updated_at_filter_never_returns_null_updated_at_opportunities() {
    let (sim, s) = start(no_limit()).await;
    let nulls: BTreeSet<String> = s
        .manifest
        .trap(Trap::NullUpdatedAt)
        .iter()
        .cloned()
        .collect();
    assert!(!nulls.is_empty());
    let base = format!("{}/opportunities?confidentiality=all", sim.api_base());
    let (all, _) = crawl(&base, KEY).await;
    let unfiltered = ids(&all);
    assert!(unfiltered.is_superset(&nulls));
    for o in all
        .iter()
        .filter(|o| nulls.contains(o["id"].as_str().unwrap()))
    {
        assert!(o["updatedAt"].is_null() && o.get("updatedAt").is_some());
    }
    for q in [
        "updated_at_start=0",
        "updated_at_end=99999999999999",
        "updated_at_start=0&updated_at_end=99999999999999",
    ] {
        let (w, _) = crawl(&format!("{base}&{q}"), KEY).await;
        let w = ids(&w);
        assert!(w.is_disjoint(&nulls), "{q}");
        assert_eq!(w.len() + nulls.len(), unfiltered.len(), "{q}");
    }
}

#[tokio::test]
async fn millisecond_filters_are_inclusive_at_both_ends() {
    let (sim, s) = start(no_limit()).await;
    let o = s
        .truth
        .opportunities
        .iter()
        .find(|o| o.updated_at.is_some() && !o.is_confidential())
        .unwrap();
    let (t, c) = (o.updated_at.unwrap(), o.created_at);
    let base = format!("{}/opportunities", sim.api_base());
    for (q, present) in [
        (format!("updated_at_start={t}&updated_at_end={t}"), true),
        (format!("updated_at_start={t}"), true),
        (format!("updated_at_end={t}"), true),
        (format!("updated_at_start={}", t + 1), false),
        (format!("updated_at_end={}", t - 1), false),
        (format!("created_at_start={c}&created_at_end={c}"), true),
        (
            format!("created_at_start={}&created_at_end={}", c + 1, c + 10),
            false,
        ),
    ] {
        let (items, _) = crawl(&format!("{base}?{q}"), KEY).await;
        assert_eq!(ids(&items).contains(&o.id), present, "{q}");
    }
    let r = get_key(&format!("{base}?updated_at_start=yesterday"), KEY).await;
    assert_eq!(r.status(), 400);
    assert_eq!(json_of(r).await["code"], "BadRequestError");
}

#[tokio::test]
async fn pagination_round_trips_the_opaque_next_and_a_tampered_token_is_400() {
    let (sim, s) = start(no_limit()).await;
    let base = format!("{}/opportunities?confidentiality=all", sim.api_base());
    let (items, pages) = crawl(&format!("{base}&limit=7"), KEY).await;
    let n = s.truth.opportunities.len();
    assert_eq!(items.len(), n, "every opportunity once");
    assert_eq!(ids(&items).len(), n);
    assert_eq!(pages, n.div_ceil(7));
    let (default_page, _) = crawl(&base, KEY).await;
    assert_eq!(default_page.len(), n);

    let first = json_of(get_key(&format!("{base}&limit=7"), KEY).await).await;
    assert_eq!(first["data"].as_array().unwrap().len(), 7);
    let next = first["next"].as_str().unwrap().to_string();
    assert!(
        !next.contains(&first["data"][6]["id"].as_str().unwrap()[..8]),
        "opaque"
    );
    let mut bad = next.clone().into_bytes();
    let i = bad.len() / 3;
    bad[i] = if bad[i] == b'A' { b'B' } else { b'A' };
    let bad = String::from_utf8(bad).unwrap();
    for tok in [
        bad.as_str(),
        "garbage",
        "eyJyIjoib3Bwb3J0dW5pdGllcyIsImsiOjV9.00",
    ] {
        let r = get_key(&with_offset(&format!("{base}&limit=7"), tok), KEY).await;
        assert_eq!(r.status(), 400, "{tok}");
        assert_eq!(json_of(r).await["code"], "BadRequestError");
    }
    // A token is bound to its list.
    let r = get_key(
        &with_offset(&format!("{}/postings", sim.api_base()), &next),
        KEY,
    )
    .await;
    assert_eq!(r.status(), 400);
    // limit is 1..=100; the Clamp policy clamps instead.
    for l in ["0", "101", "x"] {
        assert_eq!(
            get_key(&format!("{base}&limit={l}"), KEY).await.status(),
            400,
            "{l}"
        );
    }
    sim.set_config(SimConfig {
        limit_policy: LimitPolicy::Clamp,
        ..sim.config()
    });
    let v = json_of(get_key(&format!("{base}&limit=500"), KEY).await).await;
    assert_eq!(v["data"].as_array().unwrap().len(), 100);
}

#[tokio::test]
async fn resumes_span_pages_and_downloads_need_authentication() {
    let (sim, s) = start(no_limit()).await;
    let many = &s.manifest.trap(Trap::ManyResumes)[0];
    let url = format!("{}/opportunities/{many}/resumes", sim.api_base());
    let p1 = json_of(get_key(&url, KEY).await).await;
    assert_eq!(p1["data"].as_array().unwrap().len(), 100);
    assert_eq!(p1["hasNext"], true);
    let (all, pages) = crawl(&url, KEY).await;
    assert_eq!(pages, 2);
    let truth: BTreeSet<String> = s.truth.resumes_of(many).map(|r| r.id.clone()).collect();
    assert_eq!(ids(&all), truth);

    // A configured resume page size of 2 pages any opportunity with 3+ resumes.
    sim.set_config(SimConfig {
        resume_page_size: 2,
        ..sim.config()
    });
    let o = s
        .truth
        .opportunities
        .iter()
        .find(|o| !o.is_confidential() && s.truth.resumes_of(&o.id).count() == 2)
        .unwrap();
    sim.mutate().add_resume(&o.id, "Third.pdf").unwrap();
    let (all, pages) = crawl(
        &format!(
            "{}/opportunities/{}/resumes?limit=100",
            sim.api_base(),
            o.id
        ),
        KEY,
    )
    .await;
    assert_eq!((all.len(), pages), (3, 2));

    // Bytes come from an authenticated API call, the same credential as the API.
    let r = &all[0];
    assert_eq!(r["file"]["status"], "processed");
    let dl = r["file"]["downloadUrl"].as_str().unwrap().to_string();
    assert!(dl.starts_with(&sim.api_base()) && dl.ends_with("/download"));
    assert_eq!(Client::new().get(&dl).send().await.unwrap().status(), 401);
    let resp = get_key(&dl, KEY).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "application/pdf");
    let bytes = resp.bytes().await.unwrap();
    let id = r["id"].as_str().unwrap();
    assert_eq!(bytes.len() as u64, r["file"]["size"].as_u64().unwrap());
    assert_eq!(hex::encode(Sha256::digest(&bytes)), sim.file_sha256(id));
    assert_eq!(sim.file_sha256(id), file_sha256(sim.file_seed(), id));
    let code = sim.issue_authorization_code(CLIENT);
    let (_, t) = code_grant(&sim, &code).await;
    let at = t["access_token"].as_str().unwrap();
    assert_eq!(get_bearer(&dl, at).await.status(), 200);
    let wrong = dl.replace(id, "00000000-0000-4000-8000-000000000000");
    assert_eq!(get_key(&wrong, KEY).await.status(), 404);

    // Files alike.
    let f = s
        .truth
        .files
        .iter()
        .find(|f| {
            s.truth
                .opportunity(&f.opportunity_id)
                .is_some_and(|o| !o.is_confidential())
        })
        .unwrap();
    let (files, _) = crawl(
        &format!(
            "{}/opportunities/{}/files",
            sim.api_base(),
            f.opportunity_id
        ),
        KEY,
    )
    .await;
    let fj = files.iter().find(|x| x["id"] == json!(f.id)).unwrap();
    let dl = fj["downloadUrl"].as_str().unwrap();
    assert_eq!(Client::new().get(dl).send().await.unwrap().status(), 401);
    let bytes = get_key(dl, KEY).await.bytes().await.unwrap();
    assert_eq!(hex::encode(Sha256::digest(&bytes)), sim.file_sha256(&f.id));
    assert_eq!(sim.stats().downloads, 3);
}

#[tokio::test]
async fn refresh_tokens_rotate_and_a_used_one_is_refused() {
    let (sim, _) = start(no_limit()).await;
    let code = sim.issue_authorization_code(CLIENT);
    // The code grant needs redirect_uri and the audience.
    let (st, v) = token_post(
        &sim,
        &[
            ("grant_type", "authorization_code"),
            ("client_id", CLIENT),
            ("client_secret", SECRET),
            ("code", &code),
            ("redirect_uri", REDIRECT),
        ],
    )
    .await;
    assert_eq!((st, v["error"].as_str()), (400, Some("invalid_request")));
    let (st, v) = code_grant(&sim, &code).await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["token_type"], "Bearer");
    assert_eq!(v["expires_in"], 3600);
    assert!(v["scope"].as_str().unwrap().contains("offline_access"));
    let (st, v2) = code_grant(&sim, &code).await;
    assert_eq!(
        (st, v2["error"].as_str()),
        (400, Some("invalid_grant")),
        "single use"
    );
    let at = v["access_token"].as_str().unwrap().to_string();
    let rt1 = v["refresh_token"].as_str().unwrap().to_string();
    let opps = format!("{}/opportunities?limit=1", sim.api_base());
    assert_eq!(get_bearer(&opps, &at).await.status(), 200);

    let (st, r) = refresh(&sim, &rt1).await;
    assert_eq!(st, 200, "{r}");
    let rt2 = r["refresh_token"].as_str().unwrap().to_string();
    assert_ne!(rt1, rt2, "every refresh rotates");
    let (st, e) = refresh(&sim, &rt1).await;
    assert_eq!(
        (st, e["error"].as_str()),
        (400, Some("invalid_grant")),
        "the old one is dead"
    );
    let (st, r) = refresh(&sim, &rt2).await;
    assert_eq!(st, 200);
    let rt3 = r["refresh_token"].as_str().unwrap().to_string();
    let at3 = r["access_token"].as_str().unwrap().to_string();

    // Access tokens live 1 h of simulated time, and can be expired on demand.
    sim.clock().advance(Duration::from_secs(3599));
    assert_eq!(get_bearer(&opps, &at3).await.status(), 200);
    sim.clock().advance(Duration::from_secs(1));
    let r = get_bearer(&opps, &at3).await;
    assert_eq!(r.status(), 401);
    assert_eq!(json_of(r).await["code"], "UnauthorizedError");
    let (_, r) = refresh(&sim, &rt3).await;
    let at4 = r["access_token"].as_str().unwrap().to_string();
    let rt4 = r["refresh_token"].as_str().unwrap().to_string();
    sim.expire_access_tokens();
    assert_eq!(get_bearer(&opps, &at4).await.status(), 401);

    // A refresh token unused for 90 days dies; so does every one after revocation.
    sim.clock().advance(Duration::from_secs(90 * 24 * 3600));
    let (st, e) = refresh(&sim, &rt4).await;
    assert_eq!((st, e["error"].as_str()), (400, Some("invalid_grant")));
    let (_, v) = code_grant(&sim, &sim.issue_authorization_code(CLIENT)).await;
    sim.revoke_refresh_tokens(CLIENT);
    let (st, _) = refresh(&sim, v["refresh_token"].as_str().unwrap()).await;
    assert_eq!(st, 400);
    // Wrong client secret: invalid_client, 401.
    let (st, e) = token_post(
        &sim,
        &[
            ("grant_type", "refresh_token"),
            ("client_id", CLIENT),
            ("client_secret", "x"),
            ("refresh_token", "y"),
        ],
    )
    .await;
    assert_eq!((st, e["error"].as_str()), (401, Some("invalid_client")));

    // Options: audience required on refresh; invalid_grant as 401.
    sim.set_config(SimConfig {
        require_audience_on_refresh: true,
        invalid_grant_status: 401,
        ..sim.config()
    });
    let (_, v) = code_grant(&sim, &sim.issue_authorization_code(CLIENT)).await;
    let rt = v["refresh_token"].as_str().unwrap().to_string();
    assert_eq!(refresh(&sim, &rt).await.0, 400, "no audience");
    let (st, v) = token_post(
        &sim,
        &[
            ("grant_type", "refresh_token"),
            ("client_id", CLIENT),
            ("client_secret", SECRET),
            ("refresh_token", &rt),
            ("audience", AUDIENCE),
        ],
    )
    .await;
    assert_eq!(st, 200, "{v}");
    let (st, v) = token_post(
        &sim,
        &[
            ("grant_type", "refresh_token"),
            ("client_id", CLIENT),
            ("client_secret", SECRET),
            ("refresh_token", &rt),
            ("audience", AUDIENCE),
        ],
    )
    .await;
    assert_eq!(
        (st, v["error"].as_str()),
        (401, Some("invalid_grant")),
        "reuse, as 401"
    );
}

#[tokio::test]
async fn offline_access_is_needed_for_a_refresh_token() {
    let (sim, _) = start(no_limit()).await;
    let code = sim.issue_authorization_code_with(CLIENT, &[SCOPE_OPPORTUNITIES], Some(REDIRECT));
    let (st, v) = code_grant(&sim, &code).await;
    assert_eq!(st, 200);
    assert!(v.get("refresh_token").is_none(), "{v}");
    assert_eq!(v["scope"], SCOPE_OPPORTUNITIES);
    let at = v["access_token"].as_str().unwrap();
    assert_eq!(
        get_bearer(&format!("{}/opportunities", sim.api_base()), at)
            .await
            .status(),
        200
    );
    assert_eq!(
        get_bearer(&format!("{}/postings", sim.api_base()), at)
            .await
            .status(),
        403
    );
    // A code bound to a redirect_uri needs that one.
    let code =
        sim.issue_authorization_code_with(CLIENT, ALL_SCOPES, Some("https://other.example/cb"));
    let (st, v) = code_grant(&sim, &code).await;
    assert_eq!((st, v["error"].as_str()), (400, Some("invalid_grant")));
}

#[tokio::test]
async fn api_keys_authenticate_with_basic_auth_and_an_empty_password() {
    let (sim, _) = start(no_limit()).await;
    let url = format!("{}/opportunities?limit=2", sim.api_base());
    assert_eq!(get_key(&url, KEY).await.status(), 200);
    let r = Client::new()
        .get(&url)
        .basic_auth(KEY, Some("pw"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(get_key(&url, "unknown").await.status(), 401);
    let r = Client::new().get(&url).send().await.unwrap();
    assert_eq!(r.status(), 401);
    let v = json_of(r).await;
    assert_eq!(v["code"], "UnauthorizedError");
    assert!(v["message"].is_string());
    sim.add_api_key("postings-only", &["postings:read:admin"]);
    let r = get_key(&url, "postings-only").await;
    assert_eq!(r.status(), 403);
    assert!(
        json_of(r).await["message"]
            .as_str()
            .unwrap()
            .contains(SCOPE_OPPORTUNITIES)
    );
    assert_eq!(
        get_key(&format!("{}/postings", sim.api_base()), "postings-only")
            .await
            .status(),
        200
    );
    sim.revoke_api_key(KEY);
    assert_eq!(get_key(&url, KEY).await.status(), 401);
    assert_eq!(
        get_key(&format!("{}/nope", sim.api_base()), KEY)
            .await
            .status(),
        404
    );
}

#[tokio::test]
async fn the_bucket_allows_a_burst_of_20_then_10_per_second_per_credential() {
    let (sim, _) = start(SimConfig::default()).await;
    sim.add_api_key("other", ALL_SCOPES);
    let url = format!("{}/stages", sim.api_base());
    for i in 0..20 {
        assert_eq!(get_key(&url, KEY).await.status(), 200, "request {i}");
    }
    let r = get_key(&url, KEY).await;
    assert_eq!(r.status(), 429);
    assert!(
        r.headers().get("retry-after").is_none(),
        "no Retry-After by default"
    );
    assert!(!r.headers().keys().any(|k| k.as_str().contains("ratelimit")));
    assert_eq!(json_of(r).await["code"], "TooManyRequestsError");
    assert_eq!(get_key(&url, "other").await.status(), 200, "per credential");
    sim.clock().advance(Duration::from_millis(100));
    assert_eq!(get_key(&url, KEY).await.status(), 200);
    assert_eq!(get_key(&url, KEY).await.status(), 429);
    sim.clock().advance(Duration::from_secs(1));
    for _ in 0..10 {
        assert_eq!(get_key(&url, KEY).await.status(), 200);
    }
    assert_eq!(get_key(&url, KEY).await.status(), 429);
    // Unauthenticated requests do not drain it.
    assert_eq!(Client::new().get(&url).send().await.unwrap().status(), 401);
    assert_eq!(sim.stats().rate_limited, 3);
    assert_eq!(sim.stats().count("GET /v1/stages", 429), 3);
    sim.set_config(SimConfig {
        retry_after_header: true,
        ..sim.config()
    });
    let r = get_key(&url, KEY).await;
    assert_eq!(r.status(), 429);
    assert_eq!(r.headers()["retry-after"], "1");
}

#[tokio::test]
async fn the_deleted_list_returns_the_ids_deleted_in_the_window() {
    let (sim, s) = start(no_limit()).await;
    let push = s.manifest.push_time.timestamp_millis();
    let now = sim.clock().now_ms();
    let url = format!("{}/opportunities/deleted", sim.api_base());
    let after: BTreeSet<String> = s
        .manifest
        .trap(Trap::DeletedAfterPush)
        .iter()
        .cloned()
        .collect();
    let before: BTreeSet<String> = s
        .manifest
        .trap(Trap::DeletedBeforePush)
        .iter()
        .cloned()
        .collect();
    let (w, _) = crawl(
        &format!("{url}?deleted_at_start={push}&deleted_at_end={now}"),
        KEY,
    )
    .await;
    assert_eq!(ids(&w), after);
    for d in &w {
        assert!(d["deletedAt"].is_i64() && d.get("deletedBy").is_some());
    }
    let (all, _) = crawl(&format!("{url}?limit=2"), KEY).await;
    assert_eq!(ids(&all), after.union(&before).cloned().collect());
    // Inclusive at both ends.
    let d = &s.truth.deleted[0];
    let t = d.deleted_at;
    let (w, _) = crawl(
        &format!("{url}?deleted_at_start={t}&deleted_at_end={t}"),
        KEY,
    )
    .await;
    assert_eq!(ids(&w), BTreeSet::from([d.id.clone()]));
    let gone = after.iter().next().unwrap();
    assert_eq!(
        get_key(&format!("{}/opportunities/{gone}", sim.api_base()), KEY)
            .await
            .status(),
        404
    );

    // A delete now joins the list at the clock's now; archived is not deleted.
    let archived = &s.manifest.trap(Trap::Archived)[0];
    assert!(!ids(&all).contains(archived));
    sim.clock().advance(Duration::from_secs(60));
    let victim = s
        .truth
        .opportunities
        .iter()
        .find(|o| !o.is_confidential())
        .unwrap()
        .id
        .clone();
    sim.mutate().delete(&victim, Some("user-1")).unwrap();
    let t = sim.clock().now_ms();
    let (w, _) = crawl(&format!("{url}?deleted_at_start={t}"), KEY).await;
    assert_eq!(
        w,
        vec![json!({"id": victim, "deletedAt": t, "deletedBy": "user-1"})]
    );
    assert_eq!(
        get_key(&format!("{}/opportunities/{victim}", sim.api_base()), KEY)
            .await
            .status(),
        404
    );
    assert_eq!(
        get_key(
            &format!("{}/opportunities/{victim}/resumes", sim.api_base()),
            KEY
        )
        .await
        .status(),
        404
    );

    // Option: at most 30 days per window.
    sim.set_config(SimConfig {
        deleted_max_window: Some(Duration::from_secs(30 * 86_400)),
        ..sim.config()
    });
    assert_eq!(get_key(&url, KEY).await.status(), 400);
    assert_eq!(
        get_key(&format!("{url}?deleted_at_start={push}"), KEY)
            .await
            .status(),
        200
    );
}

#[tokio::test]
async fn mutations_move_updated_at_except_adding_a_resume() {
    let (sim, s) = start(no_limit()).await;
    let base = format!("{}/opportunities", sim.api_base());
    let o = s
        .truth
        .opportunities
        .iter()
        .find(|o| !o.is_confidential() && o.updated_at.is_some() && !o.is_anonymized)
        .unwrap();
    sim.clock().advance(Duration::from_secs(600));
    let now = sim.clock().now_ms();
    let rid = sim.mutate().add_resume(&o.id, "New CV.pdf").unwrap();
    let v = json_of(get_key(&format!("{base}/{}", o.id), KEY).await).await;
    assert_eq!(
        v["data"]["updatedAt"],
        json!(o.updated_at),
        "a resume does not bump updatedAt"
    );
    let (w, _) = crawl(&format!("{base}?updated_at_start={now}"), KEY).await;
    assert!(w.is_empty(), "so an incremental read does not see it");
    let (rs, _) = crawl(&format!("{base}/{}/resumes", o.id), KEY).await;
    let r = rs.iter().find(|r| r["id"] == json!(rid)).unwrap();
    assert_eq!(r["createdAt"], json!(now));
    assert_eq!(r["file"]["name"], "New CV.pdf");
    let fid = sim.mutate().add_file(&o.id, "Offer.pdf").unwrap();
    assert_eq!(
        sim.mutate().get(&o.id).unwrap()["updatedAt"],
        json!(o.updated_at)
    );

    // An update moves updatedAt to now; an incremental read then returns it.
    sim.mutate()
        .update(&o.id, "tags", json!(["moved"]))
        .unwrap();
    let (w, _) = crawl(
        &format!("{base}?updated_at_start={now}&updated_at_end={now}"),
        KEY,
    )
    .await;
    assert_eq!(ids(&w), BTreeSet::from([o.id.clone()]));
    assert_eq!(w[0]["tags"], json!(["moved"]));
    assert!(sim.mutate().update(&o.id, "id", json!("x")).is_err());
    assert!(sim.mutate().update("nope", "tags", json!([])).is_err());

    // Contact data changes on every opportunity of the contact.
    let shared = &s.manifest.trap(Trap::SharedContact);
    let a = s.truth.opportunity(&shared[0]).unwrap();
    let siblings: Vec<&Opportunity> = s
        .truth
        .opportunities
        .iter()
        .filter(|x| x.contact == a.contact)
        .collect();
    sim.clock().advance(Duration::from_secs(1));
    sim.mutate()
        .update(&a.id, "emails", json!(["new@example.com"]))
        .unwrap();
    for x in &siblings {
        let v = sim.mutate().get(&x.id).unwrap();
        assert_eq!(v["emails"], json!(["new@example.com"]));
        assert_eq!(v["updatedAt"], json!(sim.clock().now_ms()));
    }

    // Touch, set updatedAt to null, anonymize.
    sim.mutate().set_updated_at_null(&o.id).unwrap();
    let (w, _) = crawl(&format!("{base}?updated_at_start=0"), KEY).await;
    assert!(!ids(&w).contains(&o.id));
    sim.mutate().touch(&o.id).unwrap();
    sim.clock().advance(Duration::from_secs(1));
    sim.mutate().anonymize(&o.id).unwrap();
    let v = json_of(get_key(&format!("{base}/{}", o.id), KEY).await).await["data"].clone();
    assert_eq!(v["isAnonymized"], true);
    assert_eq!(v["name"], "Anonymized");
    assert_eq!(
        (v["emails"].clone(), v["phones"].clone()),
        (json!([]), json!([]))
    );
    assert_eq!(v["updatedAt"], json!(sim.clock().now_ms()));
    let (rs, _) = crawl(&format!("{base}/{}/resumes", o.id), KEY).await;
    assert!(rs.is_empty());
    let snap = sim.snapshot();
    assert!(snap.files.iter().all(|f| f.id != fid));
    let view = canonical_view(&snap, "candidate", &o.id).unwrap();
    assert_eq!(view["first_name"], "Anonymized");
    assert_eq!(view["last_name"], Value::Null);
}

#[tokio::test]
async fn expand_embeds_applications_stage_and_owner() {
    let (sim, s) = start(no_limit()).await;
    let o = s
        .truth
        .opportunities
        .iter()
        .find(|o| !o.is_confidential() && !o.applications.is_empty())
        .unwrap();
    let url = format!("{}/opportunities/{}", sim.api_base(), o.id);
    let plain = json_of(get_key(&url, KEY).await).await["data"].clone();
    assert_eq!(plain["applications"], json!(o.applications));
    assert_eq!(plain["stage"], json!(o.stage));
    let v = json_of(
        get_key(
            &format!("{url}?expand=applications&expand=stage,owner"),
            KEY,
        )
        .await,
    )
    .await["data"]
        .clone();
    let app = &v["applications"][0];
    assert_eq!(app["id"], json!(o.applications[0]));
    assert_eq!(
        app["candidateId"],
        json!(o.id),
        "candidateId is the opportunity id"
    );
    assert_eq!(app["opportunityId"], json!(o.id));
    assert_eq!(v["stage"]["id"], json!(o.stage));
    assert!(v["stage"]["text"].is_string());
    assert_eq!(v["owner"]["id"], json!(o.owner));
    let (apps, _) = crawl(&format!("{url}/applications"), KEY).await;
    assert_eq!(apps.len(), 1);
    assert_eq!(apps[0], *app);
    sim.add_api_key("opps-only", &[SCOPE_OPPORTUNITIES]);
    assert_eq!(
        get_key(&format!("{url}?expand=applications"), "opps-only")
            .await
            .status(),
        403
    );
    assert_eq!(
        get_key(&format!("{url}/applications"), "opps-only")
            .await
            .status(),
        403
    );
}

#[tokio::test]
async fn stats_count_requests_per_endpoint_and_status() {
    let (sim, s) = start(no_limit()).await;
    let o = &s
        .truth
        .opportunities
        .iter()
        .find(|o| !o.is_confidential())
        .unwrap()
        .id;
    let api = sim.api_base();
    let _ = get_key(&format!("{api}/opportunities"), KEY).await;
    let _ = get_key(&format!("{api}/opportunities"), KEY).await;
    let _ = get_key(&format!("{api}/opportunities?limit=0"), KEY).await;
    let _ = get_key(&format!("{api}/opportunities/{o}"), KEY).await;
    let _ = get_key(&format!("{api}/postings"), "nobody").await;
    let st = sim.stats();
    assert_eq!(st.count("GET /v1/opportunities", 200), 2);
    assert_eq!(st.count("GET /v1/opportunities", 400), 1);
    assert_eq!(st.endpoint_total("GET /v1/opportunities"), 3);
    assert_eq!(st.count("GET /v1/opportunities/{id}", 200), 1);
    assert_eq!(st.count("GET /v1/postings", 401), 1);
    assert_eq!(st.status_total(200), 3);
    assert_eq!(st.total_requests, 5);
    assert_eq!(st.records_served, 201);
    sim.reset_stats();
    assert_eq!(sim.stats().total_requests, 0);
}

#[tokio::test]
async fn faults_inject_5xx_429_and_delays() {
    let (sim, _) = start(no_limit()).await;
    let url = format!("{}/stages", sim.api_base());
    sim.fail_next(2, 503);
    assert_eq!(get_key(&url, KEY).await.status(), 503);
    let r = get_key(&url, KEY).await;
    assert_eq!(r.status(), 503);
    assert_eq!(json_of(r).await["code"], "ServiceUnavailableError");
    assert_eq!(get_key(&url, KEY).await.status(), 200);
    sim.rate_limit_next(1);
    assert_eq!(get_key(&url, KEY).await.status(), 429);
    sim.delay_next(1, Duration::from_millis(300));
    let r = Client::new()
        .get(&url)
        .basic_auth(KEY, None::<&str>)
        .timeout(Duration::from_millis(50))
        .send()
        .await;
    assert!(r.is_err_and(|e| e.is_timeout()));
    sim.set_faults(Faults {
        seed: 3,
        error_5xx_rate: 0.5,
        burst_429: Some(Burst429 {
            probability: 0.1,
            length: 3,
        }),
        ..Default::default()
    });
    let mut seen = HashSet::new();
    for _ in 0..60 {
        seen.insert(get_key(&url, KEY).await.status().as_u16());
    }
    assert!(seen.contains(&200) && seen.contains(&429));
    assert!(seen.iter().any(|s| *s >= 500));
    // Faults are for the API only: the token endpoint answers.
    let (st, _) = code_grant(&sim, &sim.issue_authorization_code(CLIENT)).await;
    assert_eq!(st, 200);
}

/// Builds eds-style canonical views from what the API serves (the way a connector
/// would) and checks them against the manifest for the records the push did not touch.
#[tokio::test]
async fn the_truth_served_over_http_matches_the_manifest_for_untouched_records() {
    let (sim, s) = start(no_limit()).await;
    let api = sim.api_base();
    let (opps, _) = crawl(
        &format!("{api}/opportunities?confidentiality=all&expand=applications"),
        KEY,
    )
    .await;
    let (stages, _) = crawl(&format!("{api}/stages"), KEY).await;
    let (reasons, _) = crawl(&format!("{api}/archive_reasons"), KEY).await;
    let (postings, _) = crawl(&format!("{api}/postings?confidentiality=all"), KEY).await;
    let touched: HashSet<&str> = s.manifest.defects.iter().map(|d| d.id.as_str()).collect();
    let mut checked = 0;
    for ov in &opps {
        let mut plain = ov.clone();
        plain["applications"] = json!(
            ov["applications"]
                .as_array()
                .unwrap()
                .iter()
                .map(|a| a["id"].clone())
                .collect::<Vec<_>>()
        );
        let o: Opportunity = serde_json::from_value(plain).unwrap();
        if touched.contains(o.id.as_str()) {
            continue;
        }
        let (rs, _) = crawl(&format!("{api}/opportunities/{}/resumes", o.id), KEY).await;
        let (fs, _) = crawl(&format!("{api}/opportunities/{}/files", o.id), KEY).await;
        let resumes: Vec<ResumeRec> = rs
            .iter()
            .map(|r| ResumeRec {
                id: r["id"].as_str().unwrap().into(),
                opportunity_id: o.id.clone(),
                created_at: r["createdAt"].as_i64().unwrap(),
                name: r["file"]["name"].as_str().unwrap().into(),
                ext: r["file"]["ext"].as_str().unwrap().into(),
                uploaded_at: r["file"]["uploadedAt"].as_i64().unwrap(),
                size: r["file"]["size"].as_u64().unwrap(),
            })
            .collect();
        let files: Vec<lever_sim::model::FileRec> = fs
            .iter()
            .map(|f| {
                let mut f = f.clone();
                f["opportunityId"] = json!(o.id);
                serde_json::from_value(f).unwrap()
            })
            .collect();
        let mut view = canonical::candidate_fields(&o);
        let atts = canonical::attachments_from(&resumes, &files);
        if !atts.is_empty() {
            view.insert("attachments".into(), Value::Array(atts));
        }
        assert_eq!(
            s.manifest.check("candidate", &o.id, Some(&view)),
            vec![],
            "{}",
            o.id
        );
        for a in ov["applications"].as_array().unwrap() {
            let a: lever_sim::model::Application = serde_json::from_value(a.clone()).unwrap();
            if touched.contains(a.id.as_str()) {
                continue;
            }
            let stage = stages
                .iter()
                .find(|x| x["id"] == json!(o.stage))
                .and_then(|x| x["text"].as_str());
            let reason: Option<lever_sim::model::ArchiveReason> =
                o.archived.as_ref().and_then(|x| {
                    reasons
                        .iter()
                        .find(|r| r["id"] == json!(x.reason))
                        .map(|r| serde_json::from_value(r.clone()).unwrap())
                });
            let view: Map<String, Value> =
                canonical::application_fields(&a, &o, stage, reason.as_ref());
            assert_eq!(s.manifest.check("application", &a.id, Some(&view)), vec![]);
        }
        checked += 1;
    }
    assert!(checked > 100, "{checked}");
    for p in &postings {
        let p: lever_sim::model::Posting = serde_json::from_value(p.clone()).unwrap();
        assert_eq!(
            s.manifest
                .check("job", &p.id, Some(&canonical::job_fields(&p))),
            vec![]
        );
    }
}
