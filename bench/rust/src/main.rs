//! Rust allocation workloads, each printing a checksum of its results (the runner checks that
//! every allocator computes the same) and nothing else:
//!
//!   rust_bench collections N   hash maps, B-trees and vectors churned by a seeded generator
//!   rust_bench pipeline N      a channel pipeline: producers allocate, transformers free what
//!                              they receive and allocate anew, a sink frees (every free a
//!                              remote one)
//!   rust_bench strings N       string building: format!, push_str, split, join, replace
//!
//! The global allocator is chosen at build time by feature: system, with-my_alloc,
//! with-mimalloc, with-jemalloc.

use std::collections::{BTreeMap, HashMap};
use std::sync::mpsc::sync_channel;
use std::thread;

#[cfg(feature = "with-my_alloc")]
#[global_allocator]
static GLOBAL: my_alloc::MyAlloc = my_alloc::MyAlloc;

#[cfg(feature = "with-mimalloc")]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[cfg(feature = "with-jemalloc")]
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// xorshift64: the same sequence under every allocator.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

fn collections(n: u64) -> u64 {
    let mut rng = Rng(0x2545_F491_4F6C_DD1D);
    let mut map: HashMap<u64, Vec<u8>> = HashMap::new();
    let mut tree: BTreeMap<String, u64> = BTreeMap::new();
    let mut stack: Vec<Vec<u32>> = Vec::new();
    let mut sum = 0u64;
    for i in 0..n {
        let k = rng.below(20_000);
        if rng.below(3) == 0 {
            if let Some(v) = map.remove(&k) {
                sum += v.len() as u64;
            }
        } else {
            map.insert(k, vec![i as u8; rng.below(200) as usize + 1]);
        }
        let key = format!("k{}", rng.below(50_000));
        *tree.entry(key).or_insert(0) += 1;
        if tree.len() > 30_000 {
            let first = tree.keys().next().cloned().unwrap();
            sum += tree.remove(&first).unwrap();
        }
        if rng.below(2) == 0 || stack.is_empty() {
            stack.push((0..rng.below(64) as u32).collect());
        } else {
            sum += stack.pop().unwrap().iter().map(|&x| x as u64).sum::<u64>();
        }
    }
    sum + map.values().map(|v| v.len() as u64).sum::<u64>() + tree.len() as u64
}

fn pipeline(n: u64) -> u64 {
    const PRODUCERS: u64 = 2;
    const TRANSFORMERS: usize = 2;
    let (raw_tx, raw_rx) = sync_channel::<Vec<u64>>(1024);
    let (text_tx, text_rx) = sync_channel::<String>(1024);
    let raw_rx = std::sync::Arc::new(std::sync::Mutex::new(raw_rx));
    let producers: Vec<_> = (0..PRODUCERS)
        .map(|t| {
            let tx = raw_tx.clone();
            thread::spawn(move || {
                let mut rng = Rng(t + 7);
                for i in 0..n / PRODUCERS {
                    let len = if i % 64 == 0 { 512 } else { rng.below(32) as usize + 1 };
                    tx.send(vec![i; len]).unwrap();
                }
            })
        })
        .collect();
    drop(raw_tx);
    let transformers: Vec<_> = (0..TRANSFORMERS)
        .map(|_| {
            let rx = raw_rx.clone();
            let tx = text_tx.clone();
            thread::spawn(move || loop {
                let msg = rx.lock().unwrap().recv();
                let Ok(v) = msg else { break };
                let s = format!("{}:{}", v.len(), v.iter().sum::<u64>());
                drop(v);
                tx.send(s).unwrap();
            })
        })
        .collect();
    drop(text_tx);
    let mut sum = 0u64;
    for s in text_rx {
        sum = sum.wrapping_add(s.len() as u64 + s.bytes().map(|b| b as u64).sum::<u64>());
    }
    producers.into_iter().chain(transformers).for_each(|h| h.join().unwrap());
    sum
}

fn strings(n: u64) -> u64 {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let mut sum = 0u64;
    for i in 0..n {
        let mut line = String::new();
        for w in 0..rng.below(12) + 1 {
            line.push_str(&format!("word{}-{} ", rng.below(1000), w));
        }
        let words: Vec<String> = line.split_whitespace().map(str::to_owned).collect();
        let joined = words.join(",");
        let replaced = joined.replace("word", "w");
        sum += (replaced.len() + words.len()) as u64 + (i & 1);
    }
    sum
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (Some(which), Some(n)) = (args.get(1), args.get(2).and_then(|n| n.parse::<u64>().ok())) else {
        eprintln!("usage: rust_bench collections|pipeline|strings N");
        std::process::exit(2);
    };
    let sum = match which.as_str() {
        "collections" => collections(n),
        "pipeline" => pipeline(n),
        "strings" => strings(n),
        _ => {
            eprintln!("unknown workload {which}");
            std::process::exit(2);
        }
    };
    println!("checksum {sum}");
}
