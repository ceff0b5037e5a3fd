//! The processes' changes of their own names: writes (create, truncate, overwrite, append,
//! read-back, fsync, close), truncate(2), chmod(2), unlink, rename, mkdir, rmdir and directory
//! rename.
//!
//! Each process changes only names of its own (`w{process}.{slot}` files and
//! `W{process}.{slot}` directories), so what it should see is known: a write syscall tracks the
//! contents the file can have (one per version of the base it may have opened) and narrows them
//! as it reads back. The reference is S3 itself: a successful `fsync` or `close` means the
//! bucket held one of those contents at some moment between the request and its reply. The
//! other client may change the same names; only then may a commit fail with ESTALE or EEXIST.
//! While a change runs, other processes' checks of its names are relaxed: they may see this
//! mount's view, which S3 does not have yet.

use std::collections::BTreeMap;
use std::ffi::OsString;

use bytes::Bytes;
use goofys_core::Errno;
use goofys_core::fuse_types::{FileKind, FuseOp, FuseReply, OpenFlags, SetAttrChanges};
use goofys_core::s3_types::Body;
use goofys_core::{FileHandle, Ino, Instant};

use super::{Checked, Known, LocalActivity, Outstanding, Sim, Step, content};
use crate::history::{Resolved, Window};
use crate::scenario::{OwnChange, Syscall, WriteMode, own_dir_name, own_file_name};

/// Where a change of own names stands.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum OwnStep {
    LookupDir,
    LookupFile,
    Open,
    Create,
    Write,
    ReadBack { offset: u64, size: u32 },
    Fsync,
    Flush,
    Release,
    Truncate { size_bytes: u64 },
    Chmod { mode: u16 },
    Done,
}

/// What a change of own names has done so far.
#[derive(Clone, Debug)]
pub(crate) struct OwnState {
    parent: Ino,
    parent_prefix: String,
    parent_path: Vec<String>,
    /// The contents the file can have now (one per base version it may have opened); `None`
    /// when the base cannot be known (it vanished around the open).
    candidates: Option<Vec<Vec<u8>>>,
    ino: Option<Ino>,
    fh: Option<FileHandle>,
    next_write: usize,
    began_at: Instant,
    /// Since when S3 may hold the file's content (an fsync that succeeded).
    committed_from: Option<Instant>,
    read_back_done: bool,
    fsync_done: bool,
    /// Contents under a directory being renamed, by path below it, when the rename began.
    snapshot: BTreeMap<String, Bytes>,
    /// This change's entries in the simulation's local activity.
    activity: Vec<usize>,
}

impl Sim<'_> {
    fn own_change(&self, process: usize) -> OwnChange {
        let running = self.processes[process].running.as_ref().expect("running");
        match &running.action.syscall {
            Syscall::Own { change, .. } => change.clone(),
            _ => unreachable!("an own change"),
        }
    }

    fn own(&mut self, process: usize) -> &mut OwnState {
        self.processes[process].running.as_mut().and_then(|r| r.own.as_mut()).expect("own state")
    }

    fn set_own_step(&mut self, process: usize, step: OwnStep) {
        self.processes[process].running.as_mut().expect("running").step = Step::Own(step);
    }

    /// Marks `key` (a file key, or a directory prefix ending in `/`) as being changed by this
    /// process's change; `replaces`: the change unlinks, renames or replaces the name.
    fn begin_activity(&mut self, process: usize, key: String, replaces: bool) {
        self.local_activity.push(LocalActivity { key, from: self.now, to: None, replaces });
        let index = self.local_activity.len() - 1;
        self.own(process).activity.push(index);
    }

    fn end_activity(&mut self, process: usize) {
        let Some(own) = self.processes[process].running.as_ref().and_then(|r| r.own.as_ref()) else { return };
        let now = self.now;
        for &index in &own.activity {
            self.local_activity[index].to = Some(now);
        }
    }

    pub(super) fn externally_changed(&self, key: &str, window: Window) -> bool {
        self.external_changes.get(key).is_some_and(|times| times.iter().any(|&at| at >= window.from && at <= window.to))
    }

    /// The directory `dir_ino` (at `action.path`) is resolved: start the change.
    pub(super) fn start_own(&mut self, process: usize, dir_ino: Ino) -> Checked {
        let path = self.processes[process].running.as_ref().expect("running").action.path.clone();
        if self.kind_of(dir_ino) == FileKind::File {
            // The chosen path is a file: nothing to create in it.
            self.finish_syscall(process);
            return Ok(());
        }
        let own = OwnState {
            parent: dir_ino,
            parent_prefix: self.prefix_of(&path),
            parent_path: path,
            candidates: None,
            ino: None,
            fh: None,
            next_write: 0,
            began_at: self.now,
            committed_from: None,
            read_back_done: false,
            fsync_done: false,
            snapshot: BTreeMap::new(),
            activity: Vec::new(),
        };
        self.processes[process].running.as_mut().expect("running").own = Some(own);
        if let OwnChange::Write { in_dir: Some(dir), .. } = self.own_change(process) {
            self.set_own_step(process, OwnStep::LookupDir);
            let name = OsString::from(own_dir_name(process, dir));
            return self.send(process, FuseOp::Lookup { parent: dir_ino, name });
        }
        self.begin_own_op(process)
    }

    /// The directory of the change is known: send its first request.
    fn begin_own_op(&mut self, process: usize) -> Checked {
        let change = self.own_change(process);
        let (parent, prefix) = {
            let own = self.own(process);
            (own.parent, own.parent_prefix.clone())
        };
        match change {
            OwnChange::Write { slot, .. } | OwnChange::Truncate { slot, .. } | OwnChange::Chmod { slot, .. } => {
                let name = own_file_name(process, slot);
                self.begin_activity(process, format!("{prefix}{name}"), false);
                self.set_own_step(process, OwnStep::LookupFile);
                self.send(process, FuseOp::Lookup { parent, name: name.into() })
            }
            OwnChange::Unlink { slot } => {
                let name = own_file_name(process, slot);
                self.begin_activity(process, format!("{prefix}{name}"), true);
                self.set_own_step(process, OwnStep::Done);
                self.send(process, FuseOp::Unlink { parent, name: name.into() })
            }
            OwnChange::Rename { slot, to_slot, noreplace } => {
                let (name, new_name) = (own_file_name(process, slot), own_file_name(process, to_slot));
                // The file moves with its handles; whatever had the new name is replaced.
                self.begin_activity(process, format!("{prefix}{name}"), false);
                self.begin_activity(process, format!("{prefix}{new_name}"), true);
                self.set_own_step(process, OwnStep::Done);
                let flags = if noreplace { 1 } else { 0 };
                self.send(
                    process,
                    FuseOp::Rename { parent, name: name.into(), new_parent: parent, new_name: new_name.into(), flags },
                )
            }
            OwnChange::Mkdir { slot } => {
                let name = own_dir_name(process, slot);
                self.begin_activity(process, format!("{prefix}{name}/"), true);
                self.set_own_step(process, OwnStep::Done);
                self.send(process, FuseOp::Mkdir { parent, name: name.into(), mode: 0o755, uid: 0, gid: 0 })
            }
            OwnChange::Rmdir { slot } => {
                let name = own_dir_name(process, slot);
                self.begin_activity(process, format!("{prefix}{name}/"), true);
                self.set_own_step(process, OwnStep::Done);
                self.send(process, FuseOp::Rmdir { parent, name: name.into() })
            }
            OwnChange::RenameDir { slot, to_slot } => {
                let (name, new_name) = (own_dir_name(process, slot), own_dir_name(process, to_slot));
                let old_prefix = format!("{prefix}{name}/");
                let snapshot: BTreeMap<String, Bytes> = self
                    .history
                    .objects_at(self.now)
                    .into_iter()
                    .filter_map(|(key, version)| {
                        Some((key.strip_prefix(old_prefix.as_str())?.to_owned(), version.body.clone()))
                    })
                    .filter(|(rest, _)| !rest.is_empty())
                    .collect();
                self.own(process).snapshot = snapshot;
                self.begin_activity(process, old_prefix, true);
                self.begin_activity(process, format!("{prefix}{new_name}/"), true);
                self.set_own_step(process, OwnStep::Done);
                self.send(
                    process,
                    FuseOp::Rename {
                        parent,
                        name: name.into(),
                        new_parent: parent,
                        new_name: new_name.into(),
                        flags: 0,
                    },
                )
            }
        }
    }

    fn finish_own(&mut self, process: usize) -> Checked {
        self.end_activity(process);
        self.finish_syscall(process);
        Ok(())
    }

    /// Records an inode the kernel now holds for `path`, as a lookup does.
    fn hold_entry(&mut self, process: usize, path: Vec<String>, ino: Ino, kind: FileKind) -> Checked {
        let known = self.known.entry(ino).or_insert(Known { path: path.clone(), kind, nlookup: 0, pinned: 0 });
        if known.path != path || known.kind != kind {
            return Err(format!(
                "inode {ino:?} was {:?} ({:?}) and is now {path:?} ({kind:?})",
                known.path, known.kind
            ));
        }
        known.nlookup += 1;
        known.pinned += 1;
        self.processes[process].running.as_mut().expect("running").resolved.push(ino);
        Ok(())
    }

    /// A reply to a request of a change of own names.
    pub(super) fn own_reply(
        &mut self,
        process: usize,
        step: OwnStep,
        outstanding: Outstanding,
        reply: FuseReply,
    ) -> Checked {
        let change = self.own_change(process);
        let describe = |error: String| format!("{} ({change:?}): {error}", outstanding.op.name());
        self.own_reply_inner(process, step, &outstanding, reply, &change).map_err(describe)
    }

    fn own_reply_inner(
        &mut self,
        process: usize,
        step: OwnStep,
        outstanding: &Outstanding,
        reply: FuseReply,
        change: &OwnChange,
    ) -> Checked {
        let issued = outstanding.issued_at;
        let (parent_prefix, parent_path, began_at) = {
            let own = self.own(process);
            (own.parent_prefix.clone(), own.parent_path.clone(), own.began_at)
        };
        let conflict_window = Window {
            from: Instant::from_nanos(began_at.as_nanos().saturating_sub(self.staleness.longest.as_nanos() as u64)),
            to: self.now,
        };
        if outstanding.interrupted && reply == FuseReply::Error(Errno::EINTR) {
            // A signal ended the system call; an open file is still closed.
            return match step {
                OwnStep::Write | OwnStep::ReadBack { .. } | OwnStep::Fsync => {
                    self.own(process).candidates = None;
                    self.own_close(process)
                }
                OwnStep::Flush => self.own_release(process),
                _ => self.finish_own(process),
            };
        }
        match step {
            OwnStep::LookupDir => match reply {
                FuseReply::Entry(entry) if entry.attr.kind == FileKind::Directory => {
                    let OwnChange::Write { in_dir: Some(dir), .. } = change else { unreachable!() };
                    let mut path = parent_path;
                    path.push(own_dir_name(process, *dir));
                    self.hold_entry(process, path.clone(), entry.attr.ino, FileKind::Directory)?;
                    let own = self.own(process);
                    own.parent = entry.attr.ino;
                    own.parent_prefix = format!("{parent_prefix}{}/", own_dir_name(process, *dir));
                    own.parent_path = path;
                    self.begin_own_op(process)
                }
                FuseReply::Entry(_) | FuseReply::Error(Errno::ENOENT) => self.finish_own(process),
                other => Err(format!("lookup of an own directory gave {other:?}")),
            },
            OwnStep::LookupFile => {
                let (name, mode) = match change {
                    OwnChange::Write { slot, mode, .. } => (own_file_name(process, *slot), Some(*mode)),
                    OwnChange::Truncate { slot, .. } | OwnChange::Chmod { slot, .. } => {
                        (own_file_name(process, *slot), None)
                    }
                    _ => unreachable!(),
                };
                let key = format!("{parent_prefix}{name}");
                let mut path = parent_path;
                path.push(name.clone());
                match reply {
                    FuseReply::Entry(entry) if entry.attr.kind == FileKind::File => {
                        self.hold_entry(process, path, entry.attr.ino, FileKind::File)?;
                        let ino = entry.attr.ino;
                        self.own(process).ino = Some(ino);
                        match (change, mode) {
                            (OwnChange::Truncate { size_per_million, .. }, _) => {
                                let window = self.window(issued, self.staleness.lookup_file.max(self.staleness.stat));
                                let versions = self.versions(&key, window);
                                let current = versions.first().map_or(entry.attr.size_bytes, |v| v.len() as u64);
                                let size_bytes = current * u64::from(*size_per_million) / 1_000_000;
                                self.own(process).candidates = (!versions.is_empty()).then_some(versions);
                                self.set_own_step(process, OwnStep::Truncate { size_bytes });
                                let changes = SetAttrChanges { size_bytes: Some(size_bytes), ..Default::default() };
                                self.send(process, FuseOp::SetAttr { ino, fh: None, changes })
                            }
                            (OwnChange::Chmod { mode, .. }, _) => {
                                let window = self.window(issued, self.staleness.lookup_file.max(self.staleness.stat));
                                let versions = self.versions(&key, window);
                                self.own(process).candidates = (!versions.is_empty()).then_some(versions);
                                self.set_own_step(process, OwnStep::Chmod { mode: *mode });
                                let changes = SetAttrChanges { mode: Some(u32::from(*mode)), ..Default::default() };
                                self.send(process, FuseOp::SetAttr { ino, fh: None, changes })
                            }
                            (_, Some(mode)) => {
                                let flags = OpenFlags::O_RDWR
                                    | match mode {
                                        WriteMode::Create | WriteMode::Truncate => OpenFlags::O_TRUNC,
                                        WriteMode::Append => OpenFlags::O_APPEND,
                                        WriteMode::Modify => 0,
                                    };
                                self.set_own_step(process, OwnStep::Open);
                                self.send(process, FuseOp::Open { ino, flags: OpenFlags(flags) })
                            }
                            _ => unreachable!(),
                        }
                    }
                    FuseReply::Error(Errno::ENOENT) if mode.is_some() => {
                        let parent = self.own(process).parent;
                        self.set_own_step(process, OwnStep::Create);
                        let append = if mode == Some(WriteMode::Append) { OpenFlags::O_APPEND } else { 0 };
                        let flags = OpenFlags(OpenFlags::O_RDWR | OpenFlags::O_CREAT | append);
                        self.send(
                            process,
                            FuseOp::Create { parent, name: name.into(), mode: 0o644, uid: 0, gid: 0, flags },
                        )
                    }
                    FuseReply::Entry(_) | FuseReply::Error(Errno::ENOENT | Errno::ENOTDIR) => self.finish_own(process),
                    other => Err(format!("lookup of an own file gave {other:?}")),
                }
            }
            OwnStep::Open => match reply {
                FuseReply::Opened { fh, .. } => {
                    let OwnChange::Write { slot, mode, .. } = change else { unreachable!() };
                    let key = format!("{parent_prefix}{}", own_file_name(process, *slot));
                    let candidates = match mode {
                        WriteMode::Create | WriteMode::Truncate => Some(vec![Vec::new()]),
                        WriteMode::Modify | WriteMode::Append => {
                            let window = self.window(issued, self.staleness.lookup_file.max(self.staleness.stat));
                            let versions = self.versions(&key, window);
                            (!versions.is_empty()).then_some(versions)
                        }
                    };
                    let own = self.own(process);
                    own.fh = Some(fh);
                    own.candidates = candidates;
                    self.next_own_write(process)
                }
                FuseReply::Error(Errno::ENOENT) => self.finish_own(process),
                other => Err(format!("open gave {other:?}")),
            },
            OwnStep::Create => match reply {
                FuseReply::Created { entry, fh, .. } => {
                    let OwnChange::Write { slot, .. } = change else { unreachable!() };
                    let mut path = parent_path;
                    path.push(own_file_name(process, *slot));
                    self.hold_entry(process, path, entry.attr.ino, FileKind::File)?;
                    let own = self.own(process);
                    own.ino = Some(entry.attr.ino);
                    own.fh = Some(fh);
                    own.candidates = Some(vec![Vec::new()]);
                    self.next_own_write(process)
                }
                other => Err(format!("create gave {other:?}")),
            },
            OwnStep::Write => {
                let OwnChange::Write { slot, mode, writes, .. } = change else { unreachable!() };
                let key = format!("{parent_prefix}{}", own_file_name(process, *slot));
                let index = self.own(process).next_write - 1;
                let chunk = writes[index];
                match reply {
                    FuseReply::Written { size } if size == chunk.len_bytes => {
                        let data = content(chunk.len_bytes, chunk.seed);
                        let offset = match outstanding.op {
                            FuseOp::Write { offset, .. } => offset,
                            _ => unreachable!(),
                        };
                        if let Some(candidates) = &mut self.own(process).candidates {
                            for candidate in candidates {
                                let at = if *mode == WriteMode::Append { candidate.len() } else { offset as usize };
                                if candidate.len() < at + data.len() {
                                    candidate.resize(at + data.len(), 0);
                                }
                                candidate[at..at + data.len()].copy_from_slice(&data);
                            }
                        }
                        self.next_own_write(process)
                    }
                    FuseReply::Error(Errno::EIO | Errno::ESTALE) if self.externally_changed(&key, conflict_window) => {
                        // The other client's change broke an upload under way; close reports it.
                        self.own(process).candidates = None;
                        self.own_close(process)
                    }
                    other => Err(format!("write of {} bytes gave {other:?}", chunk.len_bytes)),
                }
            }
            OwnStep::ReadBack { offset, size } => {
                let OwnChange::Write { slot, .. } = change else { unreachable!() };
                let key = format!("{parent_prefix}{}", own_file_name(process, *slot));
                match reply {
                    FuseReply::Data(data) => {
                        let own = self.own(process);
                        if let Some(candidates) = &mut own.candidates {
                            let before = candidates.len();
                            candidates.retain(|candidate| {
                                let start = (offset as usize).min(candidate.len());
                                let end = (offset as usize + size as usize).min(candidate.len());
                                candidate[start..end] == data[..]
                            });
                            if candidates.is_empty() {
                                return Err(format!(
                                    "reading back {size} bytes at {offset} gave {} bytes matching none of {before} contents",
                                    data.len()
                                ));
                            }
                        }
                        self.next_own_write(process)
                    }
                    FuseReply::Error(Errno::ESTALE | Errno::EIO) if self.externally_changed(&key, conflict_window) => {
                        self.own(process).candidates = None;
                        self.next_own_write(process)
                    }
                    other => Err(format!("read-back gave {other:?}")),
                }
            }
            OwnStep::Fsync | OwnStep::Flush => {
                let OwnChange::Write { slot, .. } = change else { unreachable!() };
                let key = format!("{parent_prefix}{}", own_file_name(process, *slot));
                match reply {
                    FuseReply::Empty => {
                        let from = self.own(process).committed_from.unwrap_or(issued);
                        self.check_committed(process, &key, Window { from, to: self.now })?;
                        if step == OwnStep::Fsync {
                            self.own(process).committed_from = Some(issued);
                            return self.next_own_write(process);
                        }
                        self.own_release(process)
                    }
                    FuseReply::Error(Errno::ESTALE | Errno::EEXIST | Errno::EIO)
                        if self.externally_changed(&key, conflict_window) =>
                    {
                        self.own(process).candidates = None;
                        if step == OwnStep::Fsync {
                            return self.next_own_write(process);
                        }
                        self.own_release(process)
                    }
                    other => Err(format!("{} gave {other:?}", if step == OwnStep::Fsync { "fsync" } else { "close" })),
                }
            }
            OwnStep::Release => match reply {
                FuseReply::Empty => self.finish_own(process),
                other => Err(format!("release gave {other:?}")),
            },
            OwnStep::Truncate { size_bytes } => {
                let OwnChange::Truncate { slot, .. } = change else { unreachable!() };
                let key = format!("{parent_prefix}{}", own_file_name(process, *slot));
                match reply {
                    FuseReply::Attr { attr, .. } if attr.size_bytes == size_bytes => {
                        if let Some(candidates) = &mut self.own(process).candidates {
                            for candidate in candidates.iter_mut() {
                                candidate.resize(size_bytes as usize, 0);
                            }
                        }
                        self.check_committed(process, &key, Window { from: issued, to: self.now })?;
                        self.finish_own(process)
                    }
                    FuseReply::Error(Errno::ESTALE | Errno::ENOENT)
                        if self.externally_changed(&key, conflict_window) =>
                    {
                        self.finish_own(process)
                    }
                    other => Err(format!("truncate to {size_bytes} gave {other:?}")),
                }
            }
            OwnStep::Chmod { mode } => {
                let OwnChange::Chmod { slot, .. } = change else { unreachable!() };
                let key = format!("{parent_prefix}{}", own_file_name(process, *slot));
                match reply {
                    FuseReply::Attr { attr, .. } if attr.perm == mode => {
                        // S3 held the file's bytes with the new mode at some moment meanwhile.
                        let stored_mode = (0o100_000 | u32::from(mode)).to_string();
                        let candidates = self.own(process).candidates.clone();
                        let held =
                            self.history.file_states(&key, Window { from: issued, to: self.now }).iter().flatten().any(
                                |version| {
                                    version.metadata.get("mode") == Some(&stored_mode)
                                        && candidates
                                            .as_ref()
                                            .is_none_or(|c| c.iter().any(|body| version.body[..] == body[..]))
                                },
                            );
                        if !held {
                            return Err(format!("chmod {mode:o} of {key:?} succeeded but S3 never held it"));
                        }
                        self.finish_own(process)
                    }
                    FuseReply::Error(Errno::ESTALE | Errno::ENOENT)
                        if self.externally_changed(&key, conflict_window) =>
                    {
                        self.finish_own(process)
                    }
                    other => Err(format!("chmod {mode:o} gave {other:?}")),
                }
            }
            OwnStep::Done => self.own_simple_reply(process, outstanding, reply, change, &parent_prefix, &parent_path),
        }
    }

    /// The versions of `key` in `window`, as contents.
    fn versions(&self, key: &str, window: Window) -> Vec<Vec<u8>> {
        self.history.file_states(key, window).into_iter().flatten().map(|v| v.body.to_vec()).collect()
    }

    /// S3 held one of the file's possible contents at some moment in `window`.
    fn check_committed(&mut self, process: usize, key: &str, window: Window) -> Checked {
        let Some(candidates) = self.own(process).candidates.clone() else { return Ok(()) };
        let states = self.history.file_states(key, window);
        let held = states.iter().flatten().any(|version| candidates.iter().any(|c| version.body[..] == c[..]));
        if held {
            Ok(())
        } else {
            Err(format!(
                "S3 never held what was written to {key:?} between {:?} and {:?} ({} possible contents of sizes {:?}; S3 had sizes {:?})",
                window.from,
                window.to,
                candidates.len(),
                candidates.iter().map(Vec::len).collect::<Vec<_>>(),
                states.iter().map(|s| s.map(|v| v.body.len())).collect::<Vec<_>>()
            ))
        }
    }

    /// Sends the next write, read-back, fsync, or the close.
    fn next_own_write(&mut self, process: usize) -> Checked {
        let OwnChange::Write { writes, read_back, fsync, .. } = self.own_change(process) else { unreachable!() };
        let own = self.own(process);
        let (ino, fh) = (own.ino.expect("opened"), own.fh.expect("opened"));
        let current_size = own.candidates.as_ref().and_then(|c| c.first()).map_or(0, |c| c.len() as u64);
        if own.next_write < writes.len() {
            let chunk = writes[own.next_write];
            own.next_write += 1;
            let offset = current_size * u64::from(chunk.offset_per_million) / 1_000_000;
            let data = Body(content(chunk.len_bytes, chunk.seed));
            self.set_own_step(process, OwnStep::Write);
            return self.send(process, FuseOp::Write { ino, fh, offset, data });
        }
        if read_back && !own.read_back_done {
            own.read_back_done = true;
            let offset = current_size / 3;
            let size = (current_size - offset).clamp(1, 300_000) as u32;
            self.set_own_step(process, OwnStep::ReadBack { offset, size });
            return self.send(process, FuseOp::Read { ino, fh, offset, size });
        }
        if fsync && !own.fsync_done {
            own.fsync_done = true;
            self.set_own_step(process, OwnStep::Fsync);
            return self.send(process, FuseOp::Fsync { ino, fh, datasync: false });
        }
        self.own_close(process)
    }

    fn own_close(&mut self, process: usize) -> Checked {
        let own = self.own(process);
        let (ino, fh) = (own.ino.expect("opened"), own.fh.expect("opened"));
        self.set_own_step(process, OwnStep::Flush);
        self.send(process, FuseOp::Flush { ino, fh })
    }

    fn own_release(&mut self, process: usize) -> Checked {
        let own = self.own(process);
        let (ino, fh) = (own.ino.expect("opened"), own.fh.expect("opened"));
        self.set_own_step(process, OwnStep::Release);
        self.send(process, FuseOp::Release { ino, fh })
    }

    /// Unlink, rename, mkdir, rmdir and directory rename: one request, checked against S3.
    fn own_simple_reply(
        &mut self,
        process: usize,
        outstanding: &Outstanding,
        reply: FuseReply,
        change: &OwnChange,
        prefix: &str,
        parent_path: &[String],
    ) -> Checked {
        let issued = outstanding.issued_at;
        let during = Window { from: issued, to: self.now };
        let looked_back = Window {
            from: Instant::from_nanos(issued.as_nanos().saturating_sub(self.staleness.longest.as_nanos() as u64)),
            to: self.now,
        };
        let missing_sometime =
            |sim: &Self, key: &str, window: Window| sim.history.file_states(key, window).contains(&None);
        let dir_missing_sometime = |sim: &Self, dir: &str, window: Window| {
            !sim.history.lookup_outcomes(dir.trim_end_matches('/'), window).contains(&Resolved::Directory)
                || sim.history.lookup_outcomes(dir.trim_end_matches('/'), window).len() > 1
        };
        match change {
            OwnChange::Unlink { slot } => {
                let key = format!("{prefix}{}", own_file_name(process, *slot));
                match reply {
                    FuseReply::Empty if missing_sometime(self, &key, during) => {}
                    FuseReply::Empty => return Err(format!("unlink of {key:?} succeeded but S3 still has it")),
                    FuseReply::Error(Errno::ENOENT) if missing_sometime(self, &key, looked_back) => {}
                    other => return Err(format!("unlink of {key:?} gave {other:?}")),
                }
            }
            OwnChange::Rename { slot, to_slot, noreplace } => {
                let source = format!("{prefix}{}", own_file_name(process, *slot));
                let target = format!("{prefix}{}", own_file_name(process, *to_slot));
                match reply {
                    FuseReply::Empty if slot == to_slot => {}
                    FuseReply::Empty => {
                        let sources = self.versions(&source, looked_back);
                        let targets = self.versions(&target, during);
                        if !missing_sometime(self, &source, during) || !targets.iter().any(|t| sources.contains(t)) {
                            return Err(format!("rename of {source:?} to {target:?} did not move its bytes"));
                        }
                        self.move_known(parent_path, &own_file_name(process, *slot), &own_file_name(process, *to_slot));
                    }
                    FuseReply::Error(Errno::ENOENT) if missing_sometime(self, &source, looked_back) => {}
                    FuseReply::Error(Errno::EEXIST) if *noreplace && !missing_sometime(self, &target, during) => {}
                    FuseReply::Error(Errno::EEXIST)
                        if *noreplace && self.history.file_states(&target, looked_back).iter().any(Option::is_some) => {
                    }
                    FuseReply::Error(Errno::ESTALE) if self.externally_changed(&source, looked_back) => {}
                    other => return Err(format!("rename of {source:?} to {target:?} gave {other:?}")),
                }
            }
            OwnChange::Mkdir { slot } => {
                let dir = format!("{prefix}{}/", own_dir_name(process, *slot));
                match reply {
                    FuseReply::Entry(entry) if entry.attr.kind == FileKind::Directory => {
                        if self.history.file_states(&dir, during).iter().all(Option::is_none) {
                            return Err(format!("mkdir succeeded but {dir:?} has no marker"));
                        }
                        let mut path = parent_path.to_vec();
                        path.push(own_dir_name(process, *slot));
                        let known = self.known.entry(entry.attr.ino).or_insert(Known {
                            path: path.clone(),
                            kind: FileKind::Directory,
                            nlookup: 0,
                            pinned: 0,
                        });
                        if known.path != path {
                            return Err(format!("mkdir gave inode {:?} of {:?}", entry.attr.ino, known.path));
                        }
                        known.nlookup += 1;
                    }
                    FuseReply::Error(Errno::EEXIST)
                        if self
                            .history
                            .lookup_outcomes(dir.trim_end_matches('/'), looked_back)
                            .contains(&Resolved::Directory) => {}
                    other => return Err(format!("mkdir of {dir:?} gave {other:?}")),
                }
            }
            OwnChange::Rmdir { slot } => {
                let dir = format!("{prefix}{}/", own_dir_name(process, *slot));
                match reply {
                    FuseReply::Empty if !self.history.prefix_exists_at(&dir, self.now) => {}
                    FuseReply::Empty => return Err(format!("rmdir of {dir:?} succeeded but keys remain under it")),
                    FuseReply::Error(Errno::ENOTEMPTY) => {
                        let others = self
                            .history
                            .objects_at(issued)
                            .keys()
                            .any(|key| key.starts_with(dir.as_str()) && *key != dir);
                        if !others {
                            return Err(format!("rmdir of {dir:?} said ENOTEMPTY of an empty directory"));
                        }
                    }
                    FuseReply::Error(Errno::ENOENT) if dir_missing_sometime(self, &dir, looked_back) => {}
                    other => return Err(format!("rmdir of {dir:?} gave {other:?}")),
                }
            }
            OwnChange::RenameDir { slot, to_slot } => {
                let old = format!("{prefix}{}/", own_dir_name(process, *slot));
                let new = format!("{prefix}{}/", own_dir_name(process, *to_slot));
                match reply {
                    FuseReply::Empty if slot == to_slot => {}
                    FuseReply::Empty => {
                        let moved: BTreeMap<String, Bytes> = self
                            .history
                            .objects_at(self.now)
                            .into_iter()
                            .filter_map(|(key, v)| Some((key.strip_prefix(new.as_str())?.to_owned(), v.body.clone())))
                            .filter(|(rest, _)| !rest.is_empty())
                            .collect();
                        let expected = self.own(process).snapshot.clone();
                        if moved != expected || self.history.prefix_exists_at(&old, self.now) {
                            return Err(format!(
                                "renaming {old:?} to {new:?} moved {:?}, expected {:?}",
                                moved.keys().collect::<Vec<_>>(),
                                expected.keys().collect::<Vec<_>>()
                            ));
                        }
                        self.move_known(parent_path, &own_dir_name(process, *slot), &own_dir_name(process, *to_slot));
                    }
                    FuseReply::Error(Errno::ENOENT) if dir_missing_sometime(self, &old, looked_back) => {}
                    FuseReply::Error(Errno::ENOTEMPTY) => {
                        let others = self
                            .history
                            .objects_at(issued)
                            .keys()
                            .any(|key| key.starts_with(new.as_str()) && *key != new);
                        if !others {
                            return Err(format!("renaming onto {new:?} said ENOTEMPTY of an empty directory"));
                        }
                    }
                    other => return Err(format!("renaming {old:?} to {new:?} gave {other:?}")),
                }
            }
            OwnChange::Write { .. } | OwnChange::Truncate { .. } | OwnChange::Chmod { .. } => {
                unreachable!("not a simple change")
            }
        }
        self.finish_own(process)
    }

    /// Inodes the kernel holds under `parent_path/old` now live under `parent_path/new`.
    fn move_known(&mut self, parent_path: &[String], old: &str, new: &str) {
        let depth = parent_path.len();
        for known in self.known.values_mut() {
            if known.path.len() > depth && known.path[..depth] == *parent_path && known.path[depth] == old {
                known.path[depth] = new.to_owned();
            }
        }
    }
}
