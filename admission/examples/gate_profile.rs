//! Times the gate on one root file system, for profiling (`perf record`):
//! `cargo run --release -p admission --example gate_profile -- POLICY CONFIG_JSON ROOTFS [N]`.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::path::Path;
use std::time::Instant;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, policy, config, rootfs, rest @ ..] = &args[..] else {
        eprintln!("usage: gate_profile POLICY CONFIG_JSON ROOTFS [N]");
        std::process::exit(2);
    };
    let n: usize = rest.first().map_or(10, |n| n.parse().expect("N"));
    let policy = admission::Policy::load(Path::new(policy)).expect("policy");
    let spec = admission::GateSpec::load(Path::new(config)).expect("spec");
    let mut times = Vec::new();
    for _ in 0..n {
        let t = Instant::now();
        let admitted = admission::admit(&policy, &spec, Path::new(rootfs)).expect("admit");
        times.push(t.elapsed().as_secs_f64() * 1e3);
        if times.len() == 1 {
            println!("{} entries, {} hashed, {} cached", admitted.entries, admitted.hashed, admitted.cached);
        }
    }
    times.sort_by(|a, b| a.partial_cmp(b).unwrap());
    println!("median {:.2} ms, min {:.2} ms over {n}", times[n / 2], times[0]);
}
