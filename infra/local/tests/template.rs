//! The SAM template gives every function what its code needs and nothing more.
//!
//! What a function needs is derived from the source, not from a list kept by hand:
//! starting at `functions/<name>/src/main.rs`, the test follows `use` paths into
//! `shared/src`, `shared/core/src` and `shared/app/src` (file level; `eds-shared`
//! re-exports the core crate's modules at the same paths and the application crate as
//! `pipeline`, so the three are one module tree here) and then function calls by name
//! (fn level, test code cut out), and collects the environment variables read (`env::var("X")`, `var("X")` in
//! `Config::from_lookup`, `lambda::ENV_VARS`) and the AWS SDK operations called
//! (`.put_item()`, `.send_message_batch()`, ...). Name-based call resolution
//! over-approximates (two types' `handle` methods look alike), so a function's policy may
//! only be narrower than the derivation where `NOT_REACHED` says, with the reason, which
//! fn that function never calls.
//!
//! Checked for each function: every variable read is set (Globals or the function's own
//! `Environment`), `EDS_LOCAL_TESTING` is never set, every SDK operation reached is
//! allowed by its own policy statements and every data-service action granted is one the
//! code calls, SQS event sources report batch item failures, queue visibility is at least
//! six times the consumer's timeout, no policy has a `*` resource or action on a data
//! service, and secrets are scoped to `${SecretPrefix}*`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use eds_local::{Resource, Template, template_path};
use serde_yaml::Value;

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn template() -> Template {
    Template::load(&template_path()).expect("template parses")
}

/// Function logical id in the template -> crate directory under `functions/`.
const FUNCTIONS: &[(&str, &str)] = &[
    ("SchedulerFunction", "scheduler"),
    ("PullerFunction", "puller"),
    ("PushIngestFunction", "push-ingest"),
    ("SettingsFunction", "settings"),
    ("DisableFunction", "disable"),
    ("DeleteFunction", "delete"),
    ("RecordsApiFunction", "records-api"),
];

/// Fns that name-based resolution reaches for a function but its code never calls,
/// as (function crate, `Type::fn`, why). Each entry must still match a reached fn.
/// Empty today: the derivation matches the code exactly.
const NOT_REACHED: &[(&str, &str, &str)] = &[];

/// AWS SDK fluent operations the code may call, and the IAM actions each needs.
const SDK_OPERATIONS: &[(&str, &[&str])] = &[
    ("get_item", &["dynamodb:GetItem"]),
    ("put_item", &["dynamodb:PutItem"]),
    ("update_item", &["dynamodb:UpdateItem"]),
    ("delete_item", &["dynamodb:DeleteItem"]),
    ("query", &["dynamodb:Query"]),
    ("scan", &["dynamodb:Scan"]),
    ("batch_get_item", &["dynamodb:BatchGetItem"]),
    ("batch_write_item", &["dynamodb:BatchWriteItem"]),
    ("transact_get_items", &["dynamodb:GetItem"]),
    (
        "transact_write_items",
        &[
            "dynamodb:PutItem",
            "dynamodb:UpdateItem",
            "dynamodb:DeleteItem",
            "dynamodb:ConditionCheckItem",
        ],
    ),
    ("send_message", &["sqs:SendMessage"]),
    ("send_message_batch", &["sqs:SendMessage"]),
    (
        "change_message_visibility",
        &["sqs:ChangeMessageVisibility"],
    ),
    (
        "change_message_visibility_batch",
        &["sqs:ChangeMessageVisibility"],
    ),
    ("delete_message", &["sqs:DeleteMessage"]),
    ("delete_message_batch", &["sqs:DeleteMessage"]),
    ("receive_message", &["sqs:ReceiveMessage"]),
    ("get_queue_attributes", &["sqs:GetQueueAttributes"]),
    ("get_queue_url", &["sqs:GetQueueUrl"]),
    ("purge_queue", &["sqs:PurgeQueue"]),
    ("get_object", &["s3:GetObject"]),
    ("head_object", &["s3:GetObject"]),
    ("put_object", &["s3:PutObject"]),
    ("copy_object", &["s3:GetObject", "s3:PutObject"]),
    ("delete_object", &["s3:DeleteObject"]),
    ("delete_objects", &["s3:DeleteObject"]),
    ("list_objects_v2", &["s3:ListBucket"]),
    ("get_secret_value", &["secretsmanager:GetSecretValue"]),
    ("put_secret_value", &["secretsmanager:PutSecretValue"]),
    ("create_secret", &["secretsmanager:CreateSecret"]),
    ("describe_secret", &["secretsmanager:DescribeSecret"]),
    ("delete_secret", &["secretsmanager:DeleteSecret"]),
    ("update_secret", &["secretsmanager:UpdateSecret"]),
    ("put_events", &["events:PutEvents"]),
];

/// Services whose resources hold tenant data: no wildcard allowed there.
const DATA_SERVICES: &[&str] = &["dynamodb", "sqs", "s3", "secretsmanager", "events"];

/// Variables the code reads that the template must never set.
/// Set by the Lambda runtime in every function (reserved: a template may not set them).
const LAMBDA_RUNTIME_VARS: &[&str] = &["AWS_LAMBDA_FUNCTION_NAME"];

const LOCAL_ONLY_VARS: &[&str] = &[
    "EDS_LOCAL_TESTING",
    "EDS_LOCAL_TESTING_ADDRS",
    "AWS_ENDPOINT_URL",
];

// ------------------------------------------------------------------ source analysis

/// A Rust source file with comments and string contents blanked out in `code` (same
/// byte offsets as `raw`), and `#[cfg(test)]` items blanked in both.
struct Source {
    path: PathBuf,
    raw: String,
    code: String,
}

fn is_ident(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_'
}

fn blank(bytes: &mut [u8], from: usize, to: usize) {
    let to = to.min(bytes.len());
    for b in &mut bytes[from..to] {
        if *b != b'\n' {
            *b = b' ';
        }
    }
}

impl Source {
    fn load(path: &Path) -> Self {
        let raw =
            std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let mut code = raw.clone().into_bytes();
        let b = raw.as_bytes();
        let mut i = 0;
        while i < b.len() {
            match b[i] {
                b'/' if b.get(i + 1) == Some(&b'/') => {
                    let end = raw[i..].find('\n').map_or(b.len(), |e| i + e);
                    blank(&mut code, i, end);
                    i = end;
                }
                b'/' if b.get(i + 1) == Some(&b'*') => {
                    let (mut depth, mut j) = (1, i + 2);
                    while j < b.len() && depth > 0 {
                        if b[j] == b'/' && b.get(j + 1) == Some(&b'*') {
                            depth += 1;
                            j += 1;
                        } else if b[j] == b'*' && b.get(j + 1) == Some(&b'/') {
                            depth -= 1;
                            j += 1;
                        }
                        j += 1;
                    }
                    blank(&mut code, i, j);
                    i = j;
                }
                b'r' if (i == 0 || !is_ident(b[i - 1]))
                    && matches!(b.get(i + 1), Some(b'"') | Some(b'#')) =>
                {
                    let hashes = b[i + 1..].iter().take_while(|c| **c == b'#').count();
                    if b.get(i + 1 + hashes) != Some(&b'"') {
                        i += 1;
                        continue;
                    }
                    let close = format!("\"{}", "#".repeat(hashes));
                    let start = i + 2 + hashes;
                    let end = raw[start..].find(&close).map_or(b.len(), |e| start + e);
                    blank(&mut code, start, end);
                    i = end + close.len();
                }
                b'"' => {
                    let mut j = i + 1;
                    while j < b.len() && b[j] != b'"' {
                        if b[j] == b'\\' {
                            j += 1;
                        }
                        j += 1;
                    }
                    blank(&mut code, i + 1, j);
                    i = j + 1;
                }
                b'\'' => {
                    // A char literal ('x', '\n', '\u{..}') or a lifetime ('a).
                    if b.get(i + 1) == Some(&b'\\') {
                        let end = raw[i + 2..].find('\'').map_or(b.len(), |e| i + 2 + e);
                        blank(&mut code, i + 1, end);
                        i = end + 1;
                    } else if b.get(i + 2) == Some(&b'\'') {
                        blank(&mut code, i + 1, i + 2);
                        i += 3;
                    } else {
                        i += 1;
                    }
                }
                _ => i += 1,
            }
        }
        let mut code = String::from_utf8(code).expect("blanking keeps UTF-8 boundaries");
        let mut raw = raw;
        // Cut test-only items: `#[cfg(test)] mod x;` or `#[cfg(test)] <item> { ... }`.
        while let Some(at) = code.find("#[cfg(test)]") {
            let after = at + "#[cfg(test)]".len();
            let rest = &code.as_bytes()[after..];
            let (mut j, mut depth) = (0, 0i32);
            let end = loop {
                match rest.get(j) {
                    None => break code.len(),
                    Some(b'(') | Some(b'[') => depth += 1,
                    Some(b')') | Some(b']') => depth -= 1,
                    Some(b';') if depth == 0 => break after + j + 1,
                    Some(b'{') if depth == 0 => break after + matching_brace(&code, after + j) + 1,
                    _ => {}
                }
                j += 1;
            };
            let mut cb = code.into_bytes();
            blank(&mut cb, at, end);
            code = String::from_utf8(cb).expect("utf8");
            let mut rb = raw.into_bytes();
            blank(&mut rb, at, end);
            raw = String::from_utf8(rb).unwrap_or_default();
        }
        Self {
            path: path.to_path_buf(),
            raw,
            code,
        }
    }
}

/// Offset of the `}` matching the `{` at `open`.
fn matching_brace(code: &str, open: usize) -> usize {
    let mut depth = 0;
    for (k, c) in code.as_bytes()[open..].iter().enumerate() {
        match c {
            b'{' => depth += 1,
            b'}' => {
                depth -= 1;
                if depth == 0 {
                    return open + k;
                }
            }
            _ => {}
        }
    }
    code.len() - 1
}

/// Word tokens with their offsets.
fn words(code: &str) -> Vec<(usize, &str)> {
    let b = code.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if is_ident(b[i]) && (i == 0 || !is_ident(b[i - 1])) {
            let start = i;
            while i < b.len() && is_ident(b[i]) {
                i += 1;
            }
            out.push((start, &code[start..i]));
        } else {
            i += 1;
        }
    }
    out
}

fn skip_ws(code: &str, mut i: usize) -> usize {
    let b = code.as_bytes();
    while i < b.len() && b[i].is_ascii_whitespace() {
        i += 1;
    }
    i
}

/// One `fn` item: its (impl type) qualified name and body.
struct FnItem {
    file: usize,
    qualified: String,
    name: String,
    body: std::ops::Range<usize>,
}

fn fn_items(file: usize, src: &Source) -> Vec<FnItem> {
    let code = &src.code;
    // impl blocks: the self type and the body range.
    let mut impls = Vec::new();
    let toks = words(code);
    for (k, (at, w)) in toks.iter().enumerate() {
        if *w != "impl" {
            continue;
        }
        let Some(open) = code[*at..].find('{').map(|o| at + o) else {
            continue;
        };
        // Skip the impl's own generic parameters: `impl<C: Check> Settings<C>`.
        let mut generics_end = *at;
        if code[at + 4..].trim_start().starts_with('<') {
            let mut depth = 0;
            for (o, c) in code[*at..open].char_indices() {
                match c {
                    '<' => depth += 1,
                    '>' => {
                        depth -= 1;
                        if depth == 0 {
                            generics_end = at + o;
                            break;
                        }
                    }
                    _ => {}
                }
            }
        }
        let header: Vec<&str> = toks[k + 1..]
            .iter()
            .filter(|(o, _)| *o > generics_end)
            .take_while(|(o, _)| *o < open)
            .map(|(_, w)| *w)
            .collect();
        let ty = match header.iter().position(|w| *w == "for") {
            Some(p) => header.get(p + 1),
            None => header
                .iter()
                .find(|w| w.chars().next().is_some_and(char::is_uppercase)),
        };
        if let Some(ty) = ty {
            impls.push((ty.to_string(), open..matching_brace(code, open)));
        }
    }
    let mut out = Vec::new();
    for (k, (at, w)) in toks.iter().enumerate() {
        if *w != "fn" {
            continue;
        }
        let Some((_, name)) = toks.get(k + 1) else {
            continue;
        };
        let b = code.as_bytes();
        let (mut j, mut depth) = (*at, 0i32);
        let open = loop {
            match b.get(j) {
                None => break None,
                Some(b'(') | Some(b'[') => depth += 1,
                Some(b')') | Some(b']') => depth -= 1,
                Some(b';') if depth == 0 => break None,
                Some(b'{') if depth == 0 => break Some(j),
                _ => {}
            }
            j += 1;
        };
        let Some(open) = open else { continue };
        let qualified = impls
            .iter()
            .filter(|(_, r)| r.contains(at))
            .min_by_key(|(_, r)| r.len())
            .map_or_else(|| name.to_string(), |(ty, _)| format!("{ty}::{name}"));
        out.push(FnItem {
            file,
            qualified,
            name: name.to_string(),
            body: open..matching_brace(code, open),
        });
    }
    out
}

/// Names called (or named as paths) in `code`: `f(`, `.m(`, `T::f`, `f::<T>(`.
fn called_names(code: &str) -> BTreeSet<String> {
    let b = code.as_bytes();
    let mut out = BTreeSet::new();
    for (at, w) in words(code) {
        let end = at + w.len();
        let next = skip_ws(code, end);
        let by_path = at >= 2 && &code[at - 2..at] == "::";
        if b.get(next) == Some(&b'(') || code[next..].starts_with("::<") || by_path {
            out.insert(w.to_string());
        }
    }
    out
}

/// SDK operations called in `code`: `.op()` followed by a builder call, not by an
/// accessor of some other type (`url.query().is_some()`).
fn sdk_calls(code: &str) -> BTreeSet<&'static str> {
    let mut out = BTreeSet::new();
    for (op, _) in SDK_OPERATIONS {
        let pat = format!(".{op}()");
        let mut from = 0;
        while let Some(p) = code[from..].find(&pat) {
            let end = from + p + pat.len();
            from = end;

            let next = skip_ws(code, end);
            let follow: String = code[next..]
                .trim_start_matches('.')
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            let accessor = matches!(
                follow.as_str(),
                "is_some"
                    | "is_none"
                    | "map"
                    | "unwrap"
                    | "unwrap_or"
                    | "and_then"
                    | "as_deref"
                    | "ok"
            );
            if code[next..].starts_with('.') && !accessor {
                out.insert(*op);
            }
        }
    }
    out
}

/// Environment variable names read in `raw` text: `var("X")` / `var_os("X")`.
fn env_reads(raw: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for pat in ["var(\"", "var_os(\""] {
        let mut from = 0;
        while let Some(p) = raw[from..].find(pat) {
            let start = from + p + pat.len();
            from = start;
            if let Some(len) = raw[start..].find('"') {
                let name = &raw[start..start + len];
                if !name.is_empty()
                    && name
                        .bytes()
                        .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == b'_')
                {
                    out.insert(name.to_string());
                }
            }
        }
    }
    out
}

/// `lambda::ENV_VARS`, read from its source.
fn declared_env_vars(root: &Path) -> BTreeSet<String> {
    let src = Source::load(&root.join("shared/src/lambda.rs"));
    let at = src
        .raw
        .find("pub const ENV_VARS")
        .expect("lambda.rs declares ENV_VARS");
    let end = at + src.raw[at..].find("];").expect("ENV_VARS ends");
    src.raw[at..end]
        .split('"')
        .skip(1)
        .step_by(2)
        .map(str::to_string)
        .collect()
}

/// The library source roots and where each sits in the one module tree the analysis
/// walks: `eds-shared`, the core crate it re-exports at its root, and the application
/// crate it re-exports as `pipeline`.
const LIBRARY_ROOTS: [(&str, &[&str]); 3] = [
    ("shared/src", &[]),
    ("shared/core/src", &[]),
    ("shared/app/src", &["pipeline"]),
];

fn roots(root: &Path) -> impl Iterator<Item = (PathBuf, &'static [&'static str])> + '_ {
    LIBRARY_ROOTS
        .iter()
        .map(move |(dir, at)| (root.join(dir), *at))
}

/// The module file for a path of module names in the library (longest existing prefix;
/// at each length the core crate first when `core_first`: a path written in the core
/// crate, or through `eds_core`).
fn module_file(root: &Path, segments: &[String], core_first: bool) -> Option<PathBuf> {
    let mut bases: Vec<(PathBuf, &[&str])> = roots(root).collect();
    if core_first {
        bases.swap(0, 1);
    }
    for n in (1..=segments.len()).rev() {
        for (base, at) in &bases {
            if n < at.len() || segments[..at.len()] != at[..] {
                continue;
            }
            let dir: PathBuf = segments[at.len()..n].iter().collect();
            if dir.as_os_str().is_empty() {
                let lib = base.join("lib.rs");
                if lib.is_file() {
                    return Some(lib);
                }
                continue;
            }
            let as_file = base.join(&dir).with_extension("rs");
            if as_file.is_file() {
                return Some(as_file);
            }
            let as_mod = base.join(&dir).join("mod.rs");
            if as_mod.is_file() {
                return Some(as_mod);
            }
        }
    }
    if core_first && segments.is_empty() {
        return Some(root.join("shared/core/src/lib.rs"));
    }
    None
}

fn in_library(root: &Path, file: &Path) -> bool {
    roots(root).any(|(r, _)| file.starts_with(r))
}

fn in_core(root: &Path, file: &Path) -> bool {
    file.starts_with(root.join("shared/core/src"))
}

/// The module path (in the library) of a file.
fn module_of(root: &Path, file: &Path) -> Vec<String> {
    let (at, rel) = roots(root)
        .find_map(|(r, at)| {
            file.strip_prefix(&r)
                .ok()
                .map(|rel| (at, rel.to_path_buf()))
        })
        .unwrap_or((&[], file.to_path_buf()));
    let mut segs: Vec<String> = at.iter().map(|s| s.to_string()).collect();
    segs.extend(
        rel.iter()
            .map(|s| s.to_string_lossy().trim_end_matches(".rs").to_string()),
    );
    if segs.last().is_some_and(|s| s == "mod" || s == "lib") {
        segs.pop();
    }
    segs
}

/// Expands path prefixes (with `{a, b::c}` groups) starting at `i` into full paths.
fn use_tree(code: &str, mut i: usize, prefix: Vec<String>, out: &mut Vec<Vec<String>>) -> usize {
    let b = code.as_bytes();
    let mut path = prefix;
    loop {
        i = skip_ws(code, i);
        if b.get(i) == Some(&b'{') {
            i += 1;
            loop {
                i = skip_ws(code, i);
                match b.get(i) {
                    Some(b'}') => return i + 1,
                    Some(b',') => i += 1,
                    None => return i,
                    _ => i = use_tree(code, i, path.clone(), out),
                }
            }
        }
        let start = i;
        while i < b.len() && is_ident(b[i]) {
            i += 1;
        }
        if start == i {
            out.push(path);
            return i;
        }
        path.push(code[start..i].to_string());
        let j = skip_ws(code, i);
        if code[j..].starts_with("::") {
            i = j + 2;
        } else {
            out.push(path);
            return i;
        }
    }
}

/// `shared/src` files reachable from `start` through module paths.
fn reachable_files(root: &Path, start: &[PathBuf]) -> Vec<PathBuf> {
    let mut seen: BTreeSet<PathBuf> = start.iter().cloned().collect();
    let mut todo: Vec<PathBuf> = start.to_vec();
    while let Some(file) = todo.pop() {
        let src = Source::load(&file);
        let in_shared = in_library(root, &file);
        let here_core = in_core(root, &file);
        let here = module_of(root, &file);
        let is_mod_root = file.ends_with("mod.rs") || file.ends_with("lib.rs") || !in_shared;
        let children: BTreeSet<String> = if in_shared && is_mod_root {
            words(&src.code)
                .windows(2)
                .filter(|w| w[0].1 == "mod")
                .map(|w| w[1].1.to_string())
                .collect()
        } else {
            BTreeSet::new()
        };
        let mut paths: Vec<(Vec<String>, bool)> = Vec::new();
        for (at, w) in words(&src.code) {
            let after = at + w.len();
            if !src.code[after..].starts_with("::")
                && !src.code[skip_ws(&src.code, after)..].starts_with("::")
            {
                continue;
            }
            if at >= 2 && &src.code[at - 2..at] == "::" {
                continue;
            }
            let core_first = match w {
                "eds_core" => true,
                "eds_shared" => false,
                _ => here_core,
            };
            let here_app = file.starts_with(root.join("shared/app/src"));
            let base: Option<Vec<String>> = match w {
                "crate" if here_app => Some(vec!["pipeline".to_string()]),
                "eds_app" => Some(vec!["pipeline".to_string()]),
                "eds_shared" | "crate" | "eds_core" => Some(vec![]),
                "super" => {
                    let mut h = here.clone();
                    if !is_mod_root || file.ends_with("mod.rs") {
                        h.pop();
                    }
                    Some(h)
                }
                "self" => Some(here.clone()),
                c if children.contains(c) => Some({
                    let mut h = here.clone();
                    h.push(c.to_string());
                    h
                }),
                _ => None,
            };
            let Some(base) = base else { continue };
            let start = skip_ws(&src.code, after) + 2;
            let mut found = Vec::new();
            use_tree(&src.code, start, base, &mut found);
            paths.extend(found.into_iter().map(|p| (p, core_first)));
        }
        // `child::x` (handled above) and also `pub use child::...`: the child segment is
        // already in the path; module files are found by longest prefix.
        for (p, core_first) in paths {
            if let Some(f) = module_file(root, &p, core_first)
                && seen.insert(f.clone())
            {
                todo.push(f);
            }
        }
    }
    seen.into_iter().collect()
}

/// What one function's code needs.
#[derive(Debug, Default)]
struct Needs {
    env: BTreeSet<String>,
    actions: BTreeMap<String, BTreeSet<String>>, // action -> reached via (fn)
    not_reached_used: BTreeSet<String>,
}

fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(rust_files(&p));
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
    out
}

fn needs_of(root: &Path, crate_dir: &str) -> Needs {
    let starts = rust_files(&root.join("functions").join(crate_dir).join("src"));
    assert!(!starts.is_empty(), "functions/{crate_dir}/src has sources");
    let files = reachable_files(root, &starts);
    let sources: Vec<Source> = files.iter().map(|f| Source::load(f)).collect();
    let items: Vec<FnItem> = sources
        .iter()
        .enumerate()
        .flat_map(|(i, s)| fn_items(i, s))
        .collect();
    let excluded: BTreeSet<&str> = NOT_REACHED
        .iter()
        .filter(|(c, _, _)| *c == crate_dir)
        .map(|(_, q, _)| *q)
        .collect();

    let mut needs = Needs::default();
    // Roots: the function's own sources, whole.
    let mut names: BTreeSet<String> = BTreeSet::new();
    let scan =
        |code: &str, raw: &str, via: &str, needs: &mut Needs, names: &mut BTreeSet<String>| {
            for op in sdk_calls(code) {
                for action in SDK_OPERATIONS
                    .iter()
                    .find(|(o, _)| *o == op)
                    .map(|(_, a)| *a)
                    .unwrap_or(&[])
                {
                    needs
                        .actions
                        .entry(action.to_string())
                        .or_default()
                        .insert(via.to_string());
                }
            }
            needs.env.extend(env_reads(raw));
            names.extend(called_names(code));
        };
    for s in &sources {
        if s.path.starts_with(root.join("functions")) {
            scan(&s.code, &s.raw, "main", &mut needs, &mut names);
        }
    }
    let mut done: BTreeSet<usize> = BTreeSet::new();
    loop {
        let mut progressed = false;
        for (k, item) in items.iter().enumerate() {
            if done.contains(&k) || !names.contains(&item.name) {
                continue;
            }
            done.insert(k);
            progressed = true;
            if excluded.contains(item.qualified.as_str()) {
                needs.not_reached_used.insert(item.qualified.clone());
                continue;
            }
            let s = &sources[item.file];
            let code = s.code[item.body.clone()].to_string();
            let raw = s.raw[item.body.clone()].to_string();
            scan(&code, &raw, &item.qualified, &mut needs, &mut names);
        }
        if !progressed {
            break;
        }
    }
    if names.contains("from_env") || names.contains("from_lookup") {
        needs.env.extend(declared_env_vars(root));
    }
    needs
}

// ------------------------------------------------------------------ template helpers

fn function<'a>(t: &'a Template, logical: &str) -> &'a Resource {
    let r = t
        .resources
        .get(logical)
        .unwrap_or_else(|| panic!("template declares {logical}"));
    assert_eq!(r.kind, "AWS::Serverless::Function", "{logical}");
    r
}

fn names_in(v: &Value) -> Vec<String> {
    match v {
        Value::String(s) => vec![s.clone()],
        Value::Sequence(s) => s.iter().flat_map(names_in).collect(),
        _ => vec![],
    }
}

fn env_keys(v: &Value) -> BTreeSet<String> {
    v.get("Environment")
        .and_then(|e| e.get("Variables"))
        .and_then(Value::as_mapping)
        .into_iter()
        .flatten()
        .filter_map(|(k, _)| k.as_str().map(str::to_string))
        .collect()
}

/// Policy statements written in the template for a function.
fn statements(f: &Resource) -> Vec<Value> {
    let mut out = Vec::new();
    for p in f
        .properties
        .get("Policies")
        .and_then(Value::as_sequence)
        .into_iter()
        .flatten()
    {
        out.extend(
            p.get("Statement")
                .and_then(Value::as_sequence)
                .cloned()
                .unwrap_or_default(),
        );
    }
    out
}

/// A resource entry as written: plain string, `!GetAtt X.Arn`, `!Sub "..."`, `!Ref X`.
fn resource_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Tagged(t) => format!("{} {}", t.tag, names_in(&t.value).join(".")),
        other => format!("{other:?}"),
    }
}

fn resources_of(stmt: &Value) -> Vec<String> {
    match stmt.get("Resource") {
        Some(Value::Sequence(s)) => s.iter().map(resource_text).collect(),
        Some(v) => vec![resource_text(v)],
        None => vec![],
    }
}

fn timeout(t: &Template, f: &Resource) -> u64 {
    f.properties
        .get("Timeout")
        .or_else(|| t.globals_function.get("Timeout"))
        .and_then(Value::as_u64)
        .expect("a numeric Timeout")
}

fn sqs_sources(f: &Resource) -> Vec<(String, Value)> {
    f.properties
        .get("Events")
        .and_then(Value::as_mapping)
        .into_iter()
        .flatten()
        .filter(|(_, e)| e.get("Type").and_then(Value::as_str) == Some("SQS"))
        .map(|(k, e)| {
            (
                k.as_str().unwrap_or_default().to_string(),
                e["Properties"].clone(),
            )
        })
        .collect()
}

fn getatt_logical(v: &Value) -> Option<String> {
    match v {
        Value::Tagged(t) => names_in(&t.value)
            .join(".")
            .split('.')
            .next()
            .map(str::to_string),
        _ => None,
    }
}

// ------------------------------------------------------------------ tests

#[test]
fn every_function_crate_is_a_template_function_with_the_build_layout_sam_needs() {
    let t = template();
    let root = repo_root();
    let crates: BTreeSet<String> = std::fs::read_dir(root.join("functions"))
        .expect("functions/")
        .flatten()
        .filter(|e| e.path().join("Cargo.toml").is_file())
        .map(|e| e.file_name().to_string_lossy().to_string())
        .collect();
    let listed: BTreeSet<String> = FUNCTIONS.iter().map(|(_, c)| c.to_string()).collect();
    assert_eq!(
        crates, listed,
        "every functions/ crate is deployed (update FUNCTIONS)"
    );
    let declared = t.of_kind("AWS::Serverless::Function").count();
    assert_eq!(declared, FUNCTIONS.len(), "no function without a crate");
    let makefile = std::fs::read_to_string(root.join("Makefile")).expect("Makefile");
    let makefile_functions: BTreeSet<String> = makefile
        .split("SAM_FUNCTIONS :=")
        .nth(1)
        .expect("SAM_FUNCTIONS in the Makefile")
        .lines()
        .take_while(|l| !l.trim().is_empty() && !l.starts_with("sam_bin"))
        .flat_map(|l| {
            l.trim_end_matches('\\')
                .split_whitespace()
                .map(str::to_string)
                .collect::<Vec<_>>()
        })
        .collect();
    assert_eq!(
        makefile_functions.len(),
        FUNCTIONS.len(),
        "{makefile_functions:?}"
    );
    for (logical, crate_dir) in FUNCTIONS {
        let f = function(&t, logical);
        assert_eq!(
            f.metadata["BuildMethod"].as_str(),
            Some("makefile"),
            "{logical}"
        );
        // SAM runs `make build-<logical>`; the Makefile maps it to this binary (D26).
        assert!(
            makefile_functions.contains(&format!("{logical}={crate_dir}")),
            "the Makefile's SAM_FUNCTIONS maps {logical} to {crate_dir}: {makefile_functions:?}"
        );
        assert_eq!(
            f.metadata["BuildProperties"]["Binary"].as_str(),
            Some(*crate_dir),
            "{logical} binary"
        );
        assert_eq!(
            f.properties["CodeUri"].as_str(),
            Some(".."),
            "{logical} builds from the workspace root"
        );
        let runtime = f
            .properties
            .get("Runtime")
            .or_else(|| t.globals_function.get("Runtime"));
        assert_eq!(
            runtime.and_then(Value::as_str),
            Some("provided.al2023"),
            "{logical}"
        );
        let handler = f
            .properties
            .get("Handler")
            .or_else(|| t.globals_function.get("Handler"));
        assert_eq!(
            handler.and_then(Value::as_str),
            Some("bootstrap"),
            "{logical}"
        );
        let cargo =
            std::fs::read_to_string(root.join("functions").join(crate_dir).join("Cargo.toml"))
                .expect("Cargo.toml");
        assert!(
            cargo.contains(&format!("name = \"{crate_dir}\"")),
            "{crate_dir} builds a binary named {crate_dir}"
        );
        let logging = &f.properties["LoggingConfig"];
        assert_eq!(
            logging["LogFormat"].as_str(),
            Some("JSON"),
            "{logical} logs JSON"
        );
        let group = getatt_logical(&logging["LogGroup"]).expect("LogGroup is a !Ref");
        let lg = t.resources.get(&group).expect("log group declared");
        assert_eq!(lg.kind, "AWS::Logs::LogGroup");
        assert_eq!(
            resource_text(&lg.properties["RetentionInDays"]),
            "!Ref LogRetentionDays"
        );
        let alarmed = t.of_kind("AWS::CloudWatch::Alarm").any(|a| {
            a.properties["MetricName"].as_str() == Some("Errors")
                && a.properties["Dimensions"][0]["Value"]
                    == Value::Tagged(Box::new(serde_yaml::value::TaggedValue {
                        tag: serde_yaml::value::Tag::new("Ref"),
                        value: Value::String(logical.to_string()),
                    }))
        });
        assert!(alarmed, "{logical} has an Errors alarm");
    }
}

#[test]
fn every_environment_variable_the_code_reads_is_set_and_local_switches_never_are() {
    let t = template();
    let root = repo_root();
    let global = env_keys(&t.globals_function);
    for (logical, crate_dir) in FUNCTIONS {
        let f = function(&t, logical);
        let set: BTreeSet<String> = global.union(&env_keys(&f.properties)).cloned().collect();
        let needs = needs_of(&root, crate_dir);
        assert!(
            needs.env.contains("RECORDS_TABLE"),
            "{crate_dir}: the analysis sees Config::from_env"
        );
        for var in &needs.env {
            if LOCAL_ONLY_VARS.contains(&var.as_str())
                || LAMBDA_RUNTIME_VARS.contains(&var.as_str())
            {
                continue;
            }
            assert!(
                set.contains(var),
                "{logical} ({crate_dir}) reads {var} but the template does not set it"
            );
        }
        for var in LOCAL_ONLY_VARS {
            assert!(
                !env_keys(&f.properties).contains(*var),
                "{logical} must not set {var}: local tests only"
            );
        }
    }
    // The SAM CLI passes a function only the variables its template declares, so the
    // local-only ones are declared in Globals (D26), each as
    // `!If [IsLocalStack, <value>, !Ref AWS::NoValue]`: absent unless LocalEndpointUrl,
    // empty by default, is given.
    let vars = &t.globals_function["Environment"]["Variables"];
    for var in LOCAL_ONLY_VARS {
        let Value::Tagged(tagged) = &vars[*var] else {
            panic!(
                "Globals declares {var} as an !If on IsLocalStack, got {:?}",
                vars[*var]
            );
        };
        assert_eq!(tagged.tag.to_string(), "!If", "{var}");
        assert_eq!(tagged.value[0].as_str(), Some("IsLocalStack"), "{var}");
        let Value::Tagged(else_branch) = &tagged.value[2] else {
            panic!("{var}: the else branch is !Ref AWS::NoValue");
        };
        assert_eq!(else_branch.value.as_str(), Some("AWS::NoValue"), "{var}");
    }
    assert_eq!(t.parameters["LocalEndpointUrl"].as_str(), Some(""));
    let cond = serde_yaml::to_string(&t.raw["Conditions"]["IsLocalStack"]).expect("yaml");
    assert!(
        cond.contains("LocalEndpointUrl") && cond.contains("!Not") && cond.contains("!Equals"),
        "IsLocalStack is `LocalEndpointUrl is not empty`: {cond}"
    );
}

#[test]
fn every_sdk_call_is_allowed_by_the_functions_policy_and_nothing_more_is_granted() {
    let t = template();
    let root = repo_root();
    let mut report = Vec::new();
    for (logical, crate_dir) in FUNCTIONS {
        let f = function(&t, logical);
        let needs = needs_of(&root, crate_dir);
        let granted: BTreeSet<String> = statements(f)
            .iter()
            .filter(|s| s["Effect"].as_str() == Some("Allow"))
            .flat_map(|s| names_in(&s["Action"]))
            .collect();
        for (action, via) in &needs.actions {
            if !granted.contains(action) {
                report.push(format!(
                    "{logical}: code calls {action} (via {via:?}) but the policy does not allow it"
                ));
            }
        }
        for action in &granted {
            let service = action.split(':').next().unwrap_or_default();
            if DATA_SERVICES.contains(&service) && !needs.actions.contains_key(action) {
                report.push(format!(
                    "{logical}: grants {action}, which its code never calls"
                ));
            }
        }
        for (c, q, _) in NOT_REACHED.iter().filter(|(c, _, _)| c == crate_dir) {
            if !needs.not_reached_used.contains(*q) {
                report.push(format!(
                    "NOT_REACHED entry ({c}, {q}) matches nothing any more: remove it"
                ));
            }
        }
    }
    assert!(report.is_empty(), "policy gaps:\n{}", report.join("\n"));
}

#[test]
fn no_policy_has_a_wildcard_on_data_services_and_secrets_are_scoped_to_the_prefix() {
    let t = template();
    let secrets_scope = "!Sub arn:${AWS::Partition}:secretsmanager:${AWS::Region}:${AWS::AccountId}:secret:${SecretPrefix}*";
    for (logical, _) in FUNCTIONS {
        for s in statements(function(&t, logical)) {
            let actions = names_in(&s["Action"]);
            let resources = resources_of(&s);
            assert!(
                !resources.is_empty(),
                "{logical}: statement without Resource"
            );
            for a in &actions {
                let (service, op) = a.split_once(':').expect("service:Action");
                assert!(
                    !op.contains('*') && service != "*",
                    "{logical}: wildcard action {a}"
                );
                if !DATA_SERVICES.contains(&service) {
                    continue;
                }
                for r in &resources {
                    assert!(r != "*" && !r.ends_with(":*"), "{logical}: {a} on {r}");
                    match service {
                        "secretsmanager" => assert_eq!(
                            r, secrets_scope,
                            "{logical}: secrets must be scoped to the prefix"
                        ),
                        "dynamodb" => assert!(r.contains("Table"), "{logical}: {a} on {r}"),
                        "sqs" => assert!(
                            r.starts_with("!GetAtt ") && r.ends_with(".Arn"),
                            "{logical}: {a} on {r}"
                        ),
                        "s3" => assert!(r.contains("AttachmentsBucket"), "{logical}: {a} on {r}"),
                        _ => {}
                    }
                }
            }
            // One service per statement keeps resources meaningful for their actions.
            let services: BTreeSet<&str> =
                actions.iter().filter_map(|a| a.split(':').next()).collect();
            assert_eq!(
                services.len(),
                1,
                "{logical}: statement mixes services {services:?}"
            );
        }
    }
}

#[test]
fn queue_triggers_report_batch_item_failures_and_queues_outlast_six_consumer_timeouts() {
    let t = template();
    let mut consumers = BTreeMap::new();
    for (logical, _) in FUNCTIONS {
        let f = function(&t, logical);
        for (event, props) in sqs_sources(f) {
            let types = names_in(&props["FunctionResponseTypes"]);
            assert_eq!(
                types,
                vec!["ReportBatchItemFailures".to_string()],
                "{logical}.{event}"
            );
            assert!(
                props["ScalingConfig"]["MaximumConcurrency"]
                    .as_u64()
                    .is_some_and(|c| c >= 2),
                "{logical}.{event} bounded concurrency"
            );
            let queue = getatt_logical(&props["Queue"]).expect("Queue: !GetAtt X.Arn");
            let q = t.resources.get(&queue).expect("queue declared");
            let visibility = q.properties["VisibilityTimeout"]
                .as_u64()
                .expect("explicit VisibilityTimeout");
            let timeout = timeout(&t, f);
            assert!(
                visibility >= 6 * timeout,
                "{queue}: visibility {visibility} < 6 x {logical} timeout {timeout}"
            );
            let max_receive = q.properties["RedrivePolicy"]["maxReceiveCount"]
                .as_u64()
                .expect("redrive");
            assert!(
                max_receive > 1,
                "{queue}: a single failure must not dead-letter"
            );
            assert!(
                consumers
                    .insert(queue.clone(), logical.to_string())
                    .is_none(),
                "{queue} has one consumer"
            );
        }
    }
    for q in ["PullQueue", "PushQueue", "DisableQueue", "DeleteQueue"] {
        assert!(consumers.contains_key(q), "{q} has a consumer");
    }
}

#[test]
fn settings_disable_and_deletion_events_reach_their_functions_with_a_dead_letter_queue() {
    let t = template();
    let expect: &[(&str, &[&str])] = &[
        (
            "SettingsFunction",
            &[
                "tenant.enabled",
                "tenant.credentials_updated",
                "tenant.interval_changed",
            ],
        ),
        ("DisableFunction", &["tenant.disable_requested"]),
        ("DeleteFunction", &["tenant.deletion_requested"]),
    ];
    for (logical, types) in expect {
        let f = function(&t, logical);
        let rules: Vec<&Value> = f.properties["Events"]
            .as_mapping()
            .expect("Events")
            .values()
            .filter(|e| e["Type"].as_str() == Some("EventBridgeRule"))
            .collect();
        assert_eq!(rules.len(), 1, "{logical}: one rule");
        let p = &rules[0]["Properties"];
        assert_eq!(resource_text(&p["EventBusName"]), "!Ref SettingsBus");
        assert_eq!(
            names_in(&p["Pattern"]["source"]),
            vec!["eds.settings".to_string()]
        );
        let got: BTreeSet<String> = names_in(&p["Pattern"]["detail-type"]).into_iter().collect();
        let want: BTreeSet<String> = types.iter().map(|s| s.to_string()).collect();
        assert_eq!(got, want, "{logical} detail-types");
        assert!(
            p["DeadLetterConfig"]["Arn"] != Value::Null,
            "{logical}: rule DLQ"
        );
        assert!(
            p["RetryPolicy"]["MaximumRetryAttempts"].as_u64().is_some(),
            "{logical}: retry policy"
        );
    }
    let api = function(&t, "RecordsApiFunction");
    assert_eq!(
        api.properties["FunctionUrlConfig"]["AuthType"].as_str(),
        Some("AWS_IAM")
    );
    let sched = function(&t, "SchedulerFunction");
    let ev = sched.properties["Events"]
        .as_mapping()
        .expect("Events")
        .values()
        .next()
        .expect("one event");
    assert_eq!(ev["Type"].as_str(), Some("ScheduleV2"));
    assert_eq!(
        resource_text(&ev["Properties"]["ScheduleExpression"]),
        "!Ref ScheduleRate"
    );
}

// ------------------------------------------------------------------ the analysis itself

#[test]
fn the_source_analysis_finds_calls_env_reads_and_ignores_tests_comments_and_strings() {
    let dir = std::env::temp_dir().join(format!("eds-template-analysis-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("tmp");
    let file = dir.join("x.rs");
    std::fs::write(
        &file,
        r#"
        // self.client.delete_item().send() in a comment
        fn a<'a>(x: &'a str) -> char { let _ = "client.scan().send()"; let _ = std::env::var("ONE"); 'x' }
        fn b(c: &Client) { c.put_item().table_name(t).send(); let _ = url.query().is_some(); }
        #[cfg(test)]
        mod tests { fn c(c: &Client) { c.delete_table().send(); c.get_item().send(); } }
        "#,
    )
    .expect("write");
    let src = Source::load(&file);
    assert_eq!(
        sdk_calls(&src.code).into_iter().collect::<Vec<_>>(),
        vec!["put_item"]
    );
    assert_eq!(
        env_reads(&src.raw).into_iter().collect::<Vec<_>>(),
        vec!["ONE".to_string()]
    );
    let fns: Vec<String> = fn_items(0, &src).into_iter().map(|f| f.name).collect();
    assert_eq!(fns, vec!["a".to_string(), "b".to_string()]);
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn the_derivation_sees_what_each_function_obviously_does() {
    let root = repo_root();
    let has = |c: &str, a: &str| needs_of(&root, c).actions.contains_key(a);
    assert!(
        has("scheduler", "sqs:SendMessage"),
        "scheduler enqueues pull jobs"
    );
    assert!(
        has("puller", "secretsmanager:GetSecretValue"),
        "puller reads credentials"
    );
    assert!(
        has("delete", "secretsmanager:DeleteSecret"),
        "delete removes the secret"
    );
    assert!(
        !has("records-api", "dynamodb:PutItem"),
        "the records API only reads"
    );
    assert!(
        needs_of(&root, "push-ingest")
            .env
            .contains("PUSH_QUEUE_URL")
    );
}
