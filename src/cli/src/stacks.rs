//! The sampled allocations of a profile as estimates: what each sample stands for, the
//! symbolised stacks with the allocator's frames dropped, folded stacks, and the moments at which
//! live blocks are counted (the end, a snapshot, the peak).
//!
//! The library samples allocations as a Poisson process over bytes with mean interval R, so an
//! allocation of s bytes is sampled with probability p = 1 - exp(-s/R). Weighting each sample by
//! 1/p (as jemalloc does) makes the estimates unbiased: a sample stands for s/p bytes and 1/p
//! allocations. A sample of 0 bytes (which a byte process never picks, but a library may record)
//! stands for itself alone: 1 allocation, 0 bytes.

use std::collections::HashMap;

use crate::profile::{Alloc, Profile};
use crate::strip;
use crate::symbols::{Frame, Location, Symbolizer};

/// What one sample stands for.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Weight {
    pub bytes: f64,
    pub count: f64,
}

impl std::ops::AddAssign for Weight {
    fn add_assign(&mut self, other: Weight) {
        self.bytes += other.bytes;
        self.count += other.count;
    }
}

impl Weight {
    pub const ZERO: Weight = Weight {
        bytes: 0.0,
        count: 0.0,
    };
}

/// The estimate for one sample of `size` requested bytes under mean interval `rate`.
pub fn weight(size: u64, rate: u64) -> Weight {
    if size == 0 {
        return Weight {
            bytes: 0.0,
            count: 1.0,
        };
    }
    let s = size as f64;
    // 1 - exp(-s/R), computed without cancellation for s much smaller than R.
    let p = -(-s / rate.max(1) as f64).exp_m1();
    Weight {
        bytes: s / p,
        count: 1.0 / p,
    }
}

/// A sampled stack, symbolised.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SymStack {
    /// Indices into `Symbolised::locations`, innermost first, without the pcs whose frames are
    /// all the allocator's.
    pub locations: Vec<usize>,
    /// The function frames (location index, frame index), innermost first, without the
    /// allocator's leading frames (an inlined allocator frame too).
    pub frames: Vec<(usize, usize)>,
}

/// The stacks of a profile, symbolised once for every output.
#[derive(Debug, Clone, Default)]
pub struct Symbolised {
    /// One per distinct (pc, looked up as a return address).
    pub locations: Vec<Location>,
    /// Parallel to `Profile::stacks`.
    pub stacks: Vec<SymStack>,
}

impl Symbolised {
    /// Symbolises every stack of `profile`.
    pub fn new(profile: &Profile, symbolizer: &mut Symbolizer) -> Symbolised {
        let mut locations: Vec<Location> = Vec::new();
        let mut known: HashMap<(u64, bool), usize> = HashMap::new();
        let mut stacks = Vec::with_capacity(profile.stacks.len());
        for stack in &profile.stacks {
            let ids: Vec<usize> = stack
                .pcs
                .iter()
                .enumerate()
                .map(|(i, &pc)| {
                    // Every pc but the innermost is a return address.
                    let key = (pc, i > 0);
                    *known.entry(key).or_insert_with(|| {
                        locations.push(symbolizer.locate(&profile.mappings, pc, i > 0));
                        locations.len() - 1
                    })
                })
                .collect();
            let all: Vec<(usize, usize)> = ids
                .iter()
                .flat_map(|&l| (0..locations[l].frames.len()).map(move |f| (l, f)))
                .collect();
            let drop = strip::leading_allocator_frames(all.iter().map(|&(l, f)| {
                (
                    locations[l].frames[f].function.as_str(),
                    locations[l].object.as_str(),
                )
            }));
            // A pc keeps its place while any of its frames is kept.
            let mut skip = 0;
            let mut dropped = drop;
            for &id in &ids {
                let n = locations[id].frames.len();
                if dropped < n {
                    break;
                }
                dropped -= n;
                skip += 1;
            }
            let frames = all[drop..].to_vec();
            stacks.push(SymStack {
                locations: ids[skip..].to_vec(),
                frames,
            });
        }
        Symbolised { locations, stacks }
    }

    pub fn frame(&self, (location, frame): (usize, usize)) -> &Frame {
        &self.locations[location].frames[frame]
    }

    /// A stack's kept frames, innermost first.
    pub fn frames<'a>(&'a self, stack: usize) -> impl Iterator<Item = &'a Frame> + 'a {
        self.stacks[stack].frames.iter().map(|&f| self.frame(f))
    }

    /// A stack as one folded line's frames: function names, outermost first, `;` apart.
    pub fn folded_key(&self, stack: usize) -> String {
        let names: Vec<String> = self.stacks[stack]
            .frames
            .iter()
            .rev()
            .map(|&f| self.frame(f).function.replace(';', ","))
            .collect();
        if names.is_empty() {
            "[no frames]".to_string()
        } else {
            names.join(";")
        }
    }
}

/// The moment at which live blocks are counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Moment {
    /// The end of the profile: blocks never freed.
    End,
    /// Just after this line (a `P` line, or the event at the peak).
    After(usize),
}

impl Moment {
    pub fn is_live(self, alloc: &Alloc) -> bool {
        match self {
            Moment::End => alloc.free.is_none(),
            Moment::After(line) => alloc.is_live_after(line),
        }
    }
}

/// Which samples an estimate counts, and as what.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Counted {
    /// The bytes live at a moment.
    Live(Moment),
    /// Everything allocated: a block resized in place counts once, at its largest estimate.
    Allocated,
}

impl Counted {
    /// What the sample `alloc` adds to the estimate, if it counts at all.
    pub fn weigh(self, alloc: &Alloc, rate: u64) -> Option<Weight> {
        match self {
            Counted::Live(moment) => moment.is_live(alloc).then(|| weight(alloc.size, rate)),
            Counted::Allocated => Some(allocated(alloc, rate)),
        }
    }
}

/// What the sample `alloc` adds to the estimate of everything allocated. A sample continuing a
/// block resized in place adds only what its growth added to the block's estimate, and no
/// allocation: the pieces of a block that only grows sum to the estimate of its final size.
pub fn allocated(alloc: &Alloc, rate: u64) -> Weight {
    let w = weight(alloc.size, rate);
    match alloc.resized_from {
        None => w,
        Some(before) => Weight {
            bytes: (w.bytes - weight(before, rate).bytes).max(0.0),
            count: 0.0,
        },
    }
}

/// When the estimated live sampled bytes were highest.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Peak {
    pub moment: Moment,
    pub t_ms: u64,
    pub bytes: f64,
}

/// The first moment the estimated live bytes were highest, replaying the samples' allocations
/// and frees in file order; `None` without samples.
pub fn peak(profile: &Profile) -> Option<Peak> {
    let rate = profile.rate?;
    // (line, t_ms, change in bytes): the line orders events, since times may tie or interleave.
    let mut events: Vec<(usize, u64, f64)> = Vec::with_capacity(profile.allocs.len() * 2);
    for a in &profile.allocs {
        let w = weight(a.size, rate).bytes;
        events.push((a.line, a.t_ms, w));
        if let Some(f) = a.free {
            events.push((f.line, f.t_ms, -w));
        }
    }
    events.sort_by_key(|e| e.0);
    let mut live = 0.0;
    let mut best: Option<Peak> = None;
    for (line, t_ms, change) in events {
        live += change;
        // A little slack, so that rounding in the sums does not move the peak.
        if best.map_or(true, |b| live > b.bytes * (1.0 + 1e-12)) {
            best = Some(Peak {
                moment: Moment::After(line),
                t_ms,
                bytes: live,
            });
        }
    }
    best
}

/// The estimate of what `counted` counts, and how many samples it took, per stack (indices into
/// `Profile::stacks`).
pub fn by_stack(profile: &Profile, counted: Counted) -> Vec<(Weight, usize)> {
    let rate = profile.rate.unwrap_or(1);
    let mut per = vec![(Weight::ZERO, 0usize); profile.stacks.len()];
    for a in &profile.allocs {
        if let Some(w) = counted.weigh(a, rate) {
            per[a.stack].0 += w;
            per[a.stack].1 += 1;
        }
    }
    per
}

/// Folded stacks of the estimated bytes of what `counted` counts: one line per distinct
/// list of function names, `outermost;...;innermost BYTES`, by bytes descending (then by name),
/// lines of 0 bytes left out.
pub fn folded(profile: &Profile, symbols: &Symbolised, counted: Counted) -> Vec<(String, u64)> {
    let mut sums: HashMap<String, f64> = HashMap::new();
    for (stack, (w, n)) in by_stack(profile, counted).into_iter().enumerate() {
        if n > 0 {
            *sums.entry(symbols.folded_key(stack)).or_default() += w.bytes;
        }
    }
    let mut lines: Vec<(String, u64)> = sums
        .into_iter()
        .map(|(k, b)| (k, b.round() as u64))
        .filter(|&(_, b)| b > 0)
        .collect();
    lines.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    lines
}

/// Folded lines as text, one per line.
pub fn folded_text(lines: &[(String, u64)]) -> String {
    lines.iter().map(|(k, b)| format!("{k} {b}\n")).collect()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::profile::parse;

    pub const TEXT: &str = include_str!("../tests/data/stacks.prof");

    pub fn example() -> (Profile, Symbolised) {
        let p = parse(TEXT).unwrap().profile;
        let s = Symbolised::new(&p, &mut Symbolizer::new());
        (p, s)
    }

    #[test]
    fn weights_are_unbiased_estimates() {
        let r = 524288;
        // Large blocks are nearly always sampled: they stand for about themselves.
        let w = weight(64 << 20, r);
        assert!((w.bytes - (64 << 20) as f64).abs() < 1.0, "{w:?}");
        assert!((w.count - 1.0).abs() < 1e-9, "{w:?}");
        // Small ones stand for about R bytes each, in R/s allocations.
        let w = weight(16, r);
        assert!((w.bytes - r as f64).abs() / (r as f64) < 1e-4, "{w:?}");
        assert!((w.count - r as f64 / 16.0).abs() / w.count < 1e-4, "{w:?}");
        // s = R: p = 1 - 1/e.
        let w = weight(r, r);
        let p = 1.0 - (-1.0f64).exp();
        assert!((w.bytes - r as f64 / p).abs() < 1e-6);
        assert!((w.count * r as f64 - w.bytes).abs() < 1e-6);
        assert_eq!(
            weight(0, r),
            Weight {
                bytes: 0.0,
                count: 1.0
            }
        );
    }

    #[test]
    fn the_peak_is_found_in_file_order() {
        let text = "my_alloc-profile 1\nR 1\nK 1 10\nA 9 100 1 a\nA 1 200 1 b\nF 2 a\n\
                    A 3 150 1 c\nF 4 b\nA 5 50 1 d\nE 6\n";
        let p = parse(text).unwrap().profile;
        // R = 1: every sample stands for its own bytes. Live: 100, 300, 200, 350, 150, 200.
        let peak = peak(&p).unwrap();
        assert_eq!(peak.moment, Moment::After(7));
        assert_eq!(peak.t_ms, 3);
        assert!((peak.bytes - 350.0).abs() < 1e-6);
        let live: Vec<u64> = p
            .allocs
            .iter()
            .filter(|a| peak.moment.is_live(a))
            .map(|a| a.size)
            .collect();
        assert_eq!(live, vec![200, 150]);
        let at_end: Vec<u64> = p
            .allocs
            .iter()
            .filter(|a| Moment::End.is_live(a))
            .map(|a| a.size)
            .collect();
        assert_eq!(at_end, vec![150, 50]);
        assert_eq!(peak_of_nothing(), None);
    }

    #[test]
    fn a_block_resized_in_place_is_allocated_once_at_its_largest() {
        let r = 4096;
        let text = format!(
            "my_alloc-profile 1\nR {r}\nK 1 10\nA 1 100 1 a\nZ 2 a a 3000\nZ 3 a a 9000\nE 4\n"
        );
        let p = parse(&text).unwrap().profile;
        let all = p.allocs.iter().fold(Weight::ZERO, |mut t, a| {
            t += allocated(a, r);
            t
        });
        let last = weight(9000, r);
        assert!((all.bytes - last.bytes).abs() < 1e-6, "{all:?} {last:?}");
        assert!((all.count - weight(100, r).count).abs() < 1e-9, "{all:?}");
        let live = by_stack(&p, Counted::Live(Moment::End));
        assert_eq!(live[0].1, 1);
        assert!((live[0].0.bytes - last.bytes).abs() < 1e-6);
        let allocated_by_stack = by_stack(&p, Counted::Allocated);
        assert!((allocated_by_stack[0].0.bytes - last.bytes).abs() < 1e-6);
    }

    fn peak_of_nothing() -> Option<Peak> {
        peak(&parse("my_alloc-profile 1\nR 64\nE 1\n").unwrap().profile)
    }

    #[test]
    fn allocator_frames_are_stripped_and_stacks_folded() {
        let (p, s) = example();
        // Stack 1: the allocator's pc (libmy_alloc.so) and libgcc_s are dropped.
        let names: Vec<&str> = s.frames(0).map(|f| f.function.as_str()).collect();
        assert_eq!(names, vec!["demo+0x1100", "demo+0x1200", "demo+0x1300"]);
        assert_eq!(s.stacks[0].locations.len(), 3);
        assert_eq!(s.folded_key(0), "demo+0x1300;demo+0x1200;demo+0x1100");

        let lines = folded(&p, &s, Counted::Allocated);
        let total: u64 = lines.iter().map(|l| l.1).sum();
        let expected: f64 = p
            .allocs
            .iter()
            .map(|a| weight(a.size, p.rate.unwrap()).bytes)
            .sum();
        assert!(
            (total as f64 - expected).abs() <= lines.len() as f64,
            "{lines:?}"
        );
        // Sorted by bytes, descending; stacks 1 and 4 have the same frames once stripped.
        assert!(lines.windows(2).all(|w| w[0].1 >= w[1].1), "{lines:?}");
        let keys: Vec<&str> = lines.iter().map(|l| l.0.as_str()).collect();
        assert_eq!(keys.iter().filter(|k| **k == s.folded_key(0)).count(), 1);
        assert_eq!(s.folded_key(3), s.folded_key(0));
        let text = folded_text(&lines);
        assert!(text.lines().all(|l| l
            .rsplit_once(' ')
            .is_some_and(|(_, n)| n.parse::<u64>().is_ok())));
    }
}
