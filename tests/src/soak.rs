//! The soak's worker and its ledger: one process that, until a deadline, creates, overwrites,
//! appends to, reads, renames, deletes and lists files in its own directory of a mount, checks
//! every read and listing against what it has done, and records what each name must hold in S3
//! afterwards, so the soak (`goofys-tests --test soak`) can check the bucket once all workers
//! are done and the mount is gone.
//!
//! A call that fails leaves its name uncertain: the ledger then allows each state the name may
//! be in (the old content, the new one, or absent), and the worker touches it no more. Every
//! name the worker did not see fail must hold exactly its last acknowledged content.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use sha2::{Digest as _, Sha256};

use goofys_sim::rng::{Entropy as _, SimRng};

use crate::files::pattern;

/// What a name may hold: absent, or content with this SHA-256 (hex).
pub type State = Option<String>;

/// The SHA-256 of `bytes`, in hex.
pub fn digest(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().fold(String::new(), |mut hex, byte| {
        let _ = write!(hex, "{byte:02x}");
        hex
    })
}

/// What one worker did and saw, and what S3 must hold for it.
#[derive(Debug, Default)]
pub struct Ledger {
    /// Names whose last call succeeded, with their content.
    pub certain: BTreeMap<String, Vec<u8>>,
    /// Names a failed call left in one of several states.
    pub uncertain: BTreeMap<String, BTreeSet<State>>,
    pub operations: u64,
    /// Calls that failed with an errno (EIO after the retries, say).
    pub errors: u64,
    /// Reads that returned bytes other than the file's: must be 0.
    pub wrong_reads: u64,
    /// Listings that missed a file or showed one that is not there: must be 0.
    pub wrong_listings: u64,
    pub slowest_call: Duration,
    /// The first few problems, for the report.
    pub problems: Vec<String>,
}

impl Ledger {
    /// The ledger as text: one `name<TAB>state,state` line per name (`absent` or a digest),
    /// after `#`-lines with the counts.
    pub fn to_text(&self) -> String {
        let mut text = format!(
            "# operations {}\n# errors {}\n# wrong_reads {}\n# wrong_listings {}\n# slowest_call_ms {}\n",
            self.operations,
            self.errors,
            self.wrong_reads,
            self.wrong_listings,
            self.slowest_call.as_millis()
        );
        for problem in &self.problems {
            let _ = writeln!(text, "# problem {}", problem.replace('\n', " "));
        }
        for (name, content) in &self.certain {
            let _ = writeln!(text, "{name}\t{}", digest(content));
        }
        for (name, states) in &self.uncertain {
            let states: Vec<&str> = states.iter().map(|state| state.as_deref().unwrap_or("absent")).collect();
            let _ = writeln!(text, "{name}\t{}", states.join(","));
        }
        text
    }
}

/// A worker's ledger as the soak reads it back.
#[derive(Debug, Default)]
pub struct LedgerSummary {
    pub counts: BTreeMap<String, u64>,
    pub problems: Vec<String>,
    /// Each name and the states it may be in.
    pub names: BTreeMap<String, BTreeSet<State>>,
}

impl LedgerSummary {
    pub fn parse(text: &str) -> LedgerSummary {
        let mut summary = LedgerSummary::default();
        for line in text.lines() {
            if let Some(problem) = line.strip_prefix("# problem ") {
                summary.problems.push(problem.to_owned());
            } else if let Some(count) = line.strip_prefix("# ") {
                let (name, value) = count.split_once(' ').expect("a count line");
                summary.counts.insert(name.to_owned(), value.parse().expect("a number"));
            } else if let Some((name, states)) = line.split_once('\t') {
                let states = states.split(',').map(|state| (state != "absent").then(|| state.to_owned())).collect();
                summary.names.insert(name.to_owned(), states);
            }
        }
        summary
    }
}

/// The worker's seeded choices.
#[derive(Debug)]
struct Choices(SimRng);

impl Choices {
    fn next(&mut self) -> u64 {
        self.0.next_u64()
    }

    fn below(&mut self, bound: u64) -> u64 {
        self.0.below(bound)
    }

    fn pick<'a>(&mut self, names: &'a BTreeMap<String, Vec<u8>>) -> Option<&'a String> {
        let index = self.below(names.len() as u64) as usize;
        names.keys().nth(index)
    }

    /// A file size: mostly small, sometimes a few MiB, now and then over one 8 MiB part.
    fn file_size_bytes(&mut self) -> usize {
        match self.below(100) {
            0..=69 => self.below(64 * 1024) as usize,
            70..=96 => self.below(3 * 1024 * 1024) as usize,
            _ => (9 * 1024 * 1024 + self.below(4 * 1024 * 1024)) as usize,
        }
    }
}

/// At most this many files live in a worker's directory at once.
const FILES_MAX: usize = 24;

/// Runs a worker in `dir` (created if missing) until `run_for` has passed.
pub fn run_worker(dir: &Path, seed: u64, run_for: Duration) -> Ledger {
    std::fs::create_dir_all(dir).unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
    let deadline = Instant::now() + run_for;
    let mut choices = Choices(SimRng::new(seed));
    let mut ledger = Ledger::default();
    let mut next_name = 0u64;
    let mut fresh_name = |choices: &mut Choices| {
        next_name += 1;
        format!("f{next_name:05}-{}", choices.below(1000))
    };
    while Instant::now() < deadline {
        let started = Instant::now();
        let roll = choices.below(100);
        let picked = choices.pick(&ledger.certain).cloned();
        match (roll, picked) {
            (0..=19, _) | (_, None) if ledger.certain.len() < FILES_MAX => {
                let name = fresh_name(&mut choices);
                let content = pattern(choices.next(), choices.file_size_bytes());
                let outcome = write_file(&dir.join(&name), &content);
                settle_write(&mut ledger, &name, None, content, outcome);
            }
            (_, None) => {}
            (0..=34, Some(name)) => {
                let content = pattern(choices.next(), choices.file_size_bytes());
                let old = ledger.certain.remove(&name);
                let outcome = write_file(&dir.join(&name), &content);
                settle_write(&mut ledger, &name, old, content, outcome);
            }
            (35..=44, Some(name)) => {
                let old = ledger.certain.remove(&name).expect("picked from certain");
                let tail = pattern(choices.next(), choices.below(100 * 1024) as usize + 1);
                let outcome = std::fs::OpenOptions::new()
                    .append(true)
                    .open(dir.join(&name))
                    .and_then(|mut file| file.write_all(&tail).and_then(|()| file.sync_all()));
                let mut new = old.clone();
                new.extend_from_slice(&tail);
                settle_write(&mut ledger, &name, Some(old), new, outcome);
            }
            (45..=69, Some(name)) => match std::fs::read(dir.join(&name)) {
                Ok(bytes) if bytes == ledger.certain[&name] => {}
                Ok(bytes) => {
                    ledger.wrong_reads += 1;
                    let expected = ledger.certain[&name].len();
                    note(&mut ledger, format!("read of {name}: {} bytes, expected {expected}", bytes.len()));
                }
                Err(error) => {
                    ledger.errors += 1;
                    note(&mut ledger, format!("read of {name}: {error}"));
                }
            },
            (70..=79, Some(name)) => {
                let to = fresh_name(&mut choices);
                let content = ledger.certain.remove(&name).expect("picked from certain");
                match std::fs::rename(dir.join(&name), dir.join(&to)) {
                    Ok(()) => {
                        ledger.certain.insert(to, content);
                    }
                    Err(error) => {
                        ledger.errors += 1;
                        note(&mut ledger, format!("rename of {name} to {to}: {error}"));
                        let states: BTreeSet<State> = [None, Some(digest(&content))].into();
                        ledger.uncertain.insert(name, states.clone());
                        ledger.uncertain.insert(to, states);
                    }
                }
            }
            (80..=89, Some(name)) => {
                let content = ledger.certain.remove(&name).expect("picked from certain");
                if let Err(error) = std::fs::remove_file(dir.join(&name)) {
                    ledger.errors += 1;
                    note(&mut ledger, format!("unlink of {name}: {error}"));
                    ledger.uncertain.insert(name, [None, Some(digest(&content))].into());
                }
            }
            (_, Some(_)) => check_listing(dir, &mut ledger),
        }
        ledger.operations += 1;
        ledger.slowest_call = ledger.slowest_call.max(started.elapsed());
    }
    ledger
}

/// Writes `content` to `path` (created or truncated) and fsyncs it: the fsync's success means S3
/// holds the file (a plain close's error would be lost when a `File` drops).
fn write_file(path: &Path, content: &[u8]) -> std::io::Result<()> {
    let mut file = std::fs::File::create(path)?;
    file.write_all(content)?;
    file.sync_all()
}

/// Records the outcome of writing `new` over `old` (absent when `None`) at `name`.
fn settle_write(ledger: &mut Ledger, name: &str, old: Option<Vec<u8>>, new: Vec<u8>, outcome: std::io::Result<()>) {
    match outcome {
        Ok(()) => {
            ledger.certain.insert(name.to_owned(), new);
        }
        Err(error) => {
            ledger.errors += 1;
            note(ledger, format!("write of {name} ({} bytes): {error}", new.len()));
            let states: BTreeSet<State> = [old.map(|old| digest(&old)), Some(digest(&new))].into();
            ledger.uncertain.insert(name.to_owned(), states);
        }
    }
}

/// Lists `dir` and checks it shows every certain name and nothing the worker never made.
fn check_listing(dir: &Path, ledger: &mut Ledger) {
    let listed: Result<BTreeSet<String>, std::io::Error> = std::fs::read_dir(dir)
        .and_then(|entries| entries.map(|entry| entry.map(|e| e.file_name().to_string_lossy().into_owned())).collect());
    match listed {
        Ok(listed) => {
            let missing: Vec<&String> = ledger.certain.keys().filter(|name| !listed.contains(*name)).collect();
            let unknown: Vec<&String> = listed
                .iter()
                .filter(|name| !ledger.certain.contains_key(*name) && !ledger.uncertain.contains_key(*name))
                .collect();
            if !missing.is_empty() || !unknown.is_empty() {
                ledger.wrong_listings += 1;
                let problem = format!("listing missed {missing:?} and showed {unknown:?}");
                note(ledger, problem);
            }
        }
        Err(error) => {
            ledger.errors += 1;
            note(ledger, format!("listing: {error}"));
        }
    }
}

fn note(ledger: &mut Ledger, problem: String) {
    if ledger.problems.len() < 20 {
        ledger.problems.push(problem);
    }
}

/// The worker's command line: `soak-worker DIR SEED SECONDS LEDGER`.
pub fn worker_main(args: &[String]) -> Result<(), String> {
    let [dir, seed, seconds, ledger_path] = args else {
        return Err("usage: soak-worker DIR SEED SECONDS LEDGER".into());
    };
    let seed: u64 = seed.parse().map_err(|e| format!("bad seed {seed}: {e}"))?;
    let seconds: u64 = seconds.parse().map_err(|e| format!("bad seconds {seconds}: {e}"))?;
    let ledger = run_worker(&PathBuf::from(dir), seed, Duration::from_secs(seconds));
    std::fs::write(ledger_path, ledger.to_text()).map_err(|e| format!("cannot write {ledger_path}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_worker_on_a_local_directory_sees_no_problem_and_its_ledger_reads_back() {
        let dir = tempfile::tempdir().unwrap();
        let ledger = run_worker(&dir.path().join("w"), 5, Duration::from_millis(300));
        assert!(ledger.operations > 20, "{} operations", ledger.operations);
        assert_eq!((ledger.errors, ledger.wrong_reads, ledger.wrong_listings), (0, 0, 0), "{:?}", ledger.problems);
        let summary = LedgerSummary::parse(&ledger.to_text());
        assert_eq!(summary.counts["operations"], ledger.operations);
        assert_eq!(summary.names.len(), ledger.certain.len());
        for (name, content) in &ledger.certain {
            assert_eq!(std::fs::read(dir.path().join("w").join(name)).unwrap(), *content);
            assert_eq!(summary.names[name], [Some(digest(content))].into());
        }
    }
}
