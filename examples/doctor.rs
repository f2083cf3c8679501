//! `doctor [POLICY]`: print the kernel layer's machine report through the library API (the
//! same report as `capjail doctor --policy POLICY`).
fn main() {
    let policy = std::env::args()
        .nth(1)
        .map(|p| capjail::policy::load(&p).expect("policy"));
    print!("{}", capjail::sandbox::doctor_report(policy.as_ref()));
}
