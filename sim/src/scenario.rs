//! A simulation run as data: the configuration, the bucket's initial keys, what each process
//! does, what another client changes, and the seed of the timing.
//!
//! VOPR mode draws a scenario from a seed; proptest builds one from strategies and shrinks it;
//! the fuzzer draws one from its bytes. All three run the same [`crate::simulation`].
//! Paths in syscalls are indices into [`Scenario::paths`] that wrap around, so any shrunk
//! scenario is still valid (mountpoint-s3's reftest idea).

use std::collections::BTreeSet;
use std::time::Duration;

use goofys_core::CoreConfig;

use crate::rng::Entropy;

/// An object in the bucket before the mount starts.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct InitialObject {
    pub key: String,
    pub size_bytes: u32,
    pub content_seed: u64,
}

/// An index into the scenario's path list; wraps around.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct PathIndex(pub u32);

/// One read of [`Syscall::ReadAt`]: where (in millionths of the file size) and how much.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct RandomRead {
    pub offset_per_million: u32,
    pub size_bytes: u32,
}

/// What a process does next, as the kernel would turn a system call into FUSE requests.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum Syscall {
    /// Look every component up, then getattr.
    Stat {
        path: PathIndex,
    },
    /// Open, read sequentially in chunks until the end, release.
    Cat {
        path: PathIndex,
        chunk_bytes: u32,
    },
    /// Open, read at the given places, release.
    ReadAt {
        path: PathIndex,
        reads: Vec<RandomRead>,
    },
    /// Opendir, readdir until the end with this buffer size, optionally seek back once and read
    /// again (the entries must be the same), releasedir.
    List {
        path: PathIndex,
        buffer_bytes: u32,
        plus: bool,
        rewind: bool,
    },
    StatFs,
    /// The kernel drops the references it holds to some unused inodes.
    Forget {
        per_million: u32,
    },
    /// Nothing for a while; a long sleep lets caches expire.
    Sleep {
        duration: Duration,
    },
    /// A change of this process's own names in the directory at `dir` (files `w{process}.{slot}`,
    /// directories `W{process}.{slot}`), so processes never race each other on a name; the
    /// other client may still change them.
    Own {
        dir: PathIndex,
        change: OwnChange,
    },
}

/// How a write syscall opens its file.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum WriteMode {
    /// `O_CREAT | O_TRUNC`, as `>` does.
    Create,
    /// `O_TRUNC` on whatever is there (created if missing).
    Truncate,
    /// `O_RDWR`: overwrite in place.
    Modify,
    /// `O_APPEND`.
    Append,
}

/// One write: where (in millionths of the current size, past the end allowed) and what.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct WriteChunk {
    pub offset_per_million: u32,
    pub len_bytes: u32,
    pub seed: u64,
}

/// A change a process makes to its own names.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum OwnChange {
    /// Open or create file `slot` (inside own directory `in_dir` if given), write, maybe read
    /// back and fsync, close.
    Write {
        in_dir: Option<u8>,
        slot: u8,
        mode: WriteMode,
        writes: Vec<WriteChunk>,
        fsync: bool,
        read_back: bool,
    },
    /// Set the size of file `slot` with truncate(2) (nobody has it open).
    Truncate {
        slot: u8,
        size_per_million: u32,
    },
    /// chmod(2) of file `slot` (nobody has it open): a metadata-only copy onto itself.
    Chmod {
        slot: u8,
        mode: u16,
    },
    Unlink {
        slot: u8,
    },
    Rename {
        slot: u8,
        to_slot: u8,
        noreplace: bool,
    },
    Mkdir {
        slot: u8,
    },
    Rmdir {
        slot: u8,
    },
    RenameDir {
        slot: u8,
        to_slot: u8,
    },
}

/// A change another S3 client makes to the bucket.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum Mutation {
    Put { key: String, size_bytes: u32, content_seed: u64 },
    Delete { key: String },
}

/// One step of the other client: wait, then change the bucket.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct ExternalStep {
    pub wait: Duration,
    pub mutation: Mutation,
}

/// Everything a run needs besides the fault plan.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Scenario {
    pub config: CoreConfig,
    pub objects: Vec<InitialObject>,
    pub processes: Vec<Vec<Syscall>>,
    pub external: Vec<ExternalStep>,
    /// Seeds think times, interrupts and latency draws.
    pub timing_seed: u64,
    /// Per million FUSE requests that get interrupted.
    pub interrupt_per_million: u32,
}

/// The name of a process's own file.
pub fn own_file_name(process: usize, slot: u8) -> String {
    format!("w{process}.{slot}")
}

/// The name of a process's own directory.
pub fn own_dir_name(process: usize, slot: u8) -> String {
    format!("W{process}.{slot}")
}

impl Scenario {
    /// Number of operations: syscalls of every process and changes of the other client.
    pub fn operation_count(&self) -> usize {
        self.processes.iter().map(Vec::len).sum::<usize>() + self.external.len()
    }

    /// Every path a syscall can name: each prefix of every key under the mount, plus names
    /// that never exist. Components the kernel would never send (empty, `.`, `..`, NUL) are
    /// cut off. Sorted, so indices are stable.
    pub fn paths(&self) -> Vec<Vec<String>> {
        let prefix = &self.config.mount_prefix;
        let keys = self.objects.iter().map(|o| o.key.as_str()).chain(self.external.iter().map(|s| match &s.mutation {
            Mutation::Put { key, .. } | Mutation::Delete { key } => key.as_str(),
        }));
        let mut paths: BTreeSet<Vec<String>> = BTreeSet::from([vec![], vec!["never".to_owned()]]);
        for key in keys {
            let Some(rest) = key.strip_prefix(prefix.as_str()) else {
                continue;
            };
            let mut path = Vec::new();
            for component in rest.split('/') {
                if component.is_empty() || component == "." || component == ".." || component.contains('\0') {
                    break;
                }
                path.push(component.to_owned());
                paths.insert(path.clone());
            }
            let mut missing = path.clone();
            missing.push("missing".to_owned());
            paths.insert(missing);
        }
        paths.into_iter().collect()
    }

    pub fn path(&self, paths: &[Vec<String>], index: PathIndex) -> Vec<String> {
        paths[index.0 as usize % paths.len()].clone()
    }
}

/// Sizes of the generated scenario.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct ScenarioSize {
    /// Syscalls and external changes together, at least.
    pub operations: usize,
}

const DIR_NAMES: &[&str] = &["a", "b", "dir with space", "ünï", "c"];
const FILE_NAMES: &[&str] = &["f", "g.txt", "a", "%41", "+plus", "x?#&=", "b-c", "c.d", "e\r\n"];
const HOSTILE_KEYS: &[&str] = &["a//h", "a/./h", "b/../h", "..", ".", "a/", "b/", "c/.", "nul\0key", "a/b/"];

/// A key universe, configuration and workload drawn from `entropy` (the swarm: every seed
/// gets a different mix of knobs, like FoundationDB's BUGGIFY and TigerBeetle's swarm).
pub fn generate(entropy: &mut impl Entropy, size: ScenarioSize) -> Scenario {
    let config = generate_config(entropy);
    let mount_prefix = config.mount_prefix.clone();
    let mut keys = BTreeSet::new();
    let key_count = entropy.between(4, 40);
    // Bounded attempts: with little entropy (a fuzzer's short input) keys repeat.
    for _ in 0..key_count * 4 {
        if keys.len() as u64 >= key_count {
            break;
        }
        keys.insert(generate_key(entropy, &mount_prefix));
    }
    // Keys outside a prefix mount must stay invisible.
    if !mount_prefix.is_empty() {
        keys.insert(mount_prefix.trim_end_matches('/').to_owned());
        keys.insert(format!("{}x/outside", mount_prefix.trim_end_matches('/')));
    }
    // Keep the number of GETs per file bounded when parts are tiny.
    let max_size_bytes = (config.read_part_size_bytes * 200).min(12 << 20) as u32;
    let objects: Vec<InitialObject> = keys
        .iter()
        .map(|key| InitialObject {
            key: key.clone(),
            size_bytes: generate_size(entropy, max_size_bytes),
            content_seed: entropy.next_u64(),
        })
        .collect();

    let external_share = if entropy.chance(300_000) { 0 } else { entropy.between(5, 25) as usize };
    let external_count = size.operations * external_share / 100;
    let syscall_count = size.operations - external_count;
    let process_count = entropy.between(1, 4) as usize;
    let write_share = if entropy.chance(250_000) { 0 } else { entropy.between(10, 40) };
    let mut processes = vec![Vec::new(); process_count];
    for i in 0..syscall_count {
        let syscall = if entropy.below(100) < write_share {
            generate_own_change(entropy, &config)
        } else {
            generate_syscall(entropy, &config)
        };
        processes[i % process_count].push(syscall);
    }
    let mut external_keys: Vec<String> = keys.iter().cloned().collect();
    for _ in 0..3 {
        external_keys.push(generate_key(entropy, &mount_prefix));
    }
    // The other client sometimes writes the processes' own files, so conflicts happen.
    if write_share > 0 && entropy.chance(500_000) {
        for process in 0..process_count {
            external_keys.push(format!("{mount_prefix}{}", own_file_name(process, 0)));
        }
    }
    let external = (0..external_count)
        .map(|_| {
            let key = entropy.pick(&external_keys).clone();
            let mutation = if entropy.chance(600_000) {
                Mutation::Put {
                    key,
                    size_bytes: generate_size(entropy, max_size_bytes),
                    content_seed: entropy.next_u64(),
                }
            } else {
                Mutation::Delete { key }
            };
            ExternalStep { wait: Duration::from_millis(entropy.between(0, 3_000)), mutation }
        })
        .collect();
    Scenario {
        config,
        objects,
        processes,
        external,
        timing_seed: entropy.next_u64(),
        interrupt_per_million: if entropy.chance(200_000) { entropy.between(1_000, 30_000) as u32 } else { 0 },
    }
}

fn generate_key(entropy: &mut impl Entropy, mount_prefix: &str) -> String {
    if entropy.chance(100_000) {
        return format!("{mount_prefix}{}", entropy.pick(HOSTILE_KEYS));
    }
    if entropy.chance(20_000) {
        return format!("{mount_prefix}{}", "L".repeat(entropy.between(250, 260) as usize));
    }
    let depth = entropy.between(0, 2);
    let mut key = mount_prefix.to_owned();
    for _ in 0..depth {
        let dir = entropy.pick::<&str>(DIR_NAMES);
        key.push_str(dir);
        key.push('/');
    }
    let file = entropy.pick::<&str>(FILE_NAMES);
    key.push_str(file);
    if entropy.chance(100_000) {
        key.push('/');
    }
    key
}

fn generate_size(entropy: &mut impl Entropy, max_size_bytes: u32) -> u32 {
    let size = match entropy.below(100) {
        0..=9 => 0,
        10..=59 => entropy.between(1, 4096) as u32,
        60..=89 => entropy.between(4097, 300_000) as u32,
        90..=98 => entropy.between(300_001, 3 << 20) as u32,
        _ => entropy.between(3 << 20, 12 << 20) as u32,
    };
    size.min(max_size_bytes)
}

fn generate_config(entropy: &mut impl Entropy) -> CoreConfig {
    const TTLS_SECS: &[u64] = &[0, 1, 5, 60];
    let mut ttl = || Duration::from_secs(*entropy.pick(TTLS_SECS));
    let (stat_cache_ttl, type_cache_ttl, negative_cache_ttl) = (ttl(), ttl(), ttl());
    let read_part_size_bytes = *entropy.pick(&[1 << 10, 4 << 10, 64 << 10, 1 << 20, 8 << 20]);
    let prefetch_initial_window_bytes = *entropy.pick(&[0, 4 << 10, 64 << 10, 1 << 20]);
    let prefetch_max_window_bytes = read_part_size_bytes * entropy.between(1, 8);
    let mount_prefix = if entropy.chance(200_000) { "m/".to_owned() } else { String::new() };
    let write_part_size_bytes: u64 = *entropy.pick(&[64 << 10, 256 << 10, 8 << 20]);
    CoreConfig {
        mount_prefix,
        stat_cache_ttl,
        type_cache_ttl,
        negative_cache_ttl,
        list_page_keys: *entropy.pick(&[1, 2, 3, 7, 1000]),
        prefetch_initial_window_bytes,
        prefetch_max_window_bytes,
        read_part_size_bytes,
        retry_max_attempts: entropy.between(3, 10) as u32,
        retry_initial_backoff: Duration::from_millis(*entropy.pick(&[1, 10, 100])),
        retry_max_backoff: Duration::from_millis(*entropy.pick(&[100, 1_000, 20_000])),
        s3_request_timeout: Duration::from_secs(*entropy.pick(&[1, 5, 30])),
        write_part_size_bytes,
        multipart_min_part_size_bytes: write_part_size_bytes.min(5 << 20),
        max_dirty_bytes: *entropy.pick(&[256 << 10, 4 << 20, 512 << 20]),
        part_uploads_inflight_max: *entropy.pick(&[1, 4, 8]),
        rename_inflight_max: *entropy.pick(&[1, 8, 32]),
        ..CoreConfig::default()
    }
}

fn generate_own_change(entropy: &mut impl Entropy, config: &CoreConfig) -> Syscall {
    let dir = PathIndex(entropy.below(u64::from(u32::MAX)) as u32);
    let slot = entropy.below(3) as u8;
    let change = match entropy.below(100) {
        0..=54 => {
            let mode = *entropy.pick(&[WriteMode::Create, WriteMode::Truncate, WriteMode::Modify, WriteMode::Append]);
            let big = config.write_part_size_bytes * 3;
            let writes = (0..entropy.between(1, 6))
                .map(|_| WriteChunk {
                    offset_per_million: entropy.below(1_200_000) as u32,
                    len_bytes: match entropy.below(100) {
                        0..=59 => entropy.between(1, 4096),
                        60..=94 => entropy.between(4097, 200_000),
                        _ => entropy.between(200_001, big.min(3 << 20)),
                    } as u32,
                    seed: entropy.next_u64(),
                })
                .collect();
            let in_dir = entropy.chance(250_000).then(|| entropy.below(2) as u8);
            OwnChange::Write {
                in_dir,
                slot,
                mode,
                writes,
                fsync: entropy.chance(200_000),
                read_back: entropy.chance(500_000),
            }
        }
        55..=58 => OwnChange::Truncate { slot, size_per_million: entropy.below(1_500_000) as u32 },
        59..=61 => OwnChange::Chmod { slot, mode: *entropy.pick(&[0o600, 0o640, 0o700, 0o755, 0o444]) },
        62..=71 => OwnChange::Unlink { slot },
        72..=81 => OwnChange::Rename { slot, to_slot: entropy.below(3) as u8, noreplace: entropy.chance(300_000) },
        82..=89 => OwnChange::Mkdir { slot: entropy.below(2) as u8 },
        90..=94 => OwnChange::Rmdir { slot: entropy.below(2) as u8 },
        _ => OwnChange::RenameDir { slot: entropy.below(2) as u8, to_slot: entropy.below(2) as u8 },
    };
    Syscall::Own { dir, change }
}

fn generate_syscall(entropy: &mut impl Entropy, config: &CoreConfig) -> Syscall {
    let path = PathIndex(entropy.below(u64::from(u32::MAX)) as u32);
    match entropy.below(100) {
        0..=24 => Syscall::Stat { path },
        25..=44 => Syscall::Cat { path, chunk_bytes: *entropy.pick(&[4096, 65536, 131072, 1 << 20]) },
        45..=59 => {
            let reads = (0..entropy.between(1, 6))
                .map(|_| RandomRead {
                    offset_per_million: entropy.below(1_100_000) as u32,
                    size_bytes: *entropy.pick(&[1, 4096, 65536, 1 << 20]),
                })
                .collect();
            Syscall::ReadAt { path, reads }
        }
        60..=79 => Syscall::List {
            path,
            buffer_bytes: *entropy.pick(&[512, 4096, 65536]),
            plus: entropy.chance(500_000),
            rewind: entropy.chance(300_000),
        },
        80..=82 => Syscall::StatFs,
        83..=89 => Syscall::Forget { per_million: entropy.between(100_000, 1_000_000) as u32 },
        _ => {
            let longest_ttl = config.stat_cache_ttl.max(config.type_cache_ttl).max(config.negative_cache_ttl);
            let duration = if entropy.chance(250_000) {
                longest_ttl + Duration::from_secs(1)
            } else {
                Duration::from_millis(entropy.between(0, 2_000))
            };
            Syscall::Sleep { duration }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::SimRng;

    #[test]
    fn generation_is_deterministic_and_sized() {
        let a = generate(&mut SimRng::new(9), ScenarioSize { operations: 200 });
        let b = generate(&mut SimRng::new(9), ScenarioSize { operations: 200 });
        assert_eq!(a, b);
        assert_eq!(a.operation_count(), 200);
    }

    #[test]
    fn paths_include_every_visible_prefix_and_missing_names_but_no_unsendable_names() {
        let scenario = Scenario {
            config: CoreConfig::default(),
            objects: ["a/b/c", "a//x", "d/./e", "f"]
                .iter()
                .map(|k| InitialObject { key: k.to_string(), size_bytes: 1, content_seed: 0 })
                .collect(),
            processes: vec![],
            external: vec![],
            timing_seed: 0,
            interrupt_per_million: 0,
        };
        let paths = scenario.paths();
        let has = |p: &[&str]| paths.contains(&p.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        assert!(has(&[]) && has(&["a"]) && has(&["a", "b"]) && has(&["a", "b", "c"]) && has(&["f"]));
        assert!(has(&["a", "b", "c", "missing"]) && has(&["never"]));
        assert!(paths.iter().all(|p| p.iter().all(|c| !c.is_empty() && c != "." && c != "..")));
    }
}
