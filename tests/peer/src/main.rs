//! grantsvc-peer: the dom0-side peer tool used by the Xen lab and by people trying grantsvc out.
//!
//! It speaks the grant-share protocol (`grantsvc::share`, documented there) as toolstack and
//! frontend at once: it grants pages through `/dev/xen/gntalloc`, publishes them with an event
//! channel in xenstore, checks what grantsvc did with them, revokes them and checks that grantsvc
//! let go. See `grantsvc-peer --help`. The last line of output is the verdict, for scripts:
//! `grantsvc-peer: share ok: ...` (exit 0) or `grantsvc-peer: FAIL: ...` (exit 1); usage errors
//! exit 2.

mod args;
mod evtchn;
mod frontend;
mod garbage;
mod gntalloc;
#[cfg(test)]
mod loopback_tests;
mod pins;
mod share;
mod store;

use std::process::ExitCode;

fn main() -> ExitCode {
    let arguments: Vec<String> = std::env::args().skip(1).collect();
    match args::parse(&arguments) {
        Ok(args::Command::Help) => {
            println!("{}", args::USAGE);
            ExitCode::SUCCESS
        }
        Ok(args::Command::Share(options)) => match share::run(&options) {
            Ok(summary) => {
                println!("grantsvc-peer: share ok: {summary}");
                ExitCode::SUCCESS
            }
            Err(reason) => {
                println!("grantsvc-peer: FAIL: {reason}");
                ExitCode::from(1)
            }
        },
        Err(reason) => {
            eprintln!("grantsvc-peer: {reason}\n{}", args::USAGE);
            ExitCode::from(2)
        }
    }
}
