// `make bench` runs this benchmark as a release example: it then shares the release
// build's dependencies, where a bench target's are always compiled once more (cargo builds
// them with panic=unwind). `cargo bench -p eds-shared --bench merge` runs the same code (included
// below); the example needs `--bench` to measure (without it criterion runs each once).
include!("../benches/merge.rs");
