//! The run's trace: a hash of every input and output, for replay checks, and the last lines,
//! for failure reports.

use std::collections::VecDeque;
use std::fmt::Write;

const RECENT_LINES: usize = 80;

/// FNV-1a over every traced line, plus the most recent lines.
#[derive(Clone, Debug)]
pub struct Trace {
    hash: u64,
    lines: u64,
    recent: VecDeque<String>,
    buffer: String,
}

impl Default for Trace {
    fn default() -> Self {
        Trace { hash: 0xcbf2_9ce4_8422_2325, lines: 0, recent: VecDeque::new(), buffer: String::new() }
    }
}

impl Trace {
    /// Adds one line, built by `write`.
    pub fn record(&mut self, write: impl FnOnce(&mut String) -> std::fmt::Result) {
        self.buffer.clear();
        write(&mut self.buffer).expect("writing to a String cannot fail");
        for byte in self.buffer.bytes().chain([b'\n']) {
            self.hash ^= u64::from(byte);
            self.hash = self.hash.wrapping_mul(0x0000_0100_0000_01b3);
        }
        self.lines += 1;
        if self.recent.len() == RECENT_LINES {
            self.recent.pop_front();
        }
        self.recent.push_back(self.buffer.clone());
    }

    pub fn hash(&self) -> u64 {
        self.hash
    }

    pub fn line_count(&self) -> u64 {
        self.lines
    }

    /// The last lines, oldest first.
    pub fn recent(&self) -> String {
        let mut out = String::new();
        for line in &self.recent {
            let _ = writeln!(out, "  {line}");
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hash_depends_on_content_and_order() {
        let mut a = Trace::default();
        let mut b = Trace::default();
        a.record(|s| write!(s, "x"));
        a.record(|s| write!(s, "y"));
        b.record(|s| write!(s, "y"));
        b.record(|s| write!(s, "x"));
        assert_ne!(a.hash(), b.hash());
        let mut c = Trace::default();
        c.record(|s| write!(s, "x"));
        c.record(|s| write!(s, "y"));
        assert_eq!(a.hash(), c.hash());
        assert_eq!(a.line_count(), 2);
        assert!(a.recent().contains("  y\n"));
    }
}
