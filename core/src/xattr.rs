//! Extended attributes: `user.*` kept as S3 user metadata, and the read-only `s3.etag` and
//! `s3.storage-class`.
//!
//! Problems this module solves:
//! - S3 metadata names are HTTP header names, lowercased by S3: `user.NAME` maps to
//!   `x-amz-meta-name`, with the name lowercased (so `user.Foo` and `user.foo` are one
//!   attribute) and limited to header-token characters (others: `EINVAL`).
//! - Metadata values are header text; xattr values are bytes. A value that is printable ASCII
//!   without surrounding spaces is kept as it is (plain S3 tools read it); other UTF-8 text is
//!   kept as an RFC 2047 encoded word, `=?UTF-8?B?<base64>?=`, the form S3 itself uses for
//!   values that are not ASCII; bytes that are not UTF-8 (binary values) as
//!   `goofys-base64:<base64>`, since a server may decode an encoded word and refuse one that
//!   is not UTF-8 (s3s does). Both decode back to the same bytes.
//! - S3 keeps at most 2 KiB of user metadata per object: a change beyond it fails with `E2BIG`
//!   and changes nothing (see [`crate::attrs`]).
//! - `s3.etag` and `s3.storage-class` can be read but not set (`EPERM`) and are not listed, so
//!   `cp -a` and `rsync -X` do not try to copy them. Other namespaces (`security.`,
//!   `trusted.`, `system.`) have nowhere to live: reading one finds nothing (`ENODATA`), setting
//!   one is `ENOTSUP`.

use std::ffi::OsStr;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;

use crate::attrs::{MetaWaiter, MetadataEdit};
use crate::errno::Errno;
use crate::fuse_types::{FileKind, FuseOp, FuseReply};
use crate::ids::{FuseReqId, Ino};
use crate::inode::ObjectMetadata;
use crate::machine::Core;
use crate::posix::is_reserved_metadata;
use crate::s3_types::Body;
use crate::time::Instant;

/// The attribute that reads an object's ETag.
pub const ETAG_XATTR: &str = "s3.etag";
/// The attribute that reads an object's storage class.
pub const STORAGE_CLASS_XATTR: &str = "s3.storage-class";
const USER_PREFIX: &str = "user.";
const ENCODED_PREFIX: &str = "=?UTF-8?B?";
const ENCODED_SUFFIX: &str = "?=";
const BINARY_PREFIX: &str = "goofys-base64:";

/// What an xattr name refers to.
#[derive(Clone, PartialEq, Eq, Debug)]
pub(crate) enum XattrName {
    /// `user.NAME`: metadata `NAME` (lowercased).
    User(String),
    ETag,
    StorageClass,
    /// A namespace S3 has nowhere to keep.
    Unsupported,
}

/// Parses an xattr name; `EINVAL` for a `user.` name S3 cannot carry.
pub(crate) fn parse_xattr_name(name: &OsStr) -> Result<XattrName, Errno> {
    let Some(name) = name.to_str() else {
        return Err(Errno::EINVAL);
    };
    match name {
        ETAG_XATTR => return Ok(XattrName::ETag),
        STORAGE_CLASS_XATTR => return Ok(XattrName::StorageClass),
        _ => {}
    }
    let Some(user) = name.strip_prefix(USER_PREFIX) else {
        return Ok(XattrName::Unsupported);
    };
    let header_token = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c);
    if user.is_empty() || !user.chars().all(header_token) {
        tracing::info!(name, "an xattr name that is not an HTTP header token cannot be S3 metadata; EINVAL");
        return Err(Errno::EINVAL);
    }
    Ok(XattrName::User(user.to_ascii_lowercase()))
}

/// An xattr value as metadata text.
pub(crate) fn encode_xattr_value(value: &[u8]) -> String {
    let plain = value.iter().all(|&b| (0x20..0x7f).contains(&b))
        && value.first().is_none_or(|&b| b != b' ')
        && value.last().is_none_or(|&b| b != b' ')
        && !value.starts_with(ENCODED_PREFIX.as_bytes())
        && !value.starts_with(BINARY_PREFIX.as_bytes());
    if plain {
        String::from_utf8(value.to_vec()).expect("printable ASCII")
    } else if std::str::from_utf8(value).is_ok() {
        format!("{ENCODED_PREFIX}{}{ENCODED_SUFFIX}", BASE64.encode(value))
    } else {
        format!("{BINARY_PREFIX}{}", BASE64.encode(value))
    }
}

/// Metadata text as the xattr value it holds.
pub(crate) fn decode_xattr_value(text: &str) -> Vec<u8> {
    text.strip_prefix(ENCODED_PREFIX)
        .and_then(|rest| rest.strip_suffix(ENCODED_SUFFIX))
        .or_else(|| text.strip_prefix(BINARY_PREFIX))
        .and_then(|encoded| BASE64.decode(encoded).ok())
        .unwrap_or_else(|| text.as_bytes().to_vec())
}

/// Answers a get or list with `bytes`: its size when asked for the size (`size` 0), else the
/// bytes if they fit.
fn sized_reply(bytes: Vec<u8>, size: u32) -> FuseReply {
    if size == 0 {
        FuseReply::XattrSize(bytes.len() as u32)
    } else if bytes.len() > size as usize {
        FuseReply::Error(Errno::ERANGE)
    } else {
        FuseReply::Data(Body::from(bytes))
    }
}

impl Core {
    /// The metadata of `ino` as this mount knows it now, or `None` if S3 must be asked first
    /// (the request then runs again; it has already been asked once if `op` was revalidated).
    fn known_metadata(&mut self, now: Instant, id: FuseReqId, ino: Ino, op: &FuseOp) -> Option<ObjectMetadata> {
        if let Some(file) = self.writes.get(&ino) {
            return Some(file.metadata.clone());
        }
        let inode = self.inodes.get(ino)?;
        let fresh = inode.kind == FileKind::Directory || now < inode.stat_expiry;
        match (&inode.metadata, fresh) {
            (Some(metadata), true) => return Some(metadata.clone()),
            (Some(metadata), false) if self.revalidated.remove(&id) => return Some(metadata.clone()),
            _ => {}
        }
        if inode.kind == FileKind::Directory {
            self.fetch_marker_then(now, id, ino, op.clone());
        } else {
            self.revalidated.insert(id);
            self.revalidate_then(now, id, ino, op.clone());
        }
        None
    }

    pub(crate) fn getxattr(&mut self, now: Instant, id: FuseReqId, ino: Ino, name: &OsStr, size: u32) {
        if self.inodes.get(ino).is_none() {
            return self.reply_error(id, Errno::ENOENT);
        }
        let name = match parse_xattr_name(name) {
            Ok(XattrName::Unsupported) => return self.reply_error(id, Errno::ENODATA),
            Ok(name) => name,
            Err(errno) => return self.reply_error(id, errno),
        };
        let value = match &name {
            XattrName::ETag => {
                let Some(inode) = self.inodes.get(ino) else { return self.reply_error(id, Errno::ENOENT) };
                inode.etag.as_ref().map(|etag| etag.as_str().as_bytes().to_vec())
            }
            XattrName::StorageClass => {
                let op = FuseOp::GetXattr { ino, name: STORAGE_CLASS_XATTR.into(), size };
                let Some(metadata) = self.known_metadata(now, id, ino, &op) else { return };
                let is_object = self.inodes.get(ino).is_some_and(|inode| inode.etag.is_some());
                is_object.then(|| metadata.storage_class.unwrap_or_else(|| "STANDARD".to_owned()).into_bytes())
            }
            XattrName::User(key) => {
                let op = FuseOp::GetXattr { ino, name: format!("{USER_PREFIX}{key}").into(), size };
                let Some(metadata) = self.known_metadata(now, id, ino, &op) else { return };
                metadata.user.get(key).filter(|_| !is_reserved_metadata(key)).map(|text| decode_xattr_value(text))
            }
            XattrName::Unsupported => unreachable!("answered above"),
        };
        match value {
            Some(value) => {
                let reply = sized_reply(value, size);
                self.reply(id, reply)
            }
            None => self.reply_error(id, Errno::ENODATA),
        }
    }

    pub(crate) fn listxattr(&mut self, now: Instant, id: FuseReqId, ino: Ino, size: u32) {
        if self.inodes.get(ino).is_none() {
            return self.reply_error(id, Errno::ENOENT);
        }
        let op = FuseOp::ListXattr { ino, size };
        let Some(metadata) = self.known_metadata(now, id, ino, &op) else { return };
        let mut list = Vec::new();
        for name in metadata.user.keys().filter(|name| !is_reserved_metadata(name)) {
            list.extend_from_slice(USER_PREFIX.as_bytes());
            list.extend_from_slice(name.as_bytes());
            list.push(0);
        }
        let reply = sized_reply(list, size);
        self.reply(id, reply);
    }

    pub(crate) fn setxattr(&mut self, now: Instant, id: FuseReqId, ino: Ino, name: &OsStr, value: &[u8], flags: u32) {
        let edit = match parse_xattr_name(name) {
            Ok(XattrName::User(key)) if is_reserved_metadata(&key) => {
                tracing::info!(key, "this metadata name holds POSIX attributes; set them with chmod, chown or touch");
                return self.reply_error(id, Errno::EPERM);
            }
            Ok(XattrName::User(key)) => MetadataEdit::SetUser { name: key, value: encode_xattr_value(value), flags },
            Ok(XattrName::ETag | XattrName::StorageClass) => return self.reply_error(id, Errno::EPERM),
            Ok(XattrName::Unsupported) => {
                tracing::info!(?name, "only user.* extended attributes can be kept in S3; ENOTSUP");
                return self.reply_error(id, Errno::ENOTSUP);
            }
            Err(errno) => return self.reply_error(id, errno),
        };
        self.change_xattr(now, id, ino, edit);
    }

    pub(crate) fn removexattr(&mut self, now: Instant, id: FuseReqId, ino: Ino, name: &OsStr) {
        let edit = match parse_xattr_name(name) {
            Ok(XattrName::User(key)) if is_reserved_metadata(&key) => return self.reply_error(id, Errno::EPERM),
            Ok(XattrName::User(key)) => MetadataEdit::RemoveUser { name: key },
            Ok(XattrName::ETag | XattrName::StorageClass) => return self.reply_error(id, Errno::EPERM),
            Ok(XattrName::Unsupported) => return self.reply_error(id, Errno::ENODATA),
            Err(errno) => return self.reply_error(id, errno),
        };
        self.change_xattr(now, id, ino, edit);
    }

    fn change_xattr(&mut self, now: Instant, id: FuseReqId, ino: Ino, edit: MetadataEdit) {
        if self.inodes.get(ino).is_none() {
            return self.reply_error(id, Errno::ENOENT);
        }
        if self.writes.get(&ino).is_some_and(|file| file.is_committing()) {
            let op = match &edit {
                MetadataEdit::SetUser { name, value, flags } => FuseOp::SetXattr {
                    ino,
                    name: format!("{USER_PREFIX}{name}").into(),
                    value: decode_xattr_value(value),
                    flags: *flags,
                },
                _ => {
                    let MetadataEdit::RemoveUser { name } = &edit else { unreachable!("xattr edits only") };
                    FuseOp::RemoveXattr { ino, name: format!("{USER_PREFIX}{name}").into() }
                }
            };
            return self.block_behind_commit(now, ino, id, op);
        }
        self.change_metadata(now, ino, MetaWaiter::Xattr { id }, edit);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_names_map_to_lowercase_metadata_and_others_are_told_apart() {
        assert_eq!(parse_xattr_name(OsStr::new("user.Color")), Ok(XattrName::User("color".into())));
        assert_eq!(parse_xattr_name(OsStr::new("s3.etag")), Ok(XattrName::ETag));
        assert_eq!(parse_xattr_name(OsStr::new("s3.storage-class")), Ok(XattrName::StorageClass));
        assert_eq!(parse_xattr_name(OsStr::new("security.capability")), Ok(XattrName::Unsupported));
        assert_eq!(parse_xattr_name(OsStr::new("user.")), Err(Errno::EINVAL));
        assert_eq!(parse_xattr_name(OsStr::new("user.a b")), Err(Errno::EINVAL));
        assert_eq!(parse_xattr_name(OsStr::new("user.é")), Err(Errno::EINVAL));
    }

    #[test]
    fn values_round_trip_and_plain_ascii_stays_readable() {
        let values = [
            &b"blue"[..],
            b"",
            b" padded ",
            "héllo".as_bytes(),
            &[0, 255, 10, 13],
            b"=?UTF-8?B?x?=",
            b"goofys-base64:AA==",
        ];
        for value in values {
            let text = encode_xattr_value(value);
            assert!(text.bytes().all(|b| (0x20..0x7f).contains(&b)), "{text:?} is header text");
            assert_eq!(decode_xattr_value(&text), value, "{text:?}");
        }
        assert_eq!(encode_xattr_value(b"blue"), "blue");
        assert_eq!(encode_xattr_value("é".as_bytes()), "=?UTF-8?B?w6k=?=");
        assert_eq!(encode_xattr_value(&[0, 255]), "goofys-base64:AP8=", "binary is not an encoded word");
        assert_eq!(decode_xattr_value("=?UTF-8?B?AP8=?="), [0, 255], "as written before binary had its own form");
    }
}
