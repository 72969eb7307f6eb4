//! A Rust program on my_alloc as its `#[global_allocator]`: collections, strings, threads that
//! free each other's boxes, over-aligned types, zero-sized types and impossible layouts; each
//! result is checked, and so is that the allocations went through my_alloc (its statistics).
//! Built twice: as is (only Rust allocations on my_alloc, the C library keeps its own heap) and
//! with the `c-names` feature (the whole process on my_alloc).

use std::alloc::{GlobalAlloc, Layout};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::mpsc;
use std::thread;

#[global_allocator]
static GLOBAL: my_alloc::MyAlloc = my_alloc::MyAlloc;

/// A small seeded generator, so that every run does the same work.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn collections() {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let mut map: HashMap<u64, String> = HashMap::new();
    let mut tree: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    let mut queue: VecDeque<Box<[u8]>> = VecDeque::new();
    for i in 0..200_000u64 {
        let k = rng.below(5_000);
        map.insert(k, format!("value {k} at {i}"));
        if i % 3 == 0 {
            map.remove(&rng.below(5_000));
        }
        let entry = tree.entry(format!("key{:04}", k % 700)).or_default();
        entry.push(i);
        if entry.len() > 40 {
            entry.drain(..20);
        }
        queue.push_back(vec![(i & 0xff) as u8; rng.below(3_000) as usize + 1].into_boxed_slice());
        if queue.len() > 300 {
            let b = queue.pop_front().unwrap();
            assert!(b.iter().all(|&x| x == b[0]), "a queued buffer changed");
        }
    }
    for (k, v) in &map {
        assert!(v.starts_with(&format!("value {k} at ")));
    }
    assert!(tree.len() <= 700);
    assert!(tree.values().all(|v| v.windows(2).all(|w| w[0] < w[1])));
}

fn strings() {
    let mut s = String::new();
    for i in 0..300_000 {
        s.push_str(&i.to_string());
        s.push(',');
    }
    // Grown through realloc, some of it in place, to a few megabytes.
    assert!(s.len() > 1_000_000);
    let parsed: u64 = s.split(',').filter(|x| !x.is_empty()).map(|x| x.parse::<u64>().unwrap()).sum();
    assert_eq!(parsed, (0..300_000u64).sum());
    let mut shrunk = s.clone();
    shrunk.truncate(10);
    shrunk.shrink_to_fit();
    assert_eq!(shrunk, "0,1,2,3,4,");
}

/// Producers allocate boxes of many sizes, consumers on other threads check and free them (every
/// free a remote one), and send some back to be freed by a producer.
fn threads_sending_boxes() {
    const PRODUCERS: u64 = 4;
    const PER_PRODUCER: u64 = 50_000;
    let (tx, rx) = mpsc::sync_channel::<(u64, Vec<u64>)>(256);
    let (back_tx, back_rx) = mpsc::channel::<Vec<u64>>();
    let consumer = thread::spawn(move || {
        let mut total = 0u64;
        for (seed, v) in rx {
            assert!(v.iter().all(|&x| x == seed), "a box was corrupted in transit");
            total += v.len() as u64;
            if seed % 7 == 0 {
                back_tx.send(v).unwrap();
            }
        }
        total
    });
    let producers: Vec<_> = (0..PRODUCERS)
        .map(|t| {
            let tx = tx.clone();
            thread::spawn(move || {
                let mut rng = Rng(t + 1);
                let mut sent = 0;
                for i in 0..PER_PRODUCER {
                    let n = 1 + rng.below(if i % 100 == 0 { 20_000 } else { 64 }) as usize;
                    let seed = t * PER_PRODUCER + i;
                    tx.send((seed, vec![seed; n])).unwrap();
                    sent += n as u64;
                }
                sent
            })
        })
        .collect();
    drop(tx);
    let sent: u64 = producers.into_iter().map(|p| p.join().unwrap()).sum();
    let received = consumer.join().unwrap();
    assert_eq!(sent, received);
    let returned: usize = back_rx.iter().map(|v| v.len()).sum();
    assert!(returned > 0);
}

#[repr(align(4096))]
struct Page([u8; 4096]);

#[repr(align(64))]
#[derive(Clone, Copy)]
struct CacheLine([u64; 8]);

fn over_aligned() {
    let pages: Vec<Box<Page>> = (0..64).map(|i| Box::new(Page([i as u8; 4096]))).collect();
    for (i, p) in pages.iter().enumerate() {
        assert_eq!(&**p as *const Page as usize % 4096, 0, "a page is not page-aligned");
        assert!(p.0.iter().all(|&b| b == i as u8));
    }
    // A growing Vec of over-aligned elements: realloc at an alignment above the default.
    let mut lines: Vec<CacheLine> = Vec::new();
    for i in 0..10_000u64 {
        lines.push(CacheLine([i; 8]));
        assert_eq!(lines.as_ptr() as usize % 64, 0);
    }
    assert!(lines.iter().enumerate().all(|(i, l)| l.0 == [i as u64; 8]));
    let mut pages_vec: Vec<Page> = Vec::with_capacity(1);
    for i in 0..40 {
        pages_vec.push(Page([i; 4096]));
        assert_eq!(pages_vec.as_ptr() as usize % 4096, 0);
    }
    assert!(pages_vec.iter().enumerate().all(|(i, p)| p.0[4095] == i as u8));
    // Zeroed, over-aligned, straight through the allocator.
    for align in [32, 256, 4096, 1 << 16] {
        let layout = Layout::from_size_align(10_000, align).unwrap();
        // SAFETY: the layout's size is not zero; the block is freed with the same layout.
        unsafe {
            let p = GLOBAL.alloc_zeroed(layout);
            assert!(!p.is_null());
            assert_eq!(p as usize % align, 0);
            assert!(std::slice::from_raw_parts(p, 10_000).iter().all(|&b| b == 0));
            std::ptr::write_bytes(p, 0xAB, 10_000);
            let q = GLOBAL.realloc(p, layout, 50_000);
            assert_eq!(q as usize % align, 0);
            assert!(std::slice::from_raw_parts(q, 10_000).iter().all(|&b| b == 0xAB));
            GLOBAL.dealloc(q, Layout::from_size_align(50_000, align).unwrap());
        }
    }
}

fn zero_sized_and_huge() {
    let mut units: Vec<()> = Vec::new();
    for _ in 0..1_000_000 {
        units.push(());
    }
    assert_eq!(units.len(), 1_000_000);
    let b = Box::new(());
    assert_eq!(*b, ());
    // A big block: a mapping of its own, written end to end.
    let mut big = vec![0u8; 64 << 20];
    big[0] = 1;
    *big.last_mut().unwrap() = 2;
    assert_eq!(big.iter().map(|&x| x as u64).sum::<u64>(), 3);
    drop(big);
    // Impossible layouts fail cleanly: null from the allocator, an error from try_reserve.
    for align in [16, 4096] {
        let layout = Layout::from_size_align(isize::MAX as usize - 2 * align, align).unwrap();
        // SAFETY: a non-zero size; a null result is the expected one.
        let p = unsafe { GLOBAL.alloc(layout) };
        assert!(p.is_null(), "an impossible allocation succeeded");
    }
    let mut v: Vec<u8> = Vec::new();
    assert!(v.try_reserve(isize::MAX as usize).is_err());
    assert!(v.try_reserve(1 << 20).is_ok());
}

/// Whether C's `malloc` is my_alloc's in this process: the statistics count its allocations, and
/// a block the C library allocates (strdup) can be freed by either side.
fn c_heap(expect_ours: bool) {
    let before = my_alloc::stats().allocations;
    let mut blocks = Vec::with_capacity(1000);
    for i in 0..1000 {
        // SAFETY: plain C calls; each block is freed below.
        blocks.push(unsafe { libc::malloc(16 + i) });
    }
    let counted = my_alloc::stats().allocations - before;
    for p in blocks {
        assert!(!p.is_null());
        // SAFETY: blocks from malloc, freed once.
        unsafe { libc::free(p) };
    }
    // The Vec's own allocation is one of ours in either case.
    if expect_ours {
        assert!(counted >= 1000, "C's malloc did not come to my_alloc ({counted} counted)");
    } else {
        assert!(counted < 10, "C's malloc came to my_alloc without the c-names feature ({counted} counted)");
    }
    // SAFETY: strdup's block is the C library's malloc's, freed with its free.
    unsafe {
        let s = libc::strdup(c"a string from the C library".as_ptr());
        assert!(!s.is_null());
        libc::free(s as *mut libc::c_void);
    }
}

/// Twenty mebibytes of small blocks, freed: `trim` gives their pages back (unmapped or purged),
/// also when they lie in the top of the heap and the C library's own malloc has moved the program
/// break past it.
fn memory_return() {
    let given_back = |s: my_alloc::Stats| s.os_returned + s.purged_bytes;
    let before = given_back(my_alloc::stats());
    let blocks: Vec<Box<[u8; 1000]>> = (0..20_000).map(|i| Box::new([i as u8; 1000])).collect();
    assert!(blocks.iter().enumerate().all(|(i, b)| b[999] == i as u8));
    drop(blocks);
    assert!(my_alloc::trim(0), "trim released nothing");
    let released = given_back(my_alloc::stats()) - before;
    assert!(released >= 8 << 20, "trim gave back only {released} bytes of 20 MiB freed");
}

/// Misuse through the Rust surface, which must be diagnosed as the C library's is (the test
/// script expects an abort and the diagnosis).
fn misuse(which: &str) {
    let layout = Layout::from_size_align(32, 8).unwrap();
    // SAFETY: none; these are the misuses under test, and the process aborts at them.
    unsafe {
        let p = GLOBAL.alloc(layout);
        match which {
            "double-free" => {
                GLOBAL.dealloc(p, layout);
                GLOBAL.dealloc(p, layout);
            }
            "wrong-layout" => GLOBAL.dealloc(p, Layout::from_size_align(4096, 8).unwrap()),
            _ => panic!("unknown misuse {which}"),
        }
    }
    println!("the misuse {which} was not caught");
}

fn main() {
    if let Some(which) = std::env::args().nth(1) {
        return misuse(&which);
    }
    let c_names = cfg!(feature = "c-names");
    let start = my_alloc::stats();
    let phase = |name: &str, f: &dyn Fn()| {
        let a = my_alloc::stats();
        f();
        let b = my_alloc::stats();
        println!("{name}: {} allocations, {} frees", b.allocations - a.allocations, b.frees - a.frees);
    };
    phase("collections", &collections);
    phase("strings", &strings);
    phase("threads", &threads_sending_boxes);
    phase("aligned", &over_aligned);
    phase("zst", &zero_sized_and_huge);
    phase("c", &|| c_heap(c_names));
    let end = my_alloc::stats();
    let allocations = end.allocations - start.allocations;
    let frees = end.frees - start.frees;
    // Well over a million allocations above, each freed (the few still live are this function's
    // and the runtime's).
    assert!(allocations > 1_000_000, "only {allocations} allocations went through my_alloc");
    assert!(frees + 100 > allocations, "{allocations} allocations but only {frees} frees");
    // Checking mode (MY_ALLOC_CHECK=1) runs without thread caches.
    let checking = std::env::var("MY_ALLOC_CHECK").is_ok_and(|v| v == "1");
    assert!(checking || end.thread_caches >= 5, "the threads had no caches of their own");
    my_alloc::check_heap().expect("heap check");
    memory_return();
    println!(
        "user program ({}): {allocations} allocations, {frees} frees through my_alloc, heap sound",
        match (c_names, checking) {
            (true, _) => "C names exported",
            (false, true) => "Rust allocations only, checking mode",
            (false, false) => "Rust allocations only",
        }
    );
}
