//! Crash injection for the reliability suite: named points in the handlers where a test
//! can make the "process" die.
//!
//! A crash is a panic carrying [`Crashed`], raised by [`point`] when the future running
//! under [`run`] was given a [`Plan`] that targets this point and hit. Why a panic and not
//! an error: a process that dies runs none of the code after the point, including the
//! error paths (lease release, "retrying" status writes, visibility changes, lock
//! release). An error propagated with `?` would run exactly that cleanup and make the
//! test kinder than reality. The unwind drops the handler's future (no `.await` can run
//! during it), [`run`] catches it and returns `Err(Crashed)`; the test then does what
//! the platform would do after a death: the message becomes visible again and the
//! crashed invocation's leases expire.
//!
//! Scope: the plan lives in a tokio task-local, so arming one test's handler never
//! crashes another test running in parallel in the same binary. Cost when nothing is
//! armed: one relaxed atomic load per point (the points sit next to network calls).
//! Production code never calls [`run`], so [`point`] always returns at once there.

use std::collections::BTreeMap;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use futures::FutureExt;

/// Number of futures currently running under [`run`] (any plan): the fast path of
/// [`point`] is a single load of this counter.
static ACTIVE: AtomicUsize = AtomicUsize::new(0);

tokio::task_local! {
    static PLAN: Arc<Plan>;
}

/// The simulated death: which point, at which of its hits (1-based).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("simulated crash at {point} (hit {hit})")]
pub struct Crashed {
    pub point: String,
    pub hit: u32,
}

#[derive(Debug, Default)]
struct PlanState {
    hits: BTreeMap<String, u32>,
    fired: Option<Crashed>,
}

/// What a run under [`run`] does at the points: record them, or crash at one of them.
#[derive(Debug, Default)]
pub struct Plan {
    target: Option<(String, u32)>,
    state: Mutex<PlanState>,
}

impl Plan {
    /// Never crashes; counts every point hit (a crash-free run discovers the points).
    pub fn record() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Crashes at the `nth` (1-based) hit of `point`; counts every hit before it.
    pub fn crash_at(point: &str, nth: u32) -> Arc<Self> {
        Arc::new(Self {
            target: Some((point.to_string(), nth.max(1))),
            state: Mutex::default(),
        })
    }

    /// How often each point was hit so far.
    pub fn hits(&self) -> BTreeMap<String, u32> {
        self.lock().hits.clone()
    }

    /// The crash this plan caused, if it fired.
    pub fn fired(&self) -> Option<Crashed> {
        self.lock().fired.clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, PlanState> {
        // A poisoned lock only means a crash unwound while a test read the plan.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn hit(&self, name: &str) -> Option<Crashed> {
        let mut st = self.lock();
        let n = st.hits.entry(name.to_string()).or_insert(0);
        *n += 1;
        let n = *n;
        match &self.target {
            // Fire once: the redelivery runs under a fresh plan anyway.
            Some((target, nth)) if target == name && *nth == n && st.fired.is_none() => {
                let crash = Crashed {
                    point: name.to_string(),
                    hit: n,
                };
                st.fired = Some(crash.clone());
                Some(crash)
            }
            _ => None,
        }
    }
}

/// A crash point. Returns at once unless the current task runs under a [`Plan`] that
/// targets `name` at this hit; then the "process dies" (a panic carrying [`Crashed`]).
#[inline]
pub fn point(name: &'static str) {
    if ACTIVE.load(Ordering::Relaxed) == 0 {
        return;
    }
    if let Ok(Some(crash)) = PLAN.try_with(|p| p.hit(name)) {
        std::panic::panic_any(crash);
    }
}

struct Active;

impl Active {
    fn enter() -> Self {
        ACTIVE.fetch_add(1, Ordering::Relaxed);
        Active
    }
}

impl Drop for Active {
    fn drop(&mut self) {
        ACTIVE.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Installs (once per process) a panic hook that stays silent for simulated crashes and
/// hands every other panic to the hook that was there before. Without it each injected
/// crash prints a message and a backtrace, and a test log of a crash matrix buries the
/// one panic that is a real failure (CI shows only part of a long output).
fn quiet_simulated_crashes() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if info.payload().downcast_ref::<Crashed>().is_none() {
                previous(info);
            }
        }));
    });
}

/// Runs `fut` under `plan`: `Err(Crashed)` if one of its points crashed it. Any other
/// panic is propagated unchanged (a real bug must still fail the test).
pub async fn run<F: Future>(plan: Arc<Plan>, fut: F) -> Result<F::Output, Crashed> {
    quiet_simulated_crashes();
    let _active = Active::enter();
    let caught = PLAN.scope(plan, AssertUnwindSafe(fut).catch_unwind()).await;
    match caught {
        Ok(v) => Ok(v),
        Err(payload) => match payload.downcast::<Crashed>() {
            Ok(crash) => Err(*crash),
            Err(other) => std::panic::resume_unwind(other),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn three_points() -> u32 {
        point("a");
        point("b");
        point("a");
        7
    }

    #[tokio::test]
    async fn an_unarmed_point_does_nothing_and_a_recording_plan_counts_hits() {
        assert_eq!(three_points().await, 7);
        let plan = Plan::record();
        assert_eq!(run(plan.clone(), three_points()).await, Ok(7));
        assert_eq!(plan.hits().get("a"), Some(&2));
        assert_eq!(plan.hits().get("b"), Some(&1));
        assert_eq!(plan.fired(), None);
    }

    #[tokio::test]
    async fn an_armed_point_crashes_at_its_nth_hit_and_nothing_after_it_runs() {
        let after = Arc::new(AtomicUsize::new(0));
        let a2 = after.clone();
        let plan = Plan::crash_at("a", 2);
        let out = run(plan.clone(), async move {
            point("a");
            point("b");
            point("a");
            a2.fetch_add(1, Ordering::SeqCst);
        })
        .await;
        let crash = Crashed {
            point: "a".into(),
            hit: 2,
        };
        assert_eq!(out, Err(crash.clone()));
        assert_eq!(plan.fired(), Some(crash));
        assert_eq!(
            after.load(Ordering::SeqCst),
            0,
            "the code after the crash ran"
        );
    }

    #[tokio::test]
    async fn a_plan_only_affects_the_task_it_scopes() {
        let plan = Plan::crash_at("a", 1);
        let other = tokio::spawn(three_points());
        let out = run(plan, async { tokio::spawn(three_points()).await }).await;
        // The spawned task is outside the scope: it completes.
        assert!(matches!(out, Ok(Ok(7))));
        assert_eq!(other.await.ok(), Some(7));
    }

    #[tokio::test]
    async fn other_panics_are_not_swallowed() {
        let out = tokio::spawn(run(Plan::record(), async { panic!("a real bug") })).await;
        assert!(out.is_err());
    }
}
