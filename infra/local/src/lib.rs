//! The local stack, driven by the deployment template.
//!
//! `infra/template.yaml` is the single description of eds's tables, queues, bucket and
//! event bus. This crate reads it, evaluates the few CloudFormation intrinsics it uses
//! (`!Ref`, `!Sub`, `!GetAtt`, `!If`, `!Equals`, `!Not`), creates the same resources in the
//! local AWS emulator, and returns the environment the template gives every function
//! (`Globals.Function.Environment`), so tests, `edsctl` and `make demo` run the real
//! binaries against exactly what would be deployed. Nothing here runs in Lambda.

mod intrinsics;
mod provision;
pub mod queue;
mod template;

pub use provision::{LocalStack, provision, sdk_config_from_env};
pub use template::{Resource, Template, TemplateError};

/// The account id moto uses for everything it creates.
pub const LOCAL_ACCOUNT_ID: &str = "123456789012";
/// The region the local stack runs in.
pub const LOCAL_REGION: &str = "us-east-1";

/// Path of the SAM template in this repository.
pub fn template_path() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("template.yaml")
}
