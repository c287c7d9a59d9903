//! The binary carries the compiled site (`src/site.rs`): it is rebuilt when `cargo leptos build`
//! changes anything there, a file added included (the embedded files are read when it compiles).
fn main() {
    println!("cargo::rerun-if-changed=../target/site");
}
