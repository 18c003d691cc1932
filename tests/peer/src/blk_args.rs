//! Command-line parsing of `blk-hostile`: which cases, on which devices, against which grantsvc.

use crate::args::domu;
use crate::blk_cases::Case;
use grantsvc::ids::DomId;
use std::time::Duration;

pub const USAGE: &str = "\
       grantsvc-peer blk-hostile --domid D [--case NAME]... [--devid-base K] [--disk-mib M]
                                 [--timeout S] [--rounds R] [--storm N] [--check-pins]

  blk-hostile attaches one vbd per case to grantsvc domain D (devices K, K+1, ..., default
  51900; target ram:M M, default 16), writing the toolstack's nodes as libxl does, negotiates as
  a blkfront in dom0 (so dom0's own xen-blkfront must not be loaded), then misbehaves: every
  case by default, or each --case given. Request cases (segments-none segments-too-many
  first-after-last last-past-page past-end range-overflow write-read-only-disk
  unknown-operation reserved-operation barrier ungranted-grant read-only-grant indirect-4096)
  must each get BLKIF_RSP_ERROR or EOPNOTSUPP for their ids, then a good write, flush and read
  back on the same ring. producer-jump and the node-* cases (garbage in each frontend node)
  must end the device with an error node. rewritten flips a published slot between a valid
  and a bad version R times (default 20) and checks each answer is one version's whole;
  event-storm sends N notifications (default 5000) idle and again between reads. Each
  device is then detached as libxl does (its backend directory must be gone within 10 s) and
  grantsvc's mapped-pages must be back to 0; --check-pins also checks Xen's grant-table dump,
  after the last case, for any grant of any case still mapped. Waits are bounded by S s
  (default 20). One line per case, then the verdict.";

/// Options of `blk-hostile`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostileOptions {
    pub domid: DomId,
    pub cases: Vec<Case>,
    pub devid_base: u32,
    pub disk_mib: u32,
    pub timeout: Duration,
    pub rounds: u32,
    pub storm: u32,
    pub check_pins: bool,
}

fn number<T: std::str::FromStr>(option: &str, value: Option<&String>) -> Result<T, String> {
    let value = value.ok_or_else(|| format!("{option} needs a value"))?;
    value
        .parse()
        .map_err(|_| format!("{option}: '{value}' is not a valid number"))
}

fn positive(option: &str, value: Option<&String>) -> Result<u32, String> {
    match number(option, value)? {
        0 => Err(format!("{option} must be at least 1")),
        value => Ok(value),
    }
}

/// Parses `blk-hostile`'s options (the words after the subcommand).
pub fn parse_hostile(arguments: &[String]) -> Result<HostileOptions, String> {
    let mut arguments = arguments.iter();
    let mut domid = None;
    let mut options = HostileOptions {
        domid: DomId::DOM0,
        cases: Vec::new(),
        devid_base: 51900,
        disk_mib: 16,
        timeout: Duration::from_secs(20),
        rounds: 20,
        storm: 5000,
        check_pins: false,
    };
    while let Some(option) = arguments.next() {
        match option.as_str() {
            "--domid" => domid = Some(domu(option, arguments.next())?),
            "--case" => {
                let name = arguments
                    .next()
                    .ok_or_else(|| format!("{option} needs a value"))?;
                options.cases.push(Case::parse(name)?);
            }
            "--devid-base" => options.devid_base = number(option, arguments.next())?,
            "--disk-mib" => options.disk_mib = positive(option, arguments.next())?,
            "--timeout" => {
                options.timeout =
                    Duration::from_secs(u64::from(positive(option, arguments.next())?))
            }
            "--rounds" => options.rounds = positive(option, arguments.next())?,
            "--storm" => options.storm = positive(option, arguments.next())?,
            "--check-pins" => options.check_pins = true,
            other => return Err(format!("blk-hostile: unknown option '{other}'")),
        }
    }
    options.domid = domid.ok_or("blk-hostile needs --domid")?;
    if options.cases.is_empty() {
        options.cases = Case::all();
    }
    Ok(options)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(line: &str) -> Vec<String> {
        line.split_whitespace().map(str::to_string).collect()
    }

    #[test]
    fn defaults_run_every_case_and_options_are_checked() {
        let options = parse_hostile(&words("--domid 3")).unwrap();
        assert_eq!(options.cases, Case::all());
        assert_eq!(options.domid, DomId::new(3).unwrap());
        let options = parse_hostile(&words(
            "--domid 3 --case rewritten --case past-end --rounds 5",
        ))
        .unwrap();
        assert_eq!(options.cases, [Case::Rewritten, Case::PastEnd]);
        assert_eq!(options.rounds, 5);
        assert!(parse_hostile(&words("--case past-end")).is_err());
        assert!(parse_hostile(&words("--domid 0")).is_err());
        assert!(parse_hostile(&words("--domid 3 --case nonsense")).is_err());
        assert!(parse_hostile(&words("--domid 3 --storm 0")).is_err());
    }
}
