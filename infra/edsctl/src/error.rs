//! edsctl's errors: each one is a single sentence that names the problem and the fix,
//! and maps to a non-zero exit code. Secret values never appear in them (credential
//! file errors come from `TenantSecret::parse`, which names fields, never values).

/// Exit codes: 2 usage or input, 3 not found, 4 AWS unreachable, 5 operation failed.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// Bad input or configuration (flags, files, environment).
    #[error("{0}")]
    Usage(String),
    /// The tenant or record does not exist.
    #[error("{0}")]
    NotFound(String),
    /// AWS (or the emulator) could not be reached or refused the credentials.
    #[error("{0}")]
    Unreachable(String),
    /// A handler reported a failure.
    #[error("{0}")]
    Failed(String),
}

impl CliError {
    pub fn exit_code(&self) -> i32 {
        match self {
            CliError::Usage(_) => 2,
            CliError::NotFound(_) => 3,
            CliError::Unreachable(_) => 4,
            CliError::Failed(_) => 5,
        }
    }

    pub fn unknown_tenant(tenant: &str) -> Self {
        CliError::NotFound(format!(
            "tenant {tenant} is not registered: check the name with `edsctl tenants list`, or enable it with `edsctl tenants enable {tenant} ...`"
        ))
    }

    /// Classifies an AWS SDK error text.
    pub fn from_aws_text(text: &str, endpoint: Option<&str>) -> Self {
        let lower = text.to_ascii_lowercase();
        let unreachable = [
            "dispatch failure",
            "connection refused",
            "connect error",
            "io error",
            "timed out",
            "timeout",
            "dns error",
        ]
        .iter()
        .any(|p| lower.contains(p));
        if unreachable {
            return CliError::Unreachable(match endpoint {
                Some(url) => format!(
                    "cannot reach AWS at {url}: start the local emulator (`infra/local/scripts/with-emulator.sh <command>`) or fix AWS_ENDPOINT_URL"
                ),
                None => {
                    "cannot reach AWS: check the network, AWS_REGION and AWS_ENDPOINT_URL".into()
                }
            });
        }
        let credentials = [
            "no credentials",
            "credentialsnotloaded",
            "unrecognizedclient",
            "invalidclienttokenid",
            "expiredtoken",
            "accessdenied",
            "signaturedoesnotmatch",
        ]
        .iter()
        .any(|p| lower.contains(p));
        if credentials {
            return CliError::Unreachable(
                "AWS refused the request's credentials: set AWS_PROFILE or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY for an identity allowed to operate eds".into(),
            );
        }
        CliError::Failed(format!("AWS request failed: {}", first_line(text)))
    }
}

fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_errors_name_the_endpoint_and_the_fix() {
        let e = CliError::from_aws_text(
            "dispatch failure: io error: Connection refused (os error 111)",
            Some("http://127.0.0.1:9"),
        );
        assert_eq!(e.exit_code(), 4);
        let msg = e.to_string();
        assert!(
            msg.contains("http://127.0.0.1:9") && msg.contains("with-emulator.sh"),
            "{msg}"
        );
        assert_eq!(msg.lines().count(), 1);
    }

    #[test]
    fn other_errors_keep_only_their_first_line() {
        let e = CliError::from_aws_text("ValidationException: bad\nmore detail", None);
        assert_eq!(e.exit_code(), 5);
        assert_eq!(
            e.to_string(),
            "AWS request failed: ValidationException: bad"
        );
    }
}
