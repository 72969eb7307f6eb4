//! `my_alloc report PROFILE`: reads the profile once and makes what the options ask for: the
//! picture and summary, folded stacks, the leak report, a pprof file, flame graphs.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

use crate::args::ReportArgs;
use crate::leaks::bytes_text;
use crate::profile::{self, Profile};
use crate::stacks::{self, Counted, Moment, Symbolised};
use crate::symbols::Symbolizer;
use crate::{flame, leaks, pprof, report, run, Failure};

fn usage(message: String) -> Failure {
    Failure::usage(format!("report: {message} (try 'my_alloc report --help')"))
}

/// The files the options ask for, each with the words that name it in messages and the summary.
struct Outputs {
    picture: Option<PathBuf>,
    pprof: Option<PathBuf>,
    flame_peak: Option<PathBuf>,
    flame_alloc: Option<PathBuf>,
}

impl Outputs {
    /// The files, or a usage error if one would overwrite the profile or another output.
    fn of(args: &ReportArgs) -> Result<Outputs, Failure> {
        let input = &args.profile;
        // --folded is for a pipe: the picture only if it is asked for by name.
        let picture = match (&args.output, args.folded) {
            (Some(out), _) => Some(out.clone()),
            (None, false) => Some(input.with_extension("svg")),
            (None, true) => None,
        };
        let outputs = Outputs {
            picture,
            pprof: args.pprof.clone(),
            flame_peak: args.flame_peak.clone(),
            flame_alloc: args.flame_alloc.clone(),
        };
        let named = outputs.named();
        for (i, (what, path)) in named.iter().enumerate() {
            if *path == input {
                return Err(usage(if *what == "the picture" {
                    format!(
                        "the picture would overwrite the profile {}: name it with -o",
                        input.display()
                    )
                } else {
                    format!("{what} would overwrite the profile {}", input.display())
                }));
            }
            if let Some((other, _)) = named[..i].iter().find(|(_, p)| p == path) {
                return Err(usage(format!(
                    "{other} and {what} name the same file {}",
                    path.display()
                )));
            }
        }
        Ok(outputs)
    }

    fn named(&self) -> Vec<(&'static str, &Path)> {
        [
            ("the picture", &self.picture),
            ("--pprof", &self.pprof),
            ("--flame-peak", &self.flame_peak),
            ("--flame-alloc", &self.flame_alloc),
        ]
        .into_iter()
        .filter_map(|(what, p)| p.as_deref().map(|p| (what, p)))
        .collect()
    }
}

pub fn report(args: ReportArgs) -> Result<(), Failure> {
    let outputs = Outputs::of(&args)?;
    let input = &args.profile;
    let shown = input.display().to_string();
    let fail = |message: String| Failure::error(format!("report: {shown}: {message}"));
    let bytes = std::fs::read(input).map_err(|e| {
        Failure::error(format!("report: cannot read {shown}: {}", run::io_text(&e)))
    })?;
    let text = String::from_utf8_lossy(&bytes);
    let parsed = profile::parse(&text).map_err(|e| fail(e.to_string()))?;
    for w in &parsed.warnings {
        warn(&format!("{shown}: {w}"));
    }
    let profile = parsed.profile;

    let wanting: Vec<&str> = [
        (args.folded, "--folded"),
        (args.leaks, "--leaks"),
        (args.snapshot.is_some(), "--snapshot"),
        (args.pprof.is_some(), "--pprof"),
        (args.flame_peak.is_some(), "--flame-peak"),
        (args.flame_alloc.is_some(), "--flame-alloc"),
    ]
    .into_iter()
    .filter_map(|(on, name)| on.then_some(name))
    .collect();
    if !profile.has_stack_samples() && !wanting.is_empty() {
        return Err(fail(format!(
            "no allocation stack samples (no R line) for {}",
            wanting.join(", ")
        )));
    }
    let moment = match args.snapshot {
        None => Moment::End,
        Some(n) => match profile.snapshots.get(n - 1) {
            Some(p) => Moment::After(p.line),
            None => {
                let k = profile.snapshots.len();
                return Err(fail(format!(
                    "no snapshot {n}: the profile has {k} (P line{})",
                    if k == 1 { "" } else { "s" }
                )));
            }
        },
    };
    let symbols = if profile.has_stack_samples() {
        let mut symbolizer = Symbolizer::new();
        let symbols = Symbolised::new(&profile, &mut symbolizer);
        for w in symbolizer.take_warnings() {
            warn(&w);
        }
        Some(symbols)
    } else {
        None
    };
    let name = input
        .file_name()
        .map_or(shown.clone(), |n| n.to_string_lossy().into_owned());

    // Everything is made before anything is written: a failure leaves no output half made.
    let mut files: Vec<(&Path, Vec<u8>)> = Vec::new();
    if let Some(path) = &outputs.picture {
        let svg =
            report::draw(&profile, &name).map_err(|e| Failure::error(format!("report: {e}")))?;
        files.push((path, svg.into_bytes()));
    }
    if let Some(symbols) = &symbols {
        if let Some(path) = &outputs.pprof {
            let meta = pprof::Meta {
                time_nanos: start_nanos(input, &profile),
                in_use: moment,
                in_use_text: leaks::moment_text(&profile, moment),
            };
            let data = pprof::gzipped(&profile, symbols, &meta).map_err(fail)?;
            files.push((path, data));
        }
        let who = profile.program.clone().unwrap_or_else(|| name.clone());
        if let Some(path) = &outputs.flame_peak {
            let peak = stacks::peak(&profile).ok_or_else(|| {
                fail("no sampled allocations: no flame graph for --flame-peak".into())
            })?;
            let lines = stacks::folded(&profile, symbols, Counted::Live(peak.moment));
            let subtitle = format!(
                "{}: {} live at {:.3} s (estimated from the stack samples, R = {})",
                who,
                bytes_text(peak.bytes),
                peak.t_ms as f64 / 1000.0,
                bytes_text(profile.rate.unwrap_or(0) as f64)
            );
            files.push((
                path,
                flame_svg(
                    &lines,
                    "Bytes in use at the peak",
                    &subtitle,
                    "--flame-peak",
                    &fail,
                )?,
            ));
        }
        if let Some(path) = &outputs.flame_alloc {
            let lines = stacks::folded(&profile, symbols, Counted::Allocated);
            let total: u64 = lines.iter().map(|l| l.1).sum();
            let subtitle = format!(
                "{}: {} allocated in {:.3} s (estimated from {} stack samples, R = {})",
                who,
                bytes_text(total as f64),
                profile.duration_ms() as f64 / 1000.0,
                profile.allocs.len(),
                bytes_text(profile.rate.unwrap_or(0) as f64)
            );
            files.push((
                path,
                flame_svg(&lines, "Bytes allocated", &subtitle, "--flame-alloc", &fail)?,
            ));
        }
    }
    for (path, data) in &files {
        std::fs::write(path, data).map_err(|e| {
            Failure::error(format!(
                "report: cannot write {}: {}",
                path.display(),
                run::io_text(&e)
            ))
        })?;
    }

    let mut out = String::new();
    match &symbols {
        Some(symbols) if args.folded => {
            let lines = if args.leaks {
                stacks::folded(&profile, symbols, Counted::Live(moment))
            } else {
                stacks::folded(&profile, symbols, Counted::Allocated)
            };
            out.push_str(&stacks::folded_text(&lines));
        }
        _ => {
            out.push_str(&report::summary(&profile, &shown));
            if let Some(symbols) = &symbols {
                out.push_str(&leaks::summary(&profile, symbols, moment));
            }
            for (what, path) in outputs.named() {
                let label = match what {
                    "the picture" => "picture:",
                    "--pprof" => "pprof:",
                    "--flame-peak" => "flame (peak):",
                    _ => "flame (alloc):",
                };
                out.push_str(&format!("{label:<15}{}\n", path.display()));
            }
            if let (Some(symbols), true) = (&symbols, args.leaks) {
                out.push('\n');
                out.push_str(&leaks::report(&profile, symbols, moment));
            }
        }
    }
    emit(&out)
}

fn warn(message: &str) {
    eprintln!("my_alloc: report: warning: {message}");
}

/// A flame graph, or why there is none (no bytes to draw).
fn flame_svg(
    lines: &[(String, u64)],
    title: &str,
    subtitle: &str,
    option: &str,
    fail: &dyn Fn(String) -> Failure,
) -> Result<Vec<u8>, Failure> {
    if lines.is_empty() {
        return Err(fail(format!(
            "no sampled bytes to draw: no flame graph for {option}"
        )));
    }
    flame::draw(lines, title, subtitle).map_err(fail)
}

/// When the profile started, for pprof: the file's last change (its end) less its duration.
fn start_nanos(input: &Path, profile: &Profile) -> i64 {
    std::fs::metadata(input)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| {
            (d.as_nanos() as i64)
                .saturating_sub((profile.duration_ms() as i64).saturating_mul(1_000_000))
        })
}

/// Prints `text` on stdout; a reader that went away (`| head`) is no failure.
fn emit(text: &str) -> Result<(), Failure> {
    let mut stdout = std::io::stdout().lock();
    match stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
    {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        Err(e) => Err(Failure::error(format!(
            "report: cannot write the report: {}",
            run::io_text(&e)
        ))),
    }
}
