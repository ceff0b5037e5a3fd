//! Differential test: the same seeded sequences of S3 requests go through the simulator's S3
//! model (`goofys_sim::s3_model::S3Model`) and, through the real transport, to SeaweedFS on
//! 127.0.0.1. After every step the two results must agree on what S3 semantics fix: success or
//! failure, status class and error code, listing pages (keys, sizes, ETags, common prefixes,
//! whether another page follows), bodies and ranges, metadata and content types, and ETags.
//! This is how the simulator earns the name "S3-equivalent", and how the transport shows that
//! it speaks S3 faithfully.
//!
//! Not compared, because they legitimately differ: times (Last-Modified), upload ids and
//! continuation tokens (opaque; each side follows its own), request ids and messages.
//!
//! SeaweedFS behaviours that differ from S3 are kept out of the generated requests rather than
//! papered over in the comparison: a "directory" prefix outlives its last object on SeaweedFS,
//! so every directory the keys use holds an anchor object that is never deleted; keys ending in
//! `/`, with dot segments, a backslash or a leading `/` are not generated (see
//! `transport_seaweedfs.rs`, which pins down what SeaweedFS does with them).
//!
//! A failure prints the seed and the steps so far; `GOOFYS_DIFF_SEED=<n>` replays one seed.

use std::time::SystemTime;

use bytes::Bytes;
use goofys_core::UnixNanos;
use goofys_core::s3_types::{
    ByteRange, CompletedPart, ETag, Metadata, MetadataDirective, RequestBody, S3Error, S3ErrorCode, S3Request,
    S3Response, S3Result, ServiceError, UploadId,
};
use goofys_s3::S3Client;
use goofys_sim::s3_model::S3Model;
use goofys_tests::seaweedfs::SeaweedFs;
use rand_core::{Rng, SeedableRng as _};

const STEPS_PER_SEED: usize = 250;
const SEEDS: [u64; 8] = [1, 2, 3, 4, 5, 6, 7, 8];
const MIB: usize = 1024 * 1024;

/// Objects that keep each directory alive; never written or deleted by the steps.
const ANCHORS: [&str; 3] = ["a/~anchor", "b/~anchor", "b/x/~anchor"];
/// Keys the steps write, read, copy and delete: files beside directories of the same name,
/// and characters that need encoding.
/// Keys the steps write, read, copy and delete, with characters that need encoding. None is
/// also a directory name (`a` beside `a/x`): SeaweedFS keeps files and directories in one
/// namespace, so `If-None-Match: *` on `a` fails with 412 because of the directory, and a
/// listing page with `max-keys=1` returns both `a` and `a/`. The SeaweedFS integration test
/// covers a file beside a directory without those two.
const KEYS: [&str; 10] = ["f", "a/x", "a/y", "a/sp ace", "a/x2", "b/x/1", "b/x/plus+1", "b/é", "b/z", "c"];
const PREFIXES: [&str; 9] = ["", "a", "a/", "b/", "b/x/", "b/x", "c", "zz", "a/sp"];
const CONTENT_TYPES: [&str; 2] = ["text/plain", "application/octet-stream"];
/// Upload slots: the steps name uploads by slot; each side maps a slot to its own upload id.
const SLOTS: u32 = 3;

struct Generator {
    rng: rand_pcg::Pcg64Mcg,
    /// The key of the upload open in each slot, as the model's results tell.
    slot_keys: Vec<Option<String>>,
}

impl Generator {
    fn below(&mut self, n: u64) -> u64 {
        self.rng.next_u64() % n
    }

    fn chance(&mut self, one_in: u64) -> bool {
        self.below(one_in) == 0
    }

    fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len() as u64) as usize]
    }

    fn key(&mut self) -> String {
        self.pick(&KEYS).to_owned()
    }

    /// Follows the model's results: which slots hold an open upload.
    fn observe(&mut self, step: &Step, outcome: &Outcome) {
        let slot_of = |id: &UploadId| id.0.strip_prefix("slot-").and_then(|n| n.parse::<usize>().ok());
        match (step, outcome) {
            (Step::Create { slot, request: S3Request::CreateMultipartUpload { key, .. } }, Outcome::UploadCreated) => {
                self.slot_keys[*slot as usize] = Some(key.clone())
            }
            (Step::Complete { slot, .. }, Outcome::Etag(_)) => self.slot_keys[*slot as usize] = None,
            (Step::Request(S3Request::AbortMultipartUpload { upload_id, .. }), Outcome::Done) => {
                if let Some(slot) = slot_of(upload_id) {
                    self.slot_keys[slot] = None;
                }
            }
            _ => {}
        }
    }

    /// An upload slot and a key for a request on it: mostly the key the upload is for, so that
    /// parts land; sometimes another (NoSuchUpload).
    fn upload_target(&mut self) -> (u32, String) {
        let slot = self.below(u64::from(SLOTS)) as u32;
        let key = match self.slot_keys[slot as usize].clone() {
            Some(key) if !self.chance(6) => key,
            _ => self.key(),
        };
        (slot, key)
    }

    fn body(&mut self, max_len: u64) -> Bytes {
        let len = self.below(max_len + 1) as usize;
        let mut bytes = vec![0u8; len];
        self.rng.fill_bytes(&mut bytes);
        Bytes::from(bytes)
    }

    fn metadata(&mut self) -> Metadata {
        match self.below(3) {
            0 => Metadata::new(),
            1 => [("mtime".to_owned(), self.below(1_000_000).to_string())].into(),
            _ => [("mode".to_owned(), "0644".to_owned()), ("uid".to_owned(), "1000".to_owned())].into(),
        }
    }

    /// An ETag condition: the object's real ETag (from the model), a wrong one, or none.
    fn condition(&mut self, model: &mut S3Model, key: &str) -> Option<ETag> {
        match self.below(4) {
            0 => Some(ETag::new("0123456789abcdef0123456789abcdef")),
            1 => current_etag(model, key),
            _ => None,
        }
    }

    fn range(&mut self) -> Option<ByteRange> {
        if self.chance(2) {
            return None;
        }
        let start = self.below(3000);
        Some(ByteRange::new(start, start + 1 + self.below(1500)))
    }

    fn step(&mut self, model: &mut S3Model, parts_by_slot: &[Vec<(u32, ETag)>]) -> Step {
        let slot_id = |slot: u32| UploadId(format!("slot-{slot}"));
        match self.below(100) {
            0..=19 => {
                let key = self.key();
                Step::Request(S3Request::PutObject {
                    body: RequestBody::from(self.body(3000)),
                    content_type: Some(self.pick(&CONTENT_TYPES).to_owned()),
                    metadata: self.metadata(),
                    // If-Match on a missing key: AWS (and the model) answer 404 NoSuchKey,
                    // SeaweedFS 412 as RFC 9110 says; so only existing keys get one.
                    if_match: if self.chance(5) && current_etag(model, &key).is_some() {
                        self.condition(model, &key)
                    } else {
                        None
                    },
                    if_none_match_any: self.chance(8),
                    key,
                })
            }
            20..=31 => {
                let key = self.key();
                Step::Request(S3Request::GetObject {
                    range: self.range(),
                    if_match: if self.chance(4) { self.condition(model, &key) } else { None },
                    key,
                })
            }
            32..=38 => Step::Request(S3Request::HeadObject { key: self.key() }),
            39..=54 => Step::List {
                prefix: self.pick(&PREFIXES).to_owned(),
                delimiter: self.chance(2).then(|| "/".to_owned()),
                max_keys: self.pick(&[1, 2, 3, 5, 1000]),
                start_after: self.chance(4).then(|| self.key()),
            },
            55..=62 => {
                let source_key = self.key();
                let key = self.key();
                // A copy of a multipart object is a single-part object with the MD5 as its
                // ETag on AWS (and in the model); SeaweedFS keeps the `-N` ETag of the
                // source. So multipart objects are not copied here.
                if current_etag(model, &source_key).is_some_and(|etag| etag.as_str().contains('-')) {
                    return Step::Request(S3Request::HeadObject { key: source_key });
                }
                let metadata_directive = if self.chance(2) {
                    MetadataDirective::Copy
                } else {
                    MetadataDirective::Replace {
                        content_type: Some(self.pick(&CONTENT_TYPES).to_owned()),
                        metadata: self.metadata(),
                    }
                };
                Step::Request(S3Request::CopyObject {
                    source_if_match: if self.chance(4) { self.condition(model, &source_key) } else { None },
                    source_key,
                    key,
                    metadata_directive,
                })
            }
            63..=69 => Step::Request(S3Request::DeleteObject { key: self.key() }),
            70..=73 => {
                let count = 1 + self.below(4);
                Step::Request(S3Request::DeleteObjects { keys: (0..count).map(|_| self.key()).collect() })
            }
            74..=78 => Step::Create {
                slot: self.below(u64::from(SLOTS)) as u32,
                request: S3Request::CreateMultipartUpload {
                    key: self.key(),
                    content_type: Some(self.pick(&CONTENT_TYPES).to_owned()),
                    metadata: self.metadata(),
                },
            },
            79..=87 => {
                // Mostly small parts (only a last part may be small); sometimes a full 5 MiB.
                let body = if self.chance(6) {
                    let mut big = vec![0u8; 5 * MIB];
                    self.rng.fill_bytes(&mut big);
                    Bytes::from(big)
                } else {
                    self.body(2000)
                };
                let (slot, key) = self.upload_target();
                Step::Request(S3Request::UploadPart {
                    key,
                    upload_id: slot_id(slot),
                    part_number: 1 + self.below(3) as u32,
                    body: RequestBody::from(body),
                })
            }
            88..=91 => {
                let source_key = self.key();
                let (slot, key) = self.upload_target();
                Step::Request(S3Request::UploadPartCopy {
                    key,
                    upload_id: slot_id(slot),
                    part_number: 1 + self.below(3) as u32,
                    // Whole sources only: for a ranged copy SeaweedFS answers the source's ETag
                    // instead of the part's MD5 (the bytes are right; transport_seaweedfs.rs
                    // checks them), which would also break CompleteMultipartUpload here.
                    source_range: None,
                    source_if_match: if self.chance(4) { self.condition(model, &source_key) } else { None },
                    source_key,
                })
            }
            92..=96 => {
                // An upload no part reached: AWS (and the model) answer InvalidPart,
                // SeaweedFS NoSuchUpload (it has no record of the upload until a part
                // arrives); so only uploads with a part are completed. And when a completion
                // is wrong twice over (a part missing and another too small), which error
                // comes first is not settled (the model says InvalidPart, SeaweedFS
                // EntityTooSmall); so a missing part is only ever named alone.
                let (slot, key) = self.upload_target();
                let mut uploaded: Vec<u32> = parts_by_slot[slot as usize].iter().map(|(n, _)| *n).collect();
                if uploaded.is_empty() {
                    return Step::Request(S3Request::HeadObject { key });
                }
                uploaded.sort_unstable();
                uploaded.dedup();
                let part_numbers = if self.chance(5) {
                    vec![(1..=4).find(|n| !uploaded.contains(n)).unwrap_or(5)]
                } else {
                    let keep = 1 + self.below(uploaded.len() as u64) as usize;
                    uploaded[..keep].to_vec()
                };
                Step::Complete { slot, key, part_numbers }
            }
            _ => {
                // Aborting an upload that was aborted or completed: AWS (and the model) answer
                // NoSuchUpload, SeaweedFS succeeds again; so only open slots are aborted.
                let (slot, key) = self.upload_target();
                if self.slot_keys[slot as usize].is_none() {
                    return Step::Request(S3Request::HeadObject { key });
                }
                Step::Request(S3Request::AbortMultipartUpload { key, upload_id: slot_id(slot) })
            }
        }
    }
}

fn current_etag(model: &mut S3Model, key: &str) -> Option<ETag> {
    match model.apply(now(), &S3Request::HeadObject { key: key.to_owned() }) {
        Ok(S3Response::HeadObject(meta)) => Some(meta.etag),
        _ => None,
    }
}

fn now() -> UnixNanos {
    let since_epoch = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).expect("the clock is after 1970");
    UnixNanos(since_epoch.as_nanos() as i64)
}

/// One step of a sequence.
#[derive(Clone, Debug)]
enum Step {
    /// A request sent as is (an upload id `slot-N` is replaced by the side's id for slot N).
    Request(S3Request),
    /// CreateMultipartUpload whose upload id goes into `slot`.
    Create { slot: u32, request: S3Request },
    /// CompleteMultipartUpload of the upload in `slot`, naming parts with the ETags the model
    /// gave them (the comparison of UploadPart results checks the server gave the same).
    Complete { slot: u32, key: String, part_numbers: Vec<u32> },
    /// A whole paged listing; each side follows its own continuation tokens.
    List { prefix: String, delimiter: Option<String>, max_keys: u32, start_after: Option<String> },
}

/// What both sides must agree on.
#[derive(Clone, PartialEq, Eq, Debug)]
enum Outcome {
    Failed {
        status_class: u16,
        code: S3ErrorCode,
    },
    Listed(Vec<PageView>),
    Meta(MetaView),
    Got {
        range_start: u64,
        meta: MetaView,
        body_md5: String,
        body_len: usize,
    },
    Etag(ETag),
    UploadCreated,
    /// Keys with uploads in progress (upload ids differ between the two sides).
    UploadKeys(Vec<String>),
    Done,
    DeleteFailures(Vec<(String, S3ErrorCode)>),
    /// A transport failure: never expected from either side.
    Broken(String),
}

#[derive(Clone, PartialEq, Eq, Debug)]
struct PageView {
    objects: Vec<(String, u64, ETag)>,
    common_prefixes: Vec<String>,
    more: bool,
}

#[derive(Clone, PartialEq, Eq, Debug)]
struct MetaView {
    size_bytes: u64,
    etag: ETag,
    content_type: Option<String>,
    metadata: Metadata,
}

fn meta_view(meta: &goofys_core::s3_types::ObjectMeta) -> MetaView {
    MetaView {
        size_bytes: meta.size_bytes,
        etag: meta.etag.clone(),
        content_type: meta.content_type.clone(),
        metadata: meta.metadata.clone(),
    }
}

fn hex_md5(bytes: &[u8]) -> String {
    use md5::Digest as _;
    md5::Md5::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

fn outcome(result: &S3Result) -> Outcome {
    match result {
        Err(S3Error::Service(ServiceError { status, code, .. })) => {
            Outcome::Failed { status_class: status / 100, code: code.clone() }
        }
        Err(S3Error::Transport(error)) => Outcome::Broken(format!("{error:?}")),
        Ok(S3Response::ListObjectsV2(_)) => unreachable!("listings are compared by walk"),
        Ok(S3Response::HeadObject(meta)) => Outcome::Meta(meta_view(meta)),
        Ok(S3Response::GetObject(output)) => Outcome::Got {
            range_start: output.range_start,
            meta: meta_view(&output.meta),
            body_md5: hex_md5(&output.body),
            body_len: output.body.len(),
        },
        Ok(S3Response::PutObject { etag })
        | Ok(S3Response::UploadPart { etag })
        | Ok(S3Response::UploadPartCopy { etag })
        | Ok(S3Response::CompleteMultipartUpload { etag })
        | Ok(S3Response::CopyObject { etag }) => Outcome::Etag(etag.clone()),
        Ok(S3Response::CreateMultipartUpload { .. }) => Outcome::UploadCreated,
        Ok(S3Response::AbortMultipartUpload) | Ok(S3Response::DeleteObject) => Outcome::Done,
        Ok(S3Response::DeleteObjects { failed }) => {
            Outcome::DeleteFailures(failed.iter().map(|f| (f.key.clone(), f.code.clone())).collect())
        }
        Ok(S3Response::ListMultipartUploads { uploads }) => {
            Outcome::UploadKeys(uploads.iter().map(|upload| upload.key.clone()).collect())
        }
    }
}

/// One side of the comparison: something that executes requests, with its own upload ids.
trait Side {
    async fn run(&mut self, request: &S3Request) -> S3Result;
    fn uploads(&mut self) -> &mut Vec<Option<UploadId>>;
}

struct ModelSide(S3Model, Vec<Option<UploadId>>);
struct ServerSide<'c>(&'c S3Client, Vec<Option<UploadId>>);

impl Side for ModelSide {
    async fn run(&mut self, request: &S3Request) -> S3Result {
        self.0.apply(now(), request)
    }
    fn uploads(&mut self) -> &mut Vec<Option<UploadId>> {
        &mut self.1
    }
}

impl Side for ServerSide<'_> {
    async fn run(&mut self, request: &S3Request) -> S3Result {
        self.0.execute(request).await
    }
    fn uploads(&mut self) -> &mut Vec<Option<UploadId>> {
        &mut self.1
    }
}

/// Replaces an upload id `slot-N` with this side's id for slot N (unknown slots stay as they
/// are: an id neither side has).
fn with_side_upload_id(request: &S3Request, uploads: &[Option<UploadId>]) -> S3Request {
    let resolve = |id: &UploadId| {
        id.0.strip_prefix("slot-")
            .and_then(|n| n.parse::<usize>().ok())
            .and_then(|n| uploads.get(n).cloned().flatten())
            .unwrap_or_else(|| id.clone())
    };
    let mut request = request.clone();
    match &mut request {
        S3Request::UploadPart { upload_id, .. }
        | S3Request::UploadPartCopy { upload_id, .. }
        | S3Request::CompleteMultipartUpload { upload_id, .. }
        | S3Request::AbortMultipartUpload { upload_id, .. } => *upload_id = resolve(upload_id),
        _ => {}
    }
    request
}

async fn list_walk(side: &mut impl Side, step: &Step) -> Outcome {
    let Step::List { prefix, delimiter, max_keys, start_after } = step else { unreachable!() };
    let mut pages = Vec::new();
    let mut token = None;
    for _ in 0..100 {
        let request = S3Request::ListObjectsV2 {
            prefix: prefix.clone(),
            delimiter: delimiter.clone(),
            continuation_token: token.take(),
            start_after: start_after.clone(),
            max_keys: *max_keys,
        };
        match side.run(&request).await {
            Ok(S3Response::ListObjectsV2(page)) => {
                pages.push(PageView {
                    objects: page.objects.iter().map(|o| (o.key.clone(), o.size_bytes, o.etag.clone())).collect(),
                    common_prefixes: page.common_prefixes.clone(),
                    more: page.next_continuation_token.is_some(),
                });
                match page.next_continuation_token {
                    Some(next) => token = Some(next),
                    None => return Outcome::Listed(pages),
                }
            }
            other => return outcome(&other),
        }
    }
    Outcome::Broken("listing did not end within 100 pages".into())
}

/// Runs `step` on one side. `part_etags` are the model's ETags of the parts of each slot.
async fn run_step(side: &mut impl Side, step: &Step, part_etags: &[Vec<(u32, ETag)>]) -> Outcome {
    match step {
        Step::Request(request) => {
            let request = with_side_upload_id(request, side.uploads());
            outcome(&side.run(&request).await)
        }
        Step::Create { slot, request } => {
            let result = side.run(request).await;
            if let Ok(S3Response::CreateMultipartUpload { upload_id }) = &result {
                side.uploads()[*slot as usize] = Some(upload_id.clone());
            }
            outcome(&result)
        }
        Step::Complete { slot, key, part_numbers } => {
            let parts = part_numbers
                .iter()
                .map(|number| CompletedPart {
                    part_number: *number,
                    etag: part_etags[*slot as usize]
                        .iter()
                        .rev()
                        .find(|(n, _)| n == number)
                        .map(|(_, etag)| etag.clone())
                        .unwrap_or_else(|| ETag::new("00000000000000000000000000000000")),
                })
                .collect();
            let request = S3Request::CompleteMultipartUpload {
                key: key.clone(),
                upload_id: UploadId(format!("slot-{slot}")),
                parts,
            };
            let request = with_side_upload_id(&request, side.uploads());
            outcome(&side.run(&request).await)
        }
        Step::List { .. } => list_walk(side, step).await,
    }
}

/// Records the model's part ETags by slot, so that CompleteMultipartUpload can name them.
fn remember_part(step: &Step, result: &Outcome, part_etags: &mut [Vec<(u32, ETag)>]) {
    let (Step::Request(S3Request::UploadPart { upload_id, part_number, .. })
    | Step::Request(S3Request::UploadPartCopy { upload_id, part_number, .. })) = step
    else {
        if let Step::Create { slot, .. } = step {
            part_etags[*slot as usize].clear();
        }
        return;
    };
    if let (Some(slot), Outcome::Etag(etag)) =
        (upload_id.0.strip_prefix("slot-").and_then(|n| n.parse::<usize>().ok()), result)
    {
        part_etags[slot].push((*part_number, etag.clone()));
    }
}

/// Kinds of agreement the default seeds must all show, so that the test cannot quietly stop
/// testing something (a generator change that never completes an upload, say).
const REQUIRED_COVERAGE: [&str; 21] = [
    "AbortMultipartUpload ok",
    "CopyObject ok",
    "CreateMultipartUpload ok",
    "DeleteObject ok",
    "DeleteObjects ok",
    "GetObject ok",
    "HeadObject ok",
    "PutObject ok",
    "UploadPart ok",
    "UploadPartCopy ok",
    "multipart completed",
    "listing of several pages",
    "listing with common prefixes",
    "ranged get",
    "failed EntityTooSmall",
    "failed InvalidPart",
    "failed InvalidRange",
    "failed InvalidRequest",
    "failed NoSuchKey",
    "failed NoSuchUpload",
    "failed PreconditionFailed",
];

/// What kind of agreement a step showed, to check that the sequences exercised what matters.
fn coverage_label(step: &Step, outcome: &Outcome) -> String {
    match (step, outcome) {
        (_, Outcome::Failed { code, .. }) => format!("failed {}", code.as_str()),
        (Step::List { .. }, Outcome::Listed(pages)) if pages.len() > 1 => "listing of several pages".into(),
        (Step::List { .. }, Outcome::Listed(pages)) if pages.iter().any(|p| !p.common_prefixes.is_empty()) => {
            "listing with common prefixes".into()
        }
        (Step::Complete { .. }, Outcome::Etag(etag)) if etag.as_str().contains('-') => "multipart completed".into(),
        (_, Outcome::Got { range_start, .. }) if *range_start > 0 => "ranged get".into(),
        (Step::Request(request), _) => format!("{} ok", request.operation_name()),
        (Step::Create { .. }, _) => "CreateMultipartUpload ok".into(),
        (Step::Complete { .. }, _) => "CompleteMultipartUpload ok".into(),
        (Step::List { .. }, _) => "ListObjectsV2 ok".into(),
    }
}

async fn run_seed(seed: u64, server: &SeaweedFs, coverage: &mut std::collections::BTreeMap<String, u32>) {
    let client = server.new_bucket(&format!("diff{seed}")).await;
    let mut model = ModelSide(S3Model::new(), vec![None; SLOTS as usize]);
    let mut real = ServerSide(&client, vec![None; SLOTS as usize]);
    for anchor in ANCHORS {
        let put = S3Request::PutObject {
            key: anchor.to_owned(),
            body: RequestBody::from(b"anchor".as_slice()),
            content_type: Some("text/plain".into()),
            metadata: Metadata::new(),
            if_match: None,
            if_none_match_any: false,
        };
        model.run(&put).await.unwrap();
        real.run(&put).await.unwrap();
    }
    let mut generator =
        Generator { rng: rand_pcg::Pcg64Mcg::seed_from_u64(seed), slot_keys: vec![None; SLOTS as usize] };
    let mut part_etags: Vec<Vec<(u32, ETag)>> = vec![Vec::new(); SLOTS as usize];
    let mut history = Vec::new();
    for index in 0..STEPS_PER_SEED {
        let step = generator.step(&mut model.0, &part_etags);
        let expected = run_step(&mut model, &step, &part_etags).await;
        let actual = run_step(&mut real, &step, &part_etags).await;
        history.push(format!("{index}: {}", describe(&step)));
        assert!(
            expected == actual,
            "seed {seed}, step {index}: the model and SeaweedFS disagree\n\
             step: {step:?}\nmodel:     {expected:?}\nSeaweedFS: {actual:?}\n\
             steps so far:\n{}\nreplay with GOOFYS_DIFF_SEED={seed}",
            history.join("\n")
        );
        *coverage.entry(coverage_label(&step, &expected)).or_default() += 1;
        generator.observe(&step, &expected);
        remember_part(&step, &expected, &mut part_etags);
    }
}

/// A step in one line (bodies show as their length), cut to 200 characters.
fn describe(step: &Step) -> String {
    format!("{step:?}").chars().take(200).collect()
}

#[tokio::test]
async fn the_model_and_seaweedfs_agree_on_seeded_request_sequences() {
    let seeds: Vec<u64> = match std::env::var("GOOFYS_DIFF_SEED") {
        Ok(seed) => vec![seed.parse().expect("GOOFYS_DIFF_SEED is a number")],
        Err(_) => SEEDS.to_vec(),
    };
    let server = SeaweedFs::shared();
    let mut coverage = std::collections::BTreeMap::new();
    for seed in seeds {
        run_seed(seed, &server, &mut coverage).await;
    }
    eprintln!("agreed on: {coverage:#?}");
    if std::env::var("GOOFYS_DIFF_SEED").is_err() {
        let missing: Vec<&str> =
            REQUIRED_COVERAGE.iter().copied().filter(|label| !coverage.contains_key(*label)).collect();
        assert!(missing.is_empty(), "the seeded sequences no longer exercise {missing:?}; adjust the generator");
    }
}
