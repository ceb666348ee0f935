//! Lever-shaped records as the simulator holds them (the v1 objects, camelCase on the
//! wire), the scopes, and time helpers. Timestamps are epoch milliseconds, as Lever
//! sends them; ids are UUID-like strings.

use chrono::{DateTime, SecondsFormat, TimeZone, Utc};
use rand::RngCore;
use serde::{Deserialize, Serialize};

/// The `audience` of Lever's token endpoint.
pub const AUDIENCE: &str = "https://api.lever.co/v1/";

pub const SCOPE_OPPORTUNITIES: &str = "opportunities:read:admin";
pub const SCOPE_APPLICATIONS: &str = "applications:read:admin";
pub const SCOPE_RESUMES: &str = "resumes:read:admin";
pub const SCOPE_FILES: &str = "files:read:admin";
pub const SCOPE_POSTINGS: &str = "postings:read:admin";
pub const SCOPE_STAGES: &str = "stages:read:admin";
pub const SCOPE_ARCHIVE_REASONS: &str = "archive_reasons:read:admin";
pub const SCOPE_CONFIDENTIAL: &str = "confidential:access:admin";
pub const SCOPE_OFFLINE: &str = "offline_access";

/// Every scope the simulator knows: a fully privileged test credential.
pub const ALL_SCOPES: &[&str] = &[
    SCOPE_OPPORTUNITIES,
    SCOPE_APPLICATIONS,
    SCOPE_RESUMES,
    SCOPE_FILES,
    SCOPE_POSTINGS,
    SCOPE_STAGES,
    SCOPE_ARCHIVE_REASONS,
    SCOPE_CONFIDENTIAL,
    SCOPE_OFFLINE,
];

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Phone {
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub value: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Archived {
    pub archived_at: i64,
    /// An archive reason id.
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StageChange {
    pub to_stage_id: String,
    pub to_stage_index: usize,
    pub updated_at: i64,
    pub user_id: Option<String>,
}

/// One candidacy: a person (the `contact`) considered for one role.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Opportunity {
    pub id: String,
    /// Contact data (shared by every opportunity of the contact):
    pub name: String,
    pub headline: String,
    pub contact: String,
    pub location: String,
    pub phones: Vec<Phone>,
    pub emails: Vec<String>,
    pub links: Vec<String>,
    /// Opportunity data:
    pub stage: String,
    pub stage_changes: Vec<StageChange>,
    /// `"confidential"` or `"non-confidential"`.
    pub confidentiality: String,
    pub archived: Option<Archived>,
    pub tags: Vec<String>,
    pub sources: Vec<String>,
    pub origin: String,
    pub owner: Option<String>,
    pub followers: Vec<String>,
    /// Application ids (at most one).
    pub applications: Vec<String>,
    pub created_at: i64,
    /// `null` on some old opportunities.
    pub updated_at: Option<i64>,
    pub last_interaction_at: i64,
    pub last_advanced_at: i64,
    pub snoozed_until: Option<i64>,
    pub is_anonymized: bool,
}

impl Opportunity {
    pub fn is_confidential(&self) -> bool {
        self.confidentiality == "confidential"
    }
}

/// The members of an opportunity that belong to its contact: a change to one is a
/// change to every opportunity of the contact.
pub const CONTACT_FIELDS: &[&str] = &["name", "headline", "location", "phones", "emails", "links"];

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Application {
    pub id: String,
    pub opportunity_id: String,
    /// The opportunity id again (Lever's legacy "candidate" id).
    pub candidate_id: String,
    pub created_at: i64,
    /// `"posting"`, `"user"` (added by a user) or `"referral"`.
    #[serde(rename = "type")]
    pub kind: String,
    pub posting: Option<String>,
    pub posting_hiring_manager: Option<String>,
    pub posting_owner: Option<String>,
    /// The user who added (or referred) the candidate, for `user` and `referral`.
    pub user: Option<String>,
    pub name: String,
    pub email: Option<String>,
    pub phone: Option<Phone>,
    pub company: Option<String>,
    pub links: Vec<String>,
    pub comments: Option<String>,
    pub custom_questions: Vec<serde_json::Value>,
    pub requisition_for_hire: Option<serde_json::Value>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Categories {
    pub team: Option<String>,
    pub department: Option<String>,
    pub location: Option<String>,
    pub commitment: Option<String>,
    pub all_locations: Vec<String>,
}

/// A job posting: the job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Posting {
    pub id: String,
    pub text: String,
    /// `published`, `internal`, `closed`, `draft`, `pending` or `rejected`.
    pub state: String,
    pub confidentiality: String,
    pub distribution_channels: Vec<String>,
    pub user: Option<String>,
    pub owner: Option<String>,
    pub hiring_manager: Option<String>,
    pub followers: Vec<String>,
    pub categories: Categories,
    pub tags: Vec<String>,
    pub workplace_type: String,
    pub requisition_codes: Vec<String>,
    pub created_at: i64,
    pub updated_at: i64,
}

/// A resume of an opportunity (metadata; the bytes are generated on download).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ResumeRec {
    pub id: String,
    pub opportunity_id: String,
    pub created_at: i64,
    pub name: String,
    pub ext: String,
    pub uploaded_at: i64,
    pub size: u64,
}

/// A file of an opportunity (offer letters, portfolios, ...).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FileRec {
    pub id: String,
    pub opportunity_id: String,
    pub name: String,
    pub ext: String,
    pub uploaded_at: i64,
    pub size: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Deleted {
    pub id: String,
    pub deleted_at: i64,
    pub deleted_by: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stage {
    pub id: String,
    pub text: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArchiveReason {
    pub id: String,
    pub text: String,
    /// `"hired"` or `"non-hired"`.
    pub status: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct User {
    pub id: String,
    pub name: String,
    pub email: String,
    pub access_role: String,
}

/// The ATS truth. Vectors are in creation order (the order lists serve them in).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct LeverData {
    /// The simulated "now" of this data; the server clock starts here.
    pub now: DateTime<Utc>,
    /// Seed of the file contents.
    pub file_seed: u64,
    pub users: Vec<User>,
    pub stages: Vec<Stage>,
    pub archive_reasons: Vec<ArchiveReason>,
    pub postings: Vec<Posting>,
    pub opportunities: Vec<Opportunity>,
    pub applications: Vec<Application>,
    pub resumes: Vec<ResumeRec>,
    pub files: Vec<FileRec>,
    /// Deleted opportunities, in deletion order.
    pub deleted: Vec<Deleted>,
}

impl LeverData {
    pub fn opportunity(&self, id: &str) -> Option<&Opportunity> {
        self.opportunities.iter().find(|o| o.id == id)
    }
    pub fn application(&self, id: &str) -> Option<&Application> {
        self.applications.iter().find(|a| a.id == id)
    }
    pub fn posting(&self, id: &str) -> Option<&Posting> {
        self.postings.iter().find(|p| p.id == id)
    }
    pub fn resumes_of<'a>(&'a self, opp: &'a str) -> impl Iterator<Item = &'a ResumeRec> + 'a {
        self.resumes.iter().filter(move |r| r.opportunity_id == opp)
    }
    pub fn files_of<'a>(&'a self, opp: &'a str) -> impl Iterator<Item = &'a FileRec> + 'a {
        self.files.iter().filter(move |r| r.opportunity_id == opp)
    }
    pub fn stage_text(&self, id: &str) -> Option<&str> {
        self.stages
            .iter()
            .find(|s| s.id == id)
            .map(|s| s.text.as_str())
    }
    pub fn archive_reason(&self, id: &str) -> Option<&ArchiveReason> {
        self.archive_reasons.iter().find(|r| r.id == id)
    }
}

/// A UUID-v4-shaped id from 16 random bytes.
pub fn uuid_from(rng: &mut impl RngCore) -> String {
    let mut b = [0u8; 16];
    rng.fill_bytes(&mut b);
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = hex::encode(b);
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// RFC 3339 UTC with milliseconds: the canonical timestamp form of eds.
pub fn ts(dt: DateTime<Utc>) -> String {
    dt.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// Epoch milliseconds in the canonical form.
pub fn ms_ts(ms: i64) -> String {
    ts(from_ms(ms))
}

pub fn from_ms(ms: i64) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(ms).single().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn ids_look_like_uuids_and_times_are_canonical() {
        let mut r = rand_chacha::ChaCha8Rng::seed_from_u64(1);
        let id = uuid_from(&mut r);
        assert_eq!(id.len(), 36);
        assert_eq!(&id[14..15], "4");
        assert_eq!(ms_ts(1_700_000_000_123), "2023-11-14T22:13:20.123Z");
    }

    #[test]
    fn an_opportunity_serialises_camel_case_with_a_null_updated_at() {
        let o = Opportunity {
            id: "o".into(),
            name: "A B".into(),
            headline: String::new(),
            contact: "c".into(),
            location: String::new(),
            phones: vec![],
            emails: vec![],
            links: vec![],
            stage: "s".into(),
            stage_changes: vec![],
            confidentiality: "non-confidential".into(),
            archived: None,
            tags: vec![],
            sources: vec![],
            origin: "applied".into(),
            owner: None,
            followers: vec![],
            applications: vec![],
            created_at: 1,
            updated_at: None,
            last_interaction_at: 1,
            last_advanced_at: 1,
            snoozed_until: None,
            is_anonymized: false,
        };
        let v = serde_json::to_value(&o).unwrap();
        assert!(v["updatedAt"].is_null() && v.get("updatedAt").is_some());
        assert_eq!(v["isAnonymized"], false);
        assert!(v.get("stageChanges").is_some());
    }
}
