//! Written-but-not-uploaded bytes of a file, as non-overlapping extents by offset.
//!
//! Problems this module solves:
//! - Writes arrive at any offset, may overlap earlier writes and may be truncated away; the
//!   newest bytes must win, and the structure must say exactly which ranges are written.
//! - Data moves as `Bytes`: a write is stored without a copy, and overwriting part of an extent
//!   slices it rather than copying.

use std::collections::BTreeMap;
use std::ops::Range;

use bytes::Bytes;

/// Written bytes by offset. Extents never overlap.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Extents {
    map: BTreeMap<u64, Bytes>,
    total_bytes: u64,
}

impl Extents {
    /// Bytes held.
    pub fn total_bytes(&self) -> u64 {
        self.total_bytes
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Writes `data` at `offset`, replacing whatever was written there before.
    pub fn write(&mut self, offset: u64, data: Bytes) {
        if data.is_empty() {
            return;
        }
        let end = offset + data.len() as u64;
        self.remove_range(offset, end);
        self.total_bytes += data.len() as u64;
        self.map.insert(offset, data);
    }

    /// Forgets the bytes in `[start, end)`, keeping the parts of extents outside it.
    pub fn remove_range(&mut self, start: u64, end: u64) {
        if start >= end {
            return;
        }
        // The extent that starts before `start` may stick into the range.
        if let Some((&first_start, first)) = self.map.range(..start).next_back() {
            let first_end = first_start + first.len() as u64;
            if first_end > start {
                let first = self.map.remove(&first_start).expect("just seen");
                self.total_bytes -= first.len() as u64;
                let keep_head = first.slice(..(start - first_start) as usize);
                self.total_bytes += keep_head.len() as u64;
                self.map.insert(first_start, keep_head);
                if first_end > end {
                    let tail = first.slice((end - first_start) as usize..);
                    self.total_bytes += tail.len() as u64;
                    self.map.insert(end, tail);
                }
            }
        }
        let inside: Vec<u64> = self.map.range(start..end).map(|(&at, _)| at).collect();
        for at in inside {
            let extent = self.map.remove(&at).expect("just seen");
            self.total_bytes -= extent.len() as u64;
            let extent_end = at + extent.len() as u64;
            if extent_end > end {
                let tail = extent.slice((end - at) as usize..);
                self.total_bytes += tail.len() as u64;
                self.map.insert(end, tail);
            }
        }
    }

    /// Drops everything at or past `size`.
    pub fn truncate(&mut self, size: u64) {
        self.remove_range(size, u64::MAX);
    }

    /// Whether any written byte lies in `[start, end)`.
    pub fn overlaps(&self, start: u64, end: u64) -> bool {
        if start >= end {
            return false;
        }
        if let Some((&at, extent)) = self.map.range(..start).next_back()
            && at + extent.len() as u64 > start
        {
            return true;
        }
        self.map.range(start..end).next().is_some()
    }

    /// Whether every byte of `[start, end)` is written.
    pub fn covers(&self, start: u64, end: u64) -> bool {
        let mut at = start;
        while at < end {
            match self.map.range(..=at).next_back() {
                Some((&extent_start, extent)) if extent_start + extent.len() as u64 > at => {
                    at = extent_start + extent.len() as u64;
                }
                _ => return false,
            }
        }
        true
    }

    /// The written pieces of `[start, end)` in order: each piece's offset in the file, its
    /// extent, and the piece's range within the extent.
    fn pieces(&self, start: u64, end: u64) -> impl Iterator<Item = (u64, &Bytes, Range<usize>)> {
        let first = self.map.range(..start).next_back().map(|(&at, _)| at).unwrap_or(start);
        self.map.range(first..end).filter_map(move |(&at, extent)| {
            let from = at.max(start);
            let to = (at + extent.len() as u64).min(end);
            (from < to).then(|| (from, extent, (from - at) as usize..(to - at) as usize))
        })
    }

    /// Copies the written bytes of `[start, start + out.len())` into `out`, leaving the other
    /// bytes as they are.
    pub fn overlay(&self, start: u64, out: &mut [u8]) {
        let end = start + out.len() as u64;
        for (from, extent, range) in self.pieces(start, end) {
            let at = (from - start) as usize;
            out[at..at + range.len()].copy_from_slice(&extent[range]);
        }
    }

    /// The bytes of `[start, end)` as slices of the extents (no copy), with zeros where nothing
    /// is written.
    pub fn slices(&self, start: u64, end: u64) -> Vec<Bytes> {
        let mut out = Vec::new();
        let mut at = start;
        for (from, extent, range) in self.pieces(start, end) {
            if from > at {
                out.push(Bytes::from(vec![0; (from - at) as usize]));
            }
            at = from + range.len() as u64;
            out.push(extent.slice(range));
        }
        if end > at {
            out.push(Bytes::from(vec![0; (end - at) as usize]));
        }
        out
    }

    /// The ranges of `[start, end)` that are not written, in order.
    pub fn gaps(&self, start: u64, end: u64) -> Vec<(u64, u64)> {
        let mut gaps = Vec::new();
        let mut at = start;
        while at < end {
            let covered_end = self.contiguous_end(at);
            if covered_end > at {
                at = covered_end;
                continue;
            }
            let next_start = self.map.range(at..end).next().map_or(end, |(&next, _)| next);
            gaps.push((at, next_start));
            at = next_start;
        }
        gaps
    }

    /// The end of the written run that starts at `offset` (`offset` itself if none does).
    pub fn contiguous_end(&self, offset: u64) -> u64 {
        let mut at = offset;
        while let Some((&extent_start, extent)) = self.map.range(..=at).next_back() {
            let extent_end = extent_start + extent.len() as u64;
            if extent_end <= at {
                break;
            }
            at = extent_end;
        }
        at
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bytes(fill: u8, len: usize) -> Bytes {
        Bytes::from(vec![fill; len])
    }

    fn read(extents: &Extents, start: u64, len: usize) -> Vec<u8> {
        let mut out = vec![b'.'; len];
        extents.overlay(start, &mut out);
        out
    }

    #[test]
    fn newer_writes_win_where_they_overlap() {
        let mut e = Extents::default();
        e.write(0, bytes(b'a', 10));
        e.write(3, bytes(b'b', 4));
        e.write(8, bytes(b'c', 5));
        assert_eq!(read(&e, 0, 14), b"aaabbbbaccccc.".to_vec());
        assert_eq!(e.total_bytes(), 13);
    }

    #[test]
    fn lent_ranges_hold_the_written_bytes_and_zeros_between_them() {
        let mut e = Extents::default();
        e.write(2, bytes(b'a', 3));
        e.write(7, bytes(b'b', 4));
        assert_eq!(e.slices(0, 12).concat(), b"\0\0aaa\0\0bbbb\0".to_vec());
        assert_eq!(e.slices(3, 9).concat(), b"aa\0\0bb".to_vec());
        assert_eq!(e.slices(8, 9).concat(), b"b".to_vec());
        assert_eq!(e.slices(20, 23).concat(), vec![0; 3]);
        for start in 0..12 {
            for end in start..14 {
                let mut zeros = vec![0u8; (end - start) as usize];
                e.overlay(start, &mut zeros);
                assert_eq!(e.slices(start, end).concat(), zeros, "[{start}, {end})");
            }
        }
        // Written bytes are lent, not copied.
        let (whole, tail) = (e.slices(7, 11), e.slices(8, 11));
        assert_eq!((whole.len(), tail.len()), (1, 1));
        assert_eq!(whole[0].as_ptr().wrapping_add(1), tail[0].as_ptr());
    }

    #[test]
    fn coverage_and_overlap_follow_the_written_ranges() {
        let mut e = Extents::default();
        e.write(10, bytes(1, 10));
        e.write(20, bytes(2, 5));
        assert!(e.covers(10, 25));
        assert!(!e.covers(9, 25));
        assert!(!e.covers(10, 26));
        assert!(e.overlaps(0, 11));
        assert!(!e.overlaps(0, 10));
        assert!(!e.overlaps(25, 30));
        assert_eq!(e.contiguous_end(10), 25);
        assert_eq!(e.contiguous_end(5), 5);
        assert_eq!(e.gaps(0, 40), vec![(0, 10), (25, 40)]);
        assert_eq!(e.gaps(12, 22), vec![]);
    }

    #[test]
    fn truncation_and_removal_keep_what_lies_outside() {
        let mut e = Extents::default();
        e.write(0, bytes(b'x', 100));
        e.remove_range(10, 20);
        assert_eq!(e.total_bytes(), 90);
        assert!(e.covers(0, 10) && e.covers(20, 100) && !e.overlaps(10, 20));
        e.truncate(50);
        assert_eq!(e.total_bytes(), 40);
        assert!(!e.overlaps(50, 1000));
        assert_eq!(e.slices(20, 50).iter().map(Bytes::len).collect::<Vec<_>>(), vec![30]);
        assert_eq!(e.slices(5, 15).iter().map(Bytes::len).collect::<Vec<_>>(), vec![5, 5]);
    }
}
