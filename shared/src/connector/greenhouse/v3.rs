//! Greenhouse Harvest v3 (OAuth bearer tokens).
//!
//! First request: `/v3/{resource}?per_page=500&updated_at=gte|FROM|lte|TO`; following
//! pages: the `Link: rel="next"` URL verbatim (the cursor must be its only parameter).
//! Results are ordered by id, not by time, which is why windows are two-sided (see
//! `connector::window`). A 422 on a cursor means it expired: the caller restarts the
//! window.

use std::sync::Arc;

use async_trait::async_trait;
use serde_json::Value;
use tokio::time::Instant;
use url::Url;

use super::normalize::{self, best_effort_id};
use super::{GreenhouseConfig, fetch_rows};
use crate::auth::AccessTokens;
use crate::connector::http::ApiClient;
use crate::connector::{
    AtsConnector, ConnectorError, Cursor, IdPage, Page, PresencePage, Probe, Quarantined,
    RateLimiter, RequestStats, Stream, Window, canonical_timestamp,
};
use crate::domain::ids::AtsId;

/// A Greenhouse v3 client for one tenant.
pub struct GreenhouseV3 {
    api: ApiClient,
    per_page: u32,
}

fn resource(stream: Stream) -> &'static str {
    match stream {
        Stream::Candidates => "v3/candidates",
        Stream::Applications => "v3/applications",
        Stream::Jobs => "v3/jobs",
        Stream::Attachments => "v3/attachments",
    }
}

/// The `updated_at` filter value of a window: `gte|FROM|lte|TO`, millisecond UTC.
pub fn updated_at_filter(window: &Window) -> String {
    format!(
        "gte|{}|lte|{}",
        canonical_timestamp(&window.from),
        canonical_timestamp(&window.to)
    )
}

impl GreenhouseV3 {
    /// `tokens` supplies `Bearer ...`; `limiter` is shared by every client of the same
    /// credential (see [`RateLimiter::shared`]).
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
        let mut u = self.api.url(resource(stream))?;
        {
            let mut q = u.query_pairs_mut();
            q.append_pair("per_page", &self.per_page.to_string());
            if let Some(w) = window {
                q.append_pair("updated_at", &updated_at_filter(w));
            }
        }
        Ok(u)
    }
}

/// Normalises the rows of one v3 page; broken rows are quarantined, the rest proceeds.
pub fn normalise_page(stream: Stream, rows: &[Value]) -> Page {
    let mut page = Page {
        observations: Vec::with_capacity(rows.len()),
        ..Page::default()
    };
    for row in rows {
        let r = match stream {
            Stream::Candidates => normalize::v3_candidate(row).map(|o| (o, None)),
            Stream::Applications => normalize::v3_application(row).map(|o| (o, None)),
            Stream::Jobs => normalize::v3_job(row).map(|o| (o, None)),
            Stream::Attachments => normalize::v3_attachment(row),
        };
        match r {
            Ok((o, d)) => {
                page.observations.push(o);
                page.attachment_downloads.extend(d);
            }
            Err(e) => {
                let ats_id = best_effort_id(row);
                tracing::warn!(%stream, ats_id = ats_id.as_deref().unwrap_or("?"), error = %e, "record quarantined");
                page.quarantined.push(Quarantined {
                    ats_id,
                    stream,
                    error: e.to_string(),
                })
            }
        }
    }
    page
}

pub(crate) fn ids_page(stream: Stream, rows: &[Value]) -> (Vec<AtsId>, Vec<Quarantined>) {
    let mut ids = Vec::with_capacity(rows.len());
    let mut quarantined = Vec::new();
    for row in rows {
        match best_effort_id(row).map(AtsId::parse) {
            Some(Ok(id)) => ids.push(id),
            Some(Err(e)) => quarantined.push(Quarantined {
                ats_id: best_effort_id(row),
                stream,
                error: format!("invalid id: {e}"),
            }),
            None => quarantined.push(Quarantined {
                ats_id: None,
                stream,
                error: "missing or invalid id".to_string(),
            }),
        }
    }
    (ids, quarantined)
}

#[async_trait]
impl AtsConnector for GreenhouseV3 {
    fn streams(&self) -> &'static [Stream] {
        super::streams::STREAMS
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
            resource(stream),
            || self.first_url(stream, Some(window)),
            cursor,
            deadline,
        )
        .await?;
        let mut page = normalise_page(stream, &raw.rows);
        page.next = raw.next;
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
            resource(stream),
            || self.first_url(stream, None),
            cursor,
            deadline,
        )
        .await?;
        let (ids, quarantined) = ids_page(stream, &raw.rows);
        Ok(IdPage {
            ids,
            quarantined,
            next: raw.next,
            stats: raw.stats,
        })
    }

    async fn confirm_presence(
        &self,
        stream: Stream,
        probes: &[Probe],
        deadline: Instant,
    ) -> Result<PresencePage, ConnectorError> {
        self.api
            .probe_each(probes, deadline, |Probe { id, .. }| {
                let mut url = self.api.url(resource(stream))?;
                url.path_segments_mut()
                    .map_err(|_| ConnectorError::Config("base URL cannot have a path".into()))?
                    .push(id.as_str());
                Ok(Some(url))
            })
            .await
    }

    fn metrics(&self) -> RequestStats {
        self.api.totals()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{DateTime, Utc};
    use serde_json::json;

    #[test]
    fn updated_at_filter_is_two_sided_with_milliseconds() {
        let w = Window {
            from: DateTime::<Utc>::UNIX_EPOCH,
            to: DateTime::parse_from_rfc3339("2026-01-01T06:00:00.5Z")
                .unwrap()
                .with_timezone(&Utc),
        };
        assert_eq!(
            updated_at_filter(&w),
            "gte|1970-01-01T00:00:00.000Z|lte|2026-01-01T06:00:00.500Z"
        );
    }

    #[test]
    fn one_broken_record_is_quarantined_and_the_rest_proceeds() {
        let rows = vec![
            json!({"id": 1, "updated_at": "2026-01-01T00:00:00Z", "first_name": "A"}),
            json!({"id": 2, "updated_at": "2026-01-01T00:00:00Z", "first_name": ["not", "a", "name"]}),
            json!("not an object"),
            json!({"id": 3, "updated_at": "2026-01-01T00:00:00Z"}),
        ];
        let p = normalise_page(Stream::Candidates, &rows);
        let ids: Vec<_> = p.observations.iter().map(|o| o.ats_id.as_str()).collect();
        assert_eq!(ids, ["1", "3"]);
        assert_eq!(p.quarantined.len(), 2);
        assert_eq!(p.quarantined[0].ats_id.as_deref(), Some("2"));
        assert!(p.quarantined[0].error.contains("first_name"));
        assert_eq!(p.quarantined[1].ats_id, None);
    }

    #[test]
    fn id_listing_quarantines_rows_without_a_usable_id() {
        let rows = vec![json!({"id": 1}), json!({"id": "x y"}), json!({})];
        let (ids, q) = ids_page(Stream::Jobs, &rows);
        assert_eq!(ids, vec![AtsId::from_u64(1)]);
        assert_eq!(q.len(), 2);
    }
}
