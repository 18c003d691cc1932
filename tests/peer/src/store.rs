//! The tool's xenstore access: the xenstore crate's blocking connection over `/dev/xen/xenbus`, with bounded waits by polling.

use crate::frontend::{parse_state, BackendResults};
use grantsvc::peer::share::nodes::backend;
use grantsvc::peer::xenbus_state::XenbusState;
use std::fs::{File, OpenOptions};
use std::time::{Duration, Instant};
use xenstore::connection::{Connection, ConnectionError};
use xenstore::{DomId, NodePermissions, ReplyError, TransactionId, XsError};

/// How often a wait re-reads a node.
const POLL_INTERVAL: Duration = Duration::from_millis(50);

/// Transaction attempts before giving up on `EAGAIN`.
const TRANSACTION_ATTEMPTS: u32 = 10;

/// A directory to create: its path, its permissions and its nodes.
pub type NewDirectory<'a> = (&'a str, &'a NodePermissions, &'a [(&'a str, String)]);

pub struct Store {
    connection: Connection<File>,
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

    /// The backend's result nodes.
    pub fn backend_results(&mut self, backend: &str) -> Result<BackendResults, String> {
        let mut read = |name: &str| self.read_text(&format!("{backend}/{name}"));
        Ok(BackendResults {
            mapped_pages: read(backend::MAPPED_PAGES)?,
            pattern: read(backend::PATTERN)?,
            digest: read(backend::DIGEST)?,
            answer: read(backend::ANSWER)?,
            error: read(backend::ERROR)?,
        })
    }
}
