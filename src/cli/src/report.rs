//! `my_alloc report`: a profile's text summary, and its picture (one SVG, three panels).

use std::fmt::Write as _;

use plotters::coord::types::RangedCoordf64;
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use crate::profile::{ClassCount, Profile};

const MIB: f64 = 1024.0 * 1024.0;

/// The picture's size in pixels.
pub const WIDTH: u32 = 1100;
pub const HEIGHT: u32 = 1350;

/// Panel captions (the tests look for them).
pub const CAPTION_CLASSES: &str = "(a) Requests by size class";
pub const CAPTION_MEMORY: &str = "(b) Memory over time";
pub const CAPTION_FRAGMENTATION: &str = "(c) Fragmentation over time: resident but not in use";

/// Series labels (the tests look for them).
pub const LABEL_IN_USE: &str = "in use";
pub const LABEL_RESIDENT: &str = "resident";
pub const LABEL_GAP: &str = "resident - in use";

/// Series colours (the tests tell the lines apart by them).
pub const COLOR_IN_USE: RGBColor = RGBColor(0x1F, 0x77, 0xB4);
pub const COLOR_RESIDENT: RGBColor = RGBColor(0xD6, 0x27, 0x28);
pub const COLOR_GAP: RGBColor = RGBColor(0x94, 0x67, 0xBD);
const COLOR_BARS: RGBColor = RGBColor(0x2C, 0xA0, 0x2C);
const COLOR_MAPPED_BAR: RGBColor = RGBColor(0xFF, 0x7F, 0x0E);
const COLOR_LIGHT_GRID: RGBColor = RGBColor(0xF2, 0xF2, 0xF2);
const COLOR_NOTE: RGBColor = RGBColor(0x60, 0x60, 0x60);

const FONT: &str = "sans-serif";

/// The time panels' y axes reach this much above the highest value: room for the legend.
const HEADROOM: f64 = 1.25;

/// The text summary printed by `my_alloc report`.
pub fn summary(profile: &Profile, name: &str) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "profile:       {name}");
    if let Some(program) = &profile.program {
        let _ = writeln!(s, "program:       {program}");
    }
    let duration = profile.duration_ms() as f64 / 1000.0;
    let n = profile.samples.len();
    let _ = writeln!(
        s,
        "duration:      {}{duration:.3} s ({n} sample{}{})",
        if profile.is_truncated() { ">= " } else { "" },
        if n == 1 { "" } else { "s" },
        if profile.is_truncated() {
            ", truncated: no end marker"
        } else {
            ""
        }
    );
    match profile
        .samples
        .iter()
        .max_by_key(|x| (x.in_use, std::cmp::Reverse(x.t_ms)))
    {
        Some(p) => {
            let _ = writeln!(
                s,
                "peak in use:   {} at {:.3} s",
                mib(p.in_use),
                p.t_ms as f64 / 1000.0
            );
        }
        None => s.push_str("peak in use:   - (no samples)\n"),
    }
    if let Some(p) = profile
        .samples
        .iter()
        .max_by_key(|x| (x.resident, std::cmp::Reverse(x.t_ms)))
    {
        let _ = writeln!(
            s,
            "peak resident: {} at {:.3} s",
            mib(p.resident),
            p.t_ms as f64 / 1000.0
        );
    }
    let total = profile.total_requests();
    let _ = writeln!(
        s,
        "requests:      {total} in {} size class{}",
        profile.classes.len(),
        if profile.classes.len() == 1 { "" } else { "es" }
    );
    let mut busiest: Vec<&ClassCount> = profile.classes.iter().filter(|c| c.requests > 0).collect();
    busiest.sort_by_key(|c| (std::cmp::Reverse(c.requests), c.index));
    if !busiest.is_empty() {
        s.push_str("busiest classes:\n");
        s.push_str("    class  block size     requests   share\n");
        for c in busiest.iter().take(5) {
            let _ = writeln!(
                s,
                "    {:>5}  {:>10}  {:>11}  {:>5.1}%",
                c.index,
                class_size_text(c.block_size),
                c.requests,
                100.0 * c.requests as f64 / total as f64
            );
        }
    }
    s
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / MIB)
}

/// A class's block size for people: "48 B", "1.25 KiB", "mapped".
fn class_size_text(block_size: u64) -> String {
    match block_size {
        0 => "mapped".to_string(),
        b if b < 1024 => format!("{b} B"),
        b if b < 1 << 20 => format!("{} KiB", trim_float(b as f64 / 1024.0)),
        b => format!("{} MiB", trim_float(b as f64 / MIB)),
    }
}

fn trim_float(x: f64) -> String {
    let s = format!("{x:.2}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

/// A power of two for an axis: 16, 512, 1K, 32K, 1M, 2G.
fn pow2_label(k: u32) -> String {
    match k {
        0..=9 => format!("{}", 1u64 << k),
        10..=19 => format!("{}K", 1u64 << (k - 10)),
        20..=29 => format!("{}M", 1u64 << (k - 20)),
        _ => format!("{}G", 1u64 << (k - 30)),
    }
}

/// A count for an axis or a bar: 950, 12.5K, 1.2M.
fn count_label(n: f64) -> String {
    if n < 1e3 {
        format!("{}", n.round())
    } else if n < 1e6 {
        format!("{}K", trim_float((n / 1e3 * 10.0).round() / 10.0))
    } else if n < 1e9 {
        format!("{}M", trim_float((n / 1e6 * 10.0).round() / 10.0))
    } else {
        format!("{}G", trim_float((n / 1e9 * 10.0).round() / 10.0))
    }
}

/// The histogram's bars: one per power of two (the bar labelled 2^k holds the classes of
/// 2^(k-1)+1 to 2^k bytes), from the smallest to the largest non-empty one (at least 16 to 4K),
/// then one for the mapped blocks.
struct Bars {
    /// Exponent of the first bar's upper bound.
    first_k: u32,
    /// Request counts per power of two, then the mapped blocks' last.
    counts: Vec<u64>,
}

impl Bars {
    fn new(classes: &[ClassCount]) -> Bars {
        let exponent = |size: u64| 64 - (size - 1).leading_zeros().min(63);
        let sized = classes.iter().filter(|c| !c.is_mapped());
        let lo = sized
            .clone()
            .map(|c| exponent(c.block_size))
            .min()
            .unwrap_or(4)
            .min(4);
        let hi = sized
            .clone()
            .map(|c| exponent(c.block_size))
            .max()
            .unwrap_or(12)
            .max(12);
        let mut counts = vec![0u64; (hi - lo + 2) as usize];
        for c in classes {
            let slot = if c.is_mapped() {
                counts.len() - 1
            } else {
                (exponent(c.block_size) - lo) as usize
            };
            counts[slot] += c.requests;
        }
        Bars {
            first_k: lo,
            counts,
        }
    }

    fn label(&self, slot: usize) -> String {
        if slot + 1 == self.counts.len() {
            "mapped".to_string()
        } else {
            pow2_label(self.first_k + slot as u32)
        }
    }
}

/// Draws the picture as SVG text.
pub fn draw(profile: &Profile, name: &str) -> Result<String, String> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, HEIGHT)).into_drawing_area();
        draw_on(&root, profile, name).map_err(|e| format!("cannot draw the picture: {e}"))?;
        root.present()
            .map_err(|e| format!("cannot draw the picture: {e}"))?;
    }
    Ok(svg)
}

type DrawResult = Result<(), Box<dyn std::error::Error>>;

fn draw_on<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    profile: &Profile,
    name: &str,
) -> DrawResult
where
    DB::ErrorType: 'static,
{
    root.fill(&WHITE)?;
    let mut title = match &profile.program {
        Some(program) => format!("my_alloc profile of {}", printable(program)),
        None => format!("my_alloc profile {}", printable(name)),
    };
    if profile.is_truncated() {
        title.push_str(" (truncated)");
    }
    let root = root.titled(&title, (FONT, 30))?;
    let panels = root.split_evenly((3, 1));
    draw_classes(&panels[0], profile)?;
    draw_memory(&panels[1], profile)?;
    draw_fragmentation(&panels[2], profile)?;
    Ok(())
}

/// Text from the file, safe for an SVG picture (no control characters).
fn printable(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

fn note_style(size: u32) -> TextStyle<'static> {
    TextStyle::from((FONT, size).into_font()).color(&COLOR_NOTE)
}

fn draw_classes<DB: DrawingBackend>(area: &DrawingArea<DB, Shift>, profile: &Profile) -> DrawResult
where
    DB::ErrorType: 'static,
{
    let bars = Bars::new(&profile.classes);
    let n = bars.counts.len();
    // y: whole requests (so that small counts get whole ticks), with room for the bars' labels.
    let most = bars.counts.iter().copied().max().unwrap_or(0);
    let top = (most + most / 8).max(5);
    // x: slot i spans [10 i, 10 i + 10] (integers: a custom-key-point axis needs them to format).
    let centers: Vec<i32> = (0..n as i32).map(|i| i * 10 + 5).collect();
    let mut chart = ChartBuilder::on(area)
        .caption(CAPTION_CLASSES, (FONT, 22))
        .margin(12)
        .margin_right(30)
        .x_label_area_size(50)
        .y_label_area_size(75)
        .build_cartesian_2d((0..n as i32 * 10).with_key_points(centers), 0u64..top)?;
    let x_label = |x: &i32| bars.label((*x / 10).max(0) as usize);
    let y_label = |y: &u64| count_label(*y as f64);
    chart
        .configure_mesh()
        .max_light_lines(4)
        .light_line_style(COLOR_LIGHT_GRID)
        .disable_x_mesh()
        .x_label_formatter(&x_label)
        .y_label_formatter(&y_label)
        .y_labels(6)
        .x_desc("block size class, bytes (the bar labelled N counts the classes above N/2 up to N)")
        .y_desc("requests")
        .axis_desc_style((FONT, 15))
        .label_style((FONT, 13))
        .draw()?;
    chart.draw_series(
        bars.counts
            .iter()
            .enumerate()
            .filter(|(_, &c)| c > 0)
            .map(|(i, &c)| {
                let color = if i + 1 == n {
                    COLOR_MAPPED_BAR
                } else {
                    COLOR_BARS
                };
                Rectangle::new(
                    [(i as i32 * 10 + 1, 0), (i as i32 * 10 + 9, c)],
                    color.filled(),
                )
            }),
    )?;
    let above = TextStyle::from((FONT, 12).into_font()).pos(Pos::new(HPos::Center, VPos::Bottom));
    chart.draw_series(
        bars.counts
            .iter()
            .enumerate()
            .filter(|(_, &c)| c > 0)
            .map(|(i, &c)| Text::new(count_label(c as f64), (i as i32 * 10 + 5, c), above.clone())),
    )?;
    if profile.classes.is_empty() {
        let note = if profile.is_truncated() {
            "no size-class counts: they are written at exit, and this profile is truncated"
        } else {
            "no size-class counts in this profile"
        };
        chart.draw_series(std::iter::once(Text::new(
            note,
            (n as i32 * 5, top / 2),
            note_style(16).pos(Pos::new(HPos::Center, VPos::Center)),
        )))?;
    }
    Ok(())
}

/// The time axis: seconds, from 0 to the profile's end (at least a millisecond).
fn time_range(profile: &Profile) -> std::ops::Range<f64> {
    0.0..(profile.duration_ms().max(1) as f64 / 1000.0)
}

fn draw_memory<DB: DrawingBackend>(area: &DrawingArea<DB, Shift>, profile: &Profile) -> DrawResult
where
    DB::ErrorType: 'static,
{
    let peak = profile
        .samples
        .iter()
        .map(|s| s.in_use.max(s.resident))
        .max()
        .unwrap_or(0) as f64
        / MIB;
    // Headroom above the lines for the legend (a fifth of the height).
    let top = if peak > 0.0 { peak * HEADROOM } else { 1.0 };
    let mut chart = ChartBuilder::on(area)
        .caption(CAPTION_MEMORY, (FONT, 22))
        .margin(12)
        .margin_right(30)
        .x_label_area_size(50)
        .y_label_area_size(75)
        .build_cartesian_2d(time_range(profile), 0f64..top)?;
    chart
        .configure_mesh()
        .max_light_lines(4)
        .light_line_style(COLOR_LIGHT_GRID)
        .x_desc("time (s)")
        .y_desc("MiB")
        .axis_desc_style((FONT, 15))
        .label_style((FONT, 13))
        .draw()?;
    let series = [
        (
            LABEL_IN_USE,
            COLOR_IN_USE,
            profile.samples.iter().map(|s| s.in_use).collect::<Vec<_>>(),
        ),
        (
            LABEL_RESIDENT,
            COLOR_RESIDENT,
            profile.samples.iter().map(|s| s.resident).collect(),
        ),
    ];
    for (label, color, values) in series {
        let points = profile
            .samples
            .iter()
            .zip(values)
            .map(|(s, v)| (s.t_ms as f64 / 1000.0, v as f64 / MIB));
        chart
            .draw_series(LineSeries::new(points, color.stroke_width(2)))?
            .label(label)
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 24, y)], color.stroke_width(3))
            });
    }
    finish_time_panel(&mut chart, profile)
}

fn draw_fragmentation<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    profile: &Profile,
) -> DrawResult
where
    DB::ErrorType: 'static,
{
    let gaps: Vec<(f64, f64)> = profile
        .samples
        .iter()
        .map(|s| {
            (
                s.t_ms as f64 / 1000.0,
                (s.resident as f64 - s.in_use as f64) / MIB,
            )
        })
        .collect();
    let hi = gaps.iter().map(|g| g.1).fold(0.0, f64::max);
    let lo = gaps.iter().map(|g| g.1).fold(0.0, f64::min);
    let (lo, hi) = if hi - lo > 0.0 {
        (lo * 1.1, hi + (hi - lo * 1.1) * (HEADROOM - 1.0))
    } else {
        (0.0, 1.0)
    };
    let mut chart = ChartBuilder::on(area)
        .caption(CAPTION_FRAGMENTATION, (FONT, 22))
        .margin(12)
        .margin_right(30)
        .x_label_area_size(50)
        .y_label_area_size(75)
        .build_cartesian_2d(time_range(profile), lo..hi)?;
    chart
        .configure_mesh()
        .max_light_lines(4)
        .light_line_style(COLOR_LIGHT_GRID)
        .x_desc("time (s)")
        .y_desc("MiB resident - MiB in use")
        .axis_desc_style((FONT, 15))
        .label_style((FONT, 13))
        .draw()?;
    chart
        .draw_series(LineSeries::new(
            gaps.iter().copied(),
            COLOR_GAP.stroke_width(2),
        ))?
        .label(LABEL_GAP)
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 24, y)], COLOR_GAP.stroke_width(3)));
    finish_time_panel(&mut chart, profile)
}

/// The end of a panel over time: its legend at the upper right, and a note if it has no samples.
fn finish_time_panel<'a, DB: DrawingBackend + 'a>(
    chart: &mut ChartContext<'a, DB, Cartesian2d<RangedCoordf64, RangedCoordf64>>,
    profile: &Profile,
) -> DrawResult
where
    DB::ErrorType: 'static,
{
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK.mix(0.4))
        .label_font((FONT, 15))
        .draw()?;
    no_samples_note(chart, profile)
}

/// Says so in the panel when there is nothing to draw in it.
fn no_samples_note<DB: DrawingBackend>(
    chart: &mut ChartContext<'_, DB, Cartesian2d<RangedCoordf64, RangedCoordf64>>,
    profile: &Profile,
) -> DrawResult
where
    DB::ErrorType: 'static,
{
    if profile.samples.is_empty() {
        let x = chart.x_range();
        let y = chart.y_range();
        chart.draw_series(std::iter::once(Text::new(
            "no samples in this profile",
            ((x.start + x.end) / 2.0, (y.start + y.end) / 2.0),
            note_style(16).pos(Pos::new(HPos::Center, VPos::Center)),
        )))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels() {
        assert_eq!(pow2_label(4), "16");
        assert_eq!(pow2_label(10), "1K");
        assert_eq!(pow2_label(15), "32K");
        assert_eq!(pow2_label(20), "1M");
        assert_eq!(count_label(950.0), "950");
        assert_eq!(count_label(12_500.0), "12.5K");
        assert_eq!(count_label(958_000.0), "958K");
        assert_eq!(count_label(1_200_000.0), "1.2M");
        assert_eq!(class_size_text(48), "48 B");
        assert_eq!(class_size_text(1280), "1.25 KiB");
        assert_eq!(class_size_text(0), "mapped");
    }

    #[test]
    fn bars_per_power_of_two() {
        let c = |index, block_size, requests| ClassCount {
            index,
            block_size,
            requests,
        };
        let bars = Bars::new(&[
            c(0, 32, 5),
            c(1, 48, 7),
            c(2, 64, 1),
            c(70, 5000, 2),
            c(127, 0, 3),
        ]);
        // 16, 32, 64, ..., 8K (5000 -> 8K), mapped.
        assert_eq!(bars.first_k, 4);
        assert_eq!(bars.label(0), "16");
        assert_eq!(bars.label(9), "8K");
        assert_eq!(bars.label(10), "mapped");
        assert_eq!(bars.counts, vec![0, 5, 8, 0, 0, 0, 0, 0, 0, 2, 3]);
        // No classes at all: an empty axis from 16 to 4K, and mapped.
        let bars = Bars::new(&[]);
        assert_eq!(bars.counts.len(), 10);
        assert_eq!(bars.label(8), "4K");
    }

    #[test]
    fn summary_lists_the_busiest_classes() {
        let text = include_str!("../tests/data/example.prof");
        let p = crate::profile::parse(text).unwrap().profile;
        let s = summary(&p, "example.prof");
        assert!(s.contains("duration:      3.012 s (61 samples)"), "{s}");
        assert!(s.contains("peak in use:   48.0 MiB at 1.500 s"), "{s}");
        let rows: Vec<&str> = s
            .lines()
            .skip_while(|l| !l.contains("block size"))
            .skip(1)
            .collect();
        assert_eq!(rows.len(), 5, "{s}");
        assert!(
            rows[0].contains("48 B") && rows[0].contains("958000"),
            "{s}"
        );
    }
}
