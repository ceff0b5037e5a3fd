//! Everything that tunes the core, with goofys' defaults.

use std::time::Duration;

/// Configuration of a [`Core`](crate::Core). Plain fields with a `Default`; tests use struct
/// update syntax (`CoreConfig { stat_cache_ttl: Duration::ZERO, ..Default::default() }`).
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct CoreConfig {
    /// Key prefix the mount shows as its root: empty for the whole bucket, else ending in `/`.
    /// Use [`CoreConfig::with_mount_prefix`] to normalise a user-given prefix.
    pub mount_prefix: String,

    /// How long attributes are trusted without asking S3 again (goofys `--stat-cache-ttl`).
    /// Zero turns the cache off.
    pub stat_cache_ttl: Duration,
    /// How long a name → file/directory mapping is trusted (goofys `--type-cache-ttl`). Also
    /// the kernel's entry timeout. Zero turns the cache off.
    pub type_cache_ttl: Duration,
    /// How long a name known not to exist is trusted. Zero turns the cache off.
    pub negative_cache_ttl: Duration,

    /// Permission bits of files (goofys `--file-mode`).
    pub file_mode: u16,
    /// Permission bits of directories (goofys `--dir-mode`).
    pub dir_mode: u16,
    pub uid: u32,
    pub gid: u32,

    /// Keys per ListObjectsV2 page (S3's maximum is 1000).
    pub list_page_keys: u32,

    /// Bytes the sequential prefetcher asks for ahead of the reader when a stream starts.
    pub prefetch_initial_window_bytes: u64,
    /// Upper bound of the prefetch window; it doubles toward this as the reader keeps up.
    pub prefetch_max_window_bytes: u64,
    /// Largest single ranged GET of the prefetcher; a window is split into GETs of this size,
    /// all in flight together.
    pub read_part_size_bytes: u64,
    /// Object bytes held or being fetched for all open readers together. Past it, readers get
    /// only what they ask for (no read-ahead) until buffers drain: slower, never stuck.
    pub max_read_buffer_bytes: u64,

    /// Attempts per S3 request, the first included (goofys and the AWS SDKs retry; 10 here).
    pub retry_max_attempts: u32,
    /// Backoff before the first retry; it doubles each attempt, with full jitter.
    pub retry_initial_backoff: Duration,
    /// Cap of one backoff.
    pub retry_max_backoff: Duration,
    /// How long one S3 request may take before it is cancelled and retried (goofys
    /// `--http-timeout`).
    pub s3_request_timeout: Duration,

    /// Size of the first parts of a multipart upload; it doubles every
    /// `write_part_size_step_parts` parts, so 10,000 parts reach 8 TiB with the defaults.
    /// A file no larger than one part goes up in a single PUT.
    pub write_part_size_bytes: u64,
    /// Parts per step of the part size schedule.
    pub write_part_size_step_parts: u32,
    /// The store's smallest part but the last (S3: 5 MiB). Unchanged ranges at least this
    /// long are copied server-side instead of uploaded.
    pub multipart_min_part_size_bytes: u64,
    /// The store's largest number of parts (S3: 10,000).
    pub multipart_max_parts: u32,
    /// Largest file the mount writes; a write past it fails with EFBIG (S3: 5 TiB).
    pub max_object_size_bytes: u64,
    /// Unwritten data held in memory, across files; past it writers wait for uploads.
    pub max_dirty_bytes: u64,
    /// Parts (uploads and copies) in flight per file.
    pub part_uploads_inflight_max: u32,
    /// Objects copied or deleted in flight by one directory rename.
    pub rename_inflight_max: u32,
    /// Whether mkdir creates a `dir/` marker object; without markers a new directory lives
    /// only in this mount until a file is written in it.
    pub create_dir_markers: bool,
    /// goofys' `--cheap`: a lookup asks HEAD first and lists `name/` only if there is no such
    /// object, so finding a file costs one request instead of two (but two round trips for a
    /// directory, and a file hides a directory of the same name).
    pub cheap_lookups: bool,
    /// goofys' `--no-implicit-dir`: a lookup asks whether the marker `name/` exists (HEAD)
    /// instead of listing under it, so a directory without a marker is not found by name.
    pub no_implicit_dirs: bool,
    /// How long unmount waits for files being written to reach S3 before abandoning them
    /// (their uploads are aborted).
    pub shutdown_grace: Duration,
}

impl Default for CoreConfig {
    fn default() -> Self {
        CoreConfig {
            mount_prefix: String::new(),
            stat_cache_ttl: Duration::from_secs(60),
            type_cache_ttl: Duration::from_secs(60),
            negative_cache_ttl: Duration::from_secs(60),
            file_mode: 0o644,
            dir_mode: 0o755,
            uid: 0,
            gid: 0,
            list_page_keys: 1000,
            prefetch_initial_window_bytes: 1024 * 1024,
            prefetch_max_window_bytes: 64 * 1024 * 1024,
            read_part_size_bytes: 8 * 1024 * 1024,
            max_read_buffer_bytes: 1024 * 1024 * 1024,
            retry_max_attempts: 10,
            retry_initial_backoff: Duration::from_millis(100),
            retry_max_backoff: Duration::from_secs(20),
            s3_request_timeout: Duration::from_secs(30),
            write_part_size_bytes: 8 * 1024 * 1024,
            write_part_size_step_parts: 1000,
            multipart_min_part_size_bytes: 5 * 1024 * 1024,
            multipart_max_parts: 10_000,
            max_object_size_bytes: 5 * 1024 * 1024 * 1024 * 1024,
            max_dirty_bytes: 512 * 1024 * 1024,
            part_uploads_inflight_max: 8,
            rename_inflight_max: 32,
            create_dir_markers: true,
            cheap_lookups: false,
            no_implicit_dirs: false,
            shutdown_grace: Duration::from_secs(30),
        }
    }
}

impl CoreConfig {
    /// Sets the mount prefix from what a user typed after `bucket:`: leading slashes are
    /// dropped and a trailing slash is added, so `a/b`, `/a/b` and `a/b/` all mean `a/b/`.
    pub fn with_mount_prefix(mut self, prefix: &str) -> Self {
        self.mount_prefix = normalize_mount_prefix(prefix);
        self
    }
}

impl CoreConfig {
    /// The longest one S3 request can take before its caller hears the outcome: every attempt
    /// timing out, with the longest backoff between them. A FUSE call that waits on one
    /// request returns within this, whatever the network does.
    pub fn request_retry_budget(&self) -> Duration {
        let attempts = self.retry_max_attempts.max(1);
        let backoffs: Duration = (1..attempts)
            .map(|attempt| crate::retry::backoff_cap(attempt, self.retry_initial_backoff, self.retry_max_backoff))
            .sum();
        self.s3_request_timeout.saturating_mul(attempts) + backoffs
    }

    /// Size of part `part_number` (from 1) of a multipart upload, by the schedule.
    pub fn write_part_size(&self, part_number: u32) -> u64 {
        let step = (part_number.saturating_sub(1) / self.write_part_size_step_parts.max(1)).min(40);
        self.write_part_size_bytes.saturating_mul(1u64 << step)
    }

    /// Largest file this mount can write: `max_object_size_bytes`, or less when
    /// `multipart_max_parts` parts of the schedule hold less (small parts). A write or
    /// truncate past it fails with EFBIG at once, instead of a commit that would need part
    /// `multipart_max_parts + 1` and be refused by the store at close.
    pub fn max_file_size_bytes(&self) -> u64 {
        let step_parts = self.write_part_size_step_parts.max(1);
        let mut parts_left = self.multipart_max_parts;
        let mut first_part = 1u32;
        let mut capacity = 0u64;
        while parts_left > 0 && capacity < self.max_object_size_bytes {
            let parts = parts_left.min(step_parts);
            capacity = capacity.saturating_add(self.write_part_size(first_part).saturating_mul(u64::from(parts)));
            parts_left -= parts;
            first_part = first_part.saturating_add(parts);
        }
        capacity.min(self.max_object_size_bytes)
    }
}

/// See [`CoreConfig::with_mount_prefix`].
pub fn normalize_mount_prefix(prefix: &str) -> String {
    let trimmed = prefix.trim_start_matches('/');
    if trimmed.is_empty() {
        String::new()
    } else if trimmed.ends_with('/') {
        trimmed.to_owned()
    } else {
        format!("{trimmed}/")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_retry_budget_is_every_attempt_timing_out_plus_the_longest_backoffs() {
        let config = CoreConfig {
            retry_max_attempts: 4,
            retry_initial_backoff: Duration::from_millis(100),
            retry_max_backoff: Duration::from_millis(300),
            s3_request_timeout: Duration::from_secs(2),
            ..CoreConfig::default()
        };
        // 4 attempts of 2 s, backoffs of at most 100, 200 and 300 (capped) ms between them.
        assert_eq!(config.request_retry_budget(), Duration::from_millis(8_600));
        let once = CoreConfig { retry_max_attempts: 1, ..config };
        assert_eq!(once.request_retry_budget(), Duration::from_secs(2));
        // The defaults: 10 x 30 s, and 0.1 + 0.2 + ... + 12.8 s then 20 s between them.
        assert_eq!(CoreConfig::default().request_retry_budget(), Duration::from_millis(300_000 + 25_500 + 20_000));
    }

    #[test]
    fn the_part_size_schedule_reaches_five_tebibytes_within_ten_thousand_parts() {
        let config = CoreConfig::default();
        assert_eq!(config.write_part_size(1), 8 << 20);
        assert_eq!(config.write_part_size(1000), 8 << 20);
        assert_eq!(config.write_part_size(1001), 16 << 20);
        assert!(config.write_part_size(10_000) <= 5 << 30, "a part is at most 5 GiB");
        let total: u64 = (1..=config.multipart_max_parts).map(|n| config.write_part_size(n)).sum();
        assert!(total >= 5 << 40, "10,000 parts hold {total} bytes");
        assert_eq!(config.max_file_size_bytes(), 5 << 40, "the store's limit is the mount's");
    }

    #[test]
    fn with_small_parts_the_largest_file_is_what_ten_thousand_parts_hold() {
        let config = CoreConfig { write_part_size_bytes: 1, write_part_size_step_parts: 1000, ..CoreConfig::default() };
        let total: u64 = (1..=config.multipart_max_parts).map(|n| config.write_part_size(n)).sum();
        assert_eq!(total, 1000 * 1023, "1, 2, 4 ... 512 bytes, 1,000 parts each");
        assert_eq!(config.max_file_size_bytes(), total);
        let capped = CoreConfig { max_object_size_bytes: 1000, ..config.clone() };
        assert_eq!(capped.max_file_size_bytes(), 1000);
        let one_step = CoreConfig { write_part_size_step_parts: 1, multipart_max_parts: 3, ..config };
        assert_eq!(one_step.max_file_size_bytes(), 1 + 2 + 4);
    }

    #[test]
    fn mount_prefixes_are_normalised_to_end_in_a_slash() {
        assert_eq!(normalize_mount_prefix(""), "");
        assert_eq!(normalize_mount_prefix("/"), "");
        assert_eq!(normalize_mount_prefix("a/b"), "a/b/");
        assert_eq!(normalize_mount_prefix("/a/b/"), "a/b/");
    }
}
