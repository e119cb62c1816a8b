// `sqlx::migrate!` embeds migrations/<dialect>/ at build time; rebuild when a migration is added, not
// only edited.
fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
