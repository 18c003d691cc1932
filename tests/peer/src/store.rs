//! The tool's xenstore access: the xenstore crate's blocking connection over `/dev/xen/xenbus`, with bounded waits by polling.

use crate::frontend::{parse_state, BackendResults};
use grantsvc::peer::share::nodes::backend;
use grantsvc::peer::xenbus_state::XenbusState;
use std::fs::{File, OpenOptions};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};
use xenstore::connection::{Connection, ConnectionError};
use xenstore::{
    DomId, NodePermissions, Operation, Reply, ReplyError, TransactionId, WatchEvent, XsError,
};

/// How often a wait re-reads a node.
const POLL_INTERVAL: Duration = Duration::from_millis(50);

/// Transaction attempts before giving up on `EAGAIN`.
const TRANSACTION_ATTEMPTS: u32 = 10;

/// A directory to create: its path, its permissions and its nodes.
pub type NewDirectory<'a> = (&'a str, &'a NodePermissions, &'a [(&'a str, String)]);

pub struct Store {
    connection: Connection<File>,
}

/// One request of a pipelined batch ([`Store::pipeline`]), with owned paths.
#[derive(Clone, Debug)]
pub enum Step {
    Read(String),
    Write(String, String),
    Mkdir(String),
    Permissions(String, NodePermissions),
    /// Removes the node and everything below it; a missing node is fine.
    Remove(String),
}

impl Step {
    fn operation(&self) -> Operation<'_> {
        match self {
            Step::Read(path) => Operation::Read { path },
            Step::Write(path, value) => Operation::Write {
                path,
                value: value.as_bytes(),
            },
            Step::Mkdir(path) => Operation::Mkdir { path },
            Step::Permissions(path, permissions) => Operation::SetPermissions { path, permissions },
            Step::Remove(path) => Operation::Remove { path },
        }
    }

    fn describe(&self) -> (&'static str, &str) {
        match self {
            Step::Read(path) => ("read", path),
            Step::Write(path, _) => ("write", path),
            Step::Mkdir(path) => ("mkdir", path),
            Step::Permissions(path, _) => ("set permissions of", path),
            Step::Remove(path) => ("rm", path),
        }
    }
}

fn describe(what: &str, path: &str, error: ConnectionError) -> String {
    format!("xenstore {what} {path}: {error}")
}

fn is_missing(error: &ConnectionError) -> bool {
    matches!(
        error,
        ConnectionError::Reply(ReplyError::Xenstore(XsError::NotFound))
    )
}

impl Store {
    pub fn open() -> Result<Store, String> {
        let device = OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/xen/xenbus")
            .map_err(|error| format!("opening /dev/xen/xenbus: {error}"))?;
        Ok(Store {
            connection: Connection::new(device),
        })
    }

    /// This domain's id (the `domid` node of its home; dom0 when it has none).
    pub fn own_domid(&mut self) -> Result<DomId, String> {
        match self.read_optional("domid")? {
            None => Ok(DomId::DOM0),
            Some(value) => std::str::from_utf8(&value)
                .ok()
                .and_then(|text| text.parse().ok())
                .and_then(DomId::new)
                .ok_or_else(|| {
                    format!(
                        "own domid node holds {:?}",
                        value.escape_ascii().to_string()
                    )
                }),
        }
    }

    pub fn read_optional(&mut self, path: &str) -> Result<Option<Vec<u8>>, String> {
        match self.connection.read(TransactionId::NONE, path) {
            Ok(value) => Ok(Some(value)),
            Err(error) if is_missing(&error) => Ok(None),
            Err(error) => Err(describe("read", path, error)),
        }
    }

    pub fn read_text(&mut self, path: &str) -> Result<Option<String>, String> {
        Ok(self
            .read_optional(path)?
            .map(|value| String::from_utf8_lossy(&value).into_owned()))
    }

    pub fn write(&mut self, path: &str, value: &str) -> Result<(), String> {
        self.connection
            .write(TransactionId::NONE, path, value.as_bytes())
            .map_err(|error| describe("write", path, error))
    }

    /// Removes `path` and everything below it; a missing node is fine.
    pub fn remove(&mut self, path: &str) -> Result<(), String> {
        match self.connection.remove(TransactionId::NONE, path) {
            Err(error) if !is_missing(&error) => Err(describe("rm", path, error)),
            _ => Ok(()),
        }
    }

    /// Creates directory `path` with `permissions`, then writes `nodes` below it (children
    /// inherit the directory's permissions), all in one transaction.
    pub fn create_directory(
        &mut self,
        path: &str,
        permissions: &NodePermissions,
        nodes: &[(&str, String)],
    ) -> Result<(), String> {
        self.connection
            .transaction(TRANSACTION_ATTEMPTS, |connection, transaction| {
                connection.mkdir(transaction, path)?;
                connection.set_permissions(transaction, path, permissions)?;
                for (name, value) in nodes {
                    connection.write(transaction, &format!("{path}/{name}"), value.as_bytes())?;
                }
                Ok(())
            })
            .map_err(|error| describe("create", path, error))
    }

    /// Creates several directories as [`Store::create_directory`] does, all in one
    /// transaction (as libxl creates a device's backend and frontend directories).
    pub fn create_directories(&mut self, directories: &[NewDirectory<'_>]) -> Result<(), String> {
        self.connection
            .transaction(TRANSACTION_ATTEMPTS, |connection, transaction| {
                for (path, permissions, nodes) in directories {
                    connection.mkdir(transaction, path)?;
                    connection.set_permissions(transaction, path, permissions)?;
                    for (name, value) in *nodes {
                        connection.write(
                            transaction,
                            &format!("{path}/{name}"),
                            value.as_bytes(),
                        )?;
                    }
                }
                Ok(())
            })
            .map_err(|error| describe("create", "device directories", error))
    }

    /// Writes `nodes` below `path` in one transaction, in order.
    pub fn write_nodes(&mut self, path: &str, nodes: &[(&str, &str)]) -> Result<(), String> {
        self.connection
            .transaction(TRANSACTION_ATTEMPTS, |connection, transaction| {
                for (name, value) in nodes {
                    connection.write(transaction, &format!("{path}/{name}"), value.as_bytes())?;
                }
                Ok(())
            })
            .map_err(|error| describe("write below", path, error))
    }

    /// Sends every step before reading any reply (one wake-up of xenstored for the batch, not
    /// one per request) and returns each step's result in order: a value for a read (None: the
    /// node does not exist), nothing for the others. Err only when the connection failed.
    #[allow(clippy::type_complexity)]
    pub fn pipeline(
        &mut self,
        steps: &[Step],
    ) -> Result<Vec<Result<Option<Vec<u8>>, String>>, String> {
        let batch: Vec<(TransactionId, Operation<'_>)> = steps
            .iter()
            .map(|step| (TransactionId::NONE, step.operation()))
            .collect();
        let replies = self
            .connection
            .pipeline(&batch)
            .map_err(|error| format!("xenstore pipeline of {} request(s): {error}", steps.len()))?;
        Ok(steps
            .iter()
            .zip(replies)
            .map(|(step, reply)| match (step, reply) {
                (_, Ok(Reply::Value(value))) => Ok(Some(value)),
                (Step::Read(_) | Step::Remove(_), Err(error)) if is_missing(&error) => Ok(None),
                (_, Ok(_)) => Ok(None),
                (step, Err(error)) => {
                    let (what, path) = step.describe();
                    Err(describe(what, path, error))
                }
            })
            .collect())
    }

    /// Like [`Store::pipeline`], for steps that are all expected to succeed: the first
    /// failure, if any.
    pub fn pipeline_all(&mut self, steps: &[Step]) -> Result<(), String> {
        self.pipeline(steps)?
            .into_iter()
            .find_map(Result::err)
            .map_or(Ok(()), Err)
    }

    /// Registers a watch on `path` (and everything below it); its events come from
    /// [`Store::watch_events`]. xenstored fires it once at once.
    pub fn watch(&mut self, path: &str, token: &str) -> Result<(), String> {
        self.connection
            .watch(path, token)
            .map_err(|error| describe("watch", path, error))
    }

    pub fn unwatch(&mut self, token: &str) -> Result<(), String> {
        self.connection
            .unwatch(token)
            .map_err(|error| describe("unwatch", token, error))
    }

    /// The watch events received so far, waiting at most `timeout` for one when none is
    /// queued (zero: only what has arrived).
    pub fn watch_events(&mut self, timeout: Duration) -> Result<Vec<WatchEvent>, String> {
        let mut events = self.connection.take_watch_events();
        let mut wait = timeout;
        loop {
            if !self.readable(if events.is_empty() {
                wait
            } else {
                Duration::ZERO
            })? {
                return Ok(events);
            }
            self.connection
                .receive()
                .map_err(|error| format!("xenstore: reading watch events: {error}"))?;
            events.extend(self.connection.take_watch_events());
            wait = Duration::ZERO;
        }
    }

    /// True when /dev/xen/xenbus has something to read within `timeout`.
    fn readable(&self, timeout: Duration) -> Result<bool, String> {
        let mut poll = libc::pollfd {
            fd: self.connection.transport().as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        let milliseconds = i32::try_from(timeout.as_millis()).unwrap_or(i32::MAX);
        // SAFETY: one valid pollfd for the length of the call; the descriptor stays open.
        let ready = unsafe { libc::poll(&mut poll, 1, milliseconds) };
        match ready {
            -1 => {
                let error = std::io::Error::last_os_error();
                match error.kind() {
                    std::io::ErrorKind::Interrupted => Ok(false),
                    _ => Err(format!("poll of /dev/xen/xenbus: {error}")),
                }
            }
            0 => Ok(false),
            _ => Ok(poll.revents & libc::POLLIN != 0),
        }
    }

    /// The backend's `state` (None while absent).
    pub fn backend_state(&mut self, backend: &str) -> Result<Option<XenbusState>, String> {
        let path = format!("{backend}/{}", backend::STATE);
        self.read_optional(&path)?
            .map(|value| parse_state(&value))
            .transpose()
    }

    /// Waits until the backend's `state` is one of `wanted`, at most `timeout`; returns it.
    pub fn wait_for_backend(
        &mut self,
        backend: &str,
        wanted: &[XenbusState],
        timeout: Duration,
    ) -> Result<XenbusState, String> {
        let deadline = Instant::now() + timeout;
        let mut last = None;
        loop {
            last = self.backend_state(backend)?.or(last);
            if let Some(state) = last.filter(|state| wanted.contains(state)) {
                return Ok(state);
            }
            if Instant::now() >= deadline {
                let seen = last.map_or("no state".to_string(), |state| state.to_string());
                let error = self.read_text(&format!("{backend}/{}", backend::ERROR))?;
                return Err(format!(
                    "backend still at {seen} after {} s, waiting for {wanted:?}{}",
                    timeout.as_secs(),
                    error.map_or(String::new(), |error| format!(" (error: {error})"))
                ));
            }
            std::thread::sleep(POLL_INTERVAL);
        }
    }

    /// The backend's result nodes, read in one pipelined batch.
    pub fn backend_results(&mut self, backend: &str) -> Result<BackendResults, String> {
        let names = [
            backend::MAPPED_PAGES,
            backend::PATTERN,
            backend::DIGEST,
            backend::ANSWER,
            backend::ERROR,
        ];
        let steps: Vec<Step> = names
            .iter()
            .map(|name| Step::Read(format!("{backend}/{name}")))
            .collect();
        let mut values = self.pipeline(&steps)?.into_iter().map(|result| {
            result.map(|value| value.map(|value| String::from_utf8_lossy(&value).into_owned()))
        });
        let mut next = || values.next().unwrap_or(Ok(None));
        Ok(BackendResults {
            mapped_pages: next()?,
            pattern: next()?,
            digest: next()?,
            answer: next()?,
            error: next()?,
        })
    }
}
