//! pjdfstest, the POSIX filesystem test suite (its Rust rewrite, crate `pjdfstest`), run as root
//! through a real FUSE mount of a bucket on SeaweedFS: its chmod, chown, symlink, utimensat,
//! unlink, rename, mkdir, rmdir, open and truncate groups (and the cases of other groups whose
//! names mention them, such as `link::eexist_dest_exists::symlink`).
//!
//! Every case must pass except those in [`EXPECTED_FAILURES`], each with the reason it cannot
//! pass on S3. The test fails if any other case fails, if a listed case passes (remove it from
//! the list: the mount got better), if a listed case no longer runs, or if a case is skipped for
//! any reason but the two the configuration implies (no read-only remount, no second
//! filesystem). The table in README.md ("POSIX conformance") and docs/SEMANTICS.md follows the
//! list.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use goofys_core::CoreConfig;
use goofys_tests::files::{describe_output, tool};
use goofys_tests::mount::TestMount;
use goofys_tests::seaweedfs::SeaweedFs;

/// The groups the test runs: pjdfstest runs every case whose name contains one of them.
const GROUPS: [&str; 10] =
    ["chmod", "chown", "symlink", "utimensat", "unlink", "rename", "mkdir", "rmdir", "open", "truncate"];

/// Why a case cannot pass.
const SPECIAL_FILES: &str = "S3 objects cannot be FIFOs, sockets or devices: mknod of them is EPERM, so the case cannot \
     make the file it tests";
const HARD_LINKS: &str = "a key is one name: link(2) is EPERM, and the case makes a second link first";
const DIRECTORY_NLINK: &str = "a directory's link count would need a listing of its subdirectories: it is always 2";
const PARENT_TIMES: &str = "a directory's times live on its marker object: keeping them would rewrite the marker at \
     every entry created or removed in it (and a new directory shows the mount's time)";
const KEY_LENGTH: &str = "S3 keys are at most 1024 bytes and the case builds a path of PATH_MAX (4096) bytes: the \
     mount answers ENAMETOOLONG at the first name whose key would pass 1024 bytes";

/// Cases that fail on this mount and why: an exact name, or `*::suffix` for every file type
/// variant of a case.
const EXPECTED_FAILURES: &[(&str, &str)] = &[
    ("*::block", SPECIAL_FILES),
    ("*::char", SPECIAL_FILES),
    ("*::fifo", SPECIAL_FILES),
    ("*::socket", SPECIAL_FILES),
    ("open::fifo_nonblock_wronly", SPECIAL_FILES),
    ("open::socket_error", SPECIAL_FILES),
    ("rename::preserve_metadata::regular", HARD_LINKS),
    ("rename::to_multiply_linked::regular", HARD_LINKS),
    ("unlink::unchanged_ctime_failed::regular", HARD_LINKS),
    ("unlink::update_ctime_success::regular", HARD_LINKS),
    ("rename::updates_link_parent", DIRECTORY_NLINK),
    ("mkdir::changed_time_fields_success", PARENT_TIMES),
    ("open::changed_time_fields_success", PARENT_TIMES),
    ("rmdir::changed_time_parent_success", PARENT_TIMES),
    ("symlink::changed_parent_time_success", PARENT_TIMES),
    ("unlink::update_mtime_ctime_success_folder::regular", PARENT_TIMES),
    ("unlink::update_mtime_ctime_success_folder::symlink", PARENT_TIMES),
    ("chmod::enametoolong_path", KEY_LENGTH),
    ("chown::enametoolong_path", KEY_LENGTH),
    ("chown::lchown::enametoolong_path", KEY_LENGTH),
    ("mkdir::enametoolong_path", KEY_LENGTH),
    ("open::enametoolong_path", KEY_LENGTH),
    ("rename::enametoolong_path", KEY_LENGTH),
    ("rmdir::enametoolong_path", KEY_LENGTH),
    ("symlink::enametoolong_path", KEY_LENGTH),
    ("truncate::enametoolong_path", KEY_LENGTH),
    ("unlink::enametoolong_path", KEY_LENGTH),
];

/// Cases whose outcome is not asserted, and why.
const FLAKY: &[(&str, &str)] = &[(
    "open::etxtbsy",
    "races exec: the test opens the file for writing as soon as vfork returns, which on this kernel can be \
     before exec denies writes; over FUSE the window is wide enough to lose about half the time (never on ext4)",
)];

/// Whether `pattern` (an exact name or `*::suffix`) names `case`.
fn names(pattern: &str, case: &str) -> bool {
    match pattern.strip_prefix('*') {
        Some(suffix) => case.ends_with(suffix),
        None => pattern == case,
    }
}

/// Why `case` is expected to fail, if it is.
fn expected_failure(case: &str) -> Option<&'static str> {
    EXPECTED_FAILURES.iter().find(|(pattern, _)| names(pattern, case)).map(|(_, reason)| *reason)
}

fn is_flaky(case: &str) -> bool {
    FLAKY.iter().any(|(name, _)| *name == case)
}

/// Cases pjdfstest skips with this configuration: remounting read-only (`erofs`) is not
/// allowed, there is no second filesystem (`exdev`), and renames need not change ctime (POSIX
/// leaves it to the filesystem; `rename_ctime` is off).
fn skipped_by_configuration(case: &Case) -> bool {
    ["allow_remount", "No secondary file-system", "requires features: rename_ctime"]
        .iter()
        .any(|reason| case.detail.contains(reason))
}

/// pjdfstest's configuration: the optional features the mount has, short naps between changes
/// whose times are compared (the mount keeps nanoseconds), and users that exist on every Debian
/// machine for the cases that switch users.
const CONFIG: &str = r#"
[features]
utimensat = {}
utime_now = {}

[settings]
naptime = 0.01
allow_remount = false

[dummy_auth]
entries = [["nobody", "nogroup"], ["daemon", "daemon"]]
"#;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Outcome {
    Passed,
    Failed,
    Skipped,
}

/// One case as pjdfstest reported it.
#[derive(Debug)]
struct Case {
    name: String,
    outcome: Outcome,
    /// The indented lines after it: the failed assertion, or why it was skipped.
    detail: String,
}

/// Parses pjdfstest's report: a line per case, `name` then `ok`, `FAILED` or `skipped`, with
/// indented detail lines after it.
fn parse_report(stdout: &str) -> Vec<Case> {
    let mut cases: Vec<Case> = Vec::new();
    for line in stdout.lines() {
        if line.starts_with(['\t', ' ']) {
            if let Some(case) = cases.last_mut() {
                case.detail.push_str(line.trim());
                case.detail.push('\n');
            }
            continue;
        }
        let Some((name, status)) = line.split_once(' ') else { continue };
        let outcome = match status.trim() {
            "ok" => Outcome::Passed,
            "FAILED" => Outcome::Failed,
            "skipped" => Outcome::Skipped,
            _ => continue,
        };
        cases.push(Case { name: name.to_owned(), outcome, detail: String::new() });
    }
    cases
}

/// The group a case belongs to: the first part of its name (`chmod::eperm_not_owner` is in
/// `chmod`).
fn group_of(name: &str) -> &str {
    name.split("::").next().unwrap_or(name)
}

/// Per group: cases run, passed, failed as expected, flaky, skipped.
fn summary(cases: &[Case]) -> String {
    let mut groups: BTreeMap<&str, [usize; 5]> = BTreeMap::new();
    for case in cases {
        let counts = groups.entry(group_of(&case.name)).or_default();
        match case.outcome {
            Outcome::Skipped => counts[4] += 1,
            outcome => {
                counts[0] += 1;
                match outcome {
                    _ if is_flaky(&case.name) => counts[3] += 1,
                    Outcome::Passed => counts[1] += 1,
                    _ if expected_failure(&case.name).is_some() => counts[2] += 1,
                    _ => {}
                }
            }
        }
    }
    let mut text = format!(
        "{:<12} {:>4} {:>7} {:>18} {:>6} {:>8}\n",
        "group", "run", "passed", "expected failures", "flaky", "skipped"
    );
    for (group, [run, passed, expected_failures, flaky, skipped]) in groups {
        text.push_str(&format!("{group:<12} {run:>4} {passed:>7} {expected_failures:>18} {flaky:>6} {skipped:>8}\n"));
    }
    text
}

fn describe(cases: &[&Case]) -> String {
    cases
        .iter()
        .map(|case| format!("  {}\n    {}", case.name, case.detail.trim().replace('\n', "\n    ")))
        .collect::<Vec<_>>()
        .join("\n")
}

fn run_pjdfstest(pjdfstest: &Path, config: &Path, root: &Path) -> Vec<Case> {
    let mut command = Command::new(pjdfstest);
    command.arg("-c").arg(config).arg("-p").arg(root).args(GROUPS).env("NO_COLOR", "1");
    let output = command.output().unwrap_or_else(|e| panic!("cannot run {command:?}: {e}"));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains("Summary:"),
        "{command:?} did not finish its run ({}):\n{}",
        output.status,
        describe_output(&output)
    );
    eprintln!("{stdout}");
    parse_report(&stdout)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pjdfstest_passes_every_case_but_those_s3_cannot_hold() {
    let pjdfstest = tool(
        "pjdfstest",
        "PJDFSTEST",
        "Install it with `cargo install pjdfstest --locked` (scripts/test-all.sh does).",
    );
    assert!(
        nix::unistd::Uid::effective().is_root(),
        "pjdfstest must run as root: it changes owners and switches users"
    );
    let server = SeaweedFs::shared();
    let client = Arc::new(server.new_bucket("fuse-pjdfstest").await);
    let work = tempfile::tempdir().unwrap();
    let config = work.path().join("pjdfstest.toml");
    std::fs::write(&config, CONFIG).unwrap();
    let mount = TestMount::for_all_users(client, CoreConfig::default());
    let cases = mount.use_files(move |root| run_pjdfstest(&pjdfstest, &config, &root)).await;
    mount.unmount().await;

    eprintln!("{}", summary(&cases));
    assert!(cases.len() > 250, "pjdfstest ran only {} cases", cases.len());
    let asserted = |case: &&Case| !is_flaky(&case.name);
    let unexpected_failures: Vec<&Case> = cases
        .iter()
        .filter(asserted)
        .filter(|case| case.outcome == Outcome::Failed && expected_failure(&case.name).is_none())
        .collect();
    let now_passing: Vec<&Case> = cases
        .iter()
        .filter(asserted)
        .filter(|case| case.outcome == Outcome::Passed && expected_failure(&case.name).is_some())
        .collect();
    let failed: BTreeSet<&str> =
        cases.iter().filter(|case| case.outcome == Outcome::Failed).map(|case| case.name.as_str()).collect();
    let never_failed: Vec<&str> = EXPECTED_FAILURES
        .iter()
        .map(|(pattern, _)| *pattern)
        .filter(|pattern| !failed.iter().any(|case| names(pattern, case)))
        .collect();
    let unexpected_skips: Vec<&Case> =
        cases.iter().filter(|case| case.outcome == Outcome::Skipped && !skipped_by_configuration(case)).collect();
    assert!(unexpected_failures.is_empty(), "cases failed that should pass:\n{}", describe(&unexpected_failures));
    assert!(
        now_passing.is_empty(),
        "cases listed in EXPECTED_FAILURES pass now; take them off the list (and the tables in README.md and \
         docs/SEMANTICS.md):\n{}",
        describe(&now_passing)
    );
    assert!(never_failed.is_empty(), "EXPECTED_FAILURES entries that named no failed case: {never_failed:?}");
    assert!(unexpected_skips.is_empty(), "cases were skipped:\n{}", describe(&unexpected_skips));
}
