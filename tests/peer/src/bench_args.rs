//! Command-line parsing of the benchmark subcommands: `grant-hold` (pages granted to grantsvc for the lab's `grant` bench) and `gntdev-bench` (Linux gntdev's map+unmap cost in dom0).

use grantsvc::ids::DomId;
use std::time::Duration;

pub const USAGE: &str = "\
usage: grantsvc-peer grant-hold --domid D --pages N --publish DIR [--hold-secs S]

  Grants N pages (writable) to domain D through /dev/xen/gntalloc and publishes their refs
  readable by D: DIR/refs/0, DIR/refs/1, ... (512 space-separated refs a node) and then, in the
  same transaction, DIR/pages = N. Holds them S seconds (default 600) or until killed.

usage: grantsvc-peer gntdev-bench [--batches 1,8,64,512,2048] [--in-flight 512] [--rounds 10]

  Grants pages to dom0 itself through gntalloc and maps them in this process through
  /dev/xen/gntdev: per cycle the map ioctl, mmap, a read of every page, munmap and the unmap
  ioctl; for each batch, and for IN-FLIGHT pages of one call each (all mapped, then all
  unmapped). Rounds interleave the rows; a sample covers at least 512 pages. Prints one line
  per row, 'gntdev: row batch|calls PAGES MIN MEDIAN MAX' in ns per page.";

/// What to do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BenchCommand {
    GrantHold(GrantHoldOptions),
    GntdevBench(GntdevBenchOptions),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GrantHoldOptions {
    pub domid: DomId,
    pub pages: u32,
    pub publish: String,
    pub hold: Duration,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GntdevBenchOptions {
    pub batches: Vec<usize>,
    pub in_flight: usize,
    pub rounds: usize,
}

/// The benchmark subcommand `arguments` name, or `None` when they name another subcommand.
pub fn parse(arguments: &[String]) -> Option<Result<BenchCommand, String>> {
    let (first, rest) = arguments.split_first()?;
    match first.as_str() {
        "grant-hold" => Some(grant_hold(rest).map(BenchCommand::GrantHold)),
        "gntdev-bench" => Some(gntdev_bench(rest).map(BenchCommand::GntdevBench)),
        _ => None,
    }
}

fn value<'a>(option: &str, value: Option<&'a String>) -> Result<&'a str, String> {
    value
        .map(String::as_str)
        .ok_or_else(|| format!("{option} needs a value"))
}

fn number<T: std::str::FromStr>(option: &str, text: &str) -> Result<T, String> {
    text.parse()
        .map_err(|_| format!("{option}: '{text}' is not a valid number"))
}

fn grant_hold(arguments: &[String]) -> Result<GrantHoldOptions, String> {
    let (mut domid, mut pages, mut publish) = (None, None, None);
    let mut hold = Duration::from_secs(600);
    let mut words = arguments.iter();
    while let Some(option) = words.next() {
        let text = value(option, words.next())?;
        match option.as_str() {
            "--domid" => {
                domid = Some(
                    DomId::new(number(option, text)?)
                        .filter(|domain| *domain != DomId::DOM0)
                        .ok_or_else(|| format!("--domid {text}: not an ordinary domU"))?,
                )
            }
            "--pages" => pages = Some(number::<u32>(option, text)?).filter(|pages| *pages > 0),
            "--publish" if text.starts_with('/') => publish = Some(text.to_string()),
            "--publish" => return Err(format!("--publish {text}: not an absolute path")),
            "--hold-secs" => hold = Duration::from_secs(number(option, text)?),
            _ => return Err(format!("grant-hold: unknown option {option}")),
        }
    }
    Ok(GrantHoldOptions {
        domid: domid.ok_or("grant-hold needs --domid")?,
        pages: pages.ok_or("grant-hold needs --pages (at least 1)")?,
        publish: publish.ok_or("grant-hold needs --publish")?,
        hold,
    })
}

fn gntdev_bench(arguments: &[String]) -> Result<GntdevBenchOptions, String> {
    let mut options = GntdevBenchOptions {
        batches: vec![1, 8, 64, 512, 2048],
        in_flight: 512,
        rounds: 10,
    };
    let mut words = arguments.iter();
    while let Some(option) = words.next() {
        let text = value(option, words.next())?;
        match option.as_str() {
            "--batches" => {
                options.batches = text
                    .split(',')
                    .map(|word| number::<usize>(option, word))
                    .collect::<Result<_, _>>()?;
                if options.batches.contains(&0) {
                    return Err(String::from("--batches: a batch of 0 pages"));
                }
            }
            "--in-flight" => options.in_flight = number(option, text)?,
            "--rounds" => options.rounds = number::<usize>(option, text)?.max(1),
            _ => return Err(format!("gntdev-bench: unknown option {option}")),
        }
    }
    Ok(options)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(line: &str) -> Vec<String> {
        line.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn the_benchmark_subcommands_take_their_options() {
        let Some(Ok(BenchCommand::GrantHold(hold))) = parse(&words(
            "grant-hold --domid 3 --pages 2048 --publish /local/domain/0/data/grant-floor/3",
        )) else {
            panic!("grant-hold not parsed");
        };
        assert_eq!((hold.domid.get(), hold.pages), (3, 2048));
        assert_eq!(hold.hold, Duration::from_secs(600));
        let Some(Ok(BenchCommand::GntdevBench(bench))) =
            parse(&words("gntdev-bench --batches 1,8 --rounds 3"))
        else {
            panic!("gntdev-bench not parsed");
        };
        assert_eq!(
            (bench.batches, bench.in_flight, bench.rounds),
            (vec![1, 8], 512, 3)
        );
        assert!(parse(&words("share --domid 3")).is_none());
    }

    #[test]
    fn bad_benchmark_options_are_refused() {
        for line in [
            "grant-hold --domid 0 --pages 1 --publish /a",
            "grant-hold --domid 3 --pages 0 --publish /a",
            "grant-hold --domid 3 --pages 1 --publish relative",
            "grant-hold --domid 3 --pages 1",
            "gntdev-bench --batches 1,0",
            "gntdev-bench --rounds",
            "gntdev-bench --frobnicate 1",
        ] {
            assert!(matches!(parse(&words(line)), Some(Err(_))), "{line}");
        }
    }
}
