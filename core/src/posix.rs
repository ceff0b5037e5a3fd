//! POSIX attributes that S3 has no field for, kept in an object's user metadata.
//!
//! Problems this module solves:
//! - Mode, owner, group and times must survive in S3 while plain S3 tools still see ordinary
//!   objects: they travel as `x-amz-meta-mode`, `-uid`, `-gid`, `-mtime`, `-atime` and `-ctime`,
//!   the names and formats s3fs uses, so buckets written by s3fs read correctly and ours read
//!   correctly in s3fs. `mode` is the whole `st_mode` in decimal (file type bits included);
//!   times are seconds since the epoch, with a fraction when they have one (`1700000000.5`).
//! - A symbolic link is an object whose `mode` says `S_IFLNK`, holding its target as its body.
//! - Values another tool wrote badly are ignored (the defaults show), never a failure.
//! - Extended attributes `user.NAME` map to metadata `NAME`; the names above and the mount's
//!   own write id are reserved and never show as `user.*` attributes.

use crate::s3_types::Metadata;
use crate::time::UnixNanos;

pub const MODE_METADATA: &str = "mode";
pub const UID_METADATA: &str = "uid";
pub const GID_METADATA: &str = "gid";
pub const MTIME_METADATA: &str = "mtime";
pub const ATIME_METADATA: &str = "atime";
pub const CTIME_METADATA: &str = "ctime";

/// File type bits of `st_mode`.
pub const S_IFMT: u32 = 0o170_000;
pub const S_IFREG: u32 = 0o100_000;
pub const S_IFDIR: u32 = 0o040_000;
pub const S_IFLNK: u32 = 0o120_000;
/// Permission bits, with setuid, setgid and sticky.
pub const PERMISSION_BITS: u32 = 0o7777;

/// The POSIX attributes an object's metadata carries; `None` where it carries none (the
/// mount's defaults apply).
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct PosixAttrs {
    /// The whole `st_mode`, file type included.
    pub mode: Option<u32>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub mtime: Option<UnixNanos>,
    pub atime: Option<UnixNanos>,
    pub ctime: Option<UnixNanos>,
}

impl PosixAttrs {
    /// Reads the attributes from user metadata (names without the `x-amz-meta-` prefix).
    pub fn from_metadata(metadata: &Metadata) -> Self {
        let number = |name: &str| metadata.get(name).and_then(|value| value.trim().parse::<u32>().ok());
        let time = |name: &str| metadata.get(name).and_then(|value| parse_time(value));
        PosixAttrs {
            mode: number(MODE_METADATA).filter(|mode| valid_file_type(*mode)),
            uid: number(UID_METADATA),
            gid: number(GID_METADATA),
            mtime: time(MTIME_METADATA),
            atime: time(ATIME_METADATA),
            ctime: time(CTIME_METADATA),
        }
    }

    /// Writes the attributes that are set into `metadata`, leaving the others as they are.
    pub fn write_into(&self, metadata: &mut Metadata) {
        let mut set = |name: &str, value: Option<String>| {
            if let Some(value) = value {
                metadata.insert(name.to_owned(), value);
            }
        };
        set(MODE_METADATA, self.mode.map(|mode| mode.to_string()));
        set(UID_METADATA, self.uid.map(|uid| uid.to_string()));
        set(GID_METADATA, self.gid.map(|gid| gid.to_string()));
        set(MTIME_METADATA, self.mtime.map(format_time));
        set(ATIME_METADATA, self.atime.map(format_time));
        set(CTIME_METADATA, self.ctime.map(format_time));
    }

    /// These changes laid over `self`.
    pub fn updated_by(&self, changes: &PosixAttrs) -> PosixAttrs {
        PosixAttrs {
            mode: changes.mode.or(self.mode),
            uid: changes.uid.or(self.uid),
            gid: changes.gid.or(self.gid),
            mtime: changes.mtime.or(self.mtime),
            atime: changes.atime.or(self.atime),
            ctime: changes.ctime.or(self.ctime),
        }
    }

    pub fn is_empty(&self) -> bool {
        *self == PosixAttrs::default()
    }

    pub fn is_symlink(&self) -> bool {
        self.mode.is_some_and(|mode| mode & S_IFMT == S_IFLNK)
    }

    /// The permission bits, if the metadata sets them.
    pub fn permissions(&self) -> Option<u16> {
        self.mode.map(|mode| (mode & PERMISSION_BITS) as u16)
    }
}

/// A type S3 objects can stand for: a regular file, a directory (a marker) or a symlink; other
/// types (and no type bits at all) count as regular files, as in s3fs.
fn valid_file_type(mode: u32) -> bool {
    mode <= S_IFMT | PERMISSION_BITS
}

/// `1700000000` or `1700000000.5` (decimal seconds, up to nanoseconds; `-1.5` is before the
/// epoch).
pub fn format_time(time: UnixNanos) -> String {
    let sign = if time.0 < 0 { "-" } else { "" };
    let magnitude = time.0.unsigned_abs();
    let (secs, nanos) = (magnitude / 1_000_000_000, magnitude % 1_000_000_000);
    if nanos == 0 {
        return format!("{sign}{secs}");
    }
    let fraction = format!("{nanos:09}");
    format!("{sign}{secs}.{}", fraction.trim_end_matches('0'))
}

/// Parses [`format_time`]'s form; more than nine fraction digits are cut to nanoseconds.
pub fn parse_time(text: &str) -> Option<UnixNanos> {
    let text = text.trim();
    let (negative, unsigned) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (whole, fraction) = unsigned.split_once('.').unwrap_or((unsigned, ""));
    if whole.is_empty() || !whole.bytes().all(|b| b.is_ascii_digit()) || !fraction.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let secs: i64 = whole.parse().ok()?;
    let digits: String = fraction.chars().chain(std::iter::repeat('0')).take(9).collect();
    let nanos: i64 = digits.parse().ok()?;
    let magnitude = secs.checked_mul(1_000_000_000)?.checked_add(nanos)?;
    Some(UnixNanos(if negative { -magnitude } else { magnitude }))
}

/// Metadata names that hold this mount's own state, never shown or set as `user.*`.
pub fn is_reserved_metadata(name: &str) -> bool {
    matches!(name, MODE_METADATA | UID_METADATA | GID_METADATA | MTIME_METADATA | ATIME_METADATA | CTIME_METADATA)
        || name == crate::write::WRITE_ID_METADATA
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn s3fs_metadata_reads_into_attributes_and_writes_back_the_same() {
        let metadata = Metadata::from([
            ("mode".to_owned(), "33261".to_owned()),
            ("uid".to_owned(), "1000".to_owned()),
            ("gid".to_owned(), "100".to_owned()),
            ("mtime".to_owned(), "1700000000".to_owned()),
            ("atime".to_owned(), "1700000001.25".to_owned()),
            ("other".to_owned(), "kept".to_owned()),
        ]);
        let attrs = PosixAttrs::from_metadata(&metadata);
        assert_eq!(attrs.mode, Some(S_IFREG | 0o755));
        assert_eq!(attrs.permissions(), Some(0o755));
        assert_eq!((attrs.uid, attrs.gid), (Some(1000), Some(100)));
        assert_eq!(attrs.mtime, Some(UnixNanos::from_secs(1_700_000_000)));
        assert_eq!(attrs.atime, Some(UnixNanos(1_700_000_001_250_000_000)));
        assert_eq!(attrs.ctime, None);
        let mut written = Metadata::from([("other".to_owned(), "kept".to_owned())]);
        attrs.write_into(&mut written);
        assert_eq!(written, metadata);
    }

    #[test]
    fn values_other_tools_wrote_badly_are_ignored() {
        let metadata = Metadata::from([
            ("mode".to_owned(), "rwxr-xr-x".to_owned()),
            ("uid".to_owned(), "-1".to_owned()),
            ("mtime".to_owned(), "yesterday".to_owned()),
            ("ctime".to_owned(), "12.3e4".to_owned()),
        ]);
        assert!(PosixAttrs::from_metadata(&metadata).is_empty());
        let huge = Metadata::from([("mode".to_owned(), "4294967295".to_owned())]);
        assert_eq!(PosixAttrs::from_metadata(&huge).mode, None);
    }

    #[test]
    fn times_keep_nanoseconds_and_times_before_the_epoch() {
        for nanos in [0, 1, 1_700_000_000_123_456_789, -1, -1_500_000_000, 999_999_999] {
            let time = UnixNanos(nanos);
            assert_eq!(parse_time(&format_time(time)), Some(time), "{}", format_time(time));
        }
        assert_eq!(format_time(UnixNanos(1_500_000_000)), "1.5");
        assert_eq!(parse_time("7.1234567891"), Some(UnixNanos(7_123_456_789)));
        assert_eq!(parse_time(" 42 "), Some(UnixNanos::from_secs(42)));
        assert_eq!(parse_time("1.-5"), None);
    }

    #[test]
    fn symlinks_are_told_by_their_mode() {
        let link = PosixAttrs { mode: Some(S_IFLNK | 0o777), ..PosixAttrs::default() };
        assert!(link.is_symlink());
        assert!(!PosixAttrs { mode: Some(S_IFREG | 0o777), ..PosixAttrs::default() }.is_symlink());
        assert!(!PosixAttrs::default().is_symlink());
    }

    #[test]
    fn the_mounts_own_names_are_reserved() {
        for name in ["mode", "uid", "gid", "mtime", "atime", "ctime", "goofys-write-id"] {
            assert!(is_reserved_metadata(name), "{name}");
        }
        assert!(!is_reserved_metadata("author"));
    }
}
