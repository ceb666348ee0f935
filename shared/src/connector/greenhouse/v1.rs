//! Greenhouse Harvest v1 (API key, Basic auth): the secondary surface for older tenants
//! until its removal.
//!
//! `page`/`per_page` pagination with `Link: rel="next"`. Filters: candidates and jobs by
//! `updated_after`/`updated_before`; applications have no `updated_at` in v1, so they
//! are filtered by `last_activity_after` and ordered by `last_activity_at` (v1 has no
//! upper bound for that filter: rows past the window's end are kept, re-reading them in
//! the next window is harmless). Candidates embed their applications and attachments,
//! which are normalised too, so v1 has no separate attachment stream.

use std::sync::Arc;

use async_trait::async_trait;
use chrono::TimeDelta;
use tokio::time::Instant;
use url::Url;

use super::normalize::{self, best_effort_id};
use super::v3::ids_page;
use super::{GreenhouseConfig, fetch_rows};
use crate::auth::AccessTokens;
use crate::connector::http::ApiClient;
use crate::connector::{
    AtsConnector, ConnectorError, Cursor, IdPage, Page, Quarantined, RateLimiter, RequestStats,
    Stream, Window, canonical_timestamp,
};

/// A Greenhouse v1 client for one tenant (`tokens` returns `Basic base64(key:)`).
pub struct GreenhouseV1 {
    api: ApiClient,
    per_page: u32,
}

fn resource(stream: Stream) -> Result<&'static str, ConnectorError> {
    match stream {
        Stream::Candidates => Ok("v1/candidates"),
        Stream::Applications => Ok("v1/applications"),
        Stream::Jobs => Ok("v1/jobs"),
        Stream::Attachments => Err(ConnectorError::Unsupported(Stream::Attachments)),
    }
}

impl GreenhouseV1 {
    pub fn new(
        config: GreenhouseConfig,
        tokens: Arc<dyn AccessTokens>,
        limiter: Arc<RateLimiter>,
    ) -> Result<Self, ConnectorError> {
        config.validate()?;
        Ok(Self {
            api: ApiClient::new(
                config.base_url,
                tokens,
                limiter,
                config.retry,
                config.host_rules,
            )?,
            per_page: config.per_page,
        })
    }

    fn first_url(&self, stream: Stream, window: Option<&Window>) -> Result<Url, ConnectorError> {
        let mut u = self.api.url(resource(stream)?)?;
        {
            let mut q = u.query_pairs_mut();
            q.append_pair("per_page", &self.per_page.to_string());
            q.append_pair("page", "1");
            if let Some(w) = window {
                let from = canonical_timestamp(&w.from);
                // v1 `*_before` is exclusive; the window's end is inclusive.
                let before = canonical_timestamp(&(w.to + TimeDelta::milliseconds(1)));
                match stream {
                    Stream::Applications => {
                        q.append_pair("last_activity_after", &from);
                    }
                    _ => {
                        q.append_pair("updated_after", &from);
                        q.append_pair("updated_before", &before);
                    }
                }
            }
        }
        Ok(u)
    }
}

/// Normalises the rows of one v1 page.
pub fn normalise_page(stream: Stream, rows: &[serde_json::Value]) -> Page {
    let mut page = Page::default();
    let quarantine = |page: &mut Page, row: &serde_json::Value, e: String| {
        page.quarantined.push(Quarantined {
            ats_id: best_effort_id(row),
            stream,
            error: e,
        });
    };
    for row in rows {
        match stream {
            Stream::Candidates => match normalize::v1_candidate(row) {
                Ok(c) => {
                    page.observations.push(c.candidate);
                    page.observations.extend(c.applications);
                    page.observations.extend(c.attachments);
                    page.attachment_downloads.extend(c.downloads);
                    page.quarantined.extend(c.quarantined);
                }
                Err(e) => quarantine(&mut page, row, e.to_string()),
            },
            Stream::Applications => match normalize::v1_application(row) {
                Ok(o) => page.observations.push(o),
                Err(e) => quarantine(&mut page, row, e.to_string()),
            },
            Stream::Jobs => match normalize::v1_job(row) {
                Ok(o) => page.observations.push(o),
                Err(e) => quarantine(&mut page, row, e.to_string()),
            },
            Stream::Attachments => {
                quarantine(&mut page, row, "v1 has no attachment list".to_string())
            }
        }
    }
    page
}

#[async_trait]
impl AtsConnector for GreenhouseV1 {
    fn streams(&self) -> &'static [Stream] {
        &[Stream::Jobs, Stream::Candidates, Stream::Applications]
    }

    async fn list_changed(
        &self,
        stream: Stream,
        window: &Window,
        cursor: Option<&Cursor>,
        deadline: Instant,
    ) -> Result<Page, ConnectorError> {
        let raw = fetch_rows(
            &self.api,
            resource(stream)?,
            || self.first_url(stream, Some(window)),
            cursor,
            deadline,
        )
        .await?;
        let mut page = normalise_page(stream, &raw.rows);
        // A v1 page past the end is `[]`; stop there even if a link was given.
        page.next = if raw.rows.is_empty() { None } else { raw.next };
        page.stats = raw.stats;
        Ok(page)
    }

    async fn list_ids(
        &self,
        stream: Stream,
        cursor: Option<&Cursor>,
        deadline: Instant,
    ) -> Result<IdPage, ConnectorError> {
        let raw = fetch_rows(
            &self.api,
            resource(stream)?,
            || self.first_url(stream, None),
            cursor,
            deadline,
        )
        .await?;
        let (ids, quarantined) = ids_page(stream, &raw.rows);
        Ok(IdPage {
            ids,
            quarantined,
            next: if raw.rows.is_empty() { None } else { raw.next },
            stats: raw.stats,
        })
    }

    fn metrics(&self) -> RequestStats {
        self.api.totals()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn candidate_page_carries_embedded_children() {
        let rows = vec![json!({
            "id": 1, "updated_at": "2026-01-01T00:00:00Z",
            "applications": [{"id": 2, "last_activity_at": "2026-01-01T00:00:00Z"}],
            "attachments": [{"id": 3, "filename": "a.pdf", "url": "https://f/x", "created_at": "2026-01-01T00:00:00Z"}]
        })];
        let p = normalise_page(Stream::Candidates, &rows);
        assert_eq!(p.observations.len(), 3);
        assert_eq!(p.attachment_downloads.len(), 1);
        assert!(p.quarantined.is_empty());
    }
}
