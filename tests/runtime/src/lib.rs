//! Runs the built Lambda binaries the way Lambda runs them: each under AWS's Runtime
//! Interface Emulator (the one the SAM CLI ships and runs inside its containers), started
//! directly on this host on loopback ports, with the environment the SAM template gives
//! that function, pointed at the local AWS emulator.
//!
//! This proves what library tests cannot: the binary starts (cold start, configuration
//! from the environment), speaks the Lambda runtime protocol, honours the invocation
//! deadline and answers with the response shapes Lambda's event sources expect.
//!
//! Needs the project venv (`make venv`, for the emulator binary) and `AWS_ENDPOINT_URL`
//! (run under `infra/local/scripts/with-emulator.sh`, as `make test` does).

use std::collections::BTreeMap;
use std::fs::File;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use eds_local::{LocalStack, Template, provision, sdk_config_from_env, template_path};
use serde_yaml::Value as Yaml;

pub mod sam;

#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("building the function binaries failed: {0}")]
    Build(String),
    #[error("the local stack: {0}")]
    Stack(String),
    #[error("template: {0}")]
    Template(String),
    #[error("the runtime interface emulator: {0}")]
    Emulator(String),
    #[error("the SAM CLI: {0}")]
    Sam(String),
    #[error("invoking {function}: {detail} (function log: {log})")]
    Invoke {
        function: String,
        detail: String,
        log: String,
    },
}

/// The repository root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The emulator binary inside the venv's aws-sam-cli package (any Python version).
pub fn emulator_path() -> Result<PathBuf, RuntimeError> {
    if let Some(p) = std::env::var_os("EDS_RIE") {
        return Ok(PathBuf::from(p));
    }
    let lib = repo_root().join(".venv/lib");
    let entries = std::fs::read_dir(&lib)
        .map_err(|e| RuntimeError::Emulator(format!("{}: {e} (run `make venv`)", lib.display())))?;
    for e in entries.flatten() {
        let p = e
            .path()
            .join("site-packages/samcli/local/rapid/aws-lambda-rie-x86_64");
        if p.is_file() {
            return Ok(p);
        }
    }
    Err(RuntimeError::Emulator(format!(
        "aws-lambda-rie-x86_64 not found under {} (run `make venv`)",
        lib.display()
    )))
}

/// The template's functions: logical id -> binary name (`Metadata.BuildProperties.Binary`).
pub fn template_binaries(t: &Template) -> BTreeMap<String, String> {
    t.of_kind("AWS::Serverless::Function")
        .filter_map(|r| {
            r.metadata
                .get("BuildProperties")
                .and_then(|b| b.get("Binary"))
                .and_then(Yaml::as_str)
                .map(|b| (r.logical_id.clone(), b.to_string()))
        })
        .collect()
}

static BUILT: OnceLock<Result<PathBuf, String>> = OnceLock::new();

/// Builds every function binary of the template once per test process (debug profile,
/// the shared target directory) and returns the directory holding them.
///
/// It runs `make sam-binaries SAM_PROFILE=debug`, the build `make sam-test-build` runs:
/// one command, features resolved as in the test build, so that after either this is a
/// no-op. (Measured before: a `cargo build --bins -p <function>…` of its own, started
/// with the test runner's environment, recompiled the dependencies in every test process
/// that needed the binaries, 6–9 minutes each.)
pub fn function_binaries() -> Result<PathBuf, RuntimeError> {
    BUILT
        .get_or_init(|| {
            let root = repo_root();
            let mut cmd = Command::new("make");
            cmd.current_dir(&root).args([
                "--no-print-directory",
                "sam-binaries",
                "SAM_PROFILE=debug",
            ]);
            // The test runner sets the variables cargo gives a test of this package
            // (CARGO_PKG_NAME, CARGO_MANIFEST_DIR, …). ring's build script declares
            // `rerun-if-env-changed` on several of them, so a build started with them
            // would rerun it and recompile ring and the 30-odd crates above it (6 min
            // measured, every test process): the build gets the environment of a shell.
            for (key, _) in std::env::vars_os() {
                if key.to_str().is_some_and(set_by_cargo_for_a_crate) {
                    cmd.env_remove(key);
                }
            }
            let out = cmd.output().map_err(|e| e.to_string())?;
            if !out.status.success() {
                return Err(String::from_utf8_lossy(&out.stderr).to_string());
            }
            let target = std::env::var_os("CARGO_TARGET_DIR")
                .map(PathBuf::from)
                .unwrap_or_else(|| root.join("target"));
            Ok(target.join("debug"))
        })
        .clone()
        .map_err(RuntimeError::Build)
}

/// Variables cargo sets for the crate it builds or the test it runs, never for itself.
fn set_by_cargo_for_a_crate(key: &str) -> bool {
    [
        "CARGO_PKG_",
        "CARGO_MANIFEST_",
        "CARGO_BIN_",
        "CARGO_CFG_",
        "CARGO_FEATURE_",
    ]
    .iter()
    .any(|p| key.starts_with(p))
        || matches!(
            key,
            "CARGO_CRATE_NAME" | "CARGO_PRIMARY_PACKAGE" | "CARGO_TARGET_TMPDIR" | "OUT_DIR"
        )
}

pub(crate) fn free_port() -> Result<u16, RuntimeError> {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| RuntimeError::Emulator(format!("no free port: {e}")))
}

/// How a function is run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// The binary under the runtime interface emulator, on this host, on loopback.
    Rie,
    /// `sam local invoke <Function>` on the built template (`.aws-sam/build`), one
    /// container per invocation, as a user of the project runs it (sam.rs).
    SamInvoke,
}

/// One isolated copy of the deployment (unique stage) and the template.
pub struct Harness {
    pub stack: LocalStack,
    pub template: Template,
    pub sdk: aws_config::SdkConfig,
    pub backend: Backend,
}

impl Harness {
    pub async fn new() -> Result<Self, RuntimeError> {
        Self::on(Backend::Rie).await
    }

    /// A harness whose functions run on `backend`.
    pub async fn on(backend: Backend) -> Result<Self, RuntimeError> {
        let sdk = sdk_config_from_env().await.map_err(RuntimeError::Stack)?;
        let template =
            Template::load(&template_path()).map_err(|e| RuntimeError::Template(e.to_string()))?;
        let stage = format!("rt{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
        let stack = provision(&sdk, &template, &stage)
            .await
            .map_err(|e| RuntimeError::Stack(e.to_string()))?;
        Ok(Self {
            stack,
            template,
            sdk,
            backend,
        })
    }

    fn function(&self, logical: &str) -> Result<&eds_local::Resource, RuntimeError> {
        self.template
            .resources
            .get(logical)
            .filter(|r| r.kind == "AWS::Serverless::Function")
            .ok_or_else(|| RuntimeError::Template(format!("no function {logical}")))
    }

    /// The environment the template gives `logical` in this stack
    /// ([`LocalStack::function_env`]).
    pub fn function_env(&self, logical: &str) -> Result<BTreeMap<String, String>, RuntimeError> {
        self.stack
            .function_env(&self.template, logical)
            .map_err(RuntimeError::Template)
    }

    /// The function's timeout in seconds (its own, else the global one).
    pub fn timeout_secs(&self, logical: &str) -> Result<u64, RuntimeError> {
        let f = self.function(logical)?;
        f.properties
            .get("Timeout")
            .or_else(|| self.template.globals_function.get("Timeout"))
            .and_then(Yaml::as_u64)
            .ok_or_else(|| RuntimeError::Template(format!("{logical} has no Timeout")))
    }

    /// Starts `logical`'s binary under the emulator on loopback.
    pub async fn start(&self, logical: &str) -> Result<Lambda, RuntimeError> {
        self.start_with(logical, &[]).await
    }

    /// As `start`, with variables overridden (e.g. a shorter `AWS_LAMBDA_FUNCTION_TIMEOUT`).
    pub async fn start_with(
        &self,
        logical: &str,
        overrides: &[(&str, &str)],
    ) -> Result<Lambda, RuntimeError> {
        if self.backend == Backend::SamInvoke {
            return sam::prepare(self, logical, overrides);
        }
        let binary_name = template_binaries(&self.template)
            .remove(logical)
            .ok_or_else(|| RuntimeError::Template(format!("{logical} has no Binary")))?;
        let binary = function_binaries()?.join(&binary_name);
        let emulator = emulator_path()?;
        let (api_port, runtime_port) = (free_port()?, free_port()?);
        let logs = repo_root().join("target/runtime-logs");
        std::fs::create_dir_all(&logs).map_err(|e| RuntimeError::Emulator(e.to_string()))?;
        let log = logs.join(format!("{}-{binary_name}.log", self.stack.stage));
        let out = File::create(&log).map_err(|e| RuntimeError::Emulator(e.to_string()))?;
        let err = out
            .try_clone()
            .map_err(|e| RuntimeError::Emulator(e.to_string()))?;

        let mut cmd = Command::new(&emulator);
        cmd.env_clear()
            .envs(self.function_env(logical)?)
            .env(
                "AWS_LAMBDA_FUNCTION_NAME",
                format!("eds-{}-{binary_name}", self.stack.stage),
            )
            .env(
                "AWS_LAMBDA_FUNCTION_TIMEOUT",
                self.timeout_secs(logical)?.to_string(),
            )
            .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256")
            .env("AWS_EC2_METADATA_DISABLED", "true");
        for k in [
            "AWS_ENDPOINT_URL",
            "AWS_ACCESS_KEY_ID",
            "AWS_SECRET_ACCESS_KEY",
            "AWS_REGION",
        ] {
            if let Some(v) = std::env::var_os(k) {
                cmd.env(k, v);
            }
        }
        cmd.env(
            "AWS_DEFAULT_REGION",
            std::env::var("AWS_REGION").unwrap_or_else(|_| "us-east-1".into()),
        );
        for (k, v) in overrides {
            cmd.env(k, v);
        }
        // Its own process group: stopping the group stops the runtime process the
        // emulator starts, too.
        std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
        let child = cmd
            .arg("--runtime-interface-emulator-address")
            .arg(format!("127.0.0.1:{api_port}"))
            .arg("--runtime-api-address")
            .arg(format!("127.0.0.1:{runtime_port}"))
            .arg(&binary)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .map_err(|e| RuntimeError::Emulator(format!("{}: {e}", emulator.display())))?;
        let lambda = Lambda {
            run: Run::Rie {
                child,
                url: format!(
                    "http://127.0.0.1:{api_port}/2015-03-31/functions/function/invocations"
                ),
                client: reqwest::Client::new(),
            },
            name: binary_name,
            log,
        };
        let addr = SocketAddr::from(([127, 0, 0, 1], api_port));
        for _ in 0..100 {
            if TcpStream::connect_timeout(&addr, Duration::from_millis(100)).is_ok() {
                return Ok(lambda);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Err(RuntimeError::Emulator(format!(
            "not listening on {addr} (log: {})",
            lambda.log.display()
        )))
    }
}

/// A function ready to invoke: running under the emulator (stopped when dropped), or
/// invoked by `sam local invoke` each time.
pub struct Lambda {
    run: Run,
    pub name: String,
    pub log: PathBuf,
}

enum Run {
    Rie {
        child: Child,
        url: String,
        client: reqwest::Client,
    },
    Sam(sam::Invoke),
}

impl Lambda {
    /// Invokes the function with `event` and returns its JSON response. A function error
    /// comes back as `{"errorType": ..., "errorMessage": ...}`, as Lambda reports it.
    pub async fn invoke(
        &self,
        event: &serde_json::Value,
    ) -> Result<serde_json::Value, RuntimeError> {
        let fail = |detail: String| RuntimeError::Invoke {
            function: self.name.clone(),
            detail,
            log: self.log.display().to_string(),
        };
        let (url, client) = match &self.run {
            Run::Rie { url, client, .. } => (url, client),
            Run::Sam(invoke) => return invoke.invoke(event, &self.log).await.map_err(fail),
        };
        let resp = client
            .post(url)
            .json(event)
            .timeout(Duration::from_secs(900))
            .send()
            .await
            .map_err(|e| fail(e.to_string()))?;
        let status = resp.status();
        let body = resp.text().await.map_err(|e| fail(e.to_string()))?;
        if !status.is_success() {
            return Err(fail(format!("HTTP {status}: {body}")));
        }
        serde_json::from_str(&body).map_err(|e| fail(format!("response is not JSON ({e}): {body}")))
    }

    /// What the function (and the emulator) logged so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Lambda {
    fn drop(&mut self) {
        let Run::Rie { child, .. } = &mut self.run else {
            return;
        };
        // The emulator and the function binary it started share a process group.
        let _ = Command::new("kill")
            .arg("-KILL")
            .arg("--")
            .arg(format!("-{}", child.id()))
            .stderr(Stdio::null())
            .status();
        let _ = child.kill();
        let _ = child.wait();
    }
}
