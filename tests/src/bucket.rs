//! What end-to-end tests ask of a bucket directly, around the mount: put objects to start
//! from (single PUTs, many in parallel, large multipart objects generated part by part so a
//! 1 GiB object never sits in memory whole), and read back what the mount left (objects, keys,
//! multipart uploads in progress).

use std::sync::Arc;

use bytes::Bytes;
use goofys_core::s3_types::{
    CompletedPart, Metadata, MultipartUploadSummary, ObjectMeta, RequestBody, S3Error, S3Request, S3Response,
};
use goofys_s3::S3Client;

/// Sends `request` straight to the server, trying again (up to 5 attempts) when it fails in a
/// way that passes: a test server on a loaded machine now and then answers 5xx or times out
/// (while it grows a volume for a new bucket, say). The mount under test retries on its own;
/// the test's setup and checks must not fail for the server's hiccup. Not for requests whose
/// repetition changes the outcome (CreateMultipartUpload, CompleteMultipartUpload).
async fn execute(client: &S3Client, request: &S3Request) -> Result<S3Response, S3Error> {
    let mut attempt = 1u32;
    loop {
        match client.execute(request).await {
            Err(error) if attempt < 5 && goofys_core::retry::is_retryable(&error) => {
                eprintln!("the test server failed attempt {attempt} of a direct request: {error}; trying again");
                tokio::time::sleep(std::time::Duration::from_millis(200) * attempt).await;
                attempt += 1;
            }
            other => return other,
        }
    }
}

/// How many requests [`put_many`] and [`get_many`] keep in flight.
const CONCURRENCY: usize = 32;

/// Puts `body` at `key`; panics if the server refuses.
pub async fn put(client: &S3Client, key: &str, body: impl Into<Bytes>) {
    let request = S3Request::PutObject {
        key: key.into(),
        body: RequestBody::from(body.into()),
        content_type: None,
        metadata: Default::default(),
        if_match: None,
        if_none_match_any: false,
    };
    match execute(client, &request).await {
        Ok(S3Response::PutObject { .. }) => {}
        other => panic!("PUT {key}: {other:?}"),
    }
}

/// The whole object at `key`, or `None` if there is none.
pub async fn get(client: &S3Client, key: &str) -> Option<Bytes> {
    match execute(client, &S3Request::GetObject { key: key.into(), range: None, if_match: None }).await {
        Ok(S3Response::GetObject(output)) => Some(output.body.0),
        Err(S3Error::Service(error)) if error.status == 404 => None,
        other => panic!("GET {key}: {other:?}"),
    }
}

/// HeadObject of `key`, or `None` if there is none.
pub async fn head(client: &S3Client, key: &str) -> Option<ObjectMeta> {
    match execute(client, &S3Request::HeadObject { key: key.into() }).await {
        Ok(S3Response::HeadObject(meta)) => Some(meta),
        Err(S3Error::Service(error)) if error.status == 404 => None,
        other => panic!("HEAD {key}: {other:?}"),
    }
}

/// Every key under `prefix` with its size, in listing order (all pages).
pub async fn list_keys(client: &S3Client, prefix: &str) -> Vec<(String, u64)> {
    let mut keys = Vec::new();
    let mut continuation_token = None;
    loop {
        let request = S3Request::ListObjectsV2 {
            prefix: prefix.into(),
            delimiter: None,
            continuation_token: continuation_token.take(),
            start_after: None,
            max_keys: 1000,
        };
        let page = match execute(client, &request).await {
            Ok(S3Response::ListObjectsV2(page)) => page,
            other => panic!("LIST {prefix}: {other:?}"),
        };
        keys.extend(page.objects.into_iter().map(|object| (object.key, object.size_bytes)));
        match page.next_continuation_token {
            Some(token) => continuation_token = Some(token),
            None => return keys,
        }
    }
}

/// The multipart uploads in progress under `prefix`.
pub async fn multipart_uploads(client: &S3Client, prefix: &str) -> Vec<MultipartUploadSummary> {
    match execute(client, &S3Request::ListMultipartUploads { prefix: prefix.into() }).await {
        Ok(S3Response::ListMultipartUploads { uploads }) => uploads,
        other => panic!("ListMultipartUploads {prefix}: {other:?}"),
    }
}

/// Puts every `(key, body)`, [`CONCURRENCY`] at a time.
pub async fn put_many(client: &Arc<S3Client>, objects: Vec<(String, Bytes)>) {
    let mut objects = objects.into_iter();
    let mut tasks = tokio::task::JoinSet::new();
    loop {
        while tasks.len() < CONCURRENCY {
            let Some((key, body)) = objects.next() else { break };
            let client = Arc::clone(client);
            tasks.spawn(async move { put(&client, &key, body).await });
        }
        match tasks.join_next().await {
            Some(result) => result.expect("a PUT task panicked"),
            None => return,
        }
    }
}

/// The objects at `keys` (`None` where there is none), in the order of `keys`,
/// [`CONCURRENCY`] at a time.
pub async fn get_many(client: &Arc<S3Client>, keys: &[String]) -> Vec<Option<Bytes>> {
    let mut found = vec![None; keys.len()];
    let mut next = 0;
    let mut tasks = tokio::task::JoinSet::new();
    loop {
        while tasks.len() < CONCURRENCY && next < keys.len() {
            let (client, key, index) = (Arc::clone(client), keys[next].clone(), next);
            tasks.spawn(async move { (index, get(&client, &key).await) });
            next += 1;
        }
        match tasks.join_next().await {
            Some(result) => {
                let (index, body) = result.expect("a GET task panicked");
                found[index] = body;
            }
            None => return found,
        }
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
            body: RequestBody::from(body),
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
