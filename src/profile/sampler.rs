//! When to record a call stack: a Poisson process over the bytes each thread allocates, with a
//! mean interval of `MY_ALLOC_PROFILE_RATE` bytes (as jemalloc and tcmalloc sample). The same
//! clock decides guarded samples (`guard`), with their own mean interval: it runs down at
//! whichever comes first.
//!
//! An allocation of `s` bytes is sampled with probability `1 - exp(-s/R)`, so big and small ones
//! are weighed fairly: one sample stands for `s / (1 - exp(-s/R))` bytes (`estimate`). Each thread
//! counts down the bytes to its next sample (`SampleClock::left`, beside its cache); the hot path
//! pays one subtraction and one branch, which is taken once per `RECHECK_BYTES` (64 MiB) while
//! sampling is off, to see whether it has started. After a sample, the distance to the next one is drawn afresh: the process
//! is memoryless, so what the sampled allocation overshot does not carry over.

use core::sync::atomic::{AtomicU64, Ordering};

use crate::options;
use crate::os;
use crate::sync::Lock;
use crate::thread::{self, SampleClock};

use super::events;

/// The distance of a kind of sample that is off (the clock itself still runs down every
/// `RECHECK_BYTES`).
pub const OFF: isize = isize::MAX;

/// The longest a clock runs between two windings: a winding per 64 MiB allocated is what sampling
/// costs a thread while it is off.
const RECHECK_BYTES: isize = 64 << 20;

/// The rate that samples every allocation.
const EVERY_ALLOCATION: usize = 1;

/// Clocks seeded so far: with a fixed seed, the n-th clock gets the n-th stream, so that a
/// single-threaded run repeats exactly.
static SEEDED: AtomicU64 = AtomicU64::new(0);

/// The clock of allocations made without a thread cache (early calls, checking mode, a thread
/// being torn down). Held while such an allocation is recorded, which also keeps out re-entry.
static SHARED: Lock<SampleClock> = Lock::new(SampleClock::new());

/// Counts `n` bytes against `clock`: whether this allocation is to be sampled.
#[inline(always)]
pub fn tick(clock: &mut SampleClock, n: usize) -> bool {
    let left = clock.left.wrapping_sub(n as isize);
    clock.left = left;
    left < 0
}

/// The mean interval, while call stacks are being recorded; `None` otherwise.
fn rate() -> Option<usize> {
    if !events::recording() {
        return None;
    }
    match options::PROFILE_RATE_BYTES.load(Ordering::Relaxed) {
        0 => None,
        r => Some(r),
    }
}

/// What a clock that ran down is due for.
#[derive(Clone, Copy, Default, PartialEq, Eq, Debug)]
pub struct Due {
    /// Record the allocation's call stack (`record`).
    pub stack: bool,
    /// Put the allocation on a guarded page (`guard`).
    pub guard: bool,
}

/// This thread's clock ran down: winds it again, and says what the allocation that ran it down
/// is due for. Nothing for a thread without a cache (its allocations count on the shared clock,
/// in `count`).
#[cold]
#[inline(never)]
pub fn fire() -> Due {
    let t = thread::state();
    if t.is_null() {
        return Due::default();
    }
    // SAFETY: a non-null state() is this thread's own.
    wind(unsafe { &mut (*t).sample })
}

/// Counts an allocation made off the hot path (the block `p`, now `n` bytes, of which `added`
/// are new: all of them, or what a resize in place added) on the thread's clock: whether it ran
/// down (the caller then calls `fire`). Allocations of threads without a cache count on the
/// shared clock, and their stacks are recorded here.
pub fn count(p: usize, n: usize, added: usize) -> bool {
    let t = thread::state();
    if !t.is_null() {
        // SAFETY: a non-null state() is this thread's own.
        return tick(unsafe { &mut (*t).sample }, added);
    }
    if !events::recording() {
        return false;
    }
    // Busy: another cacheless allocation is being recorded, perhaps by this very thread (the
    // unwinder allocating); this one goes uncounted.
    if let Some(mut clock) = SHARED.try_lock() {
        if tick(&mut clock, added) && wind(&mut clock).stack {
            super::record(p, n);
        }
    }
    false
}

/// The block `p`, now `n` bytes, of which `added` are new: counted, and its stack recorded if it
/// is due (a resize is not moved to a guarded page).
pub fn note_growth(p: usize, n: usize, added: usize) {
    if count(p, n, added) && fire().stack {
        record(p, n);
    }
}

/// Records the stack of the allocation `p` of `n` bytes that this thread's clock picked.
pub fn record(p: usize, n: usize) {
    let t = thread::state();
    if t.is_null() {
        return;
    }
    // SAFETY: a non-null state() is this thread's own.
    let clock = unsafe { &mut (*t).sample };
    clock.busy = true;
    super::record(p, n);
    clock.busy = false;
}

/// Winds a clock that ran down: the bytes counted since it was last wound come off the distance
/// to each kind of sample; a kind whose distance fell to zero or below is due, and gets a new
/// one. A fresh clock only gets its first distances (less what it has counted).
fn wind(clock: &mut SampleClock) -> Due {
    wind_at(clock, rate(), crate::guard::rate())
}

/// `wind` at the given mean intervals (`None`: that kind is off). A clock runs down at least
/// every `RECHECK_BYTES`, even with both kinds off, so that a thread whose clock was wound before
/// profiling started (one created before the constructor) starts sampling too.
fn wind_at(clock: &mut SampleClock, stack_rate: Option<usize>, guard_rate: Option<usize>) -> Due {
    let counted = clock.wound.wrapping_sub(clock.left);
    let fresh = clock.rng == 0;
    if fresh {
        clock.rng = seed();
    }
    let mut due = Due::default();
    for (distance, rate, is_due) in [(&mut clock.stacks, stack_rate, &mut due.stack), (&mut clock.guards, guard_rate, &mut due.guard)] {
        let Some(r) = rate else {
            *distance = OFF;
            continue;
        };
        if fresh || *distance == OFF {
            *distance = interval(&mut clock.rng, r);
        }
        *distance = distance.saturating_sub(counted);
        if *distance <= 0 {
            *is_due = true;
            *distance = interval(&mut clock.rng, r);
        }
    }
    // One below the distance: the allocation that reaches it exactly is due, and the hot path
    // still tests only the sign.
    clock.left = clock.stacks.min(clock.guards).min(RECHECK_BYTES).saturating_sub(1);
    clock.wound = clock.left;
    if clock.busy {
        return Due::default();
    }
    due
}

/// Makes this thread's clock start afresh (profiling has just started).
pub fn restart_this_thread() {
    let t = thread::state();
    if !t.is_null() {
        // SAFETY: as in `on_due`.
        unsafe { (*t).sample = SampleClock::new() };
    }
}

/// A new clock's random state: from `MY_ALLOC_PROFILE_SEED` and the clock's rank, or random.
fn seed() -> u64 {
    let fixed = options::PROFILE_SEED.load(Ordering::Relaxed);
    let rank = SEEDED.fetch_add(1, Ordering::Relaxed);
    let s = if fixed != 0 { fixed ^ rank.wrapping_mul(0x9E37_79B9_7F4A_7C15) } else { os::random_u64() };
    mix(s) | 1 // never 0: 0 marks a fresh clock
}

/// A bijective scrambler (splitmix64's finaliser): nearby seeds give unrelated streams.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The next number of an xorshift64* stream (never 0 from a non-zero state).
fn next(state: &mut u64) -> u64 {
    let mut x = *state;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *state = x;
    x.wrapping_mul(0x2545_F491_4F6C_DD1D)
}

/// An exponentially distributed interval with mean `r` bytes, at least 1; 0 for `r == 1`, which
/// means "every allocation", `malloc(0)` included (the tests' deterministic setting).
fn interval(state: &mut u64, r: usize) -> isize {
    if r == EVERY_ALLOCATION {
        return 0;
    }
    // A uniform number in (0, 1): 53 random bits, offset by half a step so that it is never 0.
    let u = ((next(state) >> 11) as f64 + 0.5) * (1.0 / (1u64 << 53) as f64);
    // Rounded up, so that the allocation whose bytes reach the point (see `wind`) is the one
    // a continuous process would pick: exactly, for every size.
    let v = -ln(u) * r as f64;
    if v >= (OFF / 2) as f64 { OFF / 2 } else { (v as isize) + 1 }
}

const LN_2: f64 = core::f64::consts::LN_2;

/// The natural logarithm of `x > 0` (core has no `ln` without the C maths library): `x = m 2^e`
/// with `m` in [1, 2), and `ln m = 2 atanh((m-1)/(m+1))` by its series, to about 1e-7.
fn ln(x: f64) -> f64 {
    let bits = x.to_bits();
    let e = ((bits >> 52) & 0x7FF) as i64 - 1023;
    let m = f64::from_bits((bits & ((1 << 52) - 1)) | (1023 << 52));
    let s = (m - 1.0) / (m + 1.0);
    let s2 = s * s;
    let series = s * (1.0 + s2 * (1.0 / 3.0 + s2 * (1.0 / 5.0 + s2 * (1.0 / 7.0 + s2 * (1.0 / 9.0 + s2 / 11.0)))));
    e as f64 * LN_2 + 2.0 * series
}

/// `1 - exp(-y)` for `y >= 0`, to about 1e-9 relative (a series for small `y`, where the
/// difference would cancel, and `2^-k e^-f` with a short series for `e^-f` otherwise).
fn one_minus_exp_neg(y: f64) -> f64 {
    if y < 1e-3 {
        return y * (1.0 - y * (0.5 - y * (1.0 / 6.0 - y / 24.0)));
    }
    if y > 700.0 {
        return 1.0;
    }
    let k = (y / LN_2) as i64;
    let f = y - k as f64 * LN_2; // in [0, ln 2)
    let mut term = 1.0;
    let mut e = 1.0;
    for i in 1..=14 {
        term *= -f / i as f64;
        e += term;
    }
    1.0 - e * f64::from_bits(((1023 - k) as u64) << 52)
}

/// The bytes one sample of a `size`-byte allocation stands for, at mean interval `r`.
pub fn estimate(size: usize, r: usize) -> u64 {
    if size == 0 || r == 0 {
        return size as u64;
    }
    let y = size as f64 / r as f64;
    (size as f64 / one_minus_exp_neg(y)) as u64
}

/// The mean interval the clocks wind to now (0: not recording stacks).
pub fn current_rate() -> usize {
    rate().unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ln_is_close() {
        for &x in &[1e-12, 1e-6, 0.001, 0.1, 0.5, 0.75, 0.999_999, 1.0] {
            let want = std::primitive::f64::ln(x);
            assert!((ln(x) - want).abs() < 1e-6 * (1.0 + want.abs()), "ln({x}) = {} vs {want}", ln(x));
        }
    }

    #[test]
    fn one_minus_exp_is_close() {
        for &y in &[1e-9, 1e-4, 0.001, 0.01, 0.5, 1.0, 3.0, 20.0, 100.0, 800.0] {
            let want = -std::primitive::f64::exp_m1(-y);
            let got = one_minus_exp_neg(y);
            assert!((got - want).abs() <= 1e-9 * want, "1-exp(-{y}) = {got} vs {want}");
        }
    }

    #[test]
    fn intervals_have_the_mean_and_spread_of_an_exponential() {
        let mut s = mix(42) | 1;
        let r = 512 * 1024;
        let n = 200_000;
        let (mut sum, mut below_mean) = (0f64, 0);
        for _ in 0..n {
            let v = interval(&mut s, r);
            assert!(v >= 0);
            sum += v as f64;
            below_mean += (v < r as isize) as u32;
        }
        let mean = sum / n as f64;
        // The standard error of the mean is r / sqrt(n), 0.22% of r: allow 1%.
        assert!((mean / r as f64 - 1.0).abs() < 0.01, "mean {mean}");
        // P(X < mean) = 1 - 1/e for an exponential.
        let p = below_mean as f64 / n as f64;
        assert!((p - 0.632_12).abs() < 0.005, "P(X < mean) = {p}");
    }

    #[test]
    fn estimates_are_unbiased_for_any_size() {
        let r = 512 * 1024;
        // Small blocks stand for about R bytes each, huge ones for themselves.
        assert_eq!(estimate(0, r), 0);
        assert!((estimate(16, r) as f64 / r as f64 - 1.0).abs() < 1e-4);
        assert_eq!(estimate(64 << 20, r), 64 << 20);
        // Expected estimate = P(sampled) * estimate = size.
        for size in [1usize, 100, 4096, 300_000, 2 << 20] {
            let p = one_minus_exp_neg(size as f64 / r as f64);
            let expected = p * estimate(size, r) as f64;
            assert!((expected / size as f64 - 1.0).abs() < 1e-3, "size {size}: {expected}");
        }
    }

    #[test]
    fn a_rate_of_one_samples_every_allocation() {
        let mut s = mix(3) | 1;
        assert!((0..1000).all(|_| interval(&mut s, EVERY_ALLOCATION) == 0));
        // A clock is wound to one below its distance (`wind`).
        let mut clock = SampleClock::new();
        clock.left = interval(&mut s, EVERY_ALLOCATION) - 1;
        assert!(tick(&mut clock, 0), "even malloc(0) runs a clock at distance 0 down");
        clock.left = interval(&mut mix(5), 1000) - 1;
        assert!(clock.left >= 0, "other rates draw at least one byte");
        assert!(!tick(&mut clock, 0), "so malloc(0) runs down only a clock at distance 0");
    }

    #[test]
    fn a_clock_wound_while_sampling_was_off_starts_sampling_within_the_recheck() {
        let mut clock = SampleClock::new();
        assert_eq!(wind_at(&mut clock, None, None), Due::default());
        assert_eq!(clock.left, RECHECK_BYTES - 1, "off, but not for ever");
        // Profiling starts; the thread goes on allocating 1 KiB blocks.
        let mut blocks = 0;
        while !tick(&mut clock, 1024) {
            blocks += 1;
        }
        assert_eq!(blocks, RECHECK_BYTES / 1024 - 1);
        let due = wind_at(&mut clock, Some(EVERY_ALLOCATION), None);
        assert!(due.stack && !due.guard, "{due:?}");
        assert!(tick(&mut clock, 1024) && wind_at(&mut clock, Some(EVERY_ALLOCATION), None).stack);
    }

    #[test]
    fn a_fixed_seed_repeats_and_clocks_differ() {
        let a = mix(7 ^ 0) | 1;
        let b = mix(7 ^ 0x9E37_79B9_7F4A_7C15) | 1;
        let (mut x, mut y, mut z) = (a, a, b);
        let first: Vec<isize> = (0..4).map(|_| interval(&mut x, 1000)).collect();
        let again: Vec<isize> = (0..4).map(|_| interval(&mut y, 1000)).collect();
        let other: Vec<isize> = (0..4).map(|_| interval(&mut z, 1000)).collect();
        assert_eq!(first, again);
        assert_ne!(first, other);
    }
}
