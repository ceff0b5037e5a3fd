//! Compares the core's replies with the reference model.
//!
//! Each check gets the window of simulated time in which the answer could have been formed
//! (from the request minus the longest cache TTL, to the reply) and accepts exactly the answers
//! some honest moment in that window allows (see [`crate::history`]). A failed check returns a
//! sentence saying what was expected and what came.

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;
use goofys_core::fuse_types::{FileKind, FuseReply, dirent_size_bytes, direntplus_size_bytes};
use goofys_core::namespace::{InvalidName, check_name};
use goofys_core::{Errno, Ino};

use crate::history::{History, Resolved, Version, Window};

pub type Check = Result<(), String>;

/// The windows in which each kind of lookup answer may have been formed: a cached file entry
/// is as old as the shorter of the stat and type TTLs, a directory entry as old as the type
/// TTL, a negative entry as old as the negative TTL.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct LookupWindows {
    pub file: Window,
    pub directory: Window,
    pub missing: Window,
}

/// What a lookup may answer: the entry's kind and size, or an errno.
pub fn check_lookup(history: &History, key: &str, name: &str, windows: &LookupWindows, reply: &FuseReply) -> Check {
    match check_name(name) {
        Err(InvalidName::TooLong) => return expect_error(reply, Errno::ENAMETOOLONG, "a name over 255 bytes"),
        Err(_) => return expect_error(reply, Errno::ENOENT, "an invalid name"),
        Ok(()) => {}
    }
    let (window, allowed) = match reply {
        FuseReply::Entry(entry) if entry.attr.kind == FileKind::Directory => {
            let outcomes = history.lookup_outcomes(key, windows.directory);
            (windows.directory, outcomes.contains(&Resolved::Directory))
        }
        FuseReply::Entry(entry) if entry.attr.kind == FileKind::File => {
            let outcomes = history.lookup_outcomes(key, windows.file);
            let size = entry.attr.size_bytes;
            (
                windows.file,
                outcomes.iter().any(|o| matches!(o, Resolved::File { size_bytes, .. } if *size_bytes == size)),
            )
        }
        FuseReply::Error(Errno::ENOENT) => {
            (windows.missing, history.lookup_outcomes(key, windows.missing).contains(&Resolved::Missing))
        }
        _ => (windows.file, false),
    };
    if allowed {
        Ok(())
    } else {
        let outcomes = history.lookup_outcomes(key, window);
        Err(format!("lookup of {key:?}: got {reply:?}, allowed in {window:?}: {outcomes:?}"))
    }
}

/// What getattr of a file inode may answer (directories have fixed attributes).
pub fn check_file_attr(history: &History, key: &str, window: Window, reply: &FuseReply) -> Check {
    let states = history.file_states(key, window);
    let allowed = match reply {
        FuseReply::Attr { attr, .. } => {
            attr.kind == FileKind::File && states.iter().flatten().any(|v| v.size_bytes() == attr.size_bytes)
        }
        FuseReply::Error(Errno::ENOENT) => states.contains(&None),
        _ => false,
    };
    if allowed { Ok(()) } else { Err(format!("getattr of {key:?}: got {reply:?}, states {}", describe(&states))) }
}

/// Opening a file: the versions it may have opened, or the error.
pub fn check_open(history: &History, key: &str, window: Window, reply: &FuseReply) -> Result<Vec<Version>, String> {
    let states = history.file_states(key, window);
    match reply {
        FuseReply::Opened { .. } => {
            let candidates: Vec<Version> = states.iter().flatten().map(|v| (*v).clone()).collect();
            if candidates.is_empty() {
                Err(format!("open of {key:?} succeeded but no version existed in the window"))
            } else {
                Ok(candidates)
            }
        }
        FuseReply::Error(Errno::ENOENT) if states.contains(&None) => Ok(Vec::new()),
        other => Err(format!("open of {key:?}: got {other:?}, states {}", describe(&states))),
    }
}

/// A read of an open handle: the bytes must be those of one version the handle may have
/// opened, the same version for every read of the handle; ESTALE only if the object changed.
pub fn check_read(
    candidates: &mut Vec<Version>,
    offset: u64,
    size: u32,
    may_be_stale: bool,
    interrupted: bool,
    reply: &FuseReply,
) -> Check {
    match reply {
        FuseReply::Data(bytes) => {
            let before = candidates.len();
            candidates.retain(|version| expected_slice(version, offset, size) == bytes.0);
            if candidates.is_empty() {
                Err(format!(
                    "read at {offset} of {size} bytes returned {} bytes matching none of {before} versions",
                    bytes.len()
                ))
            } else {
                Ok(())
            }
        }
        FuseReply::Error(Errno::ESTALE) if may_be_stale => Ok(()),
        FuseReply::Error(Errno::EINTR) if interrupted => Ok(()),
        other => Err(format!("read at {offset}: got {other:?} (object changed in window: {may_be_stale})")),
    }
}

fn expected_slice(version: &Version, offset: u64, size: u32) -> Bytes {
    let len = version.body.len() as u64;
    let start = offset.min(len);
    let end = offset.saturating_add(u64::from(size)).min(len);
    version.body.slice(start as usize..end as usize)
}

/// What one readdir reply of a handle produced: entries by offset.
#[derive(Clone, Debug, Default)]
pub struct ListingSoFar {
    pub entries: BTreeMap<u64, (String, Ino, FileKind)>,
    /// The offset at which the listing ended, once seen.
    pub end: Option<u64>,
}

/// One readdir reply: entries fit the buffer, start at the requested offset, are numbered
/// consecutively, and repeat exactly what earlier replies gave at the same offsets.
pub fn check_readdir_reply(
    so_far: &mut ListingSoFar,
    offset: u64,
    buffer_bytes: u32,
    plus: bool,
    dir_ino: Ino,
    reply: &FuseReply,
) -> Check {
    let entries: Vec<(String, Ino, FileKind, u64)> = match reply {
        FuseReply::Dir(entries) => {
            entries.iter().map(|e| (e.name.to_string_lossy().into_owned(), e.ino, e.kind, e.next_offset)).collect()
        }
        FuseReply::DirPlus(entries) => {
            for e in entries {
                if e.entry.attr.ino != e.dirent.ino || e.entry.attr.kind != e.dirent.kind {
                    return Err(format!("readdirplus entry and attributes disagree: {e:?}"));
                }
            }
            entries
                .iter()
                .map(|e| {
                    (e.dirent.name.to_string_lossy().into_owned(), e.dirent.ino, e.dirent.kind, e.dirent.next_offset)
                })
                .collect()
        }
        other => return Err(format!("readdir at {offset}: got {other:?}")),
    };
    if matches!(reply, FuseReply::DirPlus(_)) != plus {
        return Err("readdir and readdirplus replies mixed up".into());
    }
    let used: usize = entries
        .iter()
        .map(|(name, ..)| if plus { direntplus_size_bytes(name.len()) } else { dirent_size_bytes(name.len()) })
        .sum();
    if used > buffer_bytes as usize {
        return Err(format!("readdir reply of {used} bytes overflows the {buffer_bytes}-byte buffer"));
    }
    if entries.is_empty() {
        if let Some(end) = so_far.end
            && end != offset
        {
            return Err(format!("listing ended at {offset}, earlier at {end}"));
        }
        if let Some((&last, _)) = so_far.entries.last_key_value()
            && offset <= last
        {
            return Err(format!("listing ended at {offset} but had an entry at {last}"));
        }
        so_far.end = Some(offset);
        return Ok(());
    }
    for (index, (name, ino, kind, next)) in entries.into_iter().enumerate() {
        let at = offset + index as u64;
        if next != at + 1 {
            return Err(format!("entry {name:?} at offset {at} says the next is {next}"));
        }
        match at {
            0 if (name.as_str(), ino) != (".", dir_ino) => return Err(format!("first entry is {name:?}, not `.`")),
            1 if name != ".." => return Err(format!("second entry is {name:?}, not `..`")),
            _ => {}
        }
        if at >= 2 && check_name(&name).is_err() {
            return Err(format!("listing shows an invalid name {name:?}"));
        }
        let entry = (name, ino, kind);
        match so_far.entries.get(&at) {
            Some(earlier) if *earlier != entry => {
                return Err(format!("offset {at} gave {earlier:?} before and {entry:?} now"));
            }
            _ => {
                so_far.entries.insert(at, entry);
            }
        }
        if so_far.end.is_some_and(|end| at >= end) {
            return Err(format!("entry at {at} after the listing ended"));
        }
    }
    Ok(())
}

/// A complete listing: each name once, each with a kind it had in the window, and every name
/// that was there (or absent) all through the window listed (or not). `lenient` names were
/// being changed by this mount: anything goes for them but duplicates.
pub fn check_complete_listing(
    history: &History,
    dir_prefix: &str,
    window: Window,
    so_far: &ListingSoFar,
    lenient: &BTreeSet<String>,
) -> Check {
    let mut listed: BTreeMap<&str, FileKind> = BTreeMap::new();
    for (name, _, kind) in so_far.entries.range(2..).map(|(_, e)| e) {
        if listed.insert(name, *kind).is_some() {
            return Err(format!("{name:?} is listed twice in {dir_prefix:?}"));
        }
    }
    let during = history.children_during(dir_prefix, window);
    for (name, kind) in &listed {
        if lenient.contains(*name) {
            continue;
        }
        let allowed = during.get(*name).is_some_and(|kinds| kinds.contains(&Some(*kind)));
        if !allowed {
            return Err(format!(
                "{dir_prefix:?} lists {name:?} as {kind:?}; in the window it was {:?}",
                during.get(*name)
            ));
        }
    }
    for (name, kinds) in &during {
        if lenient.contains(name) {
            continue;
        }
        if kinds.len() == 1
            && let Some(Some(kind)) = kinds.first()
            && listed.get(name.as_str()) != Some(kind)
        {
            return Err(format!("{dir_prefix:?} does not list {name:?} ({kind:?}), present all through the window"));
        }
    }
    Ok(())
}

fn expect_error(reply: &FuseReply, errno: Errno, what: &str) -> Check {
    if *reply == FuseReply::Error(errno) { Ok(()) } else { Err(format!("{what}: expected {errno:?}, got {reply:?}")) }
}

fn describe(states: &[Option<&Version>]) -> String {
    let parts: BTreeSet<String> = states
        .iter()
        .map(|s| match s {
            Some(v) => format!("{} bytes ({})", v.size_bytes(), v.etag.as_str()),
            None => "missing".into(),
        })
        .collect();
    format!("{parts:?}")
}
