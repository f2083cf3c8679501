//! The `capjail` binary: everything is in the library (`capjail::app`).

fn main() {
    capjail::app::main()
}
