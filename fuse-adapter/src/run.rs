//! Running a mount from the command line to exit: checks, daemonising, the bucket check, the
//! mount, serving until unmounted or signalled, and the exit status.
//!
//! Problems this module solves:
//! - Every way to fail before the mount is ready ends with one line naming the cause and the
//!   fix, and a non-zero exit, in the foreground and in the background alike (the background
//!   process reports through [`crate::daemon`]).
//! - Cheap local checks (flags, mountpoint, /dev/fuse) run before forking, so their errors come
//!   straight from the command; the bucket check needs the network, so it runs in the process
//!   that will serve the mount (a process may not fork once tokio's threads run).
//! - SIGINT, SIGTERM and SIGHUP end the mount in order (the core finishes, then the unmount);
//!   `umount` from outside ends it too; both exit 0.

use std::future::Future;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use goofys_core::{Core, UnixNanos};
use goofys_s3::{BucketCheckError, CredentialSource, S3Client};
use tokio::signal::unix::{SignalKind, signal};

use crate::checks::{FUSE_DEVICE, check_fuse_device, prepare_mountpoint};
use crate::cli::{Invocation, MountArgs};
use crate::daemon::{ChildOutcome, Forked, Readiness};
use crate::logging::{LogDestination, MOUNT_LOG_DEFAULT};
use crate::plan::{HostFacts, MountPlan};

/// Runs what the command line asked for.
pub fn run(invocation: Invocation) -> ExitCode {
    match invocation {
        Invocation::FakeMount => ExitCode::SUCCESS,
        Invocation::Mount(args) => run_mount(*args),
        #[cfg(feature = "demo")]
        Invocation::Demo(args) => crate::demo::run(args),
        #[cfg(not(feature = "demo"))]
        Invocation::Demo(_) => {
            fail("this goofys-rs was built without the `demo` feature; build it with default features")
        }
    }
}

/// Prints `error: <message>` and returns the failure status.
pub fn fail(message: &str) -> ExitCode {
    eprintln!("error: {}", crate::checks::one_line(message));
    ExitCode::FAILURE
}

/// Prints `warning: <message>`.
pub fn warn(message: String) {
    eprintln!("warning: {message}");
}

fn run_mount(args: MountArgs) -> ExitCode {
    let restored = crate::mount_helper::restore_environment_stripped_by_mount8();
    let host = HostFacts::detect();
    let mut plan = match MountPlan::new(args, &host) {
        Ok(plan) => plan,
        Err(error) => return fail(&error.0),
    };
    plan.warnings.drain(..).for_each(warn);
    if let Err(error) = check_fuse_device(Path::new(FUSE_DEVICE)) {
        return fail(&error.0);
    }
    match prepare_mountpoint(&plan.mountpoint, &mut warn) {
        Ok(canonical) => {
            plan.mount.mountpoint = canonical.clone();
            plan.mountpoint = canonical;
        }
        Err(error) => return fail(&error.0),
    }
    // Logging is set up before the fork (it starts no thread), so its errors come from here.
    let destination = LogDestination::choose(&plan.logging, plan.foreground);
    if let Err(message) = crate::logging::init(MOUNT_LOG_DEFAULT, &plan.logging, &destination) {
        return fail(&message);
    }
    if !restored.is_empty() {
        tracing::info!(?restored, "set the standard values of variables mount(8) removed");
    }
    if plan.foreground {
        return serve(plan, None);
    }
    match crate::daemon::daemonize() {
        Err(error) => {
            fail(&format!("cannot start the background process: {error}; run with -f to stay in the foreground"))
        }
        Ok(Forked::Parent(ChildOutcome::Ready)) => ExitCode::SUCCESS,
        Ok(Forked::Parent(ChildOutcome::Failed(message))) => fail(&message),
        Ok(Forked::Child(readiness)) => serve(plan, Some(readiness)),
    }
}

/// Why serving ended badly.
enum Failure {
    /// Before the mount was ready: the user must hear it.
    BeforeReady(String),
    /// While serving: only the log can tell.
    WhileServing(String),
}

/// Builds the runtime, mounts and serves; reports readiness to the parent when daemonised.
fn serve(plan: MountPlan, mut readiness: Option<Readiness>) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().thread_name("goofys-rs").build() {
        Ok(runtime) => runtime,
        Err(error) => {
            let message = format!("cannot start the async runtime: {error}");
            return report_failure(Failure::BeforeReady(message), readiness);
        }
    };
    let outcome = runtime.block_on(mount_and_serve(plan, &mut readiness));
    // A thread that still waits on a lazily detached mount must not hold up the exit.
    runtime.shutdown_timeout(Duration::from_millis(100));
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => report_failure(failure, readiness),
    }
}

fn report_failure(failure: Failure, readiness: Option<Readiness>) -> ExitCode {
    match (failure, readiness) {
        (Failure::BeforeReady(message), Some(readiness)) => {
            tracing::error!("{message}");
            readiness.failed(&message);
            ExitCode::FAILURE
        }
        (Failure::BeforeReady(message), None) => fail(&message),
        (Failure::WhileServing(message), _) => {
            tracing::error!("{message}");
            ExitCode::FAILURE
        }
    }
}

async fn mount_and_serve(plan: MountPlan, readiness: &mut Option<Readiness>) -> Result<(), Failure> {
    let before_ready = |message: String| Failure::BeforeReady(message);
    let client = S3Client::new(plan.transport.clone())
        .await
        .map_err(|error| before_ready(format!("cannot set up the S3 client: {:#}", anyhow::Error::new(error))))?;
    client
        .check_bucket(&plan.core.mount_prefix)
        .await
        .map_err(|error| before_ready(explain_check_error(&plan, error)))?;
    tracing::info!(bucket = %plan.source, url = %client.bucket_url(), region = %client.region(), "bucket checked");
    let stop = shutdown_signal().map_err(|error| before_ready(format!("cannot listen for signals: {error}")))?;
    let metrics_listener = match plan.metrics_addr {
        Some(address) => Some(crate::metrics::bind(address).await.map_err(|error| {
            before_ready(format!("cannot serve metrics on --metrics-addr {address}: {error}; choose another port"))
        })?),
        None => None,
    };
    let core = Core::new(plan.core.clone(), wall_clock_now(), seed());
    let mounted =
        crate::mount::mount(core, Arc::new(client), &plan.mount).map_err(|error| before_ready(format!("{error:#}")))?;
    tracing::info!(source = %plan.source, mountpoint = %plan.mountpoint.display(), "mounted");
    let metrics = mounted.metrics();
    if let Some(listener) = metrics_listener {
        crate::metrics::serve(listener, std::sync::Arc::clone(&metrics));
    }
    if let Some(readiness) = readiness.take() {
        readiness.ready();
    }
    mounted.serve_until(stop).await.map_err(|error| Failure::WhileServing(format!("{error:#}")))?;
    tracing::info!(mountpoint = %plan.mountpoint.display(), summary = %metrics.summary(), "unmounted");
    Ok(())
}

/// The transport's explanation, except where the command line knows more: an anonymous denial
/// after `--no-sign-request` is not about credentials that were not found.
fn explain_check_error(plan: &MountPlan, error: BucketCheckError) -> String {
    match error {
        BucketCheckError::AnonymousAccessDenied { bucket }
            if matches!(plan.transport.credentials, CredentialSource::Anonymous) =>
        {
            format!(
                "access to bucket `{bucket}` denied to unsigned requests (--no-sign-request): the bucket is not \
                 public; drop --no-sign-request and give credentials (AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, \
                 or --profile)"
            )
        }
        other => other.to_string(),
    }
}

/// Resolves at the first SIGINT, SIGTERM or SIGHUP. The handlers are installed when this is
/// called, so a signal that arrives before the mount is served still ends it.
pub fn shutdown_signal() -> std::io::Result<impl Future<Output = ()>> {
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut terminate = signal(SignalKind::terminate())?;
    let mut hangup = signal(SignalKind::hangup())?;
    Ok(async move {
        let name = tokio::select! {
            _ = interrupt.recv() => "SIGINT",
            _ = terminate.recv() => "SIGTERM",
            _ = hangup.recv() => "SIGHUP",
        };
        tracing::info!(signal = name, "unmounting on a signal");
    })
}

/// The wall clock, for the core's epoch.
pub fn wall_clock_now() -> UnixNanos {
    let since_epoch = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    UnixNanos(i64::try_from(since_epoch.as_nanos()).unwrap_or(i64::MAX))
}

/// A seed for the core's retry jitter: different per process, no need to be secret.
pub fn seed() -> u64 {
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_nanos() as u64;
    nanos ^ (u64::from(std::process::id()) << 32)
}
