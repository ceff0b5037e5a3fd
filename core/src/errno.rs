//! The errors a FUSE caller can see, and the one table that maps S3 failures onto them.

use crate::s3_types::{S3Error, S3ErrorCode};

/// A POSIX error number, as the kernel receives it. A closed set: the core only ever replies
/// with these.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
#[allow(clippy::upper_case_acronyms)]
pub enum Errno {
    EPERM,
    ENOENT,
    EINTR,
    EIO,
    E2BIG,
    EBADF,
    EAGAIN,
    ENOMEM,
    EACCES,
    EBUSY,
    EEXIST,
    EXDEV,
    ENOTDIR,
    EISDIR,
    EINVAL,
    EFBIG,
    ENOSPC,
    EROFS,
    ERANGE,
    ENAMETOOLONG,
    ENOSYS,
    ENOTEMPTY,
    ENODATA,
    ENOTSUP,
    ETIMEDOUT,
    ESTALE,
}

impl Errno {
    /// The Linux error number.
    pub const fn code(self) -> i32 {
        match self {
            Errno::EPERM => 1,
            Errno::ENOENT => 2,
            Errno::EINTR => 4,
            Errno::EIO => 5,
            Errno::E2BIG => 7,
            Errno::EBADF => 9,
            Errno::EAGAIN => 11,
            Errno::ENOMEM => 12,
            Errno::EACCES => 13,
            Errno::EBUSY => 16,
            Errno::EEXIST => 17,
            Errno::EXDEV => 18,
            Errno::ENOTDIR => 20,
            Errno::EISDIR => 21,
            Errno::EINVAL => 22,
            Errno::EFBIG => 27,
            Errno::ENOSPC => 28,
            Errno::EROFS => 30,
            Errno::ERANGE => 34,
            Errno::ENAMETOOLONG => 36,
            Errno::ENOSYS => 38,
            Errno::ENOTEMPTY => 39,
            Errno::ENODATA => 61,
            Errno::ENOTSUP => 95,
            Errno::ETIMEDOUT => 110,
            Errno::ESTALE => 116,
        }
    }
}

/// How an S3 failure reaches the FUSE caller once the core has given up on it (after the
/// last retry, or at once for errors that are not retried). This is the only place the
/// mapping is decided.
pub fn errno_for_s3_error(error: &S3Error) -> Errno {
    match error {
        S3Error::Service(service) => match &service.code {
            S3ErrorCode::NoSuchKey => Errno::ENOENT,
            // The bucket vanished under the mount: nothing below it exists any more.
            S3ErrorCode::NoSuchBucket => Errno::ENOENT,
            S3ErrorCode::AccessDenied
            | S3ErrorCode::InvalidAccessKeyId
            | S3ErrorCode::SignatureDoesNotMatch
            | S3ErrorCode::ExpiredToken => Errno::EACCES,
            // The object changed since it was opened (If-Match failed), or shrank below a range
            // computed from the size seen at open.
            S3ErrorCode::PreconditionFailed | S3ErrorCode::InvalidRange => Errno::ESTALE,
            S3ErrorCode::EntityTooLarge => Errno::EFBIG,
            S3ErrorCode::SlowDown
            | S3ErrorCode::InternalError
            | S3ErrorCode::ServiceUnavailable
            | S3ErrorCode::RequestTimeout
            | S3ErrorCode::NoSuchUpload
            | S3ErrorCode::EntityTooSmall
            | S3ErrorCode::InvalidPart
            | S3ErrorCode::InvalidPartOrder
            | S3ErrorCode::InvalidRequest
            | S3ErrorCode::PermanentRedirect
            | S3ErrorCode::NotModified
            | S3ErrorCode::Other(_) => match service.status {
                403 => Errno::EACCES,
                404 => Errno::ENOENT,
                412 => Errno::ESTALE,
                _ => Errno::EIO,
            },
        },
        // Retries exhausted on the network: the data is not lost, the call failed.
        S3Error::Transport(_) => Errno::EIO,
    }
}

/// S3 said the key does not exist.
pub(crate) fn is_not_found(error: &S3Error) -> bool {
    matches!(error, S3Error::Service(service) if service.status == 404 || service.code == S3ErrorCode::NoSuchKey)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::s3_types::{ServiceError, TransportError};

    fn service(status: u16, code: S3ErrorCode) -> S3Error {
        S3Error::Service(ServiceError { status, code, message: String::new(), request_id: None })
    }

    #[test]
    fn s3_errors_map_to_the_documented_errnos() {
        assert_eq!(errno_for_s3_error(&service(404, S3ErrorCode::NoSuchKey)), Errno::ENOENT);
        assert_eq!(errno_for_s3_error(&service(403, S3ErrorCode::AccessDenied)), Errno::EACCES);
        assert_eq!(errno_for_s3_error(&service(412, S3ErrorCode::PreconditionFailed)), Errno::ESTALE);
        assert_eq!(errno_for_s3_error(&service(503, S3ErrorCode::SlowDown)), Errno::EIO);
        assert_eq!(errno_for_s3_error(&service(500, S3ErrorCode::InternalError)), Errno::EIO);
        assert_eq!(errno_for_s3_error(&service(404, S3ErrorCode::Other("Weird".into()))), Errno::ENOENT);
        assert_eq!(errno_for_s3_error(&service(403, S3ErrorCode::Other("Weird".into()))), Errno::EACCES);
        assert_eq!(errno_for_s3_error(&S3Error::Transport(TransportError::ConnectionReset)), Errno::EIO);
        assert_eq!(errno_for_s3_error(&S3Error::Transport(TransportError::Timeout)), Errno::EIO);
    }

    #[test]
    fn errno_codes_are_the_linux_numbers() {
        assert_eq!(Errno::ENOENT.code(), 2);
        assert_eq!(Errno::ESTALE.code(), 116);
        assert_eq!(Errno::ENOTSUP.code(), 95);
        assert_eq!(Errno::ENAMETOOLONG.code(), 36);
    }
}
