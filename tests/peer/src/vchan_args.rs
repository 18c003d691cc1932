//! Command-line parsing of the vchan subcommands: `vchan-garbage` and `socket-exchange`.

use crate::socket_exchange::{Exchange, ExchangeOptions};
use crate::vchan_garbage::{VchanGarbage, VchanGarbageOptions};
use grantsvc::ids::DomId;
use std::time::Duration;

pub const USAGE: &str = "\
       grantsvc-peer vchan-garbage --domid D --path P --kind KIND [--timeout S]
       grantsvc-peer socket-exchange --listen SOCKET (--echo FILE | --line TEXT)
                                     [--output FILE] [--timeout S] [--linger S]

  vchan-garbage publishes a fake libxenvchan server for domain D at xenstore path P with one
  defect KIND (ring-ref-non-numeric order-out-of-range event-channel-invalid index-beyond-ring)
  and waits (at most S s, default 30) for grantsvc to count the fault with nothing mapped.

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

/// Parses `vchan-garbage`'s options (the words after the subcommand).
pub fn parse_vchan_garbage(arguments: &[String]) -> Result<VchanGarbageOptions, String> {
    let mut arguments = arguments.iter();
    let (mut domid, mut path, mut kind) = (None, None, None);
    let mut timeout = Duration::from_secs(30);
    while let Some(argument) = arguments.next() {
        match argument.as_str() {
            "--domid" => {
                let value = text(argument, arguments.next())?;
                let id: u16 = value
                    .parse()
                    .map_err(|_| format!("--domid: '{value}' is not a valid number"))?;
                if !DomId(id).is_ordinary() || id == 0 {
                    return Err(format!("--domid {id} is not a domU"));
                }
                domid = Some(DomId(id));
            }
            "--path" => {
                let value = text(argument, arguments.next())?;
                if !value.starts_with('/') {
                    return Err(format!("--path '{value}' is not an absolute xenstore path"));
                }
                path = Some(value);
            }
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

    fn words(line: &str) -> Vec<String> {
        line.split_whitespace().map(str::to_string).collect()
    }

    #[test]
    fn vchan_garbage_takes_its_options() {
        let options = parse_vchan_garbage(&words(
            "--domid 4 --path /local/domain/0/data/vchan/4/bad --kind index-beyond-ring --timeout 9",
        ))
        .unwrap();
        assert_eq!(options.domid, DomId(4));
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
