//! `socket-exchange`: the UNIX-socket end that `vchan-socket-proxy -m server` connects to, sending bytes through the vchan and collecting what comes back.
//!
//! The proxy connects to its socket path once a vchan client (grantsvc) connects, so this end
//! listens. It accepts one connection, writes the input while reading, and stops when it has
//! received as many bytes as it sent (`--echo`) or one complete line (`--line`), when the peer
//! closes, or at the timeout. The bytes received go to `--output` for the caller to compare.

use std::io::{ErrorKind, Read, Write};
use std::os::unix::net::UnixListener;
use std::time::{Duration, Instant};

/// What to send and when to stop.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Exchange {
    /// Send the file's bytes; expect the same number back.
    Echo { input: String },
    /// Send this text and a newline; expect one line back.
    Line { text: String },
}

/// Options of `socket-exchange`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExchangeOptions {
    pub listen: String,
    pub exchange: Exchange,
    pub output: Option<String>,
    pub timeout: Duration,
    /// Keep the connection open this long after the exchange (the vchan stays connected).
    pub linger: Duration,
}

const CHUNK: usize = 16 * 1024;

/// Runs the exchange; returns a summary, or why it failed.
pub fn run(options: &ExchangeOptions) -> Result<String, String> {
    let to_send = match &options.exchange {
        Exchange::Echo { input } => {
            std::fs::read(input).map_err(|error| format!("reading {input}: {error}"))?
        }
        Exchange::Line { text } => format!("{text}\n").into_bytes(),
    };
    let _ = std::fs::remove_file(&options.listen);
    let listener = UnixListener::bind(&options.listen)
        .map_err(|error| format!("listening on {}: {error}", options.listen))?;
    listener
        .set_nonblocking(true)
        .map_err(|error| format!("non-blocking listener: {error}"))?;
    let deadline = Instant::now() + options.timeout;
    let mut stream = loop {
        match listener.accept() {
            Ok((stream, _)) => break stream,
            Err(error) if error.kind() == ErrorKind::WouldBlock => {
                if Instant::now() >= deadline {
                    return Err(format!(
                        "nobody connected to {} within {} s",
                        options.listen,
                        options.timeout.as_secs()
                    ));
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(error) => return Err(format!("accept: {error}")),
        }
    };
    stream
        .set_nonblocking(true)
        .map_err(|error| format!("non-blocking stream: {error}"))?;
    let started = Instant::now();
    let mut sent = 0usize;
    let mut received: Vec<u8> = Vec::with_capacity(to_send.len());
    let mut buffer = vec![0u8; CHUNK];
    let mut peer_closed = false;
    let done = |received: &Vec<u8>| match &options.exchange {
        Exchange::Echo { .. } => received.len() >= to_send.len(),
        Exchange::Line { .. } => received.contains(&b'\n'),
    };
    while !done(&received) && !peer_closed {
        let mut progress = false;
        if sent < to_send.len() {
            let end = to_send.len().min(sent + CHUNK);
            match stream.write(to_send.get(sent..end).unwrap_or_default()) {
                Ok(count) => {
                    sent += count;
                    progress |= count > 0;
                }
                Err(error) if error.kind() == ErrorKind::WouldBlock => {}
                Err(error) => return Err(format!("writing after {sent} bytes: {error}")),
            }
        }
        match stream.read(&mut buffer) {
            Ok(0) => peer_closed = true,
            Ok(count) => {
                received.extend_from_slice(buffer.get(..count).unwrap_or_default());
                progress = true;
            }
            Err(error) if error.kind() == ErrorKind::WouldBlock => {}
            Err(error) => return Err(format!("reading after {} bytes: {error}", received.len())),
        }
        if Instant::now() >= deadline {
            break;
        }
        if !progress {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    if done(&received) && !options.linger.is_zero() {
        std::thread::sleep(options.linger);
    }
    if let Some(output) = &options.output {
        std::fs::write(output, &received).map_err(|error| format!("writing {output}: {error}"))?;
    }
    if !done(&received) {
        // What did arrive may already show where the stream went wrong (bytes lost, say).
        let so_far = match &options.exchange {
            Exchange::Echo { .. } => {
                let prefix = to_send.get(..received.len()).unwrap_or(&to_send);
                match crate::echo_diff::describe(prefix, &received) {
                    Some(account) => format!("; what arrived differs: {account}"),
                    None => "; what arrived agrees with what was sent".to_string(),
                }
            }
            Exchange::Line { .. } => String::new(),
        };
        return Err(format!(
            "sent {sent} of {} bytes, received {} bytes, then {} ({seconds:.1} s){so_far}",
            to_send.len(),
            received.len(),
            if peer_closed {
                "the proxy closed the connection"
            } else {
                "the timeout passed"
            }
        ));
    }
    Ok(match &options.exchange {
        Exchange::Echo { .. } => {
            if let Some(account) = crate::echo_diff::describe(&to_send, &received) {
                return Err(format!("the echo differs from what was sent: {account}"));
            }
            format!(
                "sent {sent} bytes, received the same {} bytes back in {seconds:.1} s ({:.0} KiB/s)",
                received.len(),
                received.len() as f64 / 1024.0 / seconds.max(0.001)
            )
        }
        Exchange::Line { .. } => {
            let line = received
                .split(|byte| *byte == b'\n')
                .next()
                .unwrap_or_default();
            format!("answer: {}", String::from_utf8_lossy(line))
        }
    })
}
