//! Command-line parsing for grantsvc-peer: the `share` subcommand and its options, refused with a clear message when wrong.

use crate::crowd::CrowdOptions;
use crate::crowd_args;
use crate::garbage::Garbage;
use crate::soak::SoakOptions;
use crate::socket_exchange::ExchangeOptions;
use crate::vchan_args;
use crate::vchan_garbage::VchanGarbageOptions;
use crate::vchan_server::VchanServerOptions;
use grantsvc::ids::DomId;
use grantsvc::peer::device_id::DeviceId;
use grantsvc::peer::share::nodes::MAX_PAGES;
use std::time::Duration;

pub const USAGE: &str = "\
usage: grantsvc-peer share --domid D [--pages N] [--devid K] [--readonly] [--seed S]
                           [--hold-secs S] [--timeout S] [--garbage KIND] [--check-pins]

  Shares N pages (default 1, at most 256) with domain D through /dev/xen/gntalloc as
  grantsvc-share device K (default 0), waits for grantsvc to map, check and answer them,
  checks the answer, revokes, waits for grantsvc to unmap, and prints one verdict line:
  'grantsvc-peer: share ok: ...' (exit 0) or 'grantsvc-peer: FAIL: ...' (exit 1).

  --readonly      grant the pages read-only (grantsvc then writes no answer)
  --seed S        the pattern seed (u32; default: from the clock)
  --hold-secs S   keep the pages shared S seconds once connected (default 0)
  --timeout S     bound on each wait for grantsvc (default 30)
  --garbage KIND  publish a bad value and expect grantsvc to refuse it cleanly; KIND is one of
                  refs-non-numeric refs-leading-zero refs-count refs-ungranted nr-pages-zero nr-pages-huge
                  nr-pages-non-numeric port-zero port-unbound state-garbage pattern
  --check-pins    also check with 'xl debug-keys g' / 'xl dmesg' that Xen shows the pages pinned
                  by D while connected and none of them once grantsvc has closed

usage: grantsvc-peer destroy-domain --domid D

  Destroys domain D with the XEN_DOMCTL_destroydomain hypercall alone, as a crash of the
  toolstack would leave it: its xenstore nodes stay, so a backend must notice the death itself.";

/// What to do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    Share(ShareOptions),
    VchanGarbage(VchanGarbageOptions),
    VchanServer(VchanServerOptions),
    SocketExchange(ExchangeOptions),
    Soak(SoakOptions),
    BlkHostile(crate::blk_args::HostileOptions),
    Crowd(CrowdOptions),
    /// `destroy-domain --domid D`: the domain-destroy hypercall alone (its xenstore nodes stay).
    DestroyDomain(DomId),
    Help,
}

/// Options of `share`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShareOptions {
    pub domid: DomId,
    pub pages: u32,
    pub device: DeviceId,
    pub writable: bool,
    pub seed: Option<u32>,
    pub hold: Duration,
    pub timeout: Duration,
    pub garbage: Option<Garbage>,
    pub check_pins: bool,
}

fn number<T: std::str::FromStr>(option: &str, value: Option<&String>) -> Result<T, String> {
    let value = value.ok_or_else(|| format!("{option} needs a value"))?;
    value
        .parse()
        .map_err(|_| format!("{option}: '{value}' is not a valid number"))
}

/// A `--domid` value: a number naming an ordinary domain other than dom0 (the peers run in
/// dom0, grantsvc in a domU).
pub(crate) fn domu(option: &str, value: Option<&String>) -> Result<DomId, String> {
    let id: u16 = number(option, value)?;
    DomId::new(id)
        .filter(|domain| *domain != DomId::DOM0)
        .ok_or_else(|| format!("{option} {id} is not a domU"))
}

/// Parses the arguments after the program name.
pub fn parse(arguments: &[String]) -> Result<Command, String> {
    let mut arguments = arguments.iter();
    match arguments.next().map(String::as_str) {
        Some("share") => {}
        Some("vchan-garbage") => {
            return vchan_args::parse_vchan_garbage(arguments.as_slice()).map(Command::VchanGarbage)
        }
        Some("vchan-server") => {
            return vchan_args::parse_vchan_server(arguments.as_slice()).map(Command::VchanServer)
        }
        Some("socket-exchange") => {
            return vchan_args::parse_socket_exchange(arguments.as_slice())
                .map(Command::SocketExchange)
        }
        Some("blk-hostile") => {
            return crate::blk_args::parse_hostile(arguments.as_slice()).map(Command::BlkHostile)
        }
        Some("soak") => return crowd_args::parse_soak(arguments.as_slice()).map(Command::Soak),
        Some("crowd") => return crowd_args::parse_crowd(arguments.as_slice()).map(Command::Crowd),
        Some("destroy-domain") => {
            return match arguments.as_slice() {
                [option, value] if option == "--domid" => {
                    domu(option, Some(value)).map(Command::DestroyDomain)
                }
                _ => Err("destroy-domain takes exactly --domid D".to_string()),
            }
        }
        Some("-h" | "--help" | "help") => return Ok(Command::Help),
        Some(other) => return Err(format!("unknown subcommand '{other}'")),
        None => return Err("no subcommand".to_string()),
    }
    let mut domid = None;
    let mut options = ShareOptions {
        domid: DomId::DOM0,
        pages: 1,
        device: DeviceId(0),
        writable: true,
        seed: None,
        hold: Duration::ZERO,
        timeout: Duration::from_secs(30),
        garbage: None,
        check_pins: false,
    };
    while let Some(argument) = arguments.next() {
        match argument.as_str() {
            "--domid" => domid = Some(domu(argument, arguments.next())?),
            "--pages" => {
                options.pages = number(argument, arguments.next())?;
                if options.pages == 0 || options.pages > MAX_PAGES {
                    return Err(format!("--pages must be within 1..={MAX_PAGES}"));
                }
            }
            "--devid" => options.device = DeviceId(number(argument, arguments.next())?),
            "--readonly" => options.writable = false,
            "--seed" => options.seed = Some(number(argument, arguments.next())?),
            "--hold-secs" => {
                options.hold = Duration::from_secs(number(argument, arguments.next())?)
            }
            "--timeout" => {
                let seconds: u64 = number(argument, arguments.next())?;
                if seconds == 0 {
                    return Err("--timeout must be at least 1 second".to_string());
                }
                options.timeout = Duration::from_secs(seconds);
            }
            "--garbage" => {
                let kind = arguments
                    .next()
                    .ok_or_else(|| "--garbage needs a kind".to_string())?;
                options.garbage = Some(Garbage::parse(kind)?);
            }
            "--check-pins" => options.check_pins = true,
            "-h" | "--help" => return Ok(Command::Help),
            other => return Err(format!("unknown option '{other}'")),
        }
    }
    options.domid = domid.ok_or_else(|| "share needs --domid".to_string())?;
    if options.garbage == Some(Garbage::RefsCount) && options.pages < 2 {
        // With one page, one ref fewer is an empty list: a different fault than meant.
        options.pages = 2;
    }
    Ok(Command::Share(options))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_words(line: &str) -> Result<Command, String> {
        let words: Vec<String> = line.split_whitespace().map(str::to_string).collect();
        parse(&words)
    }

    #[test]
    fn share_takes_its_options_with_defaults() {
        let Ok(Command::Share(options)) = parse_words("share --domid 5") else {
            panic!("not a share");
        };
        assert_eq!(options.domid, DomId::new(5).unwrap());
        assert_eq!((options.pages, options.device), (1, DeviceId(0)));
        assert!(options.writable && !options.check_pins);
        assert_eq!(options.timeout, Duration::from_secs(30));
        let Ok(Command::Share(options)) = parse_words(
            "share --pages 256 --domid 3 --devid 7 --readonly --seed 42 --hold-secs 2 \
             --timeout 9 --garbage port-zero --check-pins",
        ) else {
            panic!("not a share");
        };
        assert_eq!(
            options,
            ShareOptions {
                domid: DomId::new(3).unwrap(),
                pages: 256,
                device: DeviceId(7),
                writable: false,
                seed: Some(42),
                hold: Duration::from_secs(2),
                timeout: Duration::from_secs(9),
                garbage: Some(Garbage::PortZero),
                check_pins: true,
            }
        );
    }

    #[test]
    fn bad_arguments_are_refused_with_a_reason() {
        for (line, reason) in [
            ("", "no subcommand"),
            ("map --domid 1", "unknown subcommand 'map'"),
            ("share", "share needs --domid"),
            ("share --domid", "--domid needs a value"),
            ("share --domid x", "--domid: 'x' is not a valid number"),
            ("share --domid 0", "--domid 0 is not a domU"),
            ("share --domid 32752", "--domid 32752 is not a domU"),
            (
                "share --domid 1 --pages 0",
                "--pages must be within 1..=256",
            ),
            (
                "share --domid 1 --pages 257",
                "--pages must be within 1..=256",
            ),
            (
                "share --domid 1 --timeout 0",
                "--timeout must be at least 1 second",
            ),
            (
                "share --domid 1 --garbage soup",
                "unknown garbage kind 'soup'",
            ),
            ("share --domid 1 --verbose", "unknown option '--verbose'"),
        ] {
            assert_eq!(parse_words(line), Err(reason.to_string()), "{line}");
        }
        assert_eq!(parse_words("--help"), Ok(Command::Help));
        assert_eq!(parse_words("share --domid 1 -h"), Ok(Command::Help));
    }

    #[test]
    fn a_short_ref_list_needs_two_pages() {
        let Ok(Command::Share(options)) = parse_words("share --domid 2 --garbage refs-count")
        else {
            panic!("not a share");
        };
        assert_eq!(options.pages, 2);
    }
}
