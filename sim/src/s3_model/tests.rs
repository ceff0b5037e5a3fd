//! Unit tests of the S3 model, one per rule, named after the rule.

use super::*;
use goofys_core::s3_types::RequestBody;
use proptest::prelude::*;

const SMALL_PART_BYTES: u64 = 8;

fn at(secs: i64) -> UnixNanos {
    UnixNanos::from_secs(secs)
}

fn small_parts_model() -> S3Model {
    S3Model::with_limits(ModelLimits { min_part_size_bytes: SMALL_PART_BYTES, max_parts: 5, ..ModelLimits::default() })
}

fn put_request(key: &str, body: &'static [u8]) -> S3Request {
    S3Request::PutObject {
        key: key.into(),
        body: RequestBody::from(body),
        content_type: None,
        metadata: Metadata::new(),
        if_match: None,
        if_none_match_any: false,
    }
}

fn put(model: &mut S3Model, key: &str, body: &'static [u8]) -> ETag {
    match model.apply(at(1), &put_request(key, body)) {
        Ok(S3Response::PutObject { etag }) => etag,
        other => panic!("put {key}: {other:?}"),
    }
}

fn put_keys(model: &mut S3Model, keys: &[&str]) {
    for key in keys {
        model.put_object(at(1), key, Bytes::from_static(b"x"));
    }
}

fn list_request(
    prefix: &str,
    delimiter: Option<&str>,
    max_keys: u32,
    continuation_token: Option<String>,
    start_after: Option<&str>,
) -> S3Request {
    S3Request::ListObjectsV2 {
        prefix: prefix.into(),
        delimiter: delimiter.map(Into::into),
        continuation_token,
        start_after: start_after.map(Into::into),
        max_keys,
    }
}

fn list_page(model: &mut S3Model, request: &S3Request) -> ListPage {
    match model.apply(at(2), request) {
        Ok(S3Response::ListObjectsV2(page)) => page,
        other => panic!("list {request:?}: {other:?}"),
    }
}

fn list(model: &mut S3Model, prefix: &str, delimiter: Option<&str>, max_keys: u32) -> ListPage {
    list_page(model, &list_request(prefix, delimiter, max_keys, None, None))
}

fn keys_of(page: &ListPage) -> Vec<&str> {
    page.objects.iter().map(|object| object.key.as_str()).collect()
}

/// Every page of a listing, following continuation tokens (and passing StartAfter on every
/// page, as SDK paginators do).
fn all_pages(
    model: &mut S3Model,
    prefix: &str,
    delimiter: Option<&str>,
    max_keys: u32,
    start_after: Option<&str>,
) -> Vec<ListPage> {
    let mut pages = Vec::new();
    let mut token = None;
    loop {
        let request = list_request(prefix, delimiter, max_keys, token, start_after);
        let page = list_page(model, &request);
        token = page.next_continuation_token.clone();
        pages.push(page);
        assert!(pages.len() <= 10_000, "listing does not end");
        if token.is_none() {
            return pages;
        }
    }
}

fn error_of(result: S3Result) -> (u16, S3ErrorCode) {
    match result {
        Err(S3Error::Service(error)) => (error.status, error.code),
        other => panic!("expected a service error, got {other:?}"),
    }
}

fn get(key: &str, range: Option<ByteRange>, if_match: Option<ETag>) -> S3Request {
    S3Request::GetObject { key: key.into(), range, if_match }
}

fn get_output(model: &mut S3Model, request: &S3Request) -> GetObjectOutput {
    match model.apply(at(2), request) {
        Ok(S3Response::GetObject(output)) => output,
        other => panic!("get {request:?}: {other:?}"),
    }
}

fn md5_hex(bytes: &[u8]) -> String {
    hex(&md5_of(bytes))
}

fn create_upload(model: &mut S3Model, key: &str) -> UploadId {
    let request = S3Request::CreateMultipartUpload {
        key: key.into(),
        content_type: Some("video/mp4".into()),
        metadata: Metadata::from([("mtime".into(), "7".into())]),
    };
    match model.apply(at(10), &request) {
        Ok(S3Response::CreateMultipartUpload { upload_id }) => upload_id,
        other => panic!("create upload {key}: {other:?}"),
    }
}

fn upload_part_request(key: &str, upload_id: &UploadId, part_number: u32, body: &[u8]) -> S3Request {
    S3Request::UploadPart {
        key: key.into(),
        upload_id: upload_id.clone(),
        part_number,
        body: RequestBody::from(body.to_vec()),
    }
}

fn upload_part(model: &mut S3Model, key: &str, upload_id: &UploadId, part_number: u32, body: &[u8]) -> CompletedPart {
    match model.apply(at(11), &upload_part_request(key, upload_id, part_number, body)) {
        Ok(S3Response::UploadPart { etag }) => CompletedPart { part_number, etag },
        other => panic!("upload part {part_number}: {other:?}"),
    }
}

fn complete_request(key: &str, upload_id: &UploadId, parts: &[CompletedPart]) -> S3Request {
    S3Request::CompleteMultipartUpload { key: key.into(), upload_id: upload_id.clone(), parts: parts.to_vec() }
}

fn copy_request(source_key: &str, key: &str, directive: MetadataDirective) -> S3Request {
    S3Request::CopyObject {
        source_key: source_key.into(),
        key: key.into(),
        metadata_directive: directive,
        source_if_match: None,
    }
}

fn part_copy_request(
    upload_id: &UploadId,
    source_key: &str,
    source_range: Option<ByteRange>,
    source_if_match: Option<ETag>,
) -> S3Request {
    S3Request::UploadPartCopy {
        key: "dest".into(),
        upload_id: upload_id.clone(),
        part_number: 1,
        source_key: source_key.into(),
        source_range,
        source_if_match,
    }
}

// ---- Listing ----

#[test]
fn list_returns_keys_in_utf8_byte_order() {
    let mut model = S3Model::new();
    let keys = ["z", "a", "B", "é", "a/b", "a-b", "\u{10000}", "\u{FFFD}", "A"];
    put_keys(&mut model, &keys);
    let page = list(&mut model, "", None, 1000);
    let mut expected: Vec<&str> = keys.to_vec();
    expected.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
    assert_eq!(keys_of(&page), expected);
    assert_eq!(keys_of(&page)[..4], ["A", "B", "a", "a-b"]);
}

#[test]
fn list_with_delimiter_rolls_keys_into_common_prefixes() {
    let mut model = S3Model::new();
    put_keys(&mut model, &["dir/a", "dir/sub/b", "dir/sub/c", "dir/t/d", "dir/z", "top"]);
    let page = list(&mut model, "dir/", Some("/"), 1000);
    assert_eq!(keys_of(&page), ["dir/a", "dir/z"]);
    assert_eq!(page.common_prefixes, ["dir/sub/", "dir/t/"]);
    assert_eq!(page.next_continuation_token, None);
    let root = list(&mut model, "", Some("/"), 1000);
    assert_eq!(keys_of(&root), ["top"]);
    assert_eq!(root.common_prefixes, ["dir/"]);
}

#[test]
fn list_with_prefix_returns_only_keys_that_start_with_it() {
    let mut model = S3Model::new();
    put_keys(&mut model, &["di", "dir/a", "dish", "dj", "d", "e/di"]);
    let page = list(&mut model, "di", None, 1000);
    assert_eq!(keys_of(&page), ["di", "dir/a", "dish"]);
    let rolled = list(&mut model, "di", Some("/"), 1000);
    assert_eq!(keys_of(&rolled), ["di", "dish"]);
    assert_eq!(rolled.common_prefixes, ["dir/"]);
}

#[test]
fn list_with_multi_character_delimiter() {
    let mut model = S3Model::new();
    put_keys(&mut model, &["a--b", "a--c--d", "a-b", "x"]);
    let page = list(&mut model, "a--", Some("--"), 1000);
    assert_eq!(keys_of(&page), ["a--b"]);
    assert_eq!(page.common_prefixes, ["a--c--"]);
}

#[test]
fn list_treats_an_empty_delimiter_as_none() {
    let mut model = S3Model::new();
    put_keys(&mut model, &["a/b", "c"]);
    let page = list(&mut model, "", Some(""), 1000);
    assert_eq!(keys_of(&page), ["a/b", "c"]);
    assert!(page.common_prefixes.is_empty());
}

#[test]
fn list_counts_common_prefixes_toward_max_keys() {
    let mut model = S3Model::new();
    put_keys(&mut model, &["a/1", "a/2", "b", "c/1", "d"]);
    let first = list(&mut model, "", Some("/"), 2);
    assert_eq!(first.common_prefixes, ["a/"]);
    assert_eq!(keys_of(&first), ["b"]);
    assert!(first.next_continuation_token.is_some());
    let second = list_page(&mut model, &list_request("", Some("/"), 2, first.next_continuation_token, None));
    assert_eq!(second.common_prefixes, ["c/"]);
    assert_eq!(keys_of(&second), ["d"]);
    assert_eq!(second.next_continuation_token, None);
}

#[test]
fn list_is_truncated_exactly_when_more_remain() {
    let mut model = S3Model::new();
    put_keys(&mut model, &["k1", "k2", "k3", "k4"]);
    let pages = all_pages(&mut model, "", None, 2, None);
    assert_eq!(pages.len(), 2, "4 keys in pages of 2 make exactly 2 pages");
    assert!(pages[0].next_continuation_token.is_some());
    assert_eq!(keys_of(&pages[1]), ["k3", "k4"]);
    model.put_object(at(1), "k5", Bytes::new());
    let pages = all_pages(&mut model, "", None, 2, None);
    assert_eq!(pages.len(), 3);
    assert_eq!(keys_of(&pages[2]), ["k5"]);
    let whole = list(&mut model, "", None, 5);
    assert_eq!(whole.next_continuation_token, None);
}

#[test]
fn list_continuation_token_is_opaque_and_deterministic() {
    let mut model = S3Model::new();
    put_keys(&mut model, &["secret/a", "secret/b", "secret/c"]);
    let first = list(&mut model, "", None, 1);
    let again = list(&mut model, "", None, 1);
    let token = first.next_continuation_token.expect("more remain");
    assert_eq!(again.next_continuation_token.as_deref(), Some(token.as_str()));
    assert!(!token.contains("secret"), "the token shows a key: {token}");
    assert!(token.bytes().all(|byte| byte.is_ascii_alphanumeric()));
}

#[test]
fn list_resumes_correctly_after_keys_change_between_pages() {
    let mut model = S3Model::new();
    put_keys(&mut model, &["a", "b", "c", "d"]);
    let first = list(&mut model, "", None, 2);
    assert_eq!(keys_of(&first), ["a", "b"]);
    // The next page's first key is deleted and an earlier key added: neither shows up.
    model.delete_object("c");
    put_keys(&mut model, &["aa"]);
    let second = list_page(&mut model, &list_request("", None, 2, first.next_continuation_token, None));
    assert_eq!(keys_of(&second), ["d"]);
    assert_eq!(second.next_continuation_token, None);
}

#[test]
fn list_start_after_skips_keys_up_to_and_including_it() {
    let mut model = S3Model::new();
    put_keys(&mut model, &["a", "b", "b0", "c"]);
    let page = list_page(&mut model, &list_request("", None, 1000, None, Some("b")));
    assert_eq!(keys_of(&page), ["b0", "c"]);
    let between = list_page(&mut model, &list_request("", None, 1000, None, Some("bz")));
    assert_eq!(keys_of(&between), ["c"]);
}

#[test]
fn list_start_after_inside_a_common_prefix_still_reports_the_prefix() {
    let mut model = S3Model::new();
    put_keys(&mut model, &["d/1", "d/2", "e"]);
    let page = list_page(&mut model, &list_request("", Some("/"), 1000, None, Some("d/1")));
    assert_eq!(page.common_prefixes, ["d/"]);
    assert_eq!(keys_of(&page), ["e"]);
}

#[test]
fn list_continuation_token_overrides_start_after() {
    let mut model = S3Model::new();
    put_keys(&mut model, &["a", "b", "c", "d"]);
    let first = list(&mut model, "", None, 1);
    let resumed = list_page(&mut model, &list_request("", None, 1000, first.next_continuation_token, Some("c")));
    assert_eq!(keys_of(&resumed), ["b", "c", "d"]);
}

#[test]
fn list_invalid_continuation_token_is_400_invalid_argument() {
    let mut model = S3Model::new();
    put_keys(&mut model, &["a"]);
    for token in ["not hex", "abc", "ff"] {
        let request = list_request("", None, 10, Some(token.into()), None);
        assert_eq!(
            error_of(model.apply(at(2), &request)),
            (400, S3ErrorCode::Other("InvalidArgument".into())),
            "token {token:?}"
        );
    }
}

#[test]
fn list_max_keys_is_capped_at_the_page_limit() {
    let mut model = S3Model::new();
    let keys: Vec<String> = (0..1100).map(|i| format!("many/{i:05}")).collect();
    for key in &keys {
        model.put_object(at(1), key, Bytes::new());
    }
    let pages = all_pages(&mut model, "many/", None, 5000, None);
    assert_eq!(pages.len(), 2);
    assert_eq!(pages[0].objects.len(), 1000);
    assert_eq!(pages[1].objects.len(), 100);

    let mut lowered = S3Model::with_limits(ModelLimits { max_keys_per_page: 3, ..ModelLimits::default() });
    put_keys(&mut lowered, &["a", "b", "c", "d"]);
    assert_eq!(list(&mut lowered, "", None, 1000).objects.len(), 3);
}

#[test]
fn list_max_keys_zero_returns_an_empty_untruncated_page() {
    let mut model = S3Model::new();
    put_keys(&mut model, &["a"]);
    assert_eq!(list(&mut model, "", None, 0), ListPage::default());
}

#[test]
fn key_can_be_both_an_object_and_a_prefix() {
    let mut model = S3Model::new();
    put_keys(&mut model, &["x", "x/y"]);
    let page = list(&mut model, "", Some("/"), 1000);
    assert_eq!(keys_of(&page), ["x"]);
    assert_eq!(page.common_prefixes, ["x/"]);
}

/// AWS semantics: a directory is only a prefix. SeaweedFS differs (it keeps the empty
/// directory and still lists `gone/sub/`); we follow AWS.
#[test]
fn directory_vanishes_with_its_last_object() {
    let mut model = S3Model::new();
    put_keys(&mut model, &["gone/sub/obj"]);
    assert_eq!(list(&mut model, "gone/", Some("/"), 1000).common_prefixes, ["gone/sub/"]);
    model.apply(at(3), &S3Request::DeleteObject { key: "gone/sub/obj".into() }).expect("delete");
    assert_eq!(list(&mut model, "gone/", Some("/"), 1000), ListPage::default());
    assert_eq!(list(&mut model, "", Some("/"), 1000), ListPage::default());
}

#[test]
fn list_handles_prefixes_ending_in_the_highest_code_points() {
    assert_eq!(prefix_successor("a/").as_deref(), Some("a0"));
    assert_eq!(prefix_successor("a\u{10FFFF}").as_deref(), Some("b"));
    assert_eq!(prefix_successor("\u{D7FF}").as_deref(), Some("\u{E000}"));
    assert_eq!(prefix_successor("\u{10FFFF}"), None);
    assert_eq!(prefix_successor(""), None);

    let mut model = S3Model::new();
    put_keys(&mut model, &["a\u{10FFFF}", "a\u{10FFFF}\u{10FFFF}x", "a\u{10FFFF}/q", "b", "\u{10FFFF}/z"]);
    let under = list(&mut model, "a\u{10FFFF}", Some("/"), 1000);
    assert_eq!(keys_of(&under), ["a\u{10FFFF}", "a\u{10FFFF}\u{10FFFF}x"]);
    assert_eq!(under.common_prefixes, ["a\u{10FFFF}/"]);
    let top = list(&mut model, "", Some("/"), 1);
    let pages = all_pages(&mut model, "", Some("/"), 1, None);
    assert_eq!(keys_of(&top), ["a\u{10FFFF}"]);
    let prefixes: Vec<String> = pages.iter().flat_map(|page| page.common_prefixes.clone()).collect();
    assert_eq!(prefixes, ["a\u{10FFFF}/", "\u{10FFFF}/"]);
}

#[test]
fn list_summaries_carry_size_etag_and_last_modified() {
    let mut model = S3Model::new();
    let etag = model.put_object(at(42), "f", Bytes::from_static(b"hello"));
    let page = list(&mut model, "", None, 10);
    assert_eq!(page.objects, [ObjectSummary { key: "f".into(), size_bytes: 5, etag, last_modified: at(42) }]);
}

/// One listing computed by brute force over every key, the oracle for the proptest.
fn brute_force_listing(
    keys: &[String],
    prefix: &str,
    delimiter: Option<&str>,
    start_after: Option<&str>,
) -> (Vec<String>, Vec<String>) {
    let mut objects = Vec::new();
    let mut prefixes: Vec<String> = Vec::new();
    let mut sorted: Vec<&String> = keys.iter().collect();
    sorted.sort();
    sorted.dedup();
    for key in sorted {
        if !key.starts_with(prefix) || start_after.is_some_and(|after| key.as_str() <= after) {
            continue;
        }
        let rest = &key[prefix.len()..];
        match delimiter.and_then(|delimiter| rest.find(delimiter).map(|at| at + delimiter.len())) {
            Some(end) => {
                let common = key[..prefix.len() + end].to_owned();
                if prefixes.last() != Some(&common) {
                    prefixes.push(common);
                }
            }
            None => objects.push(key.clone()),
        }
    }
    (objects, prefixes)
}

fn small_key() -> impl Strategy<Value = String> {
    proptest::collection::vec(prop_oneof!["a", "b", "/", "é", "\u{10FFFF}"], 1..6).prop_map(|parts| parts.concat())
}

proptest! {
    #[test]
    fn paging_yields_exactly_the_unpaged_listing(
        keys in proptest::collection::vec(small_key(), 0..40),
        prefix in prop_oneof!["", "a", "a/", "b/", "é"],
        delimiter in prop_oneof![Just(None), Just(Some("/")), Just(Some("b/"))],
        start_after in proptest::option::of(small_key()),
        max_keys in 1u32..=7,
    ) {
        let mut model = S3Model::new();
        for key in &keys {
            model.put_object(at(1), key, Bytes::new());
        }
        let whole = list_page(
            &mut model,
            &list_request(&prefix, delimiter, 1000, None, start_after.as_deref()),
        );
        prop_assert_eq!(&whole.next_continuation_token, &None);
        let (expected_objects, expected_prefixes) =
            brute_force_listing(&keys, &prefix, delimiter, start_after.as_deref());
        prop_assert_eq!(keys_of(&whole), expected_objects.iter().map(String::as_str).collect::<Vec<_>>());
        prop_assert_eq!(&whole.common_prefixes, &expected_prefixes);

        let pages = all_pages(&mut model, &prefix, delimiter, max_keys, start_after.as_deref());
        let mut entries: Vec<String> = Vec::new();
        for (index, page) in pages.iter().enumerate() {
            let size = page.objects.len() + page.common_prefixes.len();
            if index + 1 < pages.len() {
                prop_assert_eq!(size, max_keys as usize, "only the last page may be short");
            } else {
                prop_assert!(size <= max_keys as usize);
            }
            let mut page_entries: Vec<String> = keys_of(page).into_iter().map(String::from).collect();
            page_entries.extend(page.common_prefixes.iter().cloned());
            page_entries.sort();
            entries.extend(page_entries);
        }
        let mut expected: Vec<String> = expected_objects.clone();
        expected.extend(expected_prefixes.iter().cloned());
        expected.sort();
        // In order and without duplicates across pages: the concatenation is strictly increasing.
        prop_assert!(entries.windows(2).all(|pair| pair[0] < pair[1]), "{:?}", entries);
        prop_assert_eq!(entries, expected);
    }
}

// ---- HEAD and GET ----

#[test]
fn head_returns_size_etag_metadata_and_content_type() {
    let mut model = S3Model::new();
    let request = S3Request::PutObject {
        key: "f".into(),
        body: RequestBody::from(&b"hello"[..]),
        content_type: Some("text/plain".into()),
        metadata: Metadata::from([("mode".into(), "0644".into())]),
        if_match: None,
        if_none_match_any: false,
    };
    model.apply(at(5), &request).expect("put");
    let head = model.apply(at(6), &S3Request::HeadObject { key: "f".into() });
    assert_eq!(
        head,
        Ok(S3Response::HeadObject(ObjectMeta {
            size_bytes: 5,
            etag: ETag::new(md5_hex(b"hello")),
            last_modified: at(5),
            content_type: Some("text/plain".into()),
            metadata: Metadata::from([("mode".into(), "0644".into())]),
            storage_class: None,
        }))
    );
}

#[test]
fn head_and_get_of_a_missing_key_are_404_no_such_key() {
    let mut model = S3Model::new();
    put_keys(&mut model, &["dir/file"]);
    for key in ["missing", "dir", "dir/"] {
        let head = model.apply(at(1), &S3Request::HeadObject { key: key.into() });
        assert_eq!(error_of(head), (404, S3ErrorCode::NoSuchKey));
        assert_eq!(error_of(model.apply(at(1), &get(key, None, None))), (404, S3ErrorCode::NoSuchKey));
    }
}

#[test]
fn get_returns_the_whole_body_from_offset_zero() {
    let mut model = S3Model::new();
    let etag = put(&mut model, "f", b"0123456789");
    let output = get_output(&mut model, &get("f", None, None));
    assert_eq!(output.body.0, Bytes::from_static(b"0123456789"));
    assert_eq!(output.range_start, 0);
    assert_eq!(output.meta.size_bytes, 10);
    assert_eq!(output.meta.etag, etag);
}

#[test]
fn get_range_returns_the_slice_and_its_start() {
    let mut model = S3Model::new();
    put(&mut model, "f", b"0123456789");
    let output = get_output(&mut model, &get("f", Some(ByteRange::new(3, 7)), None));
    assert_eq!(output.body.0, Bytes::from_static(b"3456"));
    assert_eq!(output.range_start, 3);
    assert_eq!(output.meta.size_bytes, 10, "the total size, as Content-Range says");
}

#[test]
fn get_range_shares_the_stored_bytes_instead_of_copying() {
    let mut model = S3Model::new();
    model.put_object(at(1), "f", Bytes::from(vec![7u8; 100]));
    let output = get_output(&mut model, &get("f", Some(ByteRange::new(10, 20)), None));
    let stored = &model.object("f").expect("stored").body;
    assert_eq!(output.body.as_ptr(), stored[10..].as_ptr());
}

#[test]
fn get_range_running_past_the_end_is_clipped() {
    let mut model = S3Model::new();
    put(&mut model, "f", b"0123456789");
    let output = get_output(&mut model, &get("f", Some(ByteRange::new(8, 2_000_000)), None));
    assert_eq!(output.body.0, Bytes::from_static(b"89"));
    assert_eq!(output.range_start, 8);
}

#[test]
fn get_range_starting_at_or_past_the_end_is_416_invalid_range() {
    let mut model = S3Model::new();
    put(&mut model, "f", b"0123456789");
    put(&mut model, "empty", b"");
    for (key, start) in [("f", 10), ("f", 11), ("empty", 0)] {
        let result = model.apply(at(2), &get(key, Some(ByteRange::new(start, start + 5)), None));
        assert_eq!(error_of(result), (416, S3ErrorCode::InvalidRange), "{key} from {start}");
    }
}

#[test]
fn get_if_match_mismatch_is_412_and_checked_before_the_range() {
    let mut model = S3Model::new();
    put(&mut model, "f", b"0123456789");
    let stale = Some(ETag::new("\"0000\""));
    let whole = model.apply(at(2), &get("f", None, stale.clone()));
    assert_eq!(error_of(whole), (412, S3ErrorCode::PreconditionFailed));
    let past_end = model.apply(at(2), &get("f", Some(ByteRange::new(50, 60)), stale));
    assert_eq!(error_of(past_end), (412, S3ErrorCode::PreconditionFailed));
}

#[test]
fn get_if_match_with_the_current_etag_or_star_succeeds() {
    let mut model = S3Model::new();
    let etag = put(&mut model, "f", b"abc");
    for condition in [etag, ETag::new("*")] {
        let output = get_output(&mut model, &get("f", None, Some(condition)));
        assert_eq!(output.body.0, Bytes::from_static(b"abc"));
    }
}

#[test]
fn head_if_match_rule_is_412_on_mismatch() {
    let current = ETag::new(md5_hex(b"x"));
    assert_eq!(check_if_match(None, &current), Ok(()));
    assert_eq!(check_if_match(Some(&current), &current), Ok(()));
    assert_eq!(check_if_match(Some(&ETag::new("*")), &current), Ok(()));
    assert_eq!(
        error_of(check_if_match(Some(&ETag::new("other")), &current).map(|()| S3Response::DeleteObject)),
        (412, S3ErrorCode::PreconditionFailed)
    );
}

// ---- PUT ----

#[test]
fn put_etag_is_the_hex_md5_of_the_body() {
    let mut model = S3Model::new();
    assert_eq!(put(&mut model, "empty", b"").as_str(), "d41d8cd98f00b204e9800998ecf8427e");
    assert_eq!(put(&mut model, "hello", b"hello").as_str(), "5d41402abc4b2a76b9719d911017c592");
    assert_eq!(model.object("hello").expect("stored").etag.as_str(), "5d41402abc4b2a76b9719d911017c592");
}

#[test]
fn put_overwrites_the_body_and_last_modified() {
    let mut model = S3Model::new();
    put(&mut model, "f", b"old");
    model.apply(at(9), &put_request("f", b"new body")).expect("overwrite");
    let object = model.object("f").expect("stored");
    assert_eq!(object.body, Bytes::from_static(b"new body"));
    assert_eq!(object.last_modified, at(9));
}

#[test]
fn put_if_none_match_any_on_an_existing_key_is_412() {
    let mut model = S3Model::new();
    let create_only = |body: &'static [u8]| S3Request::PutObject {
        key: "f".into(),
        body: RequestBody::from(body),
        content_type: None,
        metadata: Metadata::new(),
        if_match: None,
        if_none_match_any: true,
    };
    model.apply(at(1), &create_only(b"first")).expect("creates a missing key");
    let second = model.apply(at(2), &create_only(b"second"));
    assert_eq!(error_of(second), (412, S3ErrorCode::PreconditionFailed));
    assert_eq!(model.object("f").expect("kept").body, Bytes::from_static(b"first"));
}

fn conditional_put(key: &str, if_match: ETag) -> S3Request {
    S3Request::PutObject {
        key: key.into(),
        body: RequestBody::from(&b"replacement"[..]),
        content_type: None,
        metadata: Metadata::new(),
        if_match: Some(if_match),
        if_none_match_any: false,
    }
}

#[test]
fn put_if_match_mismatch_is_412_and_a_match_overwrites() {
    let mut model = S3Model::new();
    let etag = put(&mut model, "f", b"original");
    let stale = model.apply(at(2), &conditional_put("f", ETag::new("0000")));
    assert_eq!(error_of(stale), (412, S3ErrorCode::PreconditionFailed));
    assert_eq!(model.object("f").expect("kept").body, Bytes::from_static(b"original"));
    model.apply(at(3), &conditional_put("f", etag)).expect("matching ETag");
    assert_eq!(model.object("f").expect("replaced").body, Bytes::from_static(b"replacement"));
}

#[test]
fn put_if_match_on_a_missing_key_is_404_no_such_key() {
    let mut model = S3Model::new();
    let result = model.apply(at(2), &conditional_put("missing", ETag::new("0000")));
    assert_eq!(error_of(result), (404, S3ErrorCode::NoSuchKey));
    assert_eq!(model.object("missing"), None);
}

#[test]
fn put_rejects_empty_and_too_long_keys() {
    let mut model = S3Model::new();
    let too_long = "k".repeat(MAX_KEY_LEN_BYTES + 1);
    assert_eq!(
        error_of(model.apply(at(1), &put_request(&too_long, b"x"))),
        (400, S3ErrorCode::Other("KeyTooLongError".into()))
    );
    assert_eq!(
        error_of(model.apply(at(1), &put_request("", b"x"))),
        (400, S3ErrorCode::Other("InvalidArgument".into()))
    );
    put(&mut model, &"k".repeat(MAX_KEY_LEN_BYTES), b"longest allowed");
    assert_eq!(model.objects().count(), 1);
}

// ---- Multipart ----

#[test]
fn multipart_etag_is_md5_of_part_md5s_with_count() {
    let mut model = small_parts_model();
    let upload_id = create_upload(&mut model, "big");
    let bodies: [&[u8]; 3] = [b"part one!", b"part two!", b"end"];
    let parts: Vec<CompletedPart> =
        bodies.iter().zip(1..).map(|(body, number)| upload_part(&mut model, "big", &upload_id, number, body)).collect();
    for (part, body) in parts.iter().zip(bodies) {
        assert_eq!(part.etag.as_str(), md5_hex(body), "a part's ETag is its MD5");
    }
    let result = model.apply(at(12), &complete_request("big", &upload_id, &parts));
    let mut binary_md5s = Vec::new();
    for body in bodies {
        binary_md5s.extend_from_slice(&Md5::digest(body));
    }
    let expected = ETag::new(format!("{}-3", md5_hex(&binary_md5s)));
    assert_eq!(result, Ok(S3Response::CompleteMultipartUpload { etag: expected.clone() }));
    let object = model.object("big").expect("completed");
    assert_eq!(object.etag, expected);
    assert_eq!(object.body, Bytes::from_static(b"part one!part two!end"));
}

#[test]
fn multipart_object_keeps_create_metadata_and_initiation_time() {
    let mut model = small_parts_model();
    let upload_id = create_upload(&mut model, "big");
    let part = upload_part(&mut model, "big", &upload_id, 1, b"only part");
    model.apply(at(99), &complete_request("big", &upload_id, &[part])).expect("complete");
    let object = model.object("big").expect("completed");
    assert_eq!(object.content_type.as_deref(), Some("video/mp4"));
    assert_eq!(object.metadata, Metadata::from([("mtime".into(), "7".into())]));
    assert_eq!(object.last_modified, at(10), "AWS: the time the upload was initiated");
}

#[test]
fn multipart_upload_ids_are_deterministic_and_distinct() {
    let run = || {
        let mut model = S3Model::new();
        (create_upload(&mut model, "a"), create_upload(&mut model, "a"), create_upload(&mut model, "b"))
    };
    let (first, second, third) = run();
    assert_eq!(run(), (first.clone(), second.clone(), third.clone()));
    assert_ne!(first, second);
    assert_ne!(second, third);
}

#[test]
fn upload_part_overwrites_a_part_number() {
    let mut model = small_parts_model();
    let upload_id = create_upload(&mut model, "f");
    let stale = upload_part(&mut model, "f", &upload_id, 1, b"first try");
    let fresh = upload_part(&mut model, "f", &upload_id, 1, b"second try");
    let stale_result = model.apply(at(12), &complete_request("f", &upload_id, &[stale]));
    assert_eq!(error_of(stale_result), (400, S3ErrorCode::InvalidPart));
    model.apply(at(12), &complete_request("f", &upload_id, &[fresh])).expect("complete");
    assert_eq!(model.object("f").expect("completed").body, Bytes::from_static(b"second try"));
}

#[test]
fn upload_part_number_must_be_between_one_and_max_parts() {
    let mut model = small_parts_model();
    let upload_id = create_upload(&mut model, "f");
    for part_number in [0, 6] {
        let result = model.apply(at(11), &upload_part_request("f", &upload_id, part_number, b"x"));
        assert_eq!(error_of(result), (400, S3ErrorCode::Other("InvalidArgument".into())));
    }
    upload_part(&mut model, "f", &upload_id, 5, b"max part number");
    let too_many: Vec<CompletedPart> =
        (1..=6).map(|part_number| CompletedPart { part_number, etag: ETag::new("x") }).collect();
    let result = model.apply(at(12), &complete_request("f", &upload_id, &too_many));
    assert_eq!(error_of(result), (400, S3ErrorCode::Other("InvalidArgument".into())));
}

#[test]
fn complete_rejects_parts_out_of_order_with_invalid_part_order() {
    let mut model = small_parts_model();
    let upload_id = create_upload(&mut model, "f");
    let one = upload_part(&mut model, "f", &upload_id, 1, b"12345678");
    let two = upload_part(&mut model, "f", &upload_id, 2, b"tail");
    for parts in [vec![two.clone(), one.clone()], vec![one.clone(), one.clone()]] {
        let result = model.apply(at(12), &complete_request("f", &upload_id, &parts));
        assert_eq!(error_of(result), (400, S3ErrorCode::InvalidPartOrder));
    }
    assert_eq!(model.uploads_in_progress(), 1, "a failed complete keeps the upload");
    model.apply(at(12), &complete_request("f", &upload_id, &[one, two])).expect("in order");
}

#[test]
fn complete_rejects_a_missing_part_or_wrong_etag_with_invalid_part() {
    let mut model = small_parts_model();
    let upload_id = create_upload(&mut model, "f");
    let one = upload_part(&mut model, "f", &upload_id, 1, b"12345678");
    let missing = CompletedPart { part_number: 2, etag: one.etag.clone() };
    let wrong_etag = CompletedPart { part_number: 1, etag: ETag::new(md5_hex(b"other")) };
    for parts in [vec![one.clone(), missing], vec![wrong_etag]] {
        let result = model.apply(at(12), &complete_request("f", &upload_id, &parts));
        assert_eq!(error_of(result), (400, S3ErrorCode::InvalidPart));
    }
}

#[test]
fn complete_rejects_a_small_non_last_part_with_entity_too_small() {
    let mut model = small_parts_model();
    let upload_id = create_upload(&mut model, "f");
    let small = upload_part(&mut model, "f", &upload_id, 1, b"1234567");
    let last = upload_part(&mut model, "f", &upload_id, 2, b"x");
    let result = model.apply(at(12), &complete_request("f", &upload_id, &[small, last.clone()]));
    assert_eq!(error_of(result), (400, S3ErrorCode::EntityTooSmall));
    // Exactly the minimum is enough, and the last part may be smaller, even empty.
    let exact = upload_part(&mut model, "f", &upload_id, 1, b"12345678");
    let exact_two = upload_part(&mut model, "f", &upload_id, 2, b"abcdefgh");
    let empty_last = upload_part(&mut model, "f", &upload_id, 3, b"");
    model
        .apply(at(12), &complete_request("f", &upload_id, &[exact, exact_two, empty_last]))
        .expect("minimum-size parts and an empty last part");
    assert_eq!(model.object("f").expect("completed").body, Bytes::from_static(b"12345678abcdefgh"));
}

#[test]
fn complete_with_the_default_limit_needs_5_mib_parts() {
    let mut model = S3Model::new();
    let upload_id = create_upload(&mut model, "f");
    let almost = upload_part(&mut model, "f", &upload_id, 1, &vec![0; 5 * 1024 * 1024 - 1]);
    let last = upload_part(&mut model, "f", &upload_id, 2, b"x");
    let result = model.apply(at(12), &complete_request("f", &upload_id, &[almost, last.clone()]));
    assert_eq!(error_of(result), (400, S3ErrorCode::EntityTooSmall));
    let enough = upload_part(&mut model, "f", &upload_id, 1, &vec![0; 5 * 1024 * 1024]);
    model.apply(at(12), &complete_request("f", &upload_id, &[enough, last])).expect("5 MiB");
}

#[test]
fn complete_with_no_parts_is_400_malformed_xml() {
    let mut model = small_parts_model();
    let upload_id = create_upload(&mut model, "f");
    let result = model.apply(at(12), &complete_request("f", &upload_id, &[]));
    assert_eq!(error_of(result), (400, S3ErrorCode::Other("MalformedXML".into())));
}

#[test]
fn complete_keeps_only_the_named_parts() {
    let mut model = small_parts_model();
    let upload_id = create_upload(&mut model, "f");
    let one = upload_part(&mut model, "f", &upload_id, 1, b"12345678");
    upload_part(&mut model, "f", &upload_id, 2, b"left out");
    let three = upload_part(&mut model, "f", &upload_id, 3, b"end");
    let result = model.apply(at(12), &complete_request("f", &upload_id, &[one, three]));
    let etag = match result {
        Ok(S3Response::CompleteMultipartUpload { etag }) => etag,
        other => panic!("complete: {other:?}"),
    };
    assert!(etag.as_str().ends_with("-2"));
    assert_eq!(model.object("f").expect("completed").body, Bytes::from_static(b"12345678end"));
}

#[test]
fn unknown_upload_or_wrong_key_is_404_no_such_upload() {
    let mut model = small_parts_model();
    let upload_id = create_upload(&mut model, "f");
    let part = upload_part(&mut model, "f", &upload_id, 1, b"x");
    let unknown = UploadId("upload-nonexistent".into());
    let requests = [
        complete_request("f", &unknown, std::slice::from_ref(&part)),
        complete_request("other-key", &upload_id, std::slice::from_ref(&part)),
        upload_part_request("other-key", &upload_id, 1, b"x"),
        S3Request::AbortMultipartUpload { key: "f".into(), upload_id: unknown.clone() },
    ];
    for request in &requests {
        assert_eq!(error_of(model.apply(at(12), request)), (404, S3ErrorCode::NoSuchUpload), "{request:?}");
    }
}

#[test]
fn complete_retried_after_success_is_no_such_upload() {
    let mut model = small_parts_model();
    let upload_id = create_upload(&mut model, "f");
    let part = upload_part(&mut model, "f", &upload_id, 1, b"x");
    let complete = complete_request("f", &upload_id, &[part]);
    model.apply(at(12), &complete).expect("first complete");
    assert_eq!(model.uploads_in_progress(), 0);
    assert_eq!(error_of(model.apply(at(13), &complete)), (404, S3ErrorCode::NoSuchUpload));
}

#[test]
fn abort_makes_later_upload_part_and_complete_no_such_upload() {
    let mut model = small_parts_model();
    let upload_id = create_upload(&mut model, "f");
    let part = upload_part(&mut model, "f", &upload_id, 1, b"x");
    assert_eq!(model.uploads_in_progress(), 1);
    let abort = S3Request::AbortMultipartUpload { key: "f".into(), upload_id: upload_id.clone() };
    assert_eq!(model.apply(at(12), &abort), Ok(S3Response::AbortMultipartUpload));
    assert_eq!(model.uploads_in_progress(), 0);
    let later_part = model.apply(at(13), &upload_part_request("f", &upload_id, 2, b"x"));
    assert_eq!(error_of(later_part), (404, S3ErrorCode::NoSuchUpload));
    let later_complete = model.apply(at(13), &complete_request("f", &upload_id, &[part]));
    assert_eq!(error_of(later_complete), (404, S3ErrorCode::NoSuchUpload));
    assert_eq!(error_of(model.apply(at(13), &abort)), (404, S3ErrorCode::NoSuchUpload));
    assert_eq!(model.object("f"), None, "an aborted upload creates no object");
}

#[test]
fn upload_part_copy_copies_the_source_range() {
    let mut model = small_parts_model();
    put(&mut model, "source", b"0123456789abcdef");
    let upload_id = create_upload(&mut model, "dest");
    let result = model.apply(at(11), &part_copy_request(&upload_id, "source", Some(ByteRange::new(2, 12)), None));
    let etag = match result {
        Ok(S3Response::UploadPartCopy { etag }) => etag,
        other => panic!("part copy: {other:?}"),
    };
    assert_eq!(etag.as_str(), md5_hex(b"23456789ab"));
    let tail = upload_part(&mut model, "dest", &upload_id, 2, b"!");
    let parts = [CompletedPart { part_number: 1, etag }, tail];
    model.apply(at(12), &complete_request("dest", &upload_id, &parts)).expect("complete");
    assert_eq!(model.object("dest").expect("completed").body, Bytes::from_static(b"23456789ab!"));
}

#[test]
fn upload_part_copy_without_range_copies_the_whole_source() {
    let mut model = small_parts_model();
    put(&mut model, "source", b"whole source");
    let upload_id = create_upload(&mut model, "dest");
    let result = model.apply(at(11), &part_copy_request(&upload_id, "source", None, None));
    assert_eq!(result, Ok(S3Response::UploadPartCopy { etag: ETag::new(md5_hex(b"whole source")) }));
}

#[test]
fn upload_part_copy_source_if_match_mismatch_is_412() {
    let mut model = small_parts_model();
    let etag = put(&mut model, "source", b"0123456789");
    let upload_id = create_upload(&mut model, "dest");
    let stale = model.apply(at(11), &part_copy_request(&upload_id, "source", None, Some(ETag::new("0000"))));
    assert_eq!(error_of(stale), (412, S3ErrorCode::PreconditionFailed));
    model.apply(at(11), &part_copy_request(&upload_id, "source", None, Some(etag))).expect("matching source ETag");
}

#[test]
fn upload_part_copy_range_past_the_source_end_is_400_invalid_argument() {
    let mut model = small_parts_model();
    put(&mut model, "source", b"0123456789");
    let upload_id = create_upload(&mut model, "dest");
    let result = model.apply(at(11), &part_copy_request(&upload_id, "source", Some(ByteRange::new(5, 11)), None));
    assert_eq!(error_of(result), (400, S3ErrorCode::Other("InvalidArgument".into())));
}

#[test]
fn upload_part_copy_of_a_missing_source_is_404_no_such_key() {
    let mut model = small_parts_model();
    let upload_id = create_upload(&mut model, "dest");
    let result = model.apply(at(11), &part_copy_request(&upload_id, "missing", None, None));
    assert_eq!(error_of(result), (404, S3ErrorCode::NoSuchKey));
}

// ---- CopyObject ----

fn put_with_metadata(model: &mut S3Model, key: &str, body: &'static [u8]) {
    let request = S3Request::PutObject {
        key: key.into(),
        body: RequestBody::from(body),
        content_type: Some("text/plain".into()),
        metadata: Metadata::from([("mtime".into(), "12345".into())]),
        if_match: None,
        if_none_match_any: false,
    };
    model.apply(at(1), &request).expect("put");
}

#[test]
fn copy_object_with_copy_directive_keeps_body_and_metadata() {
    let mut model = S3Model::new();
    put_with_metadata(&mut model, "src", b"content");
    let result = model.apply(at(20), &copy_request("src", "dst", MetadataDirective::Copy));
    assert_eq!(result, Ok(S3Response::CopyObject { etag: ETag::new(md5_hex(b"content")) }));
    let copy = model.object("dst").expect("copied");
    assert_eq!(copy.body, Bytes::from_static(b"content"));
    assert_eq!(copy.content_type.as_deref(), Some("text/plain"));
    assert_eq!(copy.metadata, Metadata::from([("mtime".into(), "12345".into())]));
    assert_eq!(copy.last_modified, at(20));
    assert!(model.object("src").is_some(), "the source stays");
}

#[test]
fn copy_object_with_replace_directive_replaces_metadata_even_onto_itself() {
    let mut model = S3Model::new();
    put_with_metadata(&mut model, "src", b"content");
    let replace =
        MetadataDirective::Replace { content_type: None, metadata: Metadata::from([("mtime".into(), "999".into())]) };
    for destination in ["dst", "src"] {
        model.apply(at(20), &copy_request("src", destination, replace.clone())).expect("copy");
        let copy = model.object(destination).expect("copied");
        assert_eq!(copy.metadata, Metadata::from([("mtime".into(), "999".into())]));
        assert_eq!(copy.content_type, None);
        assert_eq!(copy.body, Bytes::from_static(b"content"));
    }
}

#[test]
fn copy_object_onto_itself_without_replace_is_400_invalid_request() {
    let mut model = S3Model::new();
    put_with_metadata(&mut model, "src", b"content");
    let result = model.apply(at(20), &copy_request("src", "src", MetadataDirective::Copy));
    assert_eq!(error_of(result), (400, S3ErrorCode::InvalidRequest));
}

#[test]
fn copy_object_source_if_match_mismatch_is_412() {
    let mut model = S3Model::new();
    let etag = put(&mut model, "src", b"content");
    let copy = |if_match: ETag| S3Request::CopyObject {
        source_key: "src".into(),
        key: "dst".into(),
        metadata_directive: MetadataDirective::Copy,
        source_if_match: Some(if_match),
    };
    assert_eq!(error_of(model.apply(at(2), &copy(ETag::new("\"deadbeef\"")))), (412, S3ErrorCode::PreconditionFailed));
    assert_eq!(model.object("dst"), None);
    model.apply(at(2), &copy(etag)).expect("matching source ETag");
}

#[test]
fn copy_object_of_a_missing_source_is_404_no_such_key() {
    let mut model = S3Model::new();
    let result = model.apply(at(2), &copy_request("missing", "dst", MetadataDirective::Copy));
    assert_eq!(error_of(result), (404, S3ErrorCode::NoSuchKey));
}

#[test]
fn copy_of_a_multipart_object_gets_the_md5_of_its_body() {
    let mut model = small_parts_model();
    let upload_id = create_upload(&mut model, "big");
    let one = upload_part(&mut model, "big", &upload_id, 1, b"12345678");
    let two = upload_part(&mut model, "big", &upload_id, 2, b"9");
    model.apply(at(12), &complete_request("big", &upload_id, &[one, two])).expect("complete");
    let result = model.apply(at(13), &copy_request("big", "copy", MetadataDirective::Copy));
    assert_eq!(result, Ok(S3Response::CopyObject { etag: ETag::new(md5_hex(b"123456789")) }));
}

// ---- Delete ----

#[test]
fn delete_object_is_idempotent() {
    let mut model = S3Model::new();
    put(&mut model, "f", b"x");
    let delete = S3Request::DeleteObject { key: "f".into() };
    assert_eq!(model.apply(at(2), &delete), Ok(S3Response::DeleteObject));
    assert_eq!(model.object("f"), None);
    assert_eq!(model.apply(at(3), &delete), Ok(S3Response::DeleteObject));
}

#[test]
fn delete_objects_counts_missing_keys_as_deleted() {
    let mut model = S3Model::new();
    put_keys(&mut model, &["a", "b", "keep"]);
    let request = S3Request::DeleteObjects { keys: vec!["a".into(), "missing".into(), "b".into()] };
    assert_eq!(model.apply(at(2), &request), Ok(S3Response::DeleteObjects { failed: vec![] }));
    assert_eq!(model.objects().map(|(key, _)| key).collect::<Vec<_>>(), ["keep"]);
}

#[test]
fn delete_objects_takes_at_most_1000_keys() {
    let mut model = S3Model::new();
    let keys: Vec<String> = (0..=1000).map(|i| format!("k{i:04}")).collect();
    for key in &keys {
        model.put_object(at(1), key, Bytes::new());
    }
    let too_many = S3Request::DeleteObjects { keys: keys.clone() };
    assert_eq!(error_of(model.apply(at(2), &too_many)), (400, S3ErrorCode::Other("MalformedXML".into())));
    assert_eq!(model.objects().count(), 1001, "a rejected batch deletes nothing");
    let empty = S3Request::DeleteObjects { keys: vec![] };
    assert_eq!(error_of(model.apply(at(2), &empty)), (400, S3ErrorCode::Other("MalformedXML".into())));
    let most = S3Request::DeleteObjects { keys: keys[..1000].to_vec() };
    model.apply(at(2), &most).expect("1000 keys");
    assert_eq!(model.objects().count(), 1);
}

// ---- Another client and inspection ----

#[test]
fn another_client_puts_and_deletes_objects() {
    let mut model = S3Model::new();
    let etag = model.put_object(at(4), "ext", Bytes::from_static(b"hello"));
    assert_eq!(etag.as_str(), md5_hex(b"hello"));
    let object = model.object("ext").expect("stored");
    assert_eq!((object.last_modified, object.content_type.clone()), (at(4), None));
    assert!(model.delete_object("ext"));
    assert!(!model.delete_object("ext"));
}

#[test]
fn objects_iterate_in_key_order() {
    let mut model = S3Model::new();
    put_keys(&mut model, &["b", "a/c", "a", "é"]);
    let keys: Vec<&str> = model.objects().map(|(key, _)| key).collect();
    assert_eq!(keys, ["a", "a/c", "b", "é"]);
}

#[test]
fn a_cloned_model_is_independent() {
    let mut model = S3Model::new();
    put_keys(&mut model, &["a"]);
    let snapshot = model.clone();
    model.delete_object("a");
    assert!(snapshot.object("a").is_some());
    assert_eq!(model.object("a"), None);
}
