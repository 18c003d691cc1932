//! grantsvc-peer: the dom0-side peer tool used by the Xen lab and by people trying grantsvc out.
//!
//! It speaks the grant-share protocol (`grantsvc::peer::share`, documented there) as toolstack and
//! frontend at once: it grants pages through `/dev/xen/gntalloc`, publishes them with an event
//! channel in xenstore, checks what grantsvc did with them, revokes them and checks that grantsvc
//! let go. See `grantsvc-peer --help`. The last line of output is the verdict, for scripts:
//! `grantsvc-peer: share ok: ...` (exit 0) or `grantsvc-peer: FAIL: ...` (exit 1); usage errors
//! exit 2.

mod args;
mod bench_args;
mod blk_args;
mod blk_cases;
mod blk_hostile;
#[cfg(test)]
mod blk_loopback_tests;
mod blk_nodes;
mod blk_ring;
mod crowd;
mod crowd_args;
mod crowd_close;
mod crowd_tally;
mod domctl;
mod echo_diff;
mod evtchn;
mod frontend;
mod garbage;
mod gntalloc;
mod gntdev;
mod gntdev_bench;
mod grant_hold;
#[cfg(test)]
mod loopback_tests;
mod pins;
mod share;
mod share_device;
mod soak;
mod socket_exchange;
mod store;
mod vchan_args;
mod vchan_garbage;
mod vchan_peer;
mod vchan_server;

use std::process::ExitCode;

fn main() -> ExitCode {
    let arguments: Vec<String> = std::env::args().skip(1).collect();
    match bench_args::parse(&arguments) {
        Some(Ok(bench_args::BenchCommand::GrantHold(options))) => {
            return verdict("grant-hold", grant_hold::run(&options))
        }
        Some(Ok(bench_args::BenchCommand::GntdevBench(options))) => {
            return verdict("gntdev-bench", gntdev_bench::run(&options))
        }
        Some(Err(reason)) => {
            eprintln!("grantsvc-peer: {reason}\n{}", bench_args::USAGE);
            return ExitCode::from(2);
        }
        None => {}
    }
    match args::parse(&arguments) {
        Ok(args::Command::Help) => {
            println!(
                "{}\n{}\n{}\n{}\n{}",
                args::USAGE,
                vchan_args::USAGE,
                crowd_args::USAGE,
                bench_args::USAGE,
                blk_args::USAGE
            );
            ExitCode::SUCCESS
        }
        Ok(args::Command::VchanGarbage(options)) => {
            verdict("vchan-garbage", vchan_garbage::run(&options))
        }
        Ok(args::Command::VchanServer(options)) => {
            verdict("vchan-server", vchan_server::run(&options))
        }
        Ok(args::Command::SocketExchange(options)) => {
            verdict("socket-exchange", socket_exchange::run(&options))
        }
        Ok(args::Command::BlkHostile(options)) => {
            verdict("blk-hostile", blk_hostile::run(&options))
        }
        Ok(args::Command::Soak(options)) => verdict("soak", soak::run(&options)),
        Ok(args::Command::Crowd(options)) => verdict("crowd", crowd::run(&options)),
        Ok(args::Command::DestroyDomain(domain)) => verdict(
            "destroy-domain",
            domctl::destroy_domain(domain)
                .map(|()| format!("domain {} destroyed", domain.get()))
                .map_err(|error| format!("destroying domain {}: {error}", domain.get())),
        ),
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
            eprintln!(
                "grantsvc-peer: {reason}\n{}\n{}\n{}\n{}\n{}",
                args::USAGE,
                vchan_args::USAGE,
                crowd_args::USAGE,
                bench_args::USAGE,
                blk_args::USAGE
            );
            ExitCode::from(2)
        }
    }
}

/// Prints the verdict line of a subcommand and turns it into the exit status.
fn verdict(subcommand: &str, result: Result<String, String>) -> ExitCode {
    match result {
        Ok(summary) => {
            println!("grantsvc-peer: {subcommand} ok: {summary}");
            ExitCode::SUCCESS
        }
        Err(reason) => {
            println!("grantsvc-peer: FAIL: {reason}");
            ExitCode::from(1)
        }
    }
}
