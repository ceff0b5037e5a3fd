//! The reference model: every state every key has had, and what the tree looked like at any
//! moment, derived with the core's own naming rules.
//!
//! Problems this module solves:
//! - The mount may legitimately answer from caches that are up to a TTL old, and a lookup asks
//!   two questions (HEAD and LIST) that S3 answers at two different moments. So the checker does
//!   not ask "what is the tree now" but "what could an honest mount have seen during this
//!   window": the set of answers consistent with some moment (or, for a lookup, some pair of
//!   moments) in it. Keys that did not change in the window have exactly one answer, so checks
//!   stay strict wherever the bucket was quiet.
//! - The tree is rebuilt from the flat key set by [`goofys_core::namespace`], the same rules the
//!   core uses, but by a different algorithm (a scan of all keys, not paged listings), so the
//!   two check each other.

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;
use goofys_core::Instant;
use goofys_core::fuse_types::FileKind;
use goofys_core::namespace::check_name;
use goofys_core::s3_types::{ETag, Metadata};

/// One version of an object.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Version {
    pub etag: ETag,
    pub body: Bytes,
    /// User metadata (POSIX attributes live there).
    pub metadata: Metadata,
}

impl Version {
    pub fn size_bytes(&self) -> u64 {
        self.body.len() as u64
    }
}

/// What a name resolves to at a moment.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum Resolved {
    File { size_bytes: u64, etag: ETag },
    Directory,
    Missing,
}

/// An inclusive window of simulated time.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Window {
    pub from: Instant,
    pub to: Instant,
}

/// Every state of every key, in time order.
#[derive(Clone, Debug, Default)]
pub struct History {
    keys: BTreeMap<String, Vec<(Instant, Option<Version>)>>,
}

impl History {
    /// Records that `key` has state `state` from `at` on.
    pub fn record(&mut self, at: Instant, key: &str, state: Option<Version>) {
        let states = self.keys.entry(key.to_owned()).or_default();
        if states.last().is_some_and(|(_, last)| *last == state) {
            return;
        }
        states.push((at, state));
    }

    /// The state of `key` at `at`.
    pub fn state_at(&self, key: &str, at: Instant) -> Option<&Version> {
        let states = self.keys.get(key)?;
        let index = states.partition_point(|(time, _)| *time <= at);
        states[..index].last().and_then(|(_, state)| state.as_ref())
    }

    /// Keys that start with `prefix`, in order.
    fn keys_under<'a>(
        &'a self,
        prefix: &'a str,
    ) -> impl Iterator<Item = (&'a String, &'a Vec<(Instant, Option<Version>)>)> {
        self.keys.range(prefix.to_owned()..).take_while(move |(key, _)| key.starts_with(prefix))
    }

    /// The moments in the window at which `key`'s state may differ: its start and every
    /// change inside it.
    fn moments_for_key(&self, key: &str, window: Window) -> BTreeSet<Instant> {
        let mut moments = BTreeSet::from([window.from]);
        if let Some(states) = self.keys.get(key) {
            moments.extend(states.iter().map(|(at, _)| *at).filter(|at| *at > window.from && *at <= window.to));
        }
        moments
    }

    fn moments_under(&self, prefix: &str, window: Window) -> BTreeSet<Instant> {
        let mut moments = BTreeSet::from([window.from]);
        for (_, states) in self.keys_under(prefix) {
            moments.extend(states.iter().map(|(at, _)| *at).filter(|at| *at > window.from && *at <= window.to));
        }
        moments
    }

    /// Whether any key under `prefix` exists at `at`: the prefix is then a directory.
    pub fn prefix_exists_at(&self, prefix: &str, at: Instant) -> bool {
        self.keys_under(prefix).any(|(key, _)| self.state_at(key, at).is_some())
    }

    /// Every state the object `key` had in the window.
    pub fn file_states(&self, key: &str, window: Window) -> Vec<Option<&Version>> {
        let mut states: Vec<Option<&Version>> = Vec::new();
        for at in self.moments_for_key(key, window) {
            let state = self.state_at(key, at);
            if !states.contains(&state) {
                states.push(state);
            }
        }
        states
    }

    /// Every answer a lookup of the name with file key `key` could honestly give in the
    /// window: HEAD at one moment combined with the directory probe at another.
    pub fn lookup_outcomes(&self, key: &str, window: Window) -> Vec<Resolved> {
        let dir_prefix = format!("{key}/");
        let dir_states: BTreeSet<bool> = self
            .moments_under(&dir_prefix, window)
            .into_iter()
            .map(|at| self.prefix_exists_at(&dir_prefix, at))
            .collect();
        let mut outcomes = Vec::new();
        for file in self.file_states(key, window) {
            for &is_dir in &dir_states {
                let outcome = match (is_dir, file) {
                    (true, _) => Resolved::Directory,
                    (false, Some(version)) => {
                        Resolved::File { size_bytes: version.size_bytes(), etag: version.etag.clone() }
                    }
                    (false, None) => Resolved::Missing,
                };
                if !outcomes.contains(&outcome) {
                    outcomes.push(outcome);
                }
            }
        }
        outcomes
    }

    /// The entries of the directory with key prefix `dir_prefix` at `at`, by the naming rules:
    /// directories win over files, invalid names are hidden, the own marker is not an entry.
    pub fn children_at(&self, dir_prefix: &str, at: Instant) -> BTreeMap<String, FileKind> {
        let mut children = BTreeMap::new();
        for (key, _) in self.keys_under(dir_prefix) {
            if self.state_at(key, at).is_none() {
                continue;
            }
            let rest = &key[dir_prefix.len()..];
            let (name, kind) = match rest.find('/') {
                Some(slash) => (&rest[..slash], FileKind::Directory),
                None if rest.is_empty() => continue,
                None => (rest, FileKind::File),
            };
            if check_name(name).is_err() {
                continue;
            }
            let slot = children.entry(name.to_owned()).or_insert(kind);
            if kind == FileKind::Directory {
                *slot = FileKind::Directory;
            }
        }
        children
    }

    /// Every name that was ever a child of `dir_prefix` during the window, with the kinds it
    /// could have had; a name that is missing at some moment maps to `None` among its kinds.
    ///
    /// A listing's pages are read at different moments: a name that was a file and a directory
    /// at once (object `name` and keys under `name/`) is a file to a listing that saw the object
    /// in one page and, in a later one, nothing under the prefix any more (found by seed 980).
    pub fn children_during(&self, dir_prefix: &str, window: Window) -> BTreeMap<String, BTreeSet<Option<FileKind>>> {
        let moments = self.moments_under(dir_prefix, window);
        let snapshots: Vec<BTreeMap<String, FileKind>> =
            moments.iter().map(|&at| self.children_at(dir_prefix, at)).collect();
        let names: BTreeSet<&String> = snapshots.iter().flat_map(|s| s.keys()).collect();
        names
            .into_iter()
            .map(|name| {
                let mut kinds: BTreeSet<Option<FileKind>> = snapshots.iter().map(|s| s.get(name).copied()).collect();
                if self.file_then_no_directory(&format!("{dir_prefix}{name}"), window) {
                    kinds.insert(Some(FileKind::File));
                }
                (name.clone(), kinds)
            })
            .collect()
    }

    /// Whether the object `key` existed at some moment of the window and nothing was under
    /// `key/` at that moment or a later one.
    fn file_then_no_directory(&self, key: &str, window: Window) -> bool {
        let dir_prefix = format!("{key}/");
        let Some(first_file_at) =
            self.moments_for_key(key, window).into_iter().find(|&at| self.state_at(key, at).is_some())
        else {
            return false;
        };
        self.moments_under(&dir_prefix, window)
            .into_iter()
            .chain([first_file_at])
            .any(|at| at >= first_file_at && !self.prefix_exists_at(&dir_prefix, at))
    }

    /// Every key and its state at `at`.
    pub fn objects_at(&self, at: Instant) -> BTreeMap<&str, &Version> {
        self.keys.keys().filter_map(|key| self.state_at(key, at).map(|version| (key.as_str(), version))).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn version(tag: &str, len: usize) -> Option<Version> {
        Some(Version { etag: ETag::new(tag), body: Bytes::from(vec![0; len]), metadata: Metadata::new() })
    }

    fn t(secs: u64) -> Instant {
        Instant::from_nanos(secs * 1_000_000_000)
    }

    #[test]
    fn a_quiet_name_has_exactly_one_lookup_outcome() {
        let mut history = History::default();
        history.record(t(0), "d/f", version("a", 3));
        let window = Window { from: t(5), to: t(10) };
        assert_eq!(
            history.lookup_outcomes("d/f", window),
            vec![Resolved::File { size_bytes: 3, etag: ETag::new("a") }]
        );
        assert_eq!(history.lookup_outcomes("d", window), vec![Resolved::Directory]);
        assert_eq!(history.lookup_outcomes("x", window), vec![Resolved::Missing]);
    }

    #[test]
    fn a_name_that_changed_in_the_window_allows_each_state_and_their_combinations() {
        let mut history = History::default();
        history.record(t(0), "n", version("a", 1));
        history.record(t(6), "n", None);
        history.record(t(7), "n/x", version("b", 1));
        let outcomes = history.lookup_outcomes("n", Window { from: t(5), to: t(10) });
        assert!(outcomes.contains(&Resolved::File { size_bytes: 1, etag: ETag::new("a") }));
        assert!(outcomes.contains(&Resolved::Missing), "HEAD after the delete, LIST before the create");
        assert!(outcomes.contains(&Resolved::Directory));
        assert_eq!(history.lookup_outcomes("n", Window { from: t(8), to: t(9) }), vec![Resolved::Directory]);
    }

    /// Found by seed 980: a listing saw the object `d/a` in one page and, in a later one,
    /// nothing under `d/a/` any more (deleted meanwhile): `a` is a file to it, though the name
    /// was a directory at every single moment it had the object.
    #[test]
    fn regression_a_listing_may_see_a_file_whose_shadowing_directory_went_away_in_a_later_page() {
        let mut history = History::default();
        history.record(t(0), "d/a", version("f", 1));
        history.record(t(0), "d/a/a/", version("m", 0));
        history.record(t(6), "d/a", None);
        history.record(t(7), "d/a/a/", None);
        let kinds = &history.children_during("d/", Window { from: t(5), to: t(10) })["a"];
        assert!(kinds.contains(&Some(FileKind::File)), "{kinds:?}");
        let before = &history.children_during("d/", Window { from: t(1), to: t(2) })["a"];
        assert_eq!(before, &BTreeSet::from([Some(FileKind::Directory)]), "a quiet window is exact");
        let file_gone_first = {
            let mut history = History::default();
            history.record(t(0), "d/a", version("f", 1));
            history.record(t(0), "d/a/a/", version("m", 0));
            history.record(t(6), "d/a", None);
            history.record(t(8), "d/a/a/", None);
            history.children_during("d/", Window { from: t(7), to: t(10) })["a"].clone()
        };
        assert!(!file_gone_first.contains(&Some(FileKind::File)), "the object was gone before the window");
    }

    #[test]
    fn children_follow_the_naming_rules() {
        let mut history = History::default();
        for key in ["a", "a/x", "b", "c/", "d//e", "e/./f", "g/..", "p"] {
            history.record(t(0), key, version("v", 1));
        }
        let children = history.children_at("", t(1));
        let expected: BTreeMap<String, FileKind> = [
            ("a", FileKind::Directory),
            ("b", FileKind::File),
            ("c", FileKind::Directory),
            ("d", FileKind::Directory),
            ("e", FileKind::Directory),
            ("g", FileKind::Directory),
            ("p", FileKind::File),
        ]
        .into_iter()
        .map(|(n, k)| (n.to_owned(), k))
        .collect();
        assert_eq!(children, expected);
        assert!(history.children_at("d/", t(1)).is_empty(), "an empty component is hidden");
        assert!(history.children_at("c/", t(1)).is_empty(), "the marker is not an entry");
    }

    #[test]
    fn a_directory_disappears_with_its_last_key() {
        let mut history = History::default();
        history.record(t(0), "d/f", version("a", 1));
        history.record(t(2), "d/f", None);
        assert!(history.prefix_exists_at("d/", t(1)));
        assert!(!history.prefix_exists_at("d/", t(3)));
    }
}
