//! Sampled allocations still live at a moment (the end of the profile, or a snapshot), grouped
//! by stack: the `--leaks` report, and the lines of the summary about stack samples.

use std::collections::HashMap;
use std::fmt::Write as _;

use crate::profile::Profile;
use crate::stacks::{self, Counted, Moment, Symbolised, Weight};
use crate::symbols::Frame;

/// How many stacks `--leaks` lists; the rest are summed in one line.
pub const TOP: usize = 20;
/// How many stacks the summary lists.
pub const SUMMARY_TOP: usize = 3;

/// The live samples of one distinct stack (stacks whose kept frames are the same are one).
#[derive(Debug, Clone, PartialEq)]
pub struct Group {
    /// A stack of the group (index into `Profile::stacks`), for its frames.
    pub stack: usize,
    pub weight: Weight,
    pub samples: usize,
}

/// The samples live at `moment`, grouped by stack, by estimated bytes descending.
pub fn groups(profile: &Profile, symbols: &Symbolised, moment: Moment) -> Vec<Group> {
    let mut by_frames: HashMap<Vec<&Frame>, Group> = HashMap::new();
    for (stack, (weight, samples)) in stacks::by_stack(profile, Counted::Live(moment))
        .into_iter()
        .enumerate()
        .filter(|(_, (_, n))| *n > 0)
    {
        let group = by_frames
            .entry(symbols.frames(stack).collect())
            .or_insert(Group {
                stack,
                weight: Weight::ZERO,
                samples: 0,
            });
        group.weight += weight;
        group.samples += samples;
        group.stack = group.stack.min(stack);
    }
    let mut out: Vec<Group> = by_frames.into_values().collect();
    out.sort_by(|a, b| {
        b.weight
            .bytes
            .total_cmp(&a.weight.bytes)
            .then(b.samples.cmp(&a.samples))
            .then(a.stack.cmp(&b.stack))
    });
    out
}

/// The moment in words: "the end of the profile", "snapshot 2 (0.110 s)".
pub fn moment_text(profile: &Profile, moment: Moment) -> String {
    match moment {
        Moment::End if profile.is_truncated() => {
            "the end of the profile (truncated: the program stopped before it could free them)"
                .to_string()
        }
        Moment::End => "the end of the profile".to_string(),
        Moment::After(line) => match profile.snapshots.iter().position(|s| s.line == line) {
            Some(i) => format!(
                "snapshot {} ({:.3} s)",
                i + 1,
                profile.snapshots[i].t_ms as f64 / 1000.0
            ),
            None => format!("line {line}"),
        },
    }
}

/// The `--leaks` report.
pub fn report(profile: &Profile, symbols: &Symbolised, moment: Moment) -> String {
    let groups = groups(profile, symbols, moment);
    let total = groups.iter().fold(Weight::ZERO, |mut t, g| {
        t += g.weight;
        t
    });
    let samples: usize = groups.iter().map(|g| g.samples).sum();
    let mut s = String::new();
    let _ = writeln!(
        s,
        "leaks: sampled allocations live at {}",
        moment_text(profile, moment)
    );
    let _ = writeln!(
        s,
        "estimated {} in {} allocation{}, from {samples} sample{} in {} stack{} (R = {})",
        bytes_text(total.bytes),
        count_text(total.count),
        plural(total.count.round() as u64 != 1),
        plural(samples != 1),
        groups.len(),
        plural(groups.len() != 1),
        bytes_text(profile.rate.unwrap_or(0) as f64)
    );
    for (rank, g) in groups.iter().take(TOP).enumerate() {
        let _ = writeln!(
            s,
            "\n#{}  {} in {} allocation{} ({} sample{})",
            rank + 1,
            bytes_text(g.weight.bytes),
            count_text(g.weight.count),
            plural(g.weight.count.round() as u64 != 1),
            g.samples,
            plural(g.samples != 1)
        );
        let mut any = false;
        for frame in symbols.frames(g.stack) {
            let _ = writeln!(s, "    {}", frame.describe());
            any = true;
        }
        if !any {
            s.push_str("    (no frames)\n");
        }
    }
    if groups.len() > TOP {
        let rest = groups[TOP..].iter().fold(Weight::ZERO, |mut t, g| {
            t += g.weight;
            t
        });
        let _ = writeln!(
            s,
            "\n... and {} more stacks: {} in {} allocations",
            groups.len() - TOP,
            bytes_text(rest.bytes),
            count_text(rest.count)
        );
    }
    s
}

/// The summary's lines about stack samples: how many, what they stand for, and the top leaks.
pub fn summary(profile: &Profile, symbols: &Symbolised, moment: Moment) -> String {
    let rate = profile.rate.unwrap_or(1);
    let all = profile.allocs.iter().fold(Weight::ZERO, |mut t, a| {
        t += stacks::allocated(a, rate);
        t
    });
    let mut s = String::new();
    let n = profile.allocs.len();
    let _ = writeln!(
        s,
        "stack samples: {n} (R = {}): {} allocated in {} allocations (estimated)",
        bytes_text(rate as f64),
        bytes_text(all.bytes),
        count_text(all.count)
    );
    let groups = groups(profile, symbols, moment);
    let live: Weight = groups.iter().fold(Weight::ZERO, |mut t, g| {
        t += g.weight;
        t
    });
    let samples: usize = groups.iter().map(|g| g.samples).sum();
    let label = match moment {
        Moment::End => "live at end:".to_string(),
        Moment::After(line) => match profile.snapshots.iter().position(|p| p.line == line) {
            Some(i) => format!("at snapshot {}:", i + 1),
            None => "live:".to_string(),
        },
    };
    let _ = writeln!(
        s,
        "{label:<15}{} in {} allocations (estimated), {samples} sample{} in {} stack{}",
        bytes_text(live.bytes),
        count_text(live.count),
        plural(samples != 1),
        groups.len(),
        plural(groups.len() != 1)
    );
    if !groups.is_empty() {
        s.push_str("top leaks:\n");
        for g in groups.iter().take(SUMMARY_TOP) {
            let frames: Vec<&str> = symbols
                .frames(g.stack)
                .take(2)
                .map(|f| f.function.as_str())
                .collect();
            let frames = if frames.is_empty() {
                "(no frames)".to_string()
            } else {
                frames.join(" <- ")
            };
            let _ = writeln!(s, "    {:>10}  {frames}", bytes_text(g.weight.bytes));
        }
    }
    s
}

fn plural(many: bool) -> &'static str {
    if many {
        "s"
    } else {
        ""
    }
}

/// Bytes for people: "512 B", "4.0 KiB", "1.1 MiB", "2.3 GiB".
pub fn bytes_text(bytes: f64) -> String {
    let b = bytes.max(0.0);
    if b < 1024.0 {
        format!("{} B", b.round())
    } else if b < 1024.0 * 1024.0 {
        format!("{:.1} KiB", b / 1024.0)
    } else if b < 1024.0 * 1024.0 * 1024.0 {
        format!("{:.1} MiB", b / (1024.0 * 1024.0))
    } else {
        format!("{:.1} GiB", b / (1024.0 * 1024.0 * 1024.0))
    }
}

/// An estimated count, whole.
fn count_text(count: f64) -> String {
    format!("{}", count.max(0.0).round())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stacks::tests::example;
    use crate::stacks::weight;

    #[test]
    fn live_samples_are_grouped_by_stack() {
        let (p, s) = example();
        let r = p.rate.unwrap();
        let g = groups(&p, &s, Moment::End);
        // Stacks 1 and 4 are one once stripped: 1 MiB and 100000 bytes; then 4096 bytes.
        assert_eq!(g.len(), 2, "{g:?}");
        assert_eq!(g[0].samples, 2);
        assert_eq!(g[0].stack, 0);
        let want = weight(1 << 20, r).bytes + weight(100_000, r).bytes;
        assert!((g[0].weight.bytes - want).abs() < 1e-6, "{g:?}");
        assert_eq!(g[1].samples, 1);
        assert!((g[1].weight.count - weight(4096, r).count).abs() < 1e-9);

        // At snapshot 1 both 4 KiB blocks and both 256 KiB ones are still live.
        let at = Moment::After(p.snapshots[0].line);
        let g = groups(&p, &s, at);
        let samples: Vec<usize> = g.iter().map(|g| g.samples).collect();
        assert_eq!(samples, vec![1, 2, 2], "{g:?}");
        assert_eq!(moment_text(&p, at), "snapshot 1 (0.080 s)");
    }

    #[test]
    fn the_report_lists_stacks_with_their_frames() {
        let (p, s) = example();
        let text = report(&p, &s, Moment::End);
        assert!(
            text.starts_with("leaks: sampled allocations live at the end of the profile\n"),
            "{text}"
        );
        assert!(
            text.contains("from 3 samples in 2 stacks (R = 64.0 KiB)"),
            "{text}"
        );
        assert!(text.contains("\n#1  1.1 MiB in 2 allocations (2 samples)\n    demo+0x1100\n    demo+0x1200\n    demo+0x1300\n"), "{text}");
        assert!(
            text.contains("\n#2  66.0 KiB in 17 allocations (1 sample)\n    libparse.so+0x1500\n"),
            "{text}"
        );

        let text = summary(&p, &s, Moment::End);
        assert!(
            text.starts_with("stack samples: 7 (R = 64.0 KiB): "),
            "{text}"
        );
        assert!(text.contains("\nlive at end:   1.2 MiB in "), "{text}");
        assert!(
            text.contains("top leaks:\n       1.1 MiB  demo+0x1100 <- demo+0x1200\n"),
            "{text}"
        );
        assert_eq!(text.lines().count(), 5, "{text}");
        let text = summary(&p, &s, Moment::After(p.snapshots[1].line));
        assert!(text.contains("\nat snapshot 2: 1.2 MiB"), "{text}");
    }

    #[test]
    fn bytes_for_people() {
        assert_eq!(bytes_text(512.0), "512 B");
        assert_eq!(bytes_text(4096.0), "4.0 KiB");
        assert_eq!(bytes_text(1.5 * 1024.0 * 1024.0), "1.5 MiB");
        assert_eq!(bytes_text(3.0 * 1024.0 * 1024.0 * 1024.0), "3.0 GiB");
    }
}
