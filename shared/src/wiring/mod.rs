//! The handlers as deployed: each one's ports built from the AWS clients and the
//! configuration every function reads at cold start. The one place where the pipeline
//! meets its AWS adapters; the functions' `main`, `edsctl` and the tests call these.
//!
//! One file per handler, so that a function's code reaches only the adapters its handler
//! is built from (the template test derives each function's IAM policy from what its
//! code reaches, file by file), and every one with the same shape:
//! `wiring::<file>::<handler>(&SdkConfig, &Config) -> Result<Handler, BuildError>`. Each
//! builds only the SDK clients its handler calls (D14: the others are not linked).

pub mod delete;
pub mod disable;
pub mod puller;
pub mod push;
pub mod records_api;
pub mod scheduler;
pub mod settings;

/// Why a handler could not be built at cold start (a missing or malformed variable, a
/// credentials adapter that cannot start): the function fails its init, loudly.
pub type BuildError = Box<dyn std::error::Error + Send + Sync>;

use std::sync::Arc;

use crate::attachments::blob::{BlobStore, S3BlobStore};
use crate::lambda::{Aws, Config};
use crate::store::dynamodb::DynamoStore;
use crate::tenants::TenantRegistry;

/// The tenant registry on the configured tenants table.
pub fn registry(aws: &Aws, config: &Config) -> Arc<TenantRegistry> {
    Arc::new(TenantRegistry::new(
        aws.dynamodb.clone(),
        config.tenants_table.clone(),
    ))
}

/// The record store on the configured records table.
pub fn store(aws: &Aws, config: &Config) -> Arc<DynamoStore> {
    Arc::new(DynamoStore::new(
        aws.dynamodb.clone(),
        config.records_table.clone(),
    ))
}

/// The attachments bucket (files, and the reconciliation's "seen" sets).
pub fn blobs(aws: &Aws, config: &Config) -> Arc<dyn BlobStore> {
    Arc::new(S3BlobStore::new(
        aws.s3.clone(),
        config.attachments_bucket.clone(),
    ))
}
