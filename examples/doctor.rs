//! `doctor [POLICY]`: print the kernel layer's machine report (until the CLI wires `capjail doctor`).
fn main() {
    let policy = std::env::args()
        .nth(1)
        .map(|p| capjail::policy::load(&p).expect("policy"));
    print!("{}", capjail::sandbox::doctor_report(policy.as_ref()));
}
