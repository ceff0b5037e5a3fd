//! The results: a Markdown table (median with min–max, ratios to the best peer and to the
//! ceilings, peak RSS, the targets met or missed, S3 requests per step) and an SVG chart, both
//! written by hand so the benchmark needs no plotting tool.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::clients::ClientKind;
use crate::measure::{Measurements, Step, Summary, summarize_runs};

/// Everything measured for one client.
#[derive(Debug, Default)]
pub struct ClientResults {
    pub version: String,
    pub runs: Vec<Measurements>,
    pub peak_rss_kib: u64,
    /// S3 requests by kind per step, from the last run (goofys-rs only).
    pub requests: BTreeMap<Step, BTreeMap<String, f64>>,
}

/// The whole benchmark, ready to print.
#[derive(Debug, Default)]
pub struct Report {
    pub title: String,
    /// Lines about the machine, the server, the sizes, the date.
    pub setting: Vec<String>,
    pub clients: BTreeMap<ClientKind, ClientResults>,
    pub notes: Vec<String>,
    /// The `--memory-limit` goofys-rs ran with, in MiB.
    pub goofys_memory_limit_mib: Option<u64>,
}

/// How much faster `ours` is than `theirs` (above 1: ours is faster), whatever the unit.
pub fn speed_ratio(step: Step, ours: f64, theirs: f64) -> f64 {
    if step.higher_is_better() { ours / theirs } else { theirs / ours }
}

fn format_value(value: f64) -> String {
    if value >= 100.0 {
        format!("{value:.0}")
    } else if value >= 10.0 {
        format!("{value:.1}")
    } else if value >= 1.0 {
        format!("{value:.2}")
    } else {
        format!("{value:.3}")
    }
}

fn format_summary(summary: &Summary) -> String {
    if summary.runs == 1 {
        return format_value(summary.median);
    }
    format!("{} ({}–{})", format_value(summary.median), format_value(summary.min), format_value(summary.max))
}

impl Report {
    fn summaries(&self) -> BTreeMap<ClientKind, BTreeMap<Step, Summary>> {
        self.clients.iter().map(|(&kind, results)| (kind, summarize_runs(&results.runs))).collect()
    }

    /// The peer with the best median for `step`.
    fn best_peer(summaries: &BTreeMap<ClientKind, BTreeMap<Step, Summary>>, step: Step) -> Option<(ClientKind, f64)> {
        summaries
            .iter()
            .filter(|(kind, _)| kind.is_peer())
            .filter_map(|(&kind, steps)| steps.get(&step).map(|summary| (kind, summary.median)))
            .max_by(|a, b| speed_ratio(step, a.1, b.1).total_cmp(&1.0))
    }

    pub fn markdown(&self) -> String {
        let summaries = self.summaries();
        let kinds: Vec<ClientKind> = self.clients.keys().copied().collect();
        let mut out = String::new();
        let _ = writeln!(out, "# {}\n", self.title);
        for line in &self.setting {
            let _ = writeln!(out, "- {line}");
        }
        let _ = writeln!(
            out,
            "\nEach cell: median (min–max) over the runs. Ratios are goofys-rs' speed relative to the other (above 1: goofys-rs is faster), from medians.\n"
        );
        let mut header = String::from("| step | unit |");
        for kind in &kinds {
            let _ = write!(header, " {} |", kind.name());
        }
        header.push_str(" vs best peer | vs raw-s3 | vs null-fuse |");
        let _ = writeln!(out, "{header}");
        let _ = writeln!(out, "|{}", "---|".repeat(kinds.len() + 5));
        for step in Step::ALL {
            let mut row = format!("| {} | {} |", step.label(), step.unit());
            for kind in &kinds {
                let cell = summaries[kind].get(&step).map_or("–".into(), format_summary);
                let _ = write!(row, " {cell} |");
            }
            let ours = summaries.get(&ClientKind::GoofysRs).and_then(|steps| steps.get(&step)).map(|s| s.median);
            let ratio_to = |theirs: Option<f64>, label: Option<&str>| match (ours, theirs) {
                (Some(ours), Some(theirs)) => match label {
                    Some(label) => format!("{:.2}× ({label})", speed_ratio(step, ours, theirs)),
                    None => format!("{:.2}×", speed_ratio(step, ours, theirs)),
                },
                _ => "–".into(),
            };
            let best = Self::best_peer(&summaries, step);
            let ceiling = |kind| summaries.get(&kind).and_then(|steps| steps.get(&step)).map(|s| s.median);
            let _ = writeln!(
                row,
                " {} | {} | {} |",
                ratio_to(best.map(|b| b.1), best.map(|b| b.0.name())),
                ratio_to(ceiling(ClientKind::RawS3), None),
                ratio_to(ceiling(ClientKind::NullFuse), None)
            );
            out.push_str(&row);
        }
        let mut rss = String::from("| peak RSS | MiB |");
        for kind in &kinds {
            let _ = write!(rss, " {} |", self.clients[kind].peak_rss_kib / 1024);
        }
        let _ = writeln!(out, "{rss} | | |");

        let _ = writeln!(out, "\n## Targets (issue 7)\n");
        for line in self.targets(&summaries) {
            let _ = writeln!(out, "- {line}");
        }

        if let Some(goofys) = self.clients.get(&ClientKind::GoofysRs)
            && !goofys.requests.is_empty()
        {
            let _ = writeln!(out, "\n## S3 requests goofys-rs sent per step (its own metrics, last run)\n");
            let _ = writeln!(out, "| step | requests |\n|---|---|");
            for (step, counts) in &goofys.requests {
                let text: Vec<String> = counts.iter().map(|(kind, count)| format!("{kind} {count:.0}")).collect();
                let _ = writeln!(
                    out,
                    "| {} | {} |",
                    step.label(),
                    if text.is_empty() { "none".into() } else { text.join(", ") }
                );
            }
        }

        let _ = writeln!(out, "\n## Versions\n");
        for (kind, results) in &self.clients {
            let _ = writeln!(out, "- {}: {}", kind.name(), results.version);
        }
        if !self.notes.is_empty() {
            let _ = writeln!(out, "\n## Notes\n");
            for note in &self.notes {
                let _ = writeln!(out, "- {note}");
            }
        }
        out
    }

    /// One line per target of the issue: met or missed, by how much.
    fn targets(&self, summaries: &BTreeMap<ClientKind, BTreeMap<Step, Summary>>) -> Vec<String> {
        let median = |kind, step| {
            summaries.get(&kind).and_then(|steps: &BTreeMap<Step, Summary>| steps.get(&step)).map(|s| s.median)
        };
        let mut lines = Vec::new();
        for step in [Step::SeqRead, Step::SeqWrite] {
            let (Some(ours), Some(raw)) = (median(ClientKind::GoofysRs, step), median(ClientKind::RawS3, step)) else {
                continue;
            };
            let ratio = speed_ratio(step, ours, raw);
            let peer = Self::best_peer(summaries, step);
            let ahead = peer.is_none_or(|(_, theirs)| speed_ratio(step, ours, theirs) > 1.0);
            lines.push(format!(
                "{}: {:.2}× the raw client (target ≥ 0.90×: {}); {} every peer{}",
                step.label(),
                ratio,
                if ratio >= 0.9 { "met" } else { "missed" },
                if ahead { "ahead of" } else { "NOT ahead of" },
                peer.map_or(String::new(), |(kind, theirs)| format!(
                    " (best peer {} {:.2}×)",
                    kind.name(),
                    speed_ratio(step, ours, theirs)
                ))
            ));
        }
        if let (Some(ours), Some(raw)) =
            (median(ClientKind::GoofysRs, Step::FirstByte), median(ClientKind::RawS3, Step::FirstByte))
        {
            let over = ours - raw;
            lines.push(format!(
                "time to first byte: {ours:.2} ms, {over:+.2} ms over one raw GET round trip ({raw:.2} ms) (target ≤ +1 ms: {})",
                if over <= 1.0 { "met" } else { "missed" }
            ));
        }
        for step in [Step::LsLong, Step::CreateSerial, Step::CatSmall] {
            let Some(ours) = median(ClientKind::GoofysRs, step) else { continue };
            if let Some((kind, theirs)) = Self::best_peer(summaries, step) {
                let ratio = speed_ratio(step, ours, theirs);
                lines.push(format!(
                    "{}: {:.2}× the fastest peer, {} (target ≥ 1.00×: {})",
                    step.label(),
                    ratio,
                    kind.name(),
                    if ratio >= 1.0 { "met" } else { "missed" }
                ));
            }
        }
        if let (Some(goofys), Some(limit_mib)) = (self.clients.get(&ClientKind::GoofysRs), self.goofys_memory_limit_mib)
        {
            let peak_mib = goofys.peak_rss_kib as f64 / 1024.0;
            let degraded = match (
                median(ClientKind::GoofysRs, Step::ReadersAndWriter),
                median(ClientKind::GoofysRs, Step::ParallelRead),
            ) {
                (Some(mixed), Some(readers)) => format!(
                    "; {} {mixed:.0} MB/s, {:.2}× {} alone",
                    Step::ReadersAndWriter.label(),
                    mixed / readers,
                    Step::ParallelRead.label()
                ),
                _ => String::new(),
            };
            lines.push(format!(
                "memory: peak RSS {peak_mib:.0} MiB under --memory-limit {limit_mib} MiB ({}){degraded}",
                if peak_mib < limit_mib as f64 { "met" } else { "missed" }
            ));
        }
        if let Some(goofys) = self.clients.get(&ClientKind::GoofysRs)
            && let Some(counts) = goofys.requests.get(&Step::LsLong)
        {
            let heads = counts.get("HeadObject").copied().unwrap_or(0.0);
            lines.push(format!(
                "`ls -l` without per-entry HEAD: {heads:.0} HeadObject requests ({})",
                if heads < 10.0 { "met" } else { "missed" }
            ));
        }
        lines
    }

    /// A grouped bar chart: for each step, every client's speed relative to the fastest.
    pub fn svg(&self) -> String {
        let summaries = self.summaries();
        let kinds: Vec<ClientKind> = self.clients.keys().copied().collect();
        let colors = ["#d62728", "#1f77b4", "#2ca02c", "#98df8a", "#9467bd", "#7f7f7f", "#ff7f0e"];
        let (label_width, bar_width, bar_height, gap) = (260.0, 520.0, 11.0, 14.0);
        let group_height = kinds.len() as f64 * bar_height + gap;
        let legend_height = 24.0 * kinds.len().div_ceil(4) as f64 + 10.0;
        let height = 60.0 + legend_height + Step::ALL.len() as f64 * group_height;
        let width = label_width + bar_width + 120.0;
        let mut svg = String::new();
        let _ = writeln!(
            svg,
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height}\" font-family=\"sans-serif\" font-size=\"12\">"
        );
        let _ = writeln!(svg, "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>");
        let _ = writeln!(
            svg,
            "<text x=\"10\" y=\"22\" font-size=\"15\" font-weight=\"bold\">{}</text>",
            escape(&self.title)
        );
        let _ = writeln!(
            svg,
            "<text x=\"10\" y=\"40\" fill=\"#555\">speed relative to the fastest client of each step (longer is better); median of the runs</text>"
        );
        for (index, kind) in kinds.iter().enumerate() {
            let x = 10.0 + (index % 4) as f64 * 200.0;
            let y = 56.0 + (index / 4) as f64 * 24.0;
            let color = colors[ClientKind::ALL.iter().position(|k| k == kind).unwrap_or(0) % colors.len()];
            let _ = writeln!(svg, "<rect x=\"{x}\" y=\"{}\" width=\"14\" height=\"14\" fill=\"{color}\"/>", y - 11.0);
            let _ = writeln!(svg, "<text x=\"{}\" y=\"{y}\">{}</text>", x + 20.0, kind.name());
        }
        let mut y = 60.0 + legend_height;
        for step in Step::ALL {
            let medians: Vec<(ClientKind, f64)> =
                kinds.iter().filter_map(|kind| summaries[kind].get(&step).map(|s| (*kind, s.median))).collect();
            let best = medians.iter().map(|&(_, v)| v).fold(None, |best: Option<f64>, v| {
                Some(best.map_or(v, |b| if speed_ratio(step, v, b) > 1.0 { v } else { b }))
            });
            let _ = writeln!(
                svg,
                "<text x=\"10\" y=\"{}\">{} ({})</text>",
                y + group_height / 2.0 - 2.0,
                escape(step.label()),
                step.unit()
            );
            for (index, kind) in kinds.iter().enumerate() {
                let bar_y = y + index as f64 * bar_height;
                let Some(&(_, value)) = medians.iter().find(|(k, _)| k == kind) else { continue };
                let relative = best.map_or(0.0, |best| speed_ratio(step, value, best)).clamp(0.0, 1.0);
                let color = colors[ClientKind::ALL.iter().position(|k| k == kind).unwrap_or(0) % colors.len()];
                let _ = writeln!(
                    svg,
                    "<rect x=\"{label_width}\" y=\"{bar_y}\" width=\"{:.1}\" height=\"{}\" fill=\"{color}\"/>",
                    (relative * bar_width).max(1.0),
                    bar_height - 2.0
                );
                let _ = writeln!(
                    svg,
                    "<text x=\"{:.1}\" y=\"{}\" font-size=\"10\">{}</text>",
                    label_width + (relative * bar_width).max(1.0) + 4.0,
                    bar_y + bar_height - 3.0,
                    format_value(value)
                );
            }
            y += group_height;
        }
        svg.push_str("</svg>\n");
        svg
    }
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('`', "")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(values: &[(Step, f64)]) -> Measurements {
        Measurements { values: values.iter().copied().collect() }
    }

    #[test]
    fn the_table_gives_ratios_to_the_best_peer_and_the_targets_verdicts() {
        let mut report = Report { title: "t".into(), ..Report::default() };
        let client = |runs: Vec<Measurements>| ClientResults { version: "v".into(), runs, ..ClientResults::default() };
        report.clients.insert(
            ClientKind::GoofysRs,
            client(vec![
                run(&[(Step::SeqRead, 500.0), (Step::LsLong, 0.05)]),
                run(&[(Step::SeqRead, 400.0), (Step::LsLong, 0.07)]),
            ]),
        );
        report.clients.insert(ClientKind::S3fs, client(vec![run(&[(Step::SeqRead, 300.0), (Step::LsLong, 0.2)])]));
        report.clients.insert(ClientKind::RcloneOff, client(vec![run(&[(Step::SeqRead, 200.0), (Step::LsLong, 0.9)])]));
        report.clients.insert(ClientKind::RawS3, client(vec![run(&[(Step::SeqRead, 600.0), (Step::LsLong, 0.01)])]));
        let markdown = report.markdown();
        assert!(
            markdown.contains("| seq read, cold | MB/s | 450 (400–500) | 300 | 200 | 600 | 1.50× (s3fs) | 0.75× | – |"),
            "{markdown}"
        );
        assert!(
            markdown.contains("seq read, cold: 0.75× the raw client (target ≥ 0.90×: missed); ahead of every peer"),
            "{markdown}"
        );
        assert!(markdown.contains("`ls -l`, cold: 3.33× the fastest peer, s3fs (target ≥ 1.00×: met)"), "{markdown}");
        let svg = report.svg();
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
    }

    #[test]
    fn the_memory_target_compares_peak_rss_to_the_limit_and_the_mixed_load_to_readers_alone() {
        let mut report = Report { goofys_memory_limit_mib: Some(512), ..Report::default() };
        report.clients.insert(
            ClientKind::GoofysRs,
            ClientResults {
                runs: vec![run(&[(Step::ParallelRead, 400.0), (Step::ReadersAndWriter, 300.0)])],
                peak_rss_kib: 300 * 1024,
                ..ClientResults::default()
            },
        );
        let markdown = report.markdown();
        assert!(
            markdown.contains(
                "memory: peak RSS 300 MiB under --memory-limit 512 MiB (met); parallel readers + a writer 300 MB/s, 0.75× parallel readers alone"
            ),
            "{markdown}"
        );
        report.clients.get_mut(&ClientKind::GoofysRs).unwrap().peak_rss_kib = 600 * 1024;
        assert!(report.markdown().contains("memory: peak RSS 600 MiB under --memory-limit 512 MiB (missed)"));
    }
}
