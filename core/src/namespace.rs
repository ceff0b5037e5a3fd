//! How S3 keys become a directory tree. Every naming rule of goofys-rs lives here, and the
//! simulator's reference model calls the same functions, so the rules are written once.
//!
//! Problems this module solves:
//! - S3 has no directories, only keys. A directory is any prefix that ends in `/` and that some
//!   key starts with (an *implicit* directory), or a `dir/` marker object.
//! - A key may be both a file and a directory prefix (`a` and `a/b`). The directory wins and the
//!   file is hidden, as in mountpoint-s3.
//! - Keys can hold components that are not file names: empty (from `//`), `.`, `..`, longer
//!   than 255 bytes, or containing NUL. Those keys are hidden, never a crash and never a path
//!   that escapes the mount.
//! - A `bucket:prefix` mount sees only keys under `prefix/`.

use std::fmt;

/// The longest file name, in bytes, the mount shows (Linux `NAME_MAX`).
pub const NAME_MAX_BYTES: usize = 255;

/// The longest object key, in bytes, S3 accepts: a path whose key would be longer cannot be
/// created (`ENAMETOOLONG`) and cannot exist (`ENOENT`, without asking S3).
pub const KEY_MAX_BYTES: usize = 1024;

/// Why a key component cannot be a file name.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum InvalidName {
    /// Empty, as between the slashes of `a//b`.
    Empty,
    /// `.` or `..`.
    Dot,
    /// Longer than [`NAME_MAX_BYTES`].
    TooLong,
    /// Contains a NUL byte.
    Nul,
    /// Contains `/` (only possible for names that come from FUSE).
    Slash,
}

impl fmt::Display for InvalidName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let why = match self {
            InvalidName::Empty => "empty path component",
            InvalidName::Dot => "`.` or `..` component",
            InvalidName::TooLong => "component longer than 255 bytes",
            InvalidName::Nul => "NUL byte in name",
            InvalidName::Slash => "slash in name",
        };
        f.write_str(why)
    }
}

/// Checks that `name` can be a file name in the mount.
pub fn check_name(name: &str) -> Result<(), InvalidName> {
    if name.is_empty() {
        Err(InvalidName::Empty)
    } else if name == "." || name == ".." {
        Err(InvalidName::Dot)
    } else if name.len() > NAME_MAX_BYTES {
        Err(InvalidName::TooLong)
    } else if name.contains('\0') {
        Err(InvalidName::Nul)
    } else if name.contains('/') {
        Err(InvalidName::Slash)
    } else {
        Ok(())
    }
}

/// The key of a file named `name` in the directory whose key prefix is `dir_prefix` (which is
/// empty or ends in `/`).
pub fn file_key(dir_prefix: &str, name: &str) -> String {
    format!("{dir_prefix}{name}")
}

/// The key prefix of a directory named `name` in the directory `dir_prefix`.
pub fn dir_prefix(parent_prefix: &str, name: &str) -> String {
    format!("{parent_prefix}{name}/")
}

/// What one item of a delimited listing of `dir_prefix` is.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum ListedItem<'a> {
    /// A file with this name.
    File(&'a str),
    /// A directory with this name.
    Directory(&'a str),
    /// The directory's own `dir/` marker object: not an entry.
    OwnMarker,
    /// Not shown: the name is not a valid file name, or the key is outside the directory.
    Hidden,
}

/// Classifies an object key returned by `ListObjectsV2(prefix = dir_prefix, delimiter = "/")`.
pub fn classify_listed_object<'a>(dir_prefix: &str, key: &'a str) -> ListedItem<'a> {
    let Some(rest) = key.strip_prefix(dir_prefix) else {
        return ListedItem::Hidden;
    };
    if rest.is_empty() {
        return ListedItem::OwnMarker;
    }
    match check_name(rest) {
        Ok(()) => ListedItem::File(rest),
        Err(_) => ListedItem::Hidden,
    }
}

/// Classifies a common prefix returned by `ListObjectsV2(prefix = dir_prefix, delimiter = "/")`.
pub fn classify_common_prefix<'a>(dir_prefix: &str, common_prefix: &'a str) -> ListedItem<'a> {
    let Some(name) = common_prefix.strip_prefix(dir_prefix).and_then(|rest| rest.strip_suffix('/')) else {
        return ListedItem::Hidden;
    };
    match check_name(name) {
        Ok(()) => ListedItem::Directory(name),
        Err(_) => ListedItem::Hidden,
    }
}

/// Where a key sits in the tree of a mount whose root is `mount_prefix`.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct KeyPlacement<'a> {
    /// The directory path components, outermost first. Each one is a directory in the tree
    /// (valid or not: an invalid component hides everything below it).
    pub dirs: Vec<&'a str>,
    /// The file name, or `None` for a `dir/` marker key.
    pub file: Option<&'a str>,
}

/// Splits a bucket key into directory components and a file name, as seen from a mount of
/// `mount_prefix`. `None` if the key is outside the mount or is the mount root's own marker.
pub fn place_key<'a>(mount_prefix: &str, key: &'a str) -> Option<KeyPlacement<'a>> {
    let rest = key.strip_prefix(mount_prefix)?;
    if rest.is_empty() {
        return None;
    }
    let mut components: Vec<&str> = rest.split('/').collect();
    let last = components.pop().expect("split yields at least one item");
    let file = if last.is_empty() { None } else { Some(last) };
    Some(KeyPlacement { dirs: components, file })
}

/// Whether every component of a path is a valid name, i.e. whether the path can be reached
/// through the mount.
pub fn path_is_visible<'a>(components: impl IntoIterator<Item = &'a str>) -> bool {
    components.into_iter().all(|c| check_name(c).is_ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_that_cannot_be_file_names_are_rejected() {
        assert_eq!(check_name(""), Err(InvalidName::Empty));
        assert_eq!(check_name("."), Err(InvalidName::Dot));
        assert_eq!(check_name(".."), Err(InvalidName::Dot));
        assert_eq!(check_name("a\0b"), Err(InvalidName::Nul));
        assert_eq!(check_name("a/b"), Err(InvalidName::Slash));
        assert_eq!(check_name(&"x".repeat(256)), Err(InvalidName::TooLong));
        assert_eq!(check_name(&"x".repeat(255)), Ok(()));
        assert_eq!(check_name("..."), Ok(()));
        assert_eq!(check_name(" spaced % name\r\n"), Ok(()));
        assert_eq!(check_name("ünïcödé"), Ok(()));
    }

    #[test]
    fn listed_objects_become_files_and_the_own_marker_is_skipped() {
        assert_eq!(classify_listed_object("d/", "d/f"), ListedItem::File("f"));
        assert_eq!(classify_listed_object("d/", "d/"), ListedItem::OwnMarker);
        assert_eq!(classify_listed_object("d/", "d/.."), ListedItem::Hidden);
        assert_eq!(classify_listed_object("d/", "e/f"), ListedItem::Hidden);
        assert_eq!(classify_listed_object("", "f"), ListedItem::File("f"));
    }

    #[test]
    fn common_prefixes_become_directories_unless_their_name_is_invalid() {
        assert_eq!(classify_common_prefix("d/", "d/sub/"), ListedItem::Directory("sub"));
        assert_eq!(classify_common_prefix("d/", "d//"), ListedItem::Hidden);
        assert_eq!(classify_common_prefix("d/", "d/./"), ListedItem::Hidden);
        assert_eq!(classify_common_prefix("", "top/"), ListedItem::Directory("top"));
    }

    #[test]
    fn keys_are_placed_relative_to_the_mount_prefix() {
        assert_eq!(place_key("p/", "p/a/b"), Some(KeyPlacement { dirs: vec!["a"], file: Some("b") }));
        assert_eq!(place_key("p/", "p/a/"), Some(KeyPlacement { dirs: vec!["a"], file: None }));
        assert_eq!(place_key("p/", "p/"), None);
        assert_eq!(place_key("p/", "q/a"), None);
        assert_eq!(place_key("p/", "pa"), None);
        assert_eq!(place_key("", "a//b"), Some(KeyPlacement { dirs: vec!["a", ""], file: Some("b") }));
    }
}
