//! The Lever v1 client of one tenant: the [`AtsConnector`] port over the HTTP core.
//!
//! Cursors (opaque to the pipeline, re-validated on use because a checkpoint is data
//! read back from storage) name the list and Lever's offset token:
//! `opportunities:<token>`, `deleted:` / `deleted:<token>` (the candidates stream ends
//! with the deleted list), `postings:<token>` (jobs); id listings carry the token alone.

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use futures::StreamExt;
use serde_json::Value;
use tokio::time::Instant;
use url::Url;

use super::normalize::{self, ArchiveReasons, FileKind, best_effort_id, millis};
use super::{CHILD_CONCURRENCY, LeverConfig, MAX_DELETED_WINDOW, check_offset, fetch_list};
use crate::auth::AccessTokens;
use crate::connector::http::ApiClient;
use crate::connector::{
    AtsConnector, AttachmentRef, ConnectorError, Cursor, IdPage, Page, PresencePage, Probe,
    Quarantined, RateLimiter, RequestStats, Stream, Window,
};
use crate::domain::ids::AtsId;
use crate::domain::model::Observation;

/// A Lever client for one tenant.
pub struct LeverClient {
    api: ApiClient,
    /// The API base, ending in `/` (downloads are built under it).
    base: Url,
    limit: u32,
    /// Archive reasons by id, read once per client when an archived opportunity needs
    /// its status, and again when a page names a reason not yet known.
    reasons: tokio::sync::Mutex<Option<ArchiveReasons>>,
}

/// Which list of the candidates stream a cursor continues.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Position {
    Opportunities(Option<String>),
    Deleted(Option<String>),
}

fn parse_position(cursor: Option<&Cursor>) -> Result<Position, ConnectorError> {
    let Some(c) = cursor else {
        return Ok(Position::Opportunities(None));
    };
    let token = |t: &str| -> Result<Option<String>, ConnectorError> {
        if t.is_empty() {
            return Ok(None);
        }
        check_offset(t)?;
        Ok(Some(t.to_string()))
    };
    match c.as_str().split_once(':') {
        Some(("opportunities", t)) if !t.is_empty() => Ok(Position::Opportunities(token(t)?)),
        Some(("deleted", t)) => Ok(Position::Deleted(token(t)?)),
        _ => Err(ConnectorError::UntrustedLink(
            "stored cursor is not a Lever opportunities or deleted-list position".into(),
        )),
    }
}

fn prefixed_token(cursor: Option<&Cursor>, prefix: &str) -> Result<Option<String>, ConnectorError> {
    let Some(c) = cursor else { return Ok(None) };
    let t = if prefix.is_empty() {
        Some(c.as_str())
    } else {
        c.as_str()
            .strip_prefix(prefix)
            .and_then(|t| t.strip_prefix(':'))
    };
    match t {
        Some(t) => {
            check_offset(t)?;
            Ok(Some(t.to_string()))
        }
        None => Err(ConnectorError::UntrustedLink(format!(
            "stored cursor is not a Lever {prefix} position"
        ))),
    }
}

fn quarantine(stream: Stream, row: &Value, error: impl ToString) -> Quarantined {
    let ats_id = best_effort_id(row);
    let error = error.to_string();
    tracing::warn!(%stream, ats_id = ats_id.as_deref().unwrap_or("?"), %error, "record quarantined");
    Quarantined {
        ats_id,
        stream,
        error,
    }
}

/// What one opportunity's resumes and files gave.
#[derive(Default)]
struct Children {
    observations: Vec<Observation>,
    downloads: Vec<AttachmentRef>,
    quarantined: Vec<Quarantined>,
    stats: RequestStats,
}

impl LeverClient {
    pub fn new(
        config: LeverConfig,
        tokens: Arc<dyn AccessTokens>,
        limiter: Arc<RateLimiter>,
    ) -> Result<Self, ConnectorError> {
        config.validate()?;
        let api = ApiClient::new(
            config.base_url,
            tokens,
            limiter,
            config.retry,
            config.host_rules,
        )?;
        let base = api.url("")?;
        Ok(Self {
            api,
            base,
            limit: config.limit,
            reasons: tokio::sync::Mutex::new(None),
        })
    }

    /// `path` under the base with `limit`, `offset` and `query`.
    fn list_url(
        &self,
        path: &str,
        query: &[(&str, String)],
        offset: Option<&str>,
    ) -> Result<Url, ConnectorError> {
        let mut u = self.api.url(path)?;
        {
            let mut q = u.query_pairs_mut();
            q.append_pair("limit", &self.limit.to_string());
            for (k, v) in query {
                q.append_pair(k, v);
            }
            if let Some(o) = offset {
                q.append_pair("offset", o);
            }
        }
        Ok(u)
    }

    /// The `updated_at` filter of a window, none for a window from the epoch (a
    /// filtered list never returns a record whose `updatedAt` is null).
    fn updated_filter(window: Option<&Window>) -> Vec<(&'static str, String)> {
        match window {
            Some(w) if w.from > DateTime::<Utc>::UNIX_EPOCH => vec![
                ("updated_at_start", millis(&w.from)),
                ("updated_at_end", millis(&w.to)),
            ],
            _ => vec![],
        }
    }

    fn opportunities_query(
        window: Option<&Window>,
        applications: bool,
    ) -> Vec<(&'static str, String)> {
        let mut q = vec![("confidentiality", "all".to_string())];
        if applications {
            q.push(("expand", "applications".to_string()));
            q.push(("expand", "stage".to_string()));
        }
        q.extend(Self::updated_filter(window));
        q
    }

    /// Every archive reason (`GET /archive_reasons`, all pages).
    async fn load_reasons(
        &self,
        deadline: Instant,
        stats: &mut RequestStats,
    ) -> Result<ArchiveReasons, ConnectorError> {
        let mut reasons = ArchiveReasons::new();
        let mut offset: Option<String> = None;
        loop {
            let url = self.list_url("archive_reasons", &[], offset.as_deref())?;
            let page = fetch_list(&self.api, url, offset.as_deref(), deadline, stats).await?;
            for r in &page.rows {
                if let (Some(id), Some(status)) = (
                    r.get("id").and_then(Value::as_str),
                    r.get("status").and_then(Value::as_str),
                ) {
                    reasons.insert(id.to_string(), status.to_string());
                }
            }
            match page.next {
                Some(n) => offset = Some(n),
                None => return Ok(reasons),
            }
        }
    }

    /// The archive reasons, read when `needed` names one not known yet.
    async fn reasons_for(
        &self,
        needed: &[String],
        deadline: Instant,
        stats: &mut RequestStats,
    ) -> Result<ArchiveReasons, ConnectorError> {
        let mut cached = self.reasons.lock().await;
        let known = cached
            .as_ref()
            .is_some_and(|r| needed.iter().all(|n| r.contains_key(n)));
        if !known && (!needed.is_empty()) {
            let fresh = self.load_reasons(deadline, stats).await?;
            *cached = Some(fresh);
        }
        Ok(cached.clone().unwrap_or_default())
    }

    /// Every page of one opportunity's resumes or files.
    async fn children_of(
        &self,
        opp: &AtsId,
        kind: FileKind,
        deadline: Instant,
        out: &mut Children,
    ) -> Result<(), ConnectorError> {
        let path = format!("opportunities/{}/{}", opp.as_str(), kind.path());
        let mut offset: Option<String> = None;
        loop {
            let url = self.list_url(&path, &[], offset.as_deref())?;
            let page = match fetch_list(&self.api, url, offset.as_deref(), deadline, &mut out.stats)
                .await
            {
                Ok(p) => p,
                // Deleted since it was listed: the deleted list tombstones it.
                Err(ConnectorError::BadRequest { status: 404, .. }) => return Ok(()),
                Err(e) => return Err(e),
            };
            for row in &page.rows {
                match normalize::attachment(row, opp, kind, &self.base) {
                    Ok((o, d)) => {
                        out.observations.push(o);
                        out.downloads.push(d);
                    }
                    Err(e) => {
                        let mut q = quarantine(Stream::Attachments, row, e);
                        // Quarantined under its candidate: the attachment id alone
                        // names no record.
                        q.ats_id = Some(opp.to_string());
                        out.quarantined.push(q);
                    }
                }
            }
            match page.next {
                Some(n) => offset = Some(n),
                None => return Ok(()),
            }
        }
    }

    async fn opportunities_page(
        &self,
        window: &Window,
        offset: Option<String>,
        deadline: Instant,
    ) -> Result<Page, ConnectorError> {
        let mut page = Page::default();
        let url = self.list_url(
            "opportunities",
            &Self::opportunities_query(Some(window), true),
            offset.as_deref(),
        )?;
        let list = fetch_list(&self.api, url, offset.as_deref(), deadline, &mut page.stats).await?;
        let reasons = self
            .reasons_for(
                &normalize::archive_reasons_of(&list.rows),
                deadline,
                &mut page.stats,
            )
            .await?;
        let mut listed: Vec<AtsId> = Vec::with_capacity(list.rows.len());
        for row in &list.rows {
            let candidate = match normalize::candidate(row) {
                Ok(c) => c,
                Err(e) => {
                    page.quarantined
                        .push(quarantine(Stream::Candidates, row, e));
                    continue;
                }
            };
            match normalize::applications(row, &reasons) {
                Ok(apps) => page.observations.extend(apps),
                Err(e) => page
                    .quarantined
                    .push(quarantine(Stream::Applications, row, e)),
            }
            listed.push(candidate.ats_id.clone());
            page.observations.push(candidate);
        }
        // Resumes and files: the calls the API forces per candidacy, a few at a time
        // (the shared limiter paces them with everything else).
        let children: Vec<Result<Children, ConnectorError>> = futures::stream::iter(listed)
            .map(|opp| async move {
                let mut c = Children::default();
                self.children_of(&opp, FileKind::Resume, deadline, &mut c)
                    .await?;
                self.children_of(&opp, FileKind::File, deadline, &mut c)
                    .await?;
                Ok(c)
            })
            .buffered(CHILD_CONCURRENCY)
            .collect()
            .await;
        for c in children {
            let c = c?;
            page.observations.extend(c.observations);
            page.attachment_downloads.extend(c.downloads);
            page.quarantined.extend(c.quarantined);
            page.stats += c.stats;
        }
        page.next = Some(Cursor::new(match list.next {
            Some(t) => format!("opportunities:{t}"),
            None => "deleted:".to_string(),
        }));
        Ok(page)
    }

    async fn deleted_page(
        &self,
        window: &Window,
        offset: Option<String>,
        deadline: Instant,
    ) -> Result<Page, ConnectorError> {
        let mut page = Page::default();
        let from = window.from.max(window.to - MAX_DELETED_WINDOW);
        let url = self.list_url(
            "opportunities/deleted",
            &[
                ("deleted_at_start", millis(&from)),
                ("deleted_at_end", millis(&window.to)),
            ],
            offset.as_deref(),
        )?;
        let list = fetch_list(&self.api, url, offset.as_deref(), deadline, &mut page.stats).await?;
        for row in &list.rows {
            match normalize::deleted(row) {
                Ok(o) => page.observations.push(o),
                Err(e) => page
                    .quarantined
                    .push(quarantine(Stream::Candidates, row, e)),
            }
        }
        page.next = list.next.map(|t| Cursor::new(format!("deleted:{t}")));
        Ok(page)
    }

    async fn postings_page(
        &self,
        window: &Window,
        offset: Option<String>,
        deadline: Instant,
    ) -> Result<Page, ConnectorError> {
        let mut page = Page::default();
        let mut query = vec![("confidentiality", "all".to_string())];
        query.extend(Self::updated_filter(Some(window)));
        let url = self.list_url("postings", &query, offset.as_deref())?;
        let list = fetch_list(&self.api, url, offset.as_deref(), deadline, &mut page.stats).await?;
        for row in &list.rows {
            match normalize::job(row) {
                Ok(o) => page.observations.push(o),
                Err(e) => page.quarantined.push(quarantine(Stream::Jobs, row, e)),
            }
        }
        page.next = list.next.map(|t| Cursor::new(format!("postings:{t}")));
        Ok(page)
    }

    fn single_url(&self, segments: &[&str]) -> Result<Url, ConnectorError> {
        let mut url = self.base.clone();
        url.path_segments_mut()
            .map_err(|_| ConnectorError::Config("base URL cannot have a path".into()))?
            .pop_if_empty()
            .extend(segments);
        Ok(url)
    }
}

#[async_trait]
impl AtsConnector for LeverClient {
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
        let page = match stream {
            Stream::Candidates => match parse_position(cursor)? {
                Position::Opportunities(offset) => {
                    self.opportunities_page(window, offset, deadline).await
                }
                Position::Deleted(offset) => self.deleted_page(window, offset, deadline).await,
            },
            Stream::Jobs => {
                let offset = prefixed_token(cursor, "postings")?;
                self.postings_page(window, offset, deadline).await
            }
            Stream::Applications | Stream::Attachments => Err(ConnectorError::Config(format!(
                "Lever has no list of {stream}: they are read with their opportunities"
            ))),
        };
        if let Err(e) = &page {
            tracing::debug!(%stream, error = %e, "Lever page failed");
        }
        page
    }

    async fn list_ids(
        &self,
        stream: Stream,
        cursor: Option<&Cursor>,
        deadline: Instant,
    ) -> Result<IdPage, ConnectorError> {
        let offset = prefixed_token(cursor, "")?;
        let url = match stream {
            Stream::Candidates => self.list_url(
                "opportunities",
                &Self::opportunities_query(None, false),
                offset.as_deref(),
            )?,
            Stream::Applications => self.list_url(
                "opportunities",
                &Self::opportunities_query(None, true),
                offset.as_deref(),
            )?,
            Stream::Jobs => self.list_url(
                "postings",
                &[("confidentiality", "all".to_string())],
                offset.as_deref(),
            )?,
            Stream::Attachments => {
                return Err(ConnectorError::Config(
                    "Lever attachments are reconciled with their opportunities".into(),
                ));
            }
        };
        let mut out = IdPage::default();
        let list = fetch_list(&self.api, url, offset.as_deref(), deadline, &mut out.stats).await?;
        for row in &list.rows {
            if stream == Stream::Applications {
                let apps = row.get("applications").and_then(Value::as_array);
                for a in apps.into_iter().flatten() {
                    match a.get("id").and_then(Value::as_str).map(AtsId::parse) {
                        Some(Ok(id)) => out.ids.push(id),
                        _ => out.quarantined.push(Quarantined {
                            ats_id: None,
                            stream,
                            error: "an application without a usable id".into(),
                        }),
                    }
                }
                continue;
            }
            match row.get("id").and_then(Value::as_str).map(AtsId::parse) {
                Some(Ok(id)) => out.ids.push(id),
                _ => out.quarantined.push(Quarantined {
                    ats_id: best_effort_id(row),
                    stream,
                    error: "missing or invalid id".into(),
                }),
            }
        }
        out.next = list.next.map(Cursor::new);
        Ok(out)
    }

    async fn confirm_presence(
        &self,
        stream: Stream,
        probes: &[Probe],
        deadline: Instant,
    ) -> Result<PresencePage, ConnectorError> {
        self.api
            .probe_each(probes, deadline, |p| {
                Ok(Some(match (stream, &p.parent) {
                    (Stream::Candidates, _) => {
                        self.single_url(&["opportunities", p.id.as_str()])?
                    }
                    (Stream::Jobs, _) => self.single_url(&["postings", p.id.as_str()])?,
                    (Stream::Applications, Some(parent)) => self.single_url(&[
                        "opportunities",
                        parent.as_str(),
                        "applications",
                        p.id.as_str(),
                    ])?,
                    // Without its opportunity an application cannot be read.
                    (Stream::Applications, None) | (Stream::Attachments, _) => return Ok(None),
                }))
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

    #[test]
    fn cursors_name_their_list_and_refuse_anything_else() {
        assert_eq!(parse_position(None).unwrap(), Position::Opportunities(None));
        assert_eq!(
            parse_position(Some(&Cursor::new("opportunities:abc"))).unwrap(),
            Position::Opportunities(Some("abc".into()))
        );
        assert_eq!(
            parse_position(Some(&Cursor::new("deleted:"))).unwrap(),
            Position::Deleted(None)
        );
        for bad in [
            "https://evil.example/x",
            "opportunities:",
            "deleted:a b",
            "postings:x",
        ] {
            assert!(parse_position(Some(&Cursor::new(bad))).is_err(), "{bad}");
        }
        assert_eq!(
            prefixed_token(Some(&Cursor::new("postings:t1")), "postings").unwrap(),
            Some("t1".into())
        );
        assert!(prefixed_token(Some(&Cursor::new("deleted:t1")), "postings").is_err());
    }

    #[test]
    fn a_window_from_the_epoch_is_unfiltered_and_others_are_inclusive_milliseconds() {
        let to: DateTime<Utc> = "2026-03-01T00:00:00.250Z".parse().unwrap();
        let full = Window {
            from: DateTime::<Utc>::UNIX_EPOCH,
            to,
        };
        assert!(LeverClient::updated_filter(Some(&full)).is_empty());
        let from: DateTime<Utc> = "2026-02-28T23:00:00Z".parse().unwrap();
        let w = Window { from, to };
        assert_eq!(
            LeverClient::updated_filter(Some(&w)),
            vec![
                ("updated_at_start", from.timestamp_millis().to_string()),
                ("updated_at_end", to.timestamp_millis().to_string())
            ]
        );
        let q = LeverClient::opportunities_query(Some(&w), true);
        assert!(q.contains(&("confidentiality", "all".to_string())), "{q:?}");
        assert!(q.contains(&("expand", "applications".to_string())));
    }
}
