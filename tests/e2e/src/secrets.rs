//! The secret-leak harness of the integration suite (product.md §7: no secret value in
//! a log line, an error message, a panic or a stored record).
//!
//! * [`install`] (called by `Stack::new`, so by every end-to-end test) puts a global
//!   tracing subscriber in place, once per test binary, that writes every event of the
//!   product (`eds_shared` at debug, everything else at info, the simulator excluded:
//!   it plays the ATS) as JSON lines into a shared buffer, and a panic hook that copies
//!   panic messages into the same buffer.
//! * [`register`] records a value that must never appear anywhere. `enable_greenhouse_tenant`
//!   registers what it stores; [`assert_no_secret_leaked`] also reads every version of
//!   the tenants' secrets back from Secrets Manager (the access and refresh tokens the
//!   simulator issued and eds persisted) before it searches.
//! * [`assert_no_secret_leaked`] fails on any registered value in the captured logs and
//!   panics, in any item of the stack's records and tenants tables, or in any object of
//!   its bucket; [`assert_text_clean`] checks an error string a test holds.
//!
//! Values shorter than [`MIN_SECRET_LEN`] are not registered: a one-letter test secret
//! would match everywhere and prove nothing.

use std::collections::BTreeSet;
use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};

use crate::Stack;

/// Shortest value worth searching for.
pub const MIN_SECRET_LEN: usize = 8;

/// Secret members of the tenant secret JSON (see docs/data-model.md).
const SECRET_KEYS: [&str; 4] = ["api_key", "client_secret", "refresh_token", "access_token"];

struct Capture {
    buffer: Arc<Mutex<Vec<u8>>>,
    /// Whether our subscriber became the global one (another one may have been first).
    installed: bool,
}

fn capture() -> &'static Capture {
    static CAPTURE: OnceLock<Capture> = OnceLock::new();
    CAPTURE.get_or_init(|| {
        let buffer = Arc::new(Mutex::new(Vec::new()));
        let writer = SharedWriter(buffer.clone());
        let filter = tracing_subscriber::EnvFilter::new("info,eds_shared=debug,greenhouse_sim=off");
        let installed = tracing_subscriber::fmt()
            .json()
            .with_env_filter(filter)
            .with_current_span(true)
            .with_span_list(true)
            .with_writer(move || writer.clone())
            .try_init()
            .is_ok();
        let panics = buffer.clone();
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if let Ok(mut b) = panics.lock() {
                let _ = writeln!(b, "panic: {info}");
            }
            previous(info);
        }));
        Capture { buffer, installed }
    })
}

#[derive(Clone)]
struct SharedWriter(Arc<Mutex<Vec<u8>>>);

impl Write for SharedWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        // A poisoned buffer only means a test panicked mid-write: keep capturing.
        let mut b = self.0.lock().unwrap_or_else(|p| p.into_inner());
        b.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn known() -> &'static Mutex<BTreeSet<String>> {
    static KNOWN: OnceLock<Mutex<BTreeSet<String>>> = OnceLock::new();
    KNOWN.get_or_init(Default::default)
}

fn secret_names() -> &'static Mutex<BTreeSet<String>> {
    static NAMES: OnceLock<Mutex<BTreeSet<String>>> = OnceLock::new();
    NAMES.get_or_init(Default::default)
}

/// Installs the capturing subscriber and panic hook (idempotent). Returns whether the
/// log capture is active (false: another global subscriber was installed first).
pub fn install() -> bool {
    capture().installed
}

/// Registers a value that must never leak.
pub fn register(value: &str) {
    if value.len() >= MIN_SECRET_LEN {
        known()
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(value.to_string());
    }
}

/// Registers the secret members of a tenant secret document, and the secret's name so
/// that [`assert_no_secret_leaked`] reads its later versions back.
pub fn register_tenant_secret(secret_name: &str, secret: &serde_json::Value) {
    secret_names()
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(secret_name.to_string());
    for key in SECRET_KEYS {
        if let Some(v) = secret.get(key).and_then(|v| v.as_str()) {
            register(v);
        }
    }
}

/// The registered values (for tests that count what they check).
pub fn registered() -> BTreeSet<String> {
    known().lock().unwrap_or_else(|p| p.into_inner()).clone()
}

/// Everything captured so far.
pub fn captured_logs() -> String {
    let b = capture()
        .buffer
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    String::from_utf8_lossy(&b).into_owned()
}

/// The registered values found in `text` (shown shortened: the report itself must not
/// print a secret in full).
pub fn leaks_in(text: &str) -> Vec<String> {
    registered()
        .into_iter()
        .filter(|s| text.contains(s.as_str()))
        .map(|s| {
            format!(
                "{}… ({} chars)",
                s.chars().take(3).collect::<String>(),
                s.len()
            )
        })
        .collect()
}

/// Fails if `text` (an error message, a response body) contains a registered secret.
pub fn assert_text_clean(what: &str, text: &str) {
    let leaks = leaks_in(text);
    assert!(leaks.is_empty(), "secret value in {what}: {leaks:?}");
}

/// Reads every version of every registered tenant secret and registers its members
/// (the tokens the simulator issued and eds persisted).
async fn harvest_stored_tokens(stack: &Stack) {
    let names: Vec<String> = secret_names()
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .iter()
        .cloned()
        .collect();
    for name in names {
        let Ok(versions) = stack
            .aws
            .secrets
            .list_secret_version_ids()
            .secret_id(&name)
            .include_deprecated(true)
            .send()
            .await
        else {
            continue; // deleted (a deletion test) or never created in this stack
        };
        for v in versions.versions() {
            let Some(id) = v.version_id() else { continue };
            let Ok(out) = stack
                .aws
                .secrets
                .get_secret_value()
                .secret_id(&name)
                .version_id(id)
                .send()
                .await
            else {
                continue;
            };
            if let Some(doc) = out
                .secret_string()
                .and_then(|s| serde_json::from_str::<serde_json::Value>(s).ok())
            {
                for key in SECRET_KEYS {
                    if let Some(v) = doc.get(key).and_then(|v| v.as_str()) {
                        register(v);
                    }
                }
            }
        }
    }
}

async fn scan_table(stack: &Stack, table: &str) -> anyhow::Result<Vec<String>> {
    let mut out = Vec::new();
    let mut start = None;
    loop {
        let page = stack
            .aws
            .dynamodb
            .scan()
            .table_name(table)
            .set_exclusive_start_key(start)
            .send()
            .await?;
        for item in page.items() {
            out.push(format!("{item:?}"));
        }
        start = page.last_evaluated_key;
        if start.is_none() {
            return Ok(out);
        }
    }
}

async fn bucket_objects(stack: &Stack) -> anyhow::Result<Vec<(String, Vec<u8>)>> {
    let mut out = Vec::new();
    let mut token = None;
    loop {
        let page = stack
            .aws
            .s3
            .list_objects_v2()
            .bucket(&stack.config.attachments_bucket)
            .set_continuation_token(token)
            .send()
            .await?;
        for o in page.contents() {
            let Some(key) = o.key() else { continue };
            let body = stack
                .aws
                .s3
                .get_object()
                .bucket(&stack.config.attachments_bucket)
                .key(key)
                .send()
                .await?
                .body
                .collect()
                .await?
                .into_bytes()
                .to_vec();
            out.push((key.to_string(), body));
        }
        token = page.next_continuation_token().map(str::to_string);
        if token.is_none() {
            return Ok(out);
        }
    }
}

/// The leak check: no registered secret (including every stored token version) in the
/// captured logs and panics, in any item of the stack's tables, or in any object of its
/// bucket. Returns how many values were checked, for the caller's report.
pub async fn assert_no_secret_leaked(stack: &Stack) -> usize {
    assert!(
        install(),
        "another tracing subscriber was installed first: logs are not captured"
    );
    harvest_stored_tokens(stack).await;
    let mut leaks = Vec::new();
    for l in leaks_in(&captured_logs()) {
        leaks.push(format!("log: {l}"));
    }
    for table in [&stack.config.records_table, &stack.config.tenants_table] {
        let items = scan_table(stack, table).await.expect("scan");
        for item in items {
            for l in leaks_in(&item) {
                leaks.push(format!("table {table}: {l}"));
            }
        }
    }
    for (key, body) in bucket_objects(stack).await.expect("list bucket") {
        for l in leaks_in(&String::from_utf8_lossy(&body)) {
            leaks.push(format!("object {key}: {l}"));
        }
    }
    assert!(leaks.is_empty(), "secret values leaked: {leaks:?}");
    registered().len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_values_are_not_registered_and_leaks_are_reported_shortened() {
        register("s");
        register("a-long-enough-secret-value");
        assert!(!registered().contains("s"));
        let found = leaks_in("error: bearer a-long-enough-secret-value rejected");
        assert_eq!(found, vec!["a-l… (26 chars)".to_string()]);
        assert!(leaks_in("nothing here").is_empty());
    }

    #[test]
    fn captured_logs_contain_events_and_panics() {
        assert!(install());
        tracing::info!(marker = "capture-check-42", "hello");
        let _ = std::panic::catch_unwind(|| panic!("panic-check-43"));
        let logs = captured_logs();
        assert!(logs.contains("capture-check-42"), "{logs}");
        assert!(logs.contains("panic-check-43"));
    }
}
