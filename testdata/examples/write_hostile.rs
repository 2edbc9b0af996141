//! Writes every hostile layer case as an OCI layout under DIR (one subdirectory per case), for
//! trying imgsign by hand, and each bad layer blob alone as DIR/corpus/CASE.layer, for seeding a
//! fuzz corpus: `cargo run -p testdata --example write_hostile -- DIR`.
// A small program: printing is what it is for.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use testdata::hostile::HostileLayer;

fn main() {
    let Some(dir) = std::env::args_os().nth(1) else {
        eprintln!("usage: write_hostile DIR");
        std::process::exit(2);
    };
    let dir = std::path::PathBuf::from(dir);
    let corpus = dir.join("corpus");
    std::fs::create_dir_all(&corpus).expect("create DIR/corpus");
    for case in HostileLayer::ALL {
        std::fs::write(corpus.join(format!("{}.layer", case.name())), case.layer().blob).expect("write corpus file");
        let written = case.write(&dir.join(case.name())).unwrap_or_else(|e| panic!("{}: {e}", case.name()));
        println!("{}\t{}\tlayer 1 = {}", case.name(), written.reference(), written.layer_digest);
    }
}
