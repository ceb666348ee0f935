// Merge throughput on realistic candidate records (about 2 KB of JSON per layer), and
// merge + serialise next to serde_json parsing of the same bytes.
// Run: `cargo bench -p eds-shared --bench merge`.
// Goals (issue C): >= 200,000 merges/s on one core; merge + serialise <= 2x parse.

use std::hint::black_box;

use chrono::{TimeZone, Utc};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use eds_shared::domain::ids::EntityKind;
use eds_shared::domain::merge::{ViewMode, merge, merge_ref};
use eds_shared::domain::model::{Fields, Layer};
use eds_shared::domain::version::{RecordState, Tombstone};
use serde_json::{Value, json};

/// A candidate as Greenhouse would describe it, normalised; `variant` changes the
/// values the pull corrects or backfills.
fn candidate(n: u64, pulled: bool) -> Value {
    let mut c = json!({
        "first_name": format!("Firstname{n}"),
        "last_name": "Lovelace-Byron",
        "preferred_name": null,
        "company": "Analytical Engines Ltd",
        "title": if pulled { "Principal Engineer" } else { "Senior Engineer" },
        "emails": [
            {"type": "personal", "value": format!("candidate{n}@example.com")},
            {"type": "work", "value": format!("c{n}.work@engines.example")}
        ],
        "phones": [{"type": "mobile", "value": "+44 20 7946 0958"}],
        "addresses": [{"type": "home", "value": "12 Marylebone Road, London NW1 5LR, United Kingdom"}],
        "websites": [{"type": "portfolio", "value": "https://portfolio.example/ada"}],
        "social_media": [{"value": "https://social.example/in/ada-lovelace"}],
        "tags": ["python", "rust", "distributed-systems", "referral", "2026-q1"],
        "is_private": false,
        "can_email": true,
        "time_zone": "Europe/London",
        "custom_fields": {
            "desired_salary": "120000",
            "notice_period": "3 months",
            "work_authorization": "UK citizen",
            "source_campaign": "spring-hiring-2026",
            "languages": ["English", "French", "Italian"],
            "summary": "Mathematician and writer, chiefly known for work on the proposed mechanical general-purpose computer, the Analytical Engine; first to recognise that the machine had applications beyond pure calculation.",
            "skills": ["algorithms", "numerical analysis", "technical writing", "mentoring", "systems design"],
            "referral_note": "Met at the London meetup; strong recommendation from the platform team lead."
        },
        "created_at": "2026-01-15T09:30:00.000Z",
        "last_activity_at": if pulled { "2026-03-01T10:15:30.123Z" } else { "2026-02-20T08:00:00.000Z" },
        "attachments": [
            {"id": format!("{n}01"), "filename": "Ada_Lovelace_Resume_2026.pdf", "type": "resume",
             "created_at": "2026-01-15T09:31:00.000Z", "updated_at": "2026-01-15T09:31:00.000Z"},
            {"id": format!("{n}02"), "filename": "Cover_Letter.pdf", "type": "cover_letter",
             "created_at": "2026-01-15T09:32:00.000Z", "updated_at": "2026-01-15T09:32:00.000Z"}
        ]
    });
    if pulled {
        let obj = c.as_object_mut().expect("object");
        obj.insert(
            "attachments".into(),
            json!([
                {"id": format!("{n}01"), "filename": "Ada_Lovelace_Resume_2026.pdf", "type": "resume",
                 "created_at": "2026-01-15T09:31:00.000Z", "updated_at": "2026-01-15T09:31:00.000Z",
                 "file": {"key": format!("tenants/acme/attachments/sha256/{:064x}", n), "sha256": format!("{:064x}", n), "size": 183_211}},
                {"id": format!("{n}03"), "filename": "Take_Home_Solution.zip", "type": "take_home_test",
                 "created_at": "2026-02-01T12:00:00.000Z", "updated_at": "2026-02-01T12:00:00.000Z"}
            ]),
        );
    } else {
        let obj = c.as_object_mut().expect("object");
        // The push is missing what the pull backfills.
        obj.remove("time_zone");
        obj.remove("social_media");
    }
    c
}

fn layer(v: &Value, secs: i64) -> Layer {
    Layer {
        fields: serde_json::from_value(v.clone()).expect("fields"),
        ats_updated_at: Some(
            Utc.timestamp_opt(1_772_000_000 + secs, 0)
                .single()
                .expect("time"),
        ),
        observed_at: None,
    }
}

fn benches(c: &mut Criterion) {
    let records: Vec<(Layer, Layer, Vec<u8>)> = (0..64u64)
        .map(|n| {
            let push = candidate(1000 + n, false);
            let pull = candidate(1000 + n, true);
            let bytes = serde_json::to_vec(&pull).expect("json");
            (layer(&push, 0), layer(&pull, 10), bytes)
        })
        .collect();
    let avg = records.iter().map(|r| r.2.len()).sum::<usize>() / records.len();
    eprintln!("pulled candidate record: {avg} bytes of JSON on average");

    let mut g = c.benchmark_group("candidate_2kb");
    g.throughput(Throughput::Elements(1));
    let mut i = 0usize;
    // The merge as the pipeline runs it: the view borrows from the layers.
    g.bench_function("merge", |b| {
        b.iter(|| {
            i = (i + 1) % records.len();
            let (push, pull, _) = &records[i];
            black_box(merge_ref(
                EntityKind::Candidate,
                Some(push),
                Some(pull),
                ViewMode::Merged,
            ))
        })
    });
    g.bench_function("merge_and_serialise_view", |b| {
        b.iter(|| {
            i = (i + 1) % records.len();
            let (push, pull, _) = &records[i];
            let (view, _) = merge_ref(
                EntityKind::Candidate,
                Some(push),
                Some(pull),
                ViewMode::Merged,
            );
            black_box(serde_json::to_vec(&view).expect("json"))
        })
    });
    // The same with an owned view (`merge`: every value copied), as a version keeps it.
    g.bench_function("merge_owned_view", |b| {
        b.iter(|| {
            i = (i + 1) % records.len();
            let (push, pull, _) = &records[i];
            black_box(merge(
                EntityKind::Candidate,
                Some(push),
                Some(pull),
                ViewMode::Merged,
            ))
        })
    });
    g.bench_function("merge_owned_view_and_serialise", |b| {
        b.iter(|| {
            i = (i + 1) % records.len();
            let (push, pull, _) = &records[i];
            let (view, _) = merge(
                EntityKind::Candidate,
                Some(push),
                Some(pull),
                ViewMode::Merged,
            );
            black_box(serde_json::to_vec(&view).expect("json"))
        })
    });
    g.bench_function("serde_json_parse_same_bytes", |b| {
        b.iter(|| {
            i = (i + 1) % records.len();
            black_box(serde_json::from_slice::<Fields>(&records[i].2).expect("json"))
        })
    });
    g.bench_function("baseline_clone_pull_fields", |b| {
        b.iter(|| {
            i = (i + 1) % records.len();
            black_box(records[i].1.fields.clone())
        })
    });
    let states: Vec<RecordState> = records
        .iter()
        .map(|(push, pull, _)| RecordState {
            push: Some(push.clone()),
            pull: Some(pull.clone()),
            ats_deleted: None,
            push_deleted: None::<Tombstone>,
            mode: ViewMode::Merged,
        })
        .collect();
    g.bench_function("content_hash_two_layers", |b| {
        b.iter(|| {
            i = (i + 1) % states.len();
            black_box(states[i].content_hash())
        })
    });
    g.finish();
}

criterion_group!(merge_benches, benches);
criterion_main!(merge_benches);
