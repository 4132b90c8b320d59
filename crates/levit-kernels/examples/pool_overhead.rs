//! Round-trip cost of one `SpinPool::run` with trivial tasks (the fixed cost every
//! split kernel call pays), for 2 threads.
//!
//! `cargo run --release -p levit-kernels --example pool_overhead`

use std::hint::black_box;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use levit_kernels::parallel::{Executor, SpinPool};

fn main() {
    let pool = SpinPool::new(2).expect("spawn a worker");
    let hits = AtomicUsize::new(0);
    let calls = 200_000;
    for round in 0..3 {
        let t = Instant::now();
        for _ in 0..calls {
            pool.run(2, &|i| {
                hits.fetch_add(black_box(i), Ordering::Relaxed);
            });
        }
        let us = t.elapsed().as_secs_f64() * 1e6 / calls as f64;
        println!("round {round}: {us:.3} us per run(2 tasks)");
    }
    black_box(hits.load(Ordering::Relaxed));
}
