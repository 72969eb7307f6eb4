//! Taking a call stack inside malloc (the profiler's samples, guarded blocks' allocations and
//! frees): our own walk of the DWARF call-frame rules, remembered by pc (`walk`, `cfi`), or
//! libgcc's unwinder where that walk meets a rule it does not follow (`os::backtrace`, which
//! says why it is safe inside malloc); minus the allocator's own frames when it is a shared
//! library of its own.
//! When it is linked into the program (the static library, a Rust program's global allocator),
//! its frames are the program's code and stay in; the `my_alloc` command drops them by name.

use core::sync::atomic::{AtomicUsize, Ordering};

use crate::config::PROFILE_FRAMES;
use crate::os;

mod cfi;
pub mod maps;
mod walk;

/// Frames of the allocator itself above a sampled call: the recorder, the entry point and what
/// lies between (at most; more are simply kept).
const OWN_FRAMES_MAX: usize = 16;

/// The allocator's own code, when it is a shared library: [start, end) of its mapping.
static OWN_START: AtomicUsize = AtomicUsize::new(0);
static OWN_END: AtomicUsize = AtomicUsize::new(0);

/// Finds the allocator's own code, and walks one stack so that the unwinder binds its symbols
/// and sets up its tables now, in the constructor, rather than inside some later malloc. Once.
pub fn prepare() {
    static PREPARED: core::sync::atomic::AtomicBool = core::sync::atomic::AtomicBool::new(false);
    if PREPARED.swap(true, Ordering::Relaxed) {
        return;
    }
    let mut path = [0u8; 512];
    let mut exe = [0u8; 512];
    let here = prepare as *const () as usize;
    if let Some((start, end, len)) = maps::find(here, &mut path) {
        let exe_len = os::read_link(c"/proc/self/exe", &mut exe);
        if path[..len] != exe[..exe_len] {
            OWN_START.store(start, Ordering::Relaxed);
            OWN_END.store(end, Ordering::Relaxed);
        }
    }
    let mut frames = [0usize; PROFILE_FRAMES];
    capture(&mut frames);
}

/// The caller's stack into `out`, innermost first, without the allocator's own frames; how
/// many frames.
#[inline(never)]
pub fn capture(out: &mut [usize]) -> usize {
    let mut raw = [0usize; PROFILE_FRAMES + OWN_FRAMES_MAX];
    let n = match walk::stack(&mut raw) {
        Some(n) => n,
        None => os::backtrace(&mut raw),
    };
    let own = OWN_START.load(Ordering::Relaxed)..OWN_END.load(Ordering::Relaxed);
    let skip = raw[..n].iter().take_while(|pc| own.contains(pc)).count();
    // A stack of nothing but our own frames (a walk that failed early) is kept whole.
    let skip = if skip == n { 0 } else { skip };
    let kept = (n - skip).min(out.len());
    out[..kept].copy_from_slice(&raw[skip..skip + kept]);
    kept
}

/// A 64-bit hash of a stack (never 0, which marks an empty slot of the stack table).
pub fn hash(frames: &[usize]) -> u64 {
    let mut h = 0xCBF2_9CE4_8422_2325u64 ^ frames.len() as u64;
    for &pc in frames {
        h = (h ^ pc as u64).wrapping_mul(0x0000_0100_0000_01B3);
        h ^= h >> 29;
    }
    h | 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[inline(never)]
    fn depth_here(out: &mut [usize; PROFILE_FRAMES]) -> usize {
        capture(out)
    }

    #[inline(never)]
    fn one_level_deeper(out: &mut [usize; PROFILE_FRAMES]) -> usize {
        let n = depth_here(out);
        core::hint::black_box(n)
    }

    /// The same stack, walked by our rules and by libgcc, from one function.
    #[inline(never)]
    fn both_walks() -> (Vec<usize>, Vec<usize>) {
        let mut ours = [0usize; 256];
        let mut theirs = [0usize; 257];
        let n = walk::stack(&mut ours).expect("the rules of this stack are followed");
        let m = os::backtrace(&mut theirs);
        core::hint::black_box((ours[..n].to_vec(), theirs[..m].to_vec()))
    }

    /// Both walks agree above the function they start in (libgcc's starts one frame deeper, in
    /// `os::backtrace`, and each names its own call site in `both_walks`).
    fn assert_walks_agree((ours, theirs): (Vec<usize>, Vec<usize>)) -> usize {
        assert!(ours.len() >= 3, "a stack of several frames: {ours:x?}");
        assert_eq!(ours.len() + 1, theirs.len(), "ours {ours:x?}\nlibgcc {theirs:x?}");
        assert_eq!(ours[1..], theirs[2..], "ours {ours:x?}\nlibgcc {theirs:x?}");
        ours.len()
    }

    #[inline(never)]
    fn recurse(depth: u32, out: &mut Vec<usize>) {
        // A frame of its own size at each level, so that the offsets differ from the callers'.
        let pad = core::hint::black_box([depth as u8; 200]);
        if depth == 0 {
            out.push(assert_walks_agree(both_walks()));
            out.push(assert_walks_agree(both_walks())); // again, from the rule table
        } else {
            recurse(depth - 1, out);
        }
        core::hint::black_box(pad);
    }

    #[test]
    fn our_walk_matches_libgcc() {
        let mut depths = Vec::new();
        recurse(20, &mut depths);
        assert_eq!(depths[0], depths[1]);
        let shallow = assert_walks_agree(both_walks());
        assert_eq!(depths[0], shallow + 21, "one frame per level of recursion");
    }

    extern "C" fn compare_and_walk(a: *const core::ffi::c_void, b: *const core::ffi::c_void) -> i32 {
        static CHECKED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
        if !CHECKED.swap(true, Ordering::Relaxed) {
            assert_walks_agree(both_walks());
        }
        // SAFETY: qsort passes pointers to two elements of the u64 array below.
        let (a, b) = unsafe { (*(a as *const u64), *(b as *const u64)) };
        a.cmp(&b) as i32
    }

    #[test]
    fn our_walk_matches_libgcc_through_the_c_library() {
        // qsort's merge sort keeps its frame in rbp (it allocates on the stack as it goes).
        let mut v: Vec<u64> = (0..64u64).map(|i| i.wrapping_mul(0x9E37_79B9) % 1000).collect();
        // SAFETY: the array, its length and element size, and a comparator of its elements.
        unsafe { libc::qsort(v.as_mut_ptr().cast(), v.len(), 8, Some(compare_and_walk)) };
        assert!(v.windows(2).all(|w| w[0] <= w[1]));
    }

    #[test]
    fn stacks_are_walked_and_hashed() {
        let mut a = [0usize; PROFILE_FRAMES];
        let mut b = [0usize; PROFILE_FRAMES];
        let na = depth_here(&mut a);
        let nb = one_level_deeper(&mut b);
        assert!(na >= 3, "a test thread's stack has several frames: {na}");
        assert_eq!(nb, (na + 1).min(PROFILE_FRAMES), "one more frame one call deeper");
        assert_ne!(hash(&a[..na]), hash(&b[..nb]));
        assert_eq!(hash(&a[..na]), hash(&a[..na]));
        assert_ne!(hash(&[]), 0);
    }
}
