//! The figures of one run (a value per workload step) and their summary over runs: median,
//! min and max, in each step's own unit.

use std::collections::BTreeMap;
use std::time::Duration;

/// One timed step of the workload, in table order.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub enum Step {
    SeqWrite,
    SeqRead,
    FirstByte,
    RandRead4k,
    RandRead1m,
    ParallelRead,
    ReadersAndWriter,
    CreateSerial,
    CreateParallel,
    Ls,
    LsLong,
    Find,
    CatSmall,
    RmRf,
}

impl Step {
    pub const ALL: [Step; 14] = [
        Step::SeqWrite,
        Step::SeqRead,
        Step::FirstByte,
        Step::RandRead4k,
        Step::RandRead1m,
        Step::ParallelRead,
        Step::ReadersAndWriter,
        Step::CreateSerial,
        Step::CreateParallel,
        Step::Ls,
        Step::LsLong,
        Step::Find,
        Step::CatSmall,
        Step::RmRf,
    ];

    /// What the table calls it.
    pub fn label(self) -> &'static str {
        match self {
            Step::SeqWrite => "seq write (incl. close)",
            Step::SeqRead => "seq read, cold",
            Step::FirstByte => "time to first byte",
            Step::RandRead4k => "random read 4 KiB",
            Step::RandRead1m => "random read 1 MiB",
            Step::ParallelRead => "parallel readers",
            Step::ReadersAndWriter => "parallel readers + a writer",
            Step::CreateSerial => "create small files, one by one",
            Step::CreateParallel => "create small files, in parallel",
            Step::Ls => "`ls`, cold",
            Step::LsLong => "`ls -l`, cold",
            Step::Find => "`find` tree, cold",
            Step::CatSmall => "`cat` small files, cold",
            Step::RmRf => "`rm -rf` of the work dir",
        }
    }

    pub fn unit(self) -> &'static str {
        match self {
            Step::SeqWrite | Step::SeqRead | Step::RandRead1m | Step::ParallelRead | Step::ReadersAndWriter => "MB/s",
            Step::FirstByte => "ms",
            Step::RandRead4k => "IOPS",
            _ => "s",
        }
    }

    /// Whether a larger figure is better (throughput) or worse (time).
    pub fn higher_is_better(self) -> bool {
        matches!(self.unit(), "MB/s" | "IOPS")
    }
}

/// The figures of one run of one client.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Measurements {
    pub values: BTreeMap<Step, f64>,
}

impl Measurements {
    /// Decimal megabytes per second, as dd and the peers' tables print.
    pub fn throughput(&mut self, step: Step, bytes: u64, elapsed: Duration) {
        self.values.insert(step, bytes as f64 / 1e6 / elapsed.as_secs_f64().max(1e-9));
    }

    pub fn seconds(&mut self, step: Step, elapsed: Duration) {
        let value = if step == Step::FirstByte { elapsed.as_secs_f64() * 1e3 } else { elapsed.as_secs_f64() };
        self.values.insert(step, value);
    }

    /// IOPS for the 4 KiB step, MB/s for larger blocks.
    pub fn random_reads(&mut self, step: Step, reads: u64, block_bytes: u64, elapsed: Duration) {
        if step.unit() == "IOPS" {
            self.values.insert(step, reads as f64 / elapsed.as_secs_f64().max(1e-9));
        } else {
            self.throughput(step, reads * block_bytes, elapsed);
        }
    }
}

/// Median, min and max of one step over runs.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Summary {
    pub median: f64,
    pub min: f64,
    pub max: f64,
    pub runs: usize,
}

/// The summary of `values`, or `None` if there are none. An even count takes the mean of the
/// middle two.
pub fn summarize(values: &[f64]) -> Option<Summary> {
    if values.is_empty() {
        return None;
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let middle = sorted.len() / 2;
    let median = if sorted.len() % 2 == 1 { sorted[middle] } else { (sorted[middle - 1] + sorted[middle]) / 2.0 };
    Some(Summary { median, min: sorted[0], max: sorted[sorted.len() - 1], runs: sorted.len() })
}

/// The summary of each step over `runs`.
pub fn summarize_runs(runs: &[Measurements]) -> BTreeMap<Step, Summary> {
    Step::ALL
        .iter()
        .filter_map(|&step| {
            let values: Vec<f64> = runs.iter().filter_map(|run| run.values.get(&step).copied()).collect();
            summarize(&values).map(|summary| (step, summary))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_median_of_an_odd_count_is_the_middle_value_and_of_an_even_count_the_mean_of_two() {
        let odd = summarize(&[3.0, 1.0, 2.0]).unwrap();
        assert_eq!((odd.median, odd.min, odd.max, odd.runs), (2.0, 1.0, 3.0, 3));
        assert_eq!(summarize(&[4.0, 1.0, 2.0, 3.0]).unwrap().median, 2.5);
        assert_eq!(summarize(&[]), None);
    }

    #[test]
    fn throughput_is_in_decimal_megabytes_and_first_byte_in_milliseconds() {
        let mut run = Measurements::default();
        run.throughput(Step::SeqRead, 1_000_000_000, Duration::from_secs(2));
        run.seconds(Step::FirstByte, Duration::from_micros(1500));
        run.random_reads(Step::RandRead4k, 300, 4096, Duration::from_secs(3));
        assert_eq!(run.values[&Step::SeqRead], 500.0);
        assert!((run.values[&Step::FirstByte] - 1.5).abs() < 1e-9);
        assert!((run.values[&Step::RandRead4k] - 100.0).abs() < 1e-9);
        assert!(Step::SeqRead.higher_is_better() && !Step::LsLong.higher_is_better());
    }
}
