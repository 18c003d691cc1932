//! grantsvc-peer: the dom0-side peer tool used by the Xen lab and by people trying grantsvc out.

fn main() {
    eprintln!("grantsvc-peer: not built yet");
    std::process::exit(2);
}
