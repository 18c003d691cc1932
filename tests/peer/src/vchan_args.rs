//! Command-line parsing of the vchan subcommands: `vchan-garbage` and `socket-exchange`.

use crate::args::domu;
use crate::socket_exchange::{Exchange, ExchangeOptions};
use crate::vchan_garbage::{VchanGarbage, VchanGarbageOptions};
use crate::vchan_server::VchanServerOptions;
use std::time::Duration;

pub const USAGE: &str = "\
       grantsvc-peer vchan-garbage --domid D --path P --kind KIND [--timeout S]
       grantsvc-peer vchan-server --domid D --path P [--left-order L] [--right-order R]
                                  [--bytes N] [--timeout S]
       grantsvc-peer socket-exchange --listen SOCKET (--echo FILE | --line TEXT)
                                     [--output FILE] [--timeout S] [--linger S]

  vchan-garbage publishes a fake libxenvchan server for domain D at xenstore path P with one
  defect KIND (ring-ref-non-numeric order-out-of-range event-channel-invalid index-beyond-ring)
  and waits (at most S s, default 30) for grantsvc to count the fault with nothing mapped.

  vchan-server is a libxenvchan-compatible server for domain D at P with ring orders L (the ring
  grantsvc writes) and R (default 13 and 14: separately granted ring pages), streams N bytes
  (default 1 MiB) through grantsvc's echo, checks them, and checks grantsvc's mapped-pages.

  socket-exchange listens on the UNIX socket that 'vchan-socket-proxy -m server' connects to
  when grantsvc connects, then sends FILE and expects the same bytes back (--echo), or sends
  TEXT and a newline and expects one line back (--line); --output keeps what came back;
  --linger keeps the connection (so the vchan) open S more seconds once done.";

fn seconds(option: &str, value: Option<&String>) -> Result<Duration, String> {
    let value = value.ok_or_else(|| format!("{option} needs a value"))?;
    match value.parse::<u64>() {
        Ok(0) => Err(format!("{option} must be at least 1 second")),
        Ok(seconds) => Ok(Duration::from_secs(seconds)),
        Err(_) => Err(format!("{option}: '{value}' is not a valid number")),
    }
}

fn text(option: &str, value: Option<&String>) -> Result<String, String> {
    value
        .cloned()
        .ok_or_else(|| format!("{option} needs a value"))
}

/// An absolute xenstore path, where a fake or real vchan server publishes.
fn xenstore_path(option: &str, value: Option<&String>) -> Result<String, String> {
    let value = text(option, value)?;
    if !value.starts_with('/') {
        return Err(format!(
            "{option} '{value}' is not an absolute xenstore path"
        ));
    }
    Ok(value)
}

/// Parses `vchan-garbage`'s options (the words after the subcommand).
pub fn parse_vchan_garbage(arguments: &[String]) -> Result<VchanGarbageOptions, String> {
    let mut arguments = arguments.iter();
    let (mut domid, mut path, mut kind) = (None, None, None);
    let mut timeout = Duration::from_secs(30);
    while let Some(argument) = arguments.next() {
        match argument.as_str() {
            "--domid" => domid = Some(domu(argument, arguments.next())?),
            "--path" => path = Some(xenstore_path(argument, arguments.next())?),
            "--kind" => {
                let value = text(argument, arguments.next())?;
                kind = Some(VchanGarbage::parse(&value).ok_or_else(|| {
                    format!(
                        "unknown vchan garbage kind '{value}' (one of {})",
                        VchanGarbage::NAMES
                    )
                })?);
            }
            "--timeout" => timeout = seconds(argument, arguments.next())?,
            other => return Err(format!("unknown option '{other}'")),
        }
    }
    Ok(VchanGarbageOptions {
        domid: domid.ok_or("vchan-garbage needs --domid")?,
        path: path.ok_or("vchan-garbage needs --path")?,
        kind: kind.ok_or("vchan-garbage needs --kind")?,
        timeout,
    })
}

fn order(option: &str, value: Option<&String>) -> Result<u16, String> {
    let value = text(option, value)?;
    match value.parse::<u16>() {
        Ok(order) if (10..=20).contains(&order) => Ok(order),
        _ => Err(format!(
            "{option} '{value}' is not a ring order within 10..=20"
        )),
    }
}

/// Parses `vchan-server`'s options (the words after the subcommand).
pub fn parse_vchan_server(arguments: &[String]) -> Result<VchanServerOptions, String> {
    let mut arguments = arguments.iter();
    let (mut domid, mut path) = (None, None);
    let (mut left_order, mut right_order) = (13, 14);
    let mut bytes = 1 << 20;
    let mut timeout = Duration::from_secs(60);
    while let Some(argument) = arguments.next() {
        match argument.as_str() {
            "--domid" => domid = Some(domu(argument, arguments.next())?),
            "--path" => path = Some(xenstore_path(argument, arguments.next())?),
            "--left-order" => left_order = order(argument, arguments.next())?,
            "--right-order" => right_order = order(argument, arguments.next())?,
            "--bytes" => {
                let value = text(argument, arguments.next())?;
                bytes = value
                    .parse()
                    .ok()
                    .filter(|bytes| (1..=1 << 30).contains(bytes))
                    .ok_or_else(|| format!("--bytes '{value}' is not within 1..=1073741824"))?;
            }
            "--timeout" => timeout = seconds(argument, arguments.next())?,
            other => return Err(format!("unknown option '{other}'")),
        }
    }
    if left_order == right_order && left_order < 12 {
        return Err(format!(
            "two rings of order {left_order} would overlap in the shared page"
        ));
    }
    Ok(VchanServerOptions {
        domid: domid.ok_or("vchan-server needs --domid")?,
        path: path.ok_or("vchan-server needs --path")?,
        left_order,
        right_order,
        bytes,
        timeout,
    })
}

/// Parses `socket-exchange`'s options (the words after the subcommand).
pub fn parse_socket_exchange(arguments: &[String]) -> Result<ExchangeOptions, String> {
    let mut arguments = arguments.iter();
    let (mut listen, mut exchange, mut output) = (None, None, None);
    let mut timeout = Duration::from_secs(60);
    let mut linger = Duration::ZERO;
    while let Some(argument) = arguments.next() {
        match argument.as_str() {
            "--listen" => listen = Some(text(argument, arguments.next())?),
            "--echo" => {
                exchange = Some(Exchange::Echo {
                    input: text(argument, arguments.next())?,
                })
            }
            "--line" => {
                exchange = Some(Exchange::Line {
                    text: text(argument, arguments.next())?,
                })
            }
            "--output" => output = Some(text(argument, arguments.next())?),
            "--linger" => linger = seconds(argument, arguments.next())?,
            "--timeout" => timeout = seconds(argument, arguments.next())?,
            other => return Err(format!("unknown option '{other}'")),
        }
    }
    Ok(ExchangeOptions {
        listen: listen.ok_or("socket-exchange needs --listen")?,
        exchange: exchange.ok_or("socket-exchange needs --echo FILE or --line TEXT")?,
        output,
        timeout,
        linger,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use grantsvc::ids::DomId;

    fn words(line: &str) -> Vec<String> {
        line.split_whitespace().map(str::to_string).collect()
    }

    #[test]
    fn vchan_garbage_takes_its_options() {
        let options = parse_vchan_garbage(&words(
            "--domid 4 --path /local/domain/0/data/vchan/4/bad --kind index-beyond-ring --timeout 9",
        ))
        .unwrap();
        assert_eq!(options.domid, DomId::new(4).unwrap());
        assert_eq!(options.kind, VchanGarbage::IndexBeyondRing);
        assert_eq!(options.timeout, Duration::from_secs(9));
        for (line, reason) in [
            (
                "--path /a --kind order-out-of-range",
                "vchan-garbage needs --domid",
            ),
            ("--domid 0 --path /a --kind x", "--domid 0 is not a domU"),
            (
                "--domid 3 --path a --kind x",
                "--path 'a' is not an absolute xenstore path",
            ),
            ("--domid 3 --path /a", "vchan-garbage needs --kind"),
            (
                "--domid 3 --path /a --kind order-out-of-range --timeout 0",
                "--timeout must be at least 1 second",
            ),
        ] {
            assert_eq!(
                parse_vchan_garbage(&words(line)),
                Err(reason.to_string()),
                "{line}"
            );
        }
        assert!(
            parse_vchan_garbage(&words("--domid 3 --path /a --kind soup"))
                .unwrap_err()
                .starts_with("unknown vchan garbage kind 'soup'")
        );
    }

    #[test]
    fn vchan_server_takes_orders_within_libxenvchan_s_range() {
        let options = parse_vchan_server(&words("--domid 2 --path /a")).unwrap();
        assert_eq!((options.left_order, options.right_order), (13, 14));
        assert_eq!(options.bytes, 1 << 20);
        let options = parse_vchan_server(&words(
            "--domid 2 --path /a --left-order 20 --right-order 12 --bytes 5",
        ))
        .unwrap();
        assert_eq!(
            (options.left_order, options.right_order, options.bytes),
            (20, 12, 5)
        );
        for (line, reason) in [
            (
                "--domid 2 --path /a --left-order 21",
                "--left-order '21' is not a ring order within 10..=20",
            ),
            (
                "--domid 2 --path /a --right-order 9",
                "--right-order '9' is not a ring order within 10..=20",
            ),
            (
                "--domid 2 --path /a --left-order 11 --right-order 11",
                "two rings of order 11 would overlap in the shared page",
            ),
            (
                "--domid 2 --path /a --bytes 0",
                "--bytes '0' is not within 1..=1073741824",
            ),
            ("--path /a", "vchan-server needs --domid"),
        ] {
            assert_eq!(
                parse_vchan_server(&words(line)),
                Err(reason.to_string()),
                "{line}"
            );
        }
    }

    #[test]
    fn socket_exchange_needs_a_socket_and_an_exchange() {
        let options =
            parse_socket_exchange(&words("--listen /tmp/s --line stats --output /tmp/o")).unwrap();
        assert_eq!(
            options.exchange,
            Exchange::Line {
                text: "stats".to_string()
            }
        );
        assert_eq!(options.output.as_deref(), Some("/tmp/o"));
        assert_eq!(
            parse_socket_exchange(&words("--listen /tmp/s")),
            Err("socket-exchange needs --echo FILE or --line TEXT".to_string())
        );
        assert_eq!(
            parse_socket_exchange(&words("--echo /tmp/f")),
            Err("socket-exchange needs --listen".to_string())
        );
    }
}
