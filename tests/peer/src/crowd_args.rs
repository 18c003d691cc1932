//! Command-line parsing of the load subcommands: `soak` (many cycles of one device) and `crowd` (many peers at once).

use crate::args::domu;
use crate::crowd::CrowdOptions;
use crate::share_device::{DeviceId, MAX_PAGES};
use crate::soak::SoakOptions;
use std::time::Duration;

pub const USAGE: &str = "\
       grantsvc-peer soak --domid D [--cycles N] [--pages P] [--devid K] [--timeout S]
                          [--poll-ms M] [--max-cycle-ms B] [--show-slowest C]
       grantsvc-peer crowd --domid D [--devices N] [--first-devid K] [--pages P]
                           [--vchans M --vchan-base PATH] [--timeout S] [--poll-ms M]
                           [--hold-secs S] [--all-served-within-ms B]

  soak runs N (default 1000) connect/map/revoke cycles of grant-share device K (default 0)
  with P pages (default 1) in one process, timing each cycle's phases (publish, connect, check,
  close, tear-down) in dom0, polling the backend every M ms (default 20); prints min/median/max
  and the C (default 5) slowest cycles with their phases, and fails when a cycle's check fails
  or the slowest cycle took B ms (default 1000) or more; it goes on past a failed
  cycle and stops after 10.

  crowd publishes N grant-share devices (default 32, devices K.., default 0) and M vchan
  servers (default 0; at PATH/crowd-I, orders 10 and 11) together: grants, ports and the
  devices' nodes are prepared first (one pipelined batch of xenstore requests per device), then
  the peers are published 4 at a time in one pipelined batch (a device's state set to
  Initialised, a server's nodes), each timed from its own publication while the rest are still
  being published. grantsvc's answers are seen through a watch on its backend directories (and
  cli_live in a vchan's page); once each answered, or S s (default 30) after the last
  publication, it prints how each ended (served; refused with the backend's error node,
  counted per reason; connected with wrong or missing results, or closed again; closed with no
  error node; unanswered), keeps them S s (--hold-secs), then revokes all and checks every
  revoked device closed with mapped-pages 0 (waiting M ms between looks, default 20). It fails
  on any wrong or missing answer; with --all-served-within-ms also on any refusal and on any
  peer answered B ms or more after its own publication.";

fn number<T: std::str::FromStr>(option: &str, value: Option<&String>) -> Result<T, String> {
    let value = value.ok_or_else(|| format!("{option} needs a value"))?;
    value
        .parse()
        .map_err(|_| format!("{option}: '{value}' is not a valid number"))
}

fn positive(option: &str, value: Option<&String>) -> Result<u64, String> {
    match number(option, value)? {
        0 => Err(format!("{option} must be at least 1")),
        value => Ok(value),
    }
}

fn pages(option: &str, value: Option<&String>) -> Result<u32, String> {
    let pages: u32 = number(option, value)?;
    match (1..=MAX_PAGES).contains(&pages) {
        true => Ok(pages),
        false => Err(format!("{option} must be within 1..={MAX_PAGES}")),
    }
}

/// Parses `soak`'s options (the words after the subcommand).
pub fn parse_soak(arguments: &[String]) -> Result<SoakOptions, String> {
    let mut arguments = arguments.iter();
    let mut domid = None;
    let mut options = SoakOptions {
        domid: grantsvc::ids::DomId::DOM0,
        cycles: 1000,
        pages: 1,
        device: DeviceId(0),
        timeout: Duration::from_secs(30),
        poll: Duration::from_millis(20),
        max_cycle: Duration::from_millis(1000),
        show_slowest: 5,
    };
    while let Some(argument) = arguments.next() {
        let value = || arguments.clone().next();
        match argument.as_str() {
            "--domid" => domid = Some(domu(argument, value())?),
            "--cycles" => {
                options.cycles = u32::try_from(positive(argument, value())?)
                    .map_err(|_| "--cycles is too large".to_string())?
            }
            "--pages" => options.pages = pages(argument, value())?,
            "--devid" => options.device = DeviceId(number(argument, value())?),
            "--timeout" => options.timeout = Duration::from_secs(positive(argument, value())?),
            "--poll-ms" => options.poll = Duration::from_millis(positive(argument, value())?),
            "--max-cycle-ms" => {
                options.max_cycle = Duration::from_millis(positive(argument, value())?)
            }
            "--show-slowest" => options.show_slowest = number(argument, value())?,
            other => return Err(format!("unknown option '{other}'")),
        }
        arguments.next();
    }
    options.domid = domid.ok_or("soak needs --domid")?;
    Ok(options)
}

/// Parses `crowd`'s options (the words after the subcommand).
pub fn parse_crowd(arguments: &[String]) -> Result<CrowdOptions, String> {
    let mut arguments = arguments.iter();
    let mut domid = None;
    let mut options = CrowdOptions {
        domid: grantsvc::ids::DomId::DOM0,
        devices: 32,
        first_device: 0,
        pages: 1,
        vchans: 0,
        vchan_base: None,
        timeout: Duration::from_secs(30),
        poll: Duration::from_millis(20),
        hold: Duration::ZERO,
        all_served_within: None,
    };
    while let Some(argument) = arguments.next() {
        let value = || arguments.clone().next();
        match argument.as_str() {
            "--domid" => domid = Some(domu(argument, value())?),
            "--devices" => options.devices = number(argument, value())?,
            "--first-devid" => options.first_device = number(argument, value())?,
            "--pages" => options.pages = pages(argument, value())?,
            "--vchans" => options.vchans = number(argument, value())?,
            "--vchan-base" => {
                let path = value().ok_or("--vchan-base needs a value")?;
                if !path.starts_with('/') {
                    return Err(format!(
                        "--vchan-base '{path}' is not an absolute xenstore path"
                    ));
                }
                options.vchan_base = Some(path.clone());
            }
            "--timeout" => options.timeout = Duration::from_secs(positive(argument, value())?),
            "--poll-ms" => options.poll = Duration::from_millis(positive(argument, value())?),
            "--hold-secs" => options.hold = Duration::from_secs(number(argument, value())?),
            "--all-served-within-ms" => {
                options.all_served_within =
                    Some(Duration::from_millis(positive(argument, value())?))
            }
            other => return Err(format!("unknown option '{other}'")),
        }
        arguments.next();
    }
    options.domid = domid.ok_or("crowd needs --domid")?;
    if options.vchans > 0 && options.vchan_base.is_none() {
        return Err("--vchans needs --vchan-base".to_string());
    }
    if options.devices + options.vchans == 0 {
        return Err("crowd needs at least one device or vchan".to_string());
    }
    Ok(options)
}

#[cfg(test)]
mod tests {
    use super::*;
    use grantsvc::ids::DomId;

    fn words(line: &str) -> Vec<String> {
        line.split_whitespace().map(str::to_string).collect()
    }

    #[test]
    fn soak_takes_its_options_with_defaults() {
        let options = parse_soak(&words("--domid 4")).unwrap();
        assert_eq!(options.domid, DomId::new(4).unwrap());
        assert_eq!(
            (options.cycles, options.pages, options.device),
            (1000, 1, DeviceId(0))
        );
        assert_eq!(options.max_cycle, Duration::from_millis(1000));
        let options = parse_soak(&words(
            "--cycles 20 --domid 2 --pages 3 --devid 9 --timeout 5 --poll-ms 2 --max-cycle-ms 700 \
             --show-slowest 1",
        ))
        .unwrap();
        assert_eq!(
            options,
            SoakOptions {
                domid: DomId::new(2).unwrap(),
                cycles: 20,
                pages: 3,
                device: DeviceId(9),
                timeout: Duration::from_secs(5),
                poll: Duration::from_millis(2),
                max_cycle: Duration::from_millis(700),
                show_slowest: 1,
            }
        );
    }

    #[test]
    fn crowd_takes_its_options_with_defaults() {
        let options = parse_crowd(&words("--domid 4")).unwrap();
        assert_eq!((options.devices, options.vchans), (32, 0));
        assert_eq!(options.all_served_within, None);
        let options = parse_crowd(&words(
            "--domid 3 --devices 128 --first-devid 100 --pages 2 --vchans 32 \
             --vchan-base /local/domain/0/data/vchan/3 --timeout 60 --poll-ms 20 --hold-secs 1 \
             --all-served-within-ms 3000",
        ))
        .unwrap();
        assert_eq!(
            options,
            CrowdOptions {
                domid: DomId::new(3).unwrap(),
                devices: 128,
                first_device: 100,
                pages: 2,
                vchans: 32,
                vchan_base: Some("/local/domain/0/data/vchan/3".to_string()),
                timeout: Duration::from_secs(60),
                poll: Duration::from_millis(20),
                hold: Duration::from_secs(1),
                all_served_within: Some(Duration::from_millis(3000)),
            }
        );
    }

    #[test]
    fn bad_load_arguments_are_refused_with_a_reason() {
        for (line, reason) in [
            ("", "soak needs --domid"),
            ("--domid 1 --cycles 0", "--cycles must be at least 1"),
            ("--domid 1 --pages 300", "--pages must be within 1..=256"),
            ("--domid 1 --max-cycle-ms", "--max-cycle-ms needs a value"),
            ("--domid 1 --fast", "unknown option '--fast'"),
        ] {
            assert_eq!(parse_soak(&words(line)), Err(reason.to_string()), "{line}");
        }
        for (line, reason) in [
            ("--devices 3", "crowd needs --domid"),
            ("--domid 1 --vchans 2", "--vchans needs --vchan-base"),
            (
                "--domid 1 --devices 0",
                "crowd needs at least one device or vchan",
            ),
            (
                "--domid 1 --vchan-base data/v",
                "--vchan-base 'data/v' is not an absolute xenstore path",
            ),
        ] {
            assert_eq!(parse_crowd(&words(line)), Err(reason.to_string()), "{line}");
        }
    }
}
