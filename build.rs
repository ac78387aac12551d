// The exercise catalogue and briefings are embedded with include_dir!; rebuild
// when anything under exercises/ changes.
fn main() {
    println!("cargo:rerun-if-changed=exercises");
}
