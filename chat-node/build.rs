//! The migrations are embedded with `embed_migrations!`, which cargo cannot see: without
//! this a new migration folder would not rebuild the binary.
fn main() {
    println!("cargo:rerun-if-changed=../migrations");
}
