//! The S3 transport of goofys-rs: builds, signs and sends S3 requests and parses replies.
