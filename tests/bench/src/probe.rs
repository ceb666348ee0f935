//! Measuring instruments: an SDK interceptor that counts AWS requests by operation
//! (every attempt, retries included), CPU clocks of this thread and this process, peak
//! RSS, and the CPU time of another process (the emulator) from `/proc`.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_sdk_dynamodb::config::interceptors::{
    BeforeDeserializationInterceptorContextRef, BeforeTransmitInterceptorContextRef,
};
use aws_sdk_dynamodb::config::{ConfigBag, Intercept, RuntimeComponents};
use aws_sdk_dynamodb::error::BoxError;
use aws_smithy_types::config_bag::{Storable, StoreReplace};
use eds_shared::lambda::Aws;

/// Requests by `service.Operation` (from `X-Amz-Target`; S3 by method), and the time
/// each kind spent on the wire (the emulator's latency).
#[derive(Debug, Clone, Default)]
pub struct RequestCounter {
    counts: Arc<Mutex<BTreeMap<String, u64>>>,
    latency: Arc<Mutex<BTreeMap<String, Duration>>>,
}

/// When the current attempt was sent, and as what.
#[derive(Debug, Clone)]
struct Sent(Instant, String);

impl Storable for Sent {
    type Storer = StoreReplace<Self>;
}

impl RequestCounter {
    pub fn snapshot(&self) -> BTreeMap<String, u64> {
        self.counts.lock().map(|c| c.clone()).unwrap_or_default()
    }

    pub fn reset(&self) {
        if let Ok(mut c) = self.counts.lock() {
            c.clear();
        }
        if let Ok(mut c) = self.latency.lock() {
            c.clear();
        }
    }

    /// `op count (mean ms)` for every operation, for notes.
    pub fn describe(&self) -> String {
        let counts = self.snapshot();
        let lat = self.latency.lock().map(|l| l.clone()).unwrap_or_default();
        counts
            .iter()
            .map(|(k, n)| {
                let ms = lat.get(k).map_or(0.0, |d| d.as_secs_f64() * 1e3) / (*n).max(1) as f64;
                format!("{k} {n} ({ms:.1} ms each)")
            })
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// Total time requests spent on the wire.
    pub fn wire_time(&self) -> Duration {
        self.latency
            .lock()
            .map(|l| l.values().sum())
            .unwrap_or_default()
    }

    /// Requests whose operation name contains `pattern`.
    pub fn matching(&self, pattern: &str) -> u64 {
        self.snapshot()
            .iter()
            .filter(|(k, _)| k.contains(pattern))
            .map(|(_, v)| v)
            .sum()
    }

    pub fn total(&self) -> u64 {
        self.snapshot().values().sum()
    }
}

#[derive(Debug)]
struct Counting {
    service: &'static str,
    counter: RequestCounter,
}

impl Intercept for Counting {
    fn name(&self) -> &'static str {
        "eds-bench request counter"
    }

    fn read_before_transmit(
        &self,
        context: &BeforeTransmitInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let req = context.request();
        let op = req
            .headers()
            .get("x-amz-target")
            .map(|t| t.rsplit('.').next().unwrap_or(t).to_string())
            .unwrap_or_else(|| req.method().to_string());
        let key = format!("{}.{op}", self.service);
        if let Ok(mut c) = self.counter.counts.lock() {
            *c.entry(key.clone()).or_default() += 1;
        }
        cfg.interceptor_state().store_put(Sent(Instant::now(), key));
        Ok(())
    }

    fn read_after_transmit(
        &self,
        _context: &BeforeDeserializationInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        if let Some(Sent(at, key)) = cfg.load::<Sent>()
            && let Ok(mut l) = self.counter.latency.lock()
        {
            *l.entry(key.clone()).or_default() += at.elapsed();
        }
        Ok(())
    }
}

/// Clients like `Aws::from_sdk`, each with the counting interceptor.
pub fn counting_aws(sdk: &aws_config::SdkConfig, counter: &RequestCounter) -> Aws {
    let base = Aws::from_sdk(sdk);
    let c = |service| Counting {
        service,
        counter: counter.clone(),
    };
    Aws {
        dynamodb: aws_sdk_dynamodb::Client::from_conf(
            aws_sdk_dynamodb::config::Builder::from(sdk)
                .interceptor(c("dynamodb"))
                .build(),
        ),
        sqs: aws_sdk_sqs::Client::from_conf(
            aws_sdk_sqs::config::Builder::from(sdk)
                .interceptor(c("sqs"))
                .build(),
        ),
        s3: aws_sdk_s3::Client::from_conf(
            aws_sdk_s3::config::Builder::from(sdk)
                .force_path_style(sdk.endpoint_url().is_some())
                .interceptor(c("s3"))
                .build(),
        ),
        secrets: aws_sdk_secretsmanager::Client::from_conf(
            aws_sdk_secretsmanager::config::Builder::from(sdk)
                .interceptor(c("secretsmanager"))
                .build(),
        ),
        sdk: base.sdk,
    }
}

fn timespec(clock: libc::clockid_t) -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; the clock ids used are constants.
    let rc = unsafe { libc::clock_gettime(clock, &mut ts) };
    if rc != 0 {
        return Duration::ZERO;
    }
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// CPU time (user + system) of the calling thread.
pub fn thread_cpu() -> Duration {
    timespec(libc::CLOCK_THREAD_CPUTIME_ID)
}

/// CPU time (user + system) of the whole process, every thread.
pub fn process_cpu() -> Duration {
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `ru` is a valid, writable rusage.
    let rc = unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    if rc != 0 {
        return Duration::ZERO;
    }
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

/// `VmHWM` (peak resident set) of this process, in kB.
pub fn peak_rss_kb() -> Option<u64> {
    status_kb("/proc/self/status", "VmHWM:")
}

pub fn status_kb(path: &str, key: &str) -> Option<u64> {
    let s = std::fs::read_to_string(path).ok()?;
    s.lines()
        .find(|l| l.starts_with(key))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

fn clock_ticks() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 { t as f64 } else { 100.0 }
}

/// utime + stime of a `/proc/.../stat` line (fields 14 and 15, after the `comm`).
fn stat_cpu(path: &str) -> Option<Duration> {
    let s = std::fs::read_to_string(path).ok()?;
    let rest = &s[s.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?;
    Some(Duration::from_secs_f64(ticks / clock_ticks()))
}

/// CPU time of another process (the emulator), including its finished threads.
pub fn pid_cpu(pid: u32) -> Option<Duration> {
    stat_cpu(&format!("/proc/{pid}/stat"))
}

/// CPU time of this process's threads whose name starts with `prefix`.
pub fn named_threads_cpu(prefix: &str) -> Duration {
    let mut total = Duration::ZERO;
    let Ok(dir) = std::fs::read_dir("/proc/self/task") else {
        return total;
    };
    for t in dir.flatten() {
        let p = t.path();
        let comm = std::fs::read_to_string(p.join("comm")).unwrap_or_default();
        if comm.trim_end().starts_with(prefix) {
            total += stat_cpu(&p.join("stat").to_string_lossy()).unwrap_or_default();
        }
    }
    total
}

/// The emulator's pid: the `moto_server` process listening on the port of
/// `AWS_ENDPOINT_URL` (found by its command line, not by a shared pid file).
pub fn emulator_pid() -> Option<u32> {
    let url = std::env::var("AWS_ENDPOINT_URL").ok()?;
    let port = url.rsplit(':').next()?.trim_end_matches('/').to_string();
    for e in std::fs::read_dir("/proc").ok()?.flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(raw) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
            continue;
        };
        let args: Vec<String> = raw
            .split(|b| *b == 0)
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        let is_moto = args.iter().any(|a| a.contains("moto_server"));
        let on_port = args.windows(2).any(|w| w[0] == "-p" && w[1] == port);
        if is_moto && on_port {
            return Some(pid);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thread_cpu_advances_with_work_and_process_cpu_is_at_least_thread_cpu() {
        let t0 = thread_cpu();
        let mut x = 0u64;
        for i in 0..5_000_000u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        std::hint::black_box(x);
        let t1 = thread_cpu();
        assert!(t1 > t0);
        assert!(process_cpu() >= t1 - t0);
    }

    #[test]
    fn peak_rss_is_read_from_proc() {
        assert!(peak_rss_kb().unwrap() > 0);
        assert!(pid_cpu(std::process::id()).is_some());
    }
}
