//! Where logs go and how much: tracing with an env filter (`GOOFYS_LOG`), to stderr in the
//! foreground, to syslog in the background, or to `--log-file`.
//!
//! Problems this module solves:
//! - A background mount has no terminal; its warnings (a failed request after its retries,
//!   an unmount that had to be lazy) must still land somewhere a user looks: syslog, as goofys
//!   does, unless `--log-file` names a file.
//! - `--debug_fuse` and `--debug_s3` raise the relevant targets (fuser's own `log` records
//!   included); `GOOFYS_LOG` replaces the whole filter, e.g. `GOOFYS_LOG=goofys_s3=trace`.
//! - A log file can hold bucket names and keys, so it is created owner-only (0600) and
//!   tightened if it exists. Secrets never get there: every type that holds one redacts itself
//!   in `Debug`, and nothing here formats a credential.
#![allow(unsafe_code)]

use std::ffi::CString;
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use tracing::{Level, Metadata};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;

use crate::plan::LogSettings;

/// The environment variable holding a tracing filter that replaces the default one.
pub const LOG_FILTER_ENV: &str = "GOOFYS_LOG";

/// Where log lines go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogDestination {
    Stderr,
    File(PathBuf),
    Syslog,
}

impl LogDestination {
    /// `--log-file` if given, else stderr in the foreground and syslog in the background.
    pub fn choose(settings: &LogSettings, foreground: bool) -> LogDestination {
        match (&settings.log_file, foreground) {
            (Some(path), _) => LogDestination::File(path.clone()),
            (None, true) => LogDestination::Stderr,
            (None, false) => LogDestination::Syslog,
        }
    }
}

/// The default filter of a mount: warnings, and the mount's own start and end. fuser's
/// warnings are about requests it answers `ENOSYS` by design (xattrs), so only its errors show.
pub const MOUNT_LOG_DEFAULT: &[&str] = &["warn", "fuser=error", "goofys_fuse=info"];

/// The filter directives: `GOOFYS_LOG` if set, else `default` raised by the debug flags.
pub fn filter_directives(default: &[&str], settings: &LogSettings, env_value: Option<&str>) -> String {
    if let Some(value) = env_value {
        return value.to_owned();
    }
    let mut directives = default.to_vec();
    if settings.debug_fuse {
        directives.extend(["goofys_fuse=debug", "goofys_core=debug", "fuser=debug"]);
    }
    if settings.debug_s3 {
        directives.push("goofys_s3=debug");
    }
    directives.join(",")
}

/// Installs the global subscriber with `default` directives. Fails with one line on a bad
/// `GOOFYS_LOG` or an unusable log file.
pub fn init(default: &[&str], settings: &LogSettings, destination: &LogDestination) -> Result<(), String> {
    let env_value = std::env::var(LOG_FILTER_ENV).ok();
    let directives = filter_directives(default, settings, env_value.as_deref());
    let filter = EnvFilter::try_new(&directives).map_err(|error| {
        format!("{LOG_FILTER_ENV}=`{directives}` is not a valid log filter ({error}); try {LOG_FILTER_ENV}=debug")
    })?;
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_target(true);
    let installed = match destination {
        LogDestination::Stderr => builder.with_writer(io::stderr).try_init(),
        LogDestination::File(path) => builder.with_ansi(false).with_writer(Mutex::new(open_log_file(path)?)).try_init(),
        LogDestination::Syslog => {
            open_syslog();
            builder.with_ansi(false).without_time().with_writer(SyslogWriter).try_init()
        }
    };
    installed.map_err(|error| format!("cannot set up logging: {error}"))
}

/// Opens (appending) or creates the log file, owner-only.
fn open_log_file(path: &Path) -> Result<std::fs::File, String> {
    let file =
        std::fs::OpenOptions::new().create(true).append(true).mode(0o600).open(path).map_err(|error| {
            format!("cannot open the log file {}: {error}; choose another --log-file", path.display())
        })?;
    let metadata =
        file.metadata().map_err(|error| format!("cannot inspect the log file {}: {error}", path.display()))?;
    if metadata.permissions().mode() & 0o077 != 0 {
        file.set_permissions(std::fs::Permissions::from_mode(0o600)).map_err(|error| {
            format!("the log file {} is readable by others and cannot be made owner-only: {error}", path.display())
        })?;
    }
    Ok(file)
}

fn open_syslog() {
    // SAFETY: the identity string is 'static, as openlog requires (it keeps the pointer).
    unsafe { libc::openlog(c"goofys-rs".as_ptr(), libc::LOG_PID, libc::LOG_DAEMON) };
}

/// Makes one [`SyslogLine`] per event.
#[derive(Debug, Clone, Copy)]
struct SyslogWriter;

impl<'a> MakeWriter<'a> for SyslogWriter {
    type Writer = SyslogLine;

    fn make_writer(&'a self) -> SyslogLine {
        SyslogLine { priority: libc::LOG_INFO, line: Vec::new() }
    }

    fn make_writer_for(&'a self, meta: &Metadata<'_>) -> SyslogLine {
        let priority = match *meta.level() {
            Level::ERROR => libc::LOG_ERR,
            Level::WARN => libc::LOG_WARNING,
            Level::INFO => libc::LOG_INFO,
            Level::DEBUG | Level::TRACE => libc::LOG_DEBUG,
        };
        SyslogLine { priority, line: Vec::new() }
    }
}

/// One event's text, sent to syslog when dropped.
struct SyslogLine {
    priority: libc::c_int,
    line: Vec<u8>,
}

impl Write for SyslogLine {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.line.extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for SyslogLine {
    fn drop(&mut self) {
        let text: Vec<u8> = self.line.trim_ascii_end().iter().copied().filter(|&b| b != 0).collect();
        if text.is_empty() {
            return;
        }
        let Ok(message) = CString::new(text) else { return };
        // SAFETY: both pointers are valid NUL-terminated strings for the call, and the format
        // string takes exactly the one string argument given.
        unsafe { libc::syslog(self.priority, c"%s".as_ptr(), message.as_ptr()) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_flags_raise_their_targets_and_goofys_log_replaces_the_filter() {
        let quiet = LogSettings::default();
        assert_eq!(filter_directives(MOUNT_LOG_DEFAULT, &quiet, None), "warn,fuser=error,goofys_fuse=info");
        let fuse = LogSettings { debug_fuse: true, ..LogSettings::default() };
        // Later directives for the same target win.
        assert!(filter_directives(MOUNT_LOG_DEFAULT, &fuse, None).ends_with("fuser=debug"));
        let s3 = LogSettings { debug_s3: true, ..LogSettings::default() };
        assert!(filter_directives(MOUNT_LOG_DEFAULT, &s3, None).ends_with("goofys_s3=debug"));
        assert_eq!(filter_directives(MOUNT_LOG_DEFAULT, &s3, Some("trace")), "trace");
    }

    #[test]
    fn the_destination_is_the_log_file_else_stderr_in_the_foreground_else_syslog() {
        let file = LogSettings { log_file: Some("/var/log/g.log".into()), ..LogSettings::default() };
        assert_eq!(LogDestination::choose(&file, false), LogDestination::File("/var/log/g.log".into()));
        assert_eq!(LogDestination::choose(&LogSettings::default(), true), LogDestination::Stderr);
        assert_eq!(LogDestination::choose(&LogSettings::default(), false), LogDestination::Syslog);
    }

    #[test]
    fn log_files_are_owner_only_even_if_they_existed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("goofys.log");
        std::fs::write(&path, b"old\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        drop(open_log_file(&path).unwrap());
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        let fresh = dir.path().join("fresh.log");
        drop(open_log_file(&fresh).unwrap());
        assert_eq!(std::fs::metadata(&fresh).unwrap().permissions().mode() & 0o777, 0o600);
    }
}
