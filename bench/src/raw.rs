//! The raw client: the same workload sent straight to S3 with goofys-rs' own transport, no
//! FUSE and no core. It is the ceiling a mount can approach (parallel 8 MiB ranged GETs,
//! multipart PUTs with parts in flight) and it also fills the bucket before the clients run.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::bail;
use bytes::Bytes;
use goofys_core::s3_types::{ByteRange, CompletedPart, Metadata, RequestBody, S3Request, S3Response};
use goofys_s3::S3Client;
use tokio::task::JoinSet;

use crate::layout::{Layout, SMALL_BODY, object_bytes};
use crate::measure::{Measurements, Step};

/// Parts of multipart uploads and ranged GETs, as goofys-rs uses by default.
pub const PART_BYTES: u64 = 8 * 1024 * 1024;
/// Parts or GETs in flight per object, as goofys-rs (64 MiB window / 8 MiB parts).
pub const PARTS_IN_FLIGHT: usize = 8;
/// Concurrent small requests for "in parallel" steps.
pub const PARALLEL_REQUESTS: usize = 32;

async fn call(client: &S3Client, request: S3Request) -> anyhow::Result<S3Response> {
    let name = request.operation_name();
    client.execute(&request).await.map_err(|error| anyhow::anyhow!("{name} failed: {error}"))
}

/// Uploads `data` as `key`: one PUT if it fits a part, else a multipart upload with
/// [`PARTS_IN_FLIGHT`] parts in flight.
pub async fn put_object(client: &Arc<S3Client>, key: &str, data: Bytes) -> anyhow::Result<()> {
    if data.len() as u64 <= PART_BYTES {
        let request = S3Request::PutObject {
            key: key.into(),
            body: RequestBody::from(data),
            content_type: None,
            metadata: Metadata::new(),
            if_match: None,
            if_none_match_any: false,
        };
        call(client, request).await?;
        return Ok(());
    }
    let create = S3Request::CreateMultipartUpload { key: key.into(), content_type: None, metadata: Metadata::new() };
    let S3Response::CreateMultipartUpload { upload_id } = call(client, create).await? else {
        bail!("CreateMultipartUpload answered something else")
    };
    let mut parts = Vec::new();
    let mut uploads = JoinSet::new();
    let chunks: Vec<Bytes> = (0..data.len())
        .step_by(PART_BYTES as usize)
        .map(|at| data.slice(at..(at + PART_BYTES as usize).min(data.len())))
        .collect();
    for (index, chunk) in chunks.into_iter().enumerate() {
        if uploads.len() >= PARTS_IN_FLIGHT {
            parts.push(uploads.join_next().await.expect("a part in flight")??);
        }
        let part_number = u32::try_from(index + 1)?;
        let request = S3Request::UploadPart {
            key: key.into(),
            upload_id: upload_id.clone(),
            part_number,
            body: RequestBody::from(chunk),
        };
        let client = Arc::clone(client);
        uploads.spawn(async move {
            match call(&client, request).await? {
                S3Response::UploadPart { etag } => Ok::<_, anyhow::Error>(CompletedPart { part_number, etag }),
                _ => bail!("UploadPart answered something else"),
            }
        });
    }
    while let Some(part) = uploads.join_next().await {
        parts.push(part??);
    }
    parts.sort_by_key(|part| part.part_number);
    call(client, S3Request::CompleteMultipartUpload { key: key.into(), upload_id, parts }).await?;
    Ok(())
}

/// Reads `key` (`size_bytes` long) with ranged GETs of [`PART_BYTES`], [`PARTS_IN_FLIGHT`] at
/// once; returns the bytes received.
pub async fn get_object(client: &Arc<S3Client>, key: &str, size_bytes: u64) -> anyhow::Result<u64> {
    let mut gets = JoinSet::new();
    let mut received = 0;
    let mut at = 0;
    while at < size_bytes || !gets.is_empty() {
        if at < size_bytes && gets.len() < PARTS_IN_FLIGHT {
            let range = ByteRange::new(at, (at + PART_BYTES).min(size_bytes));
            at = range.end;
            let client = Arc::clone(client);
            let key = key.to_owned();
            gets.spawn(async move { get_range(&client, &key, range).await });
            continue;
        }
        received += gets.join_next().await.expect("a GET in flight")??.len() as u64;
    }
    Ok(received)
}

async fn get_range(client: &S3Client, key: &str, range: ByteRange) -> anyhow::Result<Bytes> {
    match call(client, S3Request::GetObject { key: key.into(), range: Some(range), if_match: None }).await? {
        S3Response::GetObject(output) => Ok(output.body.0),
        _ => bail!("GetObject answered something else"),
    }
}

async fn get_whole(client: &S3Client, key: &str) -> anyhow::Result<Bytes> {
    match call(client, S3Request::GetObject { key: key.into(), range: None, if_match: None }).await? {
        S3Response::GetObject(output) => Ok(output.body.0),
        _ => bail!("GetObject answered something else"),
    }
}

/// Every key under `prefix` (no delimiter), page by page; returns the keys and the pages.
pub async fn list_all(client: &S3Client, prefix: &str, delimiter: Option<&str>) -> anyhow::Result<(Vec<String>, u32)> {
    let mut keys = Vec::new();
    let mut token = None;
    let mut pages = 0;
    loop {
        let request = S3Request::ListObjectsV2 {
            prefix: prefix.into(),
            delimiter: delimiter.map(str::to_owned),
            continuation_token: token.take(),
            start_after: None,
            max_keys: 1000,
        };
        let S3Response::ListObjectsV2(page) = call(client, request).await? else {
            bail!("ListObjectsV2 answered something else")
        };
        pages += 1;
        keys.extend(page.objects.into_iter().map(|object| object.key));
        keys.extend(page.common_prefixes);
        match page.next_continuation_token {
            Some(next) => token = Some(next),
            None => return Ok((keys, pages)),
        }
    }
}

/// Every object under `prefix` with its size.
pub async fn list_objects(client: &S3Client, prefix: &str) -> anyhow::Result<Vec<(String, u64)>> {
    let mut objects = Vec::new();
    let mut token = None;
    loop {
        let request = S3Request::ListObjectsV2 {
            prefix: prefix.into(),
            delimiter: None,
            continuation_token: token.take(),
            start_after: None,
            max_keys: 1000,
        };
        let S3Response::ListObjectsV2(page) = call(client, request).await? else {
            bail!("ListObjectsV2 answered something else")
        };
        objects.extend(page.objects.into_iter().map(|object| (object.key, object.size_bytes)));
        match page.next_continuation_token {
            Some(next) => token = Some(next),
            None => return Ok(objects),
        }
    }
}

/// Deletes every key under `prefix`, 1000 at a time.
pub async fn delete_prefix(client: &S3Client, prefix: &str) -> anyhow::Result<usize> {
    let (keys, _) = list_all(client, prefix, None).await?;
    for batch in keys.chunks(1000) {
        call(client, S3Request::DeleteObjects { keys: batch.to_vec() }).await?;
    }
    Ok(keys.len())
}

/// Puts small objects, `parallel` at once.
pub async fn put_small_objects(client: &Arc<S3Client>, keys: Vec<String>, parallel: usize) -> anyhow::Result<()> {
    let mut puts = JoinSet::new();
    for key in keys {
        if puts.len() >= parallel {
            puts.join_next().await.expect("a PUT in flight")??;
        }
        let client = Arc::clone(client);
        puts.spawn(async move { put_object(&client, &key, Bytes::from_static(SMALL_BODY)).await });
    }
    while let Some(done) = puts.join_next().await {
        done??;
    }
    Ok(())
}

/// Fills the bucket with the data set of `layout`, skipping what is there already.
pub async fn populate(client: &Arc<S3Client>, layout: &Layout) -> anyhow::Result<()> {
    let (existing, _) = list_all(client, "data/", None).await?;
    for key in layout.big_keys() {
        if !existing.contains(&key) {
            eprintln!("setup: uploading {key} ({} MiB)", layout.big_file_bytes >> 20);
            put_object(client, &key, big_bytes(&key, layout.big_file_bytes)).await?;
        }
    }
    let small: Vec<String> =
        layout.ls_keys().into_iter().chain(layout.tree_keys()).filter(|key| !existing.contains(key)).collect();
    if !small.is_empty() {
        eprintln!("setup: uploading {} small objects", small.len());
        put_small_objects(client, small, PARALLEL_REQUESTS).await?;
    }
    Ok(())
}

/// The generated bytes of a large object.
pub fn big_bytes(key: &str, len_bytes: u64) -> Bytes {
    Bytes::from(object_bytes(key, usize::try_from(len_bytes).expect("fits in memory")))
}

/// Reads every large file at once; returns the bytes received.
async fn read_all_at_once(client: &Arc<S3Client>, layout: &Layout) -> anyhow::Result<u64> {
    let mut readers = JoinSet::new();
    for key in layout.big_keys() {
        let client = Arc::clone(client);
        let size = layout.big_file_bytes;
        readers.spawn(async move { get_object(&client, &key, size).await });
    }
    let mut total = 0;
    while let Some(read) = readers.join_next().await {
        total += read??;
    }
    Ok(total)
}

/// The whole workload through the raw client: the ceiling row of the table.
pub async fn run_workload(
    client: &Arc<S3Client>,
    layout: &Layout,
    work_dir: &str,
    random_read_duration: Duration,
    measurements: &mut Measurements,
) -> anyhow::Result<()> {
    let big = layout.big_key(1);
    let size = layout.big_file_bytes;
    // Warm the connection pool as a mounted client would be after its mount check.
    list_all(client, "data/ls/", Some("/")).await?;

    let data = big_bytes(&format!("{work_dir}/big"), size);
    let started = Instant::now();
    put_object(client, &format!("{work_dir}/big"), data).await?;
    measurements.throughput(Step::SeqWrite, size, started.elapsed());

    // Cold steps start with the page cache dropped, as through a mount: the server then reads
    // from its disk for the raw client too.
    let cold = crate::workload::drop_caches;
    cold();
    let started = Instant::now();
    let received = get_object(client, &big, size).await?;
    measurements.throughput(Step::SeqRead, received, started.elapsed());

    // As through a mount: caches dropped (the server's too) before each 1-byte GET.
    let mut samples = Vec::new();
    for offset in crate::workload::first_byte_offsets(size) {
        crate::workload::drop_caches();
        let started = Instant::now();
        get_range(client, &big, ByteRange::new(offset, offset + 1)).await?;
        samples.push(started.elapsed().as_secs_f64());
    }
    let median = crate::measure::summarize(&samples).expect("samples taken").median;
    measurements.seconds(Step::FirstByte, Duration::from_secs_f64(median));

    for (step, block) in [(Step::RandRead4k, 4096u64), (Step::RandRead1m, 1 << 20)] {
        cold();
        let started = Instant::now();
        let (mut reads, mut position) = (0u64, 0x1234_5678u64);
        while started.elapsed() < random_read_duration {
            position = position.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
            let offset = (position >> 11) % (size - block) / block * block;
            get_range(client, &big, ByteRange::new(offset, offset + block)).await?;
            reads += 1;
        }
        measurements.random_reads(step, reads, block, started.elapsed());
    }

    cold();
    let started = Instant::now();
    let total = read_all_at_once(client, layout).await?;
    measurements.throughput(Step::ParallelRead, total, started.elapsed());

    let write_key = format!("{work_dir}/{}", crate::workload::MIXED_WRITE_NAME);
    let data = big_bytes(&write_key, size);
    cold();
    let started = Instant::now();
    let (read, written) = tokio::join!(read_all_at_once(client, layout), put_object(client, &write_key, data));
    written?;
    measurements.throughput(Step::ReadersAndWriter, read? + size, started.elapsed());

    let names =
        |dir: &str| (0..layout.small_files).map(|index| format!("{work_dir}/{dir}/f{index}")).collect::<Vec<_>>();
    let started = Instant::now();
    put_small_objects(client, names("serial"), 1).await?;
    measurements.seconds(Step::CreateSerial, started.elapsed());
    let started = Instant::now();
    put_small_objects(client, names("parallel"), PARALLEL_REQUESTS).await?;
    measurements.seconds(Step::CreateParallel, started.elapsed());

    let ls_prefix = format!("{}/", layout.ls_dir());
    for step in [Step::Ls, Step::LsLong] {
        cold();
        let started = Instant::now();
        let (keys, _) = list_all(client, &ls_prefix, Some("/")).await?;
        measurements.seconds(step, started.elapsed());
        if keys.len() != layout.small_files as usize {
            bail!("listing {ls_prefix} found {} keys", keys.len());
        }
    }

    cold();
    let started = Instant::now();
    list_all(client, &format!("{}/", layout.tree_dir()), None).await?;
    measurements.seconds(Step::Find, started.elapsed());

    cold();
    let started = Instant::now();
    for key in layout.ls_keys() {
        get_whole(client, &key).await?;
    }
    measurements.seconds(Step::CatSmall, started.elapsed());

    let started = Instant::now();
    delete_prefix(client, &format!("{work_dir}/")).await?;
    measurements.seconds(Step::RmRf, started.elapsed());
    Ok(())
}
