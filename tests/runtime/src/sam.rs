//! The SAM CLI itself running the functions: `sam local invoke` (one container per
//! invocation) and `sam local start-lambda` (the Lambda Invoke API on a local port), on
//! the template as `sam build` wrote it (`.aws-sam/build/template.yaml`, built by
//! `make sam-build SAM_PROFILE=debug`, which `make test` runs).
//!
//! Offline by construction: the base image is built on this machine
//! (`infra/local/scripts/sam-base-image.sh`), every run passes `--skip-pull-image`, the
//! SAM CLI gets an app directory that says telemetry is off and the version was checked,
//! and no AWS credentials (the functions get SAM's placeholder keys, which the emulator
//! accepts). The containers reach the AWS emulator through the Docker bridge, so it must
//! listen there: `AWS_ENDPOINT_URL` must not be a loopback address (`make test` starts
//! that emulator with `EDS_EMULATOR_HOST` set to the bridge gateway).

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::OnceLock;
use std::time::Duration;

use crate::{Harness, Lambda, Run, RuntimeError, repo_root};

/// The SAM CLI of the project venv.
pub fn sam_path() -> PathBuf {
    repo_root().join(".venv/bin/sam")
}

/// The template `sam build` wrote, with each function's `CodeUri` at its artifacts.
pub fn built_template() -> Result<PathBuf, RuntimeError> {
    let p = repo_root().join(".aws-sam/build/template.yaml");
    if p.is_file() {
        Ok(p)
    } else {
        Err(RuntimeError::Sam(format!(
            "{} is missing: run `make sam-build SAM_PROFILE=debug` (make test does)",
            p.display()
        )))
    }
}

static DOCKER: OnceLock<Result<(), String>> = OnceLock::new();

/// A running Docker engine, or the one sentence that says what is missing.
pub fn require_docker() -> Result<(), RuntimeError> {
    DOCKER
        .get_or_init(|| {
            let ok = std::process::Command::new("docker")
                .arg("info")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            if ok {
                Ok(())
            } else {
                Err(
                    "the SAM CLI tests need a running Docker engine (`docker info` failed); \
                     `make test SAM_LOCAL=0` skips them on a machine without one"
                        .into(),
                )
            }
        })
        .clone()
        .map_err(RuntimeError::Sam)
}

/// The emulator's URL as the containers use it (this process uses the same one).
pub fn container_endpoint() -> Result<String, RuntimeError> {
    let url = std::env::var("AWS_ENDPOINT_URL")
        .map_err(|_| RuntimeError::Sam("AWS_ENDPOINT_URL is not set (run `make test`)".into()))?;
    let host = url
        .split("://")
        .nth(1)
        .and_then(|rest| rest.split([':', '/']).next())
        .unwrap_or_default();
    if host.starts_with("127.") || host == "localhost" || host.is_empty() {
        return Err(RuntimeError::Sam(format!(
            "the AWS emulator at {url} is on loopback, which a container cannot reach: start it \
             on the Docker bridge gateway (EDS_EMULATOR_HOST=172.17.0.1 \
             infra/local/scripts/with-emulator.sh ..., as make test does)"
        )));
    }
    Ok(url)
}

/// The host part of [`container_endpoint`] (the bridge gateway address).
pub fn container_host() -> Result<String, RuntimeError> {
    let url = container_endpoint()?;
    Ok(url
        .split("://")
        .nth(1)
        .and_then(|rest| rest.split([':', '/']).next())
        .unwrap_or_default()
        .to_string())
}

/// A `sam` command that stays on this machine: no AWS credentials or endpoint in its
/// own environment, telemetry and the version check off (its app directory under
/// `.local/`), no instance metadata lookups.
pub fn sam_command() -> Result<tokio::process::Command, RuntimeError> {
    let app_dir = repo_root().join(".local/sam-app");
    std::fs::create_dir_all(&app_dir).map_err(|e| RuntimeError::Sam(e.to_string()))?;
    std::fs::write(
        app_dir.join("metadata.json"),
        r#"{"telemetryEnabled": false, "lastVersionCheck": 4102444800.0}"#,
    )
    .map_err(|e| RuntimeError::Sam(e.to_string()))?;
    let mut cmd = tokio::process::Command::new(sam_path());
    for k in [
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_PROFILE",
        "AWS_ENDPOINT_URL",
    ] {
        cmd.env_remove(k);
    }
    cmd.current_dir(repo_root())
        .env("__SAM_CLI_APP_DIR", &app_dir)
        .env("SAM_CLI_TELEMETRY", "0")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("AWS_REGION", "us-east-1")
        .env("AWS_DEFAULT_REGION", "us-east-1")
        .stdin(Stdio::null())
        .kill_on_drop(true);
    Ok(cmd)
}

/// Writes the `--env-vars` file for `functions`: each one's template environment as
/// provisioned for this harness's stage, the emulator's URL and `extra`, then
/// `overrides` (variables must be declared in the template: SAM ignores the others).
pub fn write_env_vars(
    h: &Harness,
    functions: &[&str],
    extra: &[(&str, &str)],
    overrides: &[(&str, &str)],
    path: &Path,
) -> Result<(), RuntimeError> {
    let endpoint = container_endpoint()?;
    let mut all: BTreeMap<&str, BTreeMap<String, String>> = BTreeMap::new();
    for logical in functions {
        let mut env = h.function_env(logical)?;
        env.insert("AWS_ENDPOINT_URL".into(), endpoint.clone());
        for (k, v) in extra.iter().chain(overrides) {
            env.insert(k.to_string(), v.to_string());
        }
        all.insert(logical, env);
    }
    let text = serde_json::to_string_pretty(&all).map_err(|e| RuntimeError::Sam(e.to_string()))?;
    std::fs::write(path, text).map_err(|e| RuntimeError::Sam(format!("{}: {e}", path.display())))
}

/// `logical` ready for `sam local invoke` (the `Lambda` the tests hold).
pub(crate) fn prepare(
    h: &Harness,
    logical: &str,
    overrides: &[(&str, &str)],
) -> Result<Lambda, RuntimeError> {
    require_docker()?;
    let template = built_template()?;
    let dir = repo_root().join("target/runtime-logs");
    std::fs::create_dir_all(&dir).map_err(|e| RuntimeError::Sam(e.to_string()))?;
    let stem = format!("{}-{logical}", h.stack.stage);
    let env_file = dir.join(format!("{stem}.env.json"));
    write_env_vars(h, &[logical], &[], overrides, &env_file)?;
    let log = dir.join(format!("{stem}.sam.log"));
    std::fs::File::create(&log).map_err(|e| RuntimeError::Sam(e.to_string()))?;
    Ok(Lambda {
        run: Run::Sam(Invoke {
            logical: logical.to_string(),
            template,
            env_file,
            event_file: dir.join(format!("{stem}.event.json")),
            // SAM's own start and the container on top of the function's timeout.
            limit: Duration::from_secs(h.timeout_secs(logical)? + 120),
        }),
        name: logical.to_string(),
        log,
    })
}

/// One function invoked with `sam local invoke` per call.
pub(crate) struct Invoke {
    logical: String,
    template: PathBuf,
    env_file: PathBuf,
    event_file: PathBuf,
    limit: Duration,
}

impl Invoke {
    /// Runs `sam local invoke` on `event`; the function's response is SAM's stdout, and
    /// what SAM and the function logged (stderr) is appended to `log`.
    pub(crate) async fn invoke(
        &self,
        event: &serde_json::Value,
        log: &Path,
    ) -> Result<serde_json::Value, String> {
        std::fs::write(&self.event_file, event.to_string()).map_err(|e| e.to_string())?;
        let mut cmd = sam_command().map_err(|e| e.to_string())?;
        cmd.arg("local")
            .arg("invoke")
            .arg(&self.logical)
            .arg("--template-file")
            .arg(&self.template)
            .arg("--event")
            .arg(&self.event_file)
            .arg("--env-vars")
            .arg(&self.env_file)
            .arg("--skip-pull-image")
            .arg("--layer-cache-basedir")
            .arg(repo_root().join(".local/sam-layers"))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let out = tokio::time::timeout(self.limit, cmd.output())
            .await
            .map_err(|_| format!("sam local invoke did not end within {:?}", self.limit))?
            .map_err(|e| format!("{}: {e}", sam_path().display()))?;
        if let Ok(mut f) = std::fs::OpenOptions::new().append(true).open(log) {
            let _ = f.write_all(&out.stderr);
        }
        let stdout = String::from_utf8_lossy(&out.stdout);
        // The response is the last line SAM writes on stdout.
        let last = stdout.lines().rev().find(|l| !l.trim().is_empty());
        match last.map(serde_json::from_str::<serde_json::Value>) {
            Some(Ok(v)) => Ok(v),
            _ => Err(format!(
                "sam local invoke (exit {:?}) gave no JSON response; stdout: {stdout}",
                out.status.code()
            )),
        }
    }
}

/// `sam local start-lambda` on the built template: the Lambda Invoke API on a loopback
/// port, every function in a warm container (`--warm-containers EAGER`), the environment
/// of this harness's stage plus `extra`. Stopped (SIGINT, so SAM removes its
/// containers) when dropped.
pub struct StartLambda {
    child: tokio::process::Child,
    /// `RECORDS_TABLE=<this stage's table>`: how this run's containers are told apart.
    marker: String,
    /// The endpoint for the SDK's Lambda client.
    pub url: String,
    pub log: PathBuf,
}

impl StartLambda {
    pub async fn start(h: &Harness, extra: &[(&str, &str)]) -> Result<Self, RuntimeError> {
        require_docker()?;
        let template = built_template()?;
        let functions: Vec<String> = crate::template_binaries(&h.template).into_keys().collect();
        let names: Vec<&str> = functions.iter().map(String::as_str).collect();
        let dir = repo_root().join("target/runtime-logs");
        std::fs::create_dir_all(&dir).map_err(|e| RuntimeError::Sam(e.to_string()))?;
        let env_file = dir.join(format!("{}-start-lambda.env.json", h.stack.stage));
        write_env_vars(h, &names, extra, &[], &env_file)?;
        let log = dir.join(format!("{}-start-lambda.log", h.stack.stage));
        let out = std::fs::File::create(&log).map_err(|e| RuntimeError::Sam(e.to_string()))?;
        let err = out
            .try_clone()
            .map_err(|e| RuntimeError::Sam(e.to_string()))?;
        let port = crate::free_port()?;
        let mut cmd = sam_command()?;
        cmd.arg("local")
            .arg("start-lambda")
            .arg("--template-file")
            .arg(&template)
            .arg("--env-vars")
            .arg(&env_file)
            .arg("--skip-pull-image")
            .arg("--warm-containers")
            .arg("EAGER")
            .arg("--host")
            .arg("127.0.0.1")
            .arg("--port")
            .arg(port.to_string())
            .arg("--layer-cache-basedir")
            .arg(repo_root().join(".local/sam-layers"))
            .stdout(out)
            .stderr(err);
        let child = cmd
            .spawn()
            .map_err(|e| RuntimeError::Sam(format!("{}: {e}", sam_path().display())))?;
        let me = Self {
            child,
            marker: format!("RECORDS_TABLE={}", h.stack.env["RECORDS_TABLE"]),
            url: format!("http://127.0.0.1:{port}"),
            log,
        };
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
        // EAGER starts the seven containers before SAM listens.
        for _ in 0..600 {
            if std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(100)).is_ok() {
                return Ok(me);
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        Err(RuntimeError::Sam(format!(
            "sam local start-lambda is not listening on {addr} after 2 minutes (log: {})",
            me.log.display()
        )))
    }

    /// What SAM and the functions logged so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for StartLambda {
    fn drop(&mut self) {
        let Some(pid) = self.child.id() else {
            return;
        };
        // SIGINT: SAM stops and removes its warm containers; SIGKILL would leave them.
        let _ = std::process::Command::new("kill")
            .arg("-INT")
            .arg(pid.to_string())
            .status();
        for _ in 0..300 {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.start_kill();
        // SAM does not always remove every warm container when it stops: remove what is
        // left of this run's (SAM labels its containers; the stage's table tells ours).
        remove_containers(&self.marker);
    }
}

fn remove_containers(marker: &str) {
    let Ok(out) = std::process::Command::new("docker")
        .args([
            "ps",
            "-aq",
            "--filter",
            "label=sam.cli.container.type=lambda",
        ])
        .output()
    else {
        return;
    };
    for id in String::from_utf8_lossy(&out.stdout).split_whitespace() {
        let env = std::process::Command::new("docker")
            .args([
                "inspect",
                "-f",
                "{{range .Config.Env}}{{println .}}{{end}}",
                id,
            ])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).to_string())
            .unwrap_or_default();
        if env.lines().any(|l| l == marker) {
            let _ = std::process::Command::new("docker")
                .args(["rm", "-f", id])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }
}
