//! Writing test objects into a bucket through another S3 client than the mount: single PUTs,
//! many small PUTs in parallel, and large objects as parallel multipart uploads generated part
//! by part (so a 1 GiB object never sits in memory whole).

use std::sync::Arc;

use bytes::Bytes;
use goofys_core::s3_types::{Body, CompletedPart, Metadata, S3Request, S3Response};
use goofys_s3::S3Client;

/// PUTs one object (a copy of `body`); panics on failure.
pub async fn put_object(client: &S3Client, key: &str, body: &[u8]) {
    put_bytes(client, key, Bytes::copy_from_slice(body)).await;
}

/// PUTs one object; panics on failure.
pub async fn put_bytes(client: &S3Client, key: &str, body: Bytes) {
    let request = S3Request::PutObject {
        key: key.into(),
        body: Body(body),
        content_type: None,
        metadata: Metadata::new(),
        if_match: None,
        if_none_match_any: false,
    };
    match client.execute(&request).await {
        Ok(S3Response::PutObject { .. }) => {}
        other => panic!("PUT {key}: {other:?}"),
    }
}

/// PUTs every `(key, body)`, `concurrency` at a time.
pub async fn put_objects(client: &Arc<S3Client>, objects: Vec<(String, Bytes)>, concurrency: usize) {
    let semaphore = Arc::new(tokio::sync::Semaphore::new(concurrency));
    let mut tasks = tokio::task::JoinSet::new();
    for (key, body) in objects {
        let (client, semaphore) = (Arc::clone(client), Arc::clone(&semaphore));
        tasks.spawn(async move {
            let _permit = semaphore.acquire().await.expect("semaphore open");
            put_bytes(&client, &key, body).await;
        });
    }
    while let Some(joined) = tasks.join_next().await {
        joined.expect("a PUT task panicked");
    }
}

/// Uploads `part_count` parts made by `make_part(index)` as one multipart object, up to
/// `concurrency` parts in flight. `make_part` is called in order, so it may hash as it goes.
pub async fn put_multipart(
    client: &Arc<S3Client>,
    key: &str,
    part_count: u32,
    concurrency: usize,
    mut make_part: impl FnMut(u32) -> Bytes,
) {
    let request = S3Request::CreateMultipartUpload { key: key.into(), content_type: None, metadata: Metadata::new() };
    let Ok(S3Response::CreateMultipartUpload { upload_id }) = client.execute(&request).await else {
        panic!("CreateMultipartUpload {key} failed")
    };
    let semaphore = Arc::new(tokio::sync::Semaphore::new(concurrency));
    let mut tasks = Vec::new();
    for index in 0..part_count {
        // Take the permit before making the part, so at most `concurrency` parts exist at once.
        let permit = Arc::clone(&semaphore).acquire_owned().await.expect("semaphore open");
        let body = make_part(index);
        let client = Arc::clone(client);
        let request = S3Request::UploadPart {
            key: key.into(),
            upload_id: upload_id.clone(),
            part_number: index + 1,
            body: Body(body),
        };
        tasks.push(tokio::spawn(async move {
            let _permit = permit;
            match client.execute(&request).await {
                Ok(S3Response::UploadPart { etag }) => CompletedPart { part_number: index + 1, etag },
                other => panic!("UploadPart {}: {other:?}", index + 1),
            }
        }));
    }
    let mut parts = Vec::new();
    for task in tasks {
        parts.push(task.await.expect("an upload task panicked"));
    }
    let complete = S3Request::CompleteMultipartUpload { key: key.into(), upload_id, parts };
    match client.execute(&complete).await {
        Ok(S3Response::CompleteMultipartUpload { .. }) => {}
        other => panic!("CompleteMultipartUpload {key}: {other:?}"),
    }
}
