//! What the benchmark puts in the bucket before any client runs, and the bytes of its objects.
//!
//! Every client (and the null filesystem, which builds the same tree in memory) sees the same
//! names: `data/big1..bigN` (the large objects read sequentially, at random and in parallel),
//! `data/ls/` with many small objects (`ls`, `ls -l`, `cat`), and `data/tree/` (`find`). Each
//! client writes only under `work/<client>/run<k>/`, which `rm -rf` removes again.
//!
//! Object bytes come from a seeded xorshift generator, so a reader can check what it got
//! without keeping a copy, and the raw client in another process makes the same bytes.

/// The sizes of the data set; `Default` is the issue's workload.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Layout {
    /// Size of each large object and of the file each client writes.
    pub big_file_bytes: u64,
    /// How many large objects there are (one per parallel reader).
    pub big_files: u32,
    /// Objects in the `ls` directory; also the number of small files each client creates.
    pub small_files: u32,
    /// Branching of the `find` tree: this many directories of this many directories of this
    /// many files.
    pub tree_fanout: u32,
}

impl Default for Layout {
    fn default() -> Self {
        Layout { big_file_bytes: 1 << 30, big_files: 4, small_files: 1000, tree_fanout: 9 }
    }
}

/// The body of every small object (`ls` directory and `find` tree).
pub const SMALL_BODY: &[u8] = b"hello\n";

impl Layout {
    pub fn big_key(&self, index: u32) -> String {
        format!("data/big{index}")
    }

    pub fn big_keys(&self) -> Vec<String> {
        (1..=self.big_files).map(|index| self.big_key(index)).collect()
    }

    pub fn ls_dir(&self) -> &'static str {
        "data/ls"
    }

    pub fn ls_keys(&self) -> Vec<String> {
        (0..self.small_files).map(|index| format!("{}/f{index:05}.txt", self.ls_dir())).collect()
    }

    pub fn tree_dir(&self) -> &'static str {
        "data/tree"
    }

    pub fn tree_keys(&self) -> Vec<String> {
        let n = self.tree_fanout;
        let mut keys = Vec::new();
        for a in 1..=n {
            for b in 1..=n {
                for c in 1..=n {
                    keys.push(format!("{}/d{a}/d{b}/f{c}", self.tree_dir()));
                }
            }
        }
        keys
    }

    /// Lines `find data/tree` prints: the tree itself, its directories and its files.
    pub fn tree_entries(&self) -> u64 {
        let n = u64::from(self.tree_fanout);
        1 + n + n * n + n * n * n
    }

    /// Where client `client` writes in run `run`.
    pub fn work_dir(&self, client: &str, run: u32) -> String {
        format!("work/{client}/run{run}")
    }
}

/// Deterministic pseudo-random bytes of the object `key`, `len` long.
pub fn object_bytes(key: &str, len: usize) -> Vec<u8> {
    let mut bytes = vec![0u8; len];
    fill_object_bytes(key, 0, &mut bytes);
    bytes
}

/// Fills `out` with the bytes of `key` from `offset` (a multiple of 8) on.
pub fn fill_object_bytes(key: &str, offset: u64, out: &mut [u8]) {
    assert_eq!(offset % 8, 0, "offsets are word aligned");
    let seed =
        key.bytes().fold(0x9E37_79B9_7F4A_7C15u64, |hash, byte| (hash ^ u64::from(byte)).wrapping_mul(0x100_0000_01B3));
    for (word_index, chunk) in (offset / 8..).zip(out.chunks_mut(8)) {
        let word = mix(seed ^ word_index).to_le_bytes();
        chunk.copy_from_slice(&word[..chunk.len()]);
    }
}

/// splitmix64: every word is independent, so any offset can be generated directly.
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn object_bytes_can_be_generated_from_any_aligned_offset() {
        let whole = object_bytes("data/big1", 4096);
        let mut tail = vec![0u8; 1000];
        fill_object_bytes("data/big1", 1024, &mut tail);
        assert_eq!(&whole[1024..2024], &tail[..]);
        assert_ne!(object_bytes("data/big2", 64), whole[..64].to_vec(), "each key has its own bytes");
    }

    #[test]
    fn the_default_layout_is_the_issues_workload() {
        let layout = Layout::default();
        assert_eq!(layout.ls_keys().len(), 1000);
        assert_eq!(layout.tree_keys().len(), 729);
        assert_eq!(layout.tree_entries(), 820, "goofys' find test counts 820 lines");
        assert_eq!(layout.big_keys(), ["data/big1", "data/big2", "data/big3", "data/big4"]);
    }
}
