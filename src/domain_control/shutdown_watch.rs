//! `control/shutdown` watched without waiting: when its watch fires the node is read with a request in flight, and the request it holds comes out when the reply arrives; the acknowledgement (clearing the node) is sent the same way.

use super::shutdown_request::ShutdownRequest;
use crate::peer::store_requests::{read_value, StoreRequests};
use alloc::vec::Vec;
use xenstore::{Operation, Reply, ReplyError, RequestId};

/// The node the toolstack writes a request into (relative to our home).
pub const CONTROL_SHUTDOWN: &str = "control/shutdown";

/// The requests about `control/shutdown` in flight.
#[derive(Debug, Default)]
pub struct ShutdownWatch {
    /// The node's read.
    read: Option<RequestId>,
    /// The node changed again while it was being read: read it once more.
    again: bool,
    /// Acknowledgements (the node cleared) not yet answered.
    acknowledgements: Vec<RequestId>,
}

impl ShutdownWatch {
    /// The node's watch fired: reads it, or reads it once more after the read in flight.
    pub fn changed<S: StoreRequests>(&mut self, store: &mut S) {
        if self.read.is_some() {
            self.again = true;
            return;
        }
        match store.submit(&Operation::Read {
            path: CONTROL_SHUTDOWN,
        }) {
            Ok(id) => self.read = Some(id),
            Err(error) => log::warn!("xenstore: reading {CONTROL_SHUTDOWN}: {error}"),
        }
    }

    /// Tells the toolstack the request was seen, by clearing the node (as Linux does).
    pub fn acknowledge<S: StoreRequests>(&mut self, store: &mut S) {
        let clear = Operation::Write {
            path: CONTROL_SHUTDOWN,
            value: b"",
        };
        match store.submit(&clear) {
            Ok(id) => self.acknowledgements.push(id),
            Err(error) => log::warn!("xenstore: acknowledging the shutdown request: {error}"),
        }
    }

    /// The requests in flight.
    pub fn ids(&self) -> Vec<RequestId> {
        self.read
            .into_iter()
            .chain(self.acknowledgements.iter().copied())
            .collect()
    }

    /// True when a reply has arrived.
    pub fn has_replies<S: StoreRequests>(&self, store: &S) -> bool {
        self.ids().into_iter().any(|id| store.has_reply(id))
    }

    /// Takes the replies that arrived; the request the node holds, if its read was answered
    /// with one.
    pub fn take_replies<S: StoreRequests>(&mut self, store: &mut S) -> Option<ShutdownRequest> {
        self.acknowledgements
            .retain(|id| match store.take_reply(*id) {
                None => true,
                Some(Ok(_)) => false,
                Some(Err(error)) => {
                    log::warn!("xenstore: acknowledging the shutdown request: {error}");
                    false
                }
            });
        let result = store.take_reply(self.read?)?;
        self.read = None;
        if core::mem::take(&mut self.again) {
            self.changed(store);
        }
        request_in(result)
    }
}

/// The request a read of the node found (none: empty, gone, unreadable or unknown, logged).
fn request_in(result: Result<Reply, ReplyError>) -> Option<ShutdownRequest> {
    let value = match read_value(result) {
        Ok(Some(value)) => value,
        Ok(None) => return None,
        Err(error) => {
            log::warn!("xenstore: reading {CONTROL_SHUTDOWN}: {error}");
            return None;
        }
    };
    let request = ShutdownRequest::parse(&value);
    if request.is_none() && !value.is_empty() {
        log::warn!(
            "{CONTROL_SHUTDOWN} holds \"{}\", not a request grantsvc knows; ignored",
            value.escape_ascii()
        );
    }
    request
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::peer::fake_store::FakeStore;

    #[test]
    fn a_request_comes_out_when_the_read_is_answered_and_a_change_meanwhile_is_read_again() {
        let mut store = FakeStore::new();
        let mut watch = ShutdownWatch::default();
        store.put(CONTROL_SHUTDOWN, "");
        watch.changed(&mut store);
        assert_eq!(watch.take_replies(&mut store), None, "nothing answered yet");
        // The toolstack writes its request while the first read is in flight.
        watch.changed(&mut store);
        assert_eq!(watch.ids().len(), 1, "one read in flight at a time");
        store.serve();
        store.put(CONTROL_SHUTDOWN, "poweroff");
        assert_eq!(
            watch.take_replies(&mut store),
            None,
            "the first read saw the empty node"
        );
        store.serve();
        assert_eq!(
            watch.take_replies(&mut store),
            Some(ShutdownRequest::Poweroff)
        );
        watch.acknowledge(&mut store);
        store.serve();
        assert_eq!(watch.take_replies(&mut store), None);
        assert!(watch.ids().is_empty());
        assert_eq!(store.server.values[CONTROL_SHUTDOWN], b"");
    }

    #[test]
    fn a_gone_refused_or_unknown_value_is_no_request() {
        let mut store = FakeStore::new();
        let mut watch = ShutdownWatch::default();
        for setup in ["gone", "refused", "unknown"] {
            match setup {
                "gone" => {}
                "refused" => {
                    store.put(CONTROL_SHUTDOWN, "reboot");
                    store
                        .server
                        .refuse
                        .insert(CONTROL_SHUTDOWN.into(), "EACCES");
                }
                _ => {
                    store.server.refuse.clear();
                    store.put(CONTROL_SHUTDOWN, "explode");
                }
            }
            watch.changed(&mut store);
            store.serve();
            assert_eq!(watch.take_replies(&mut store), None, "{setup}");
            assert!(watch.ids().is_empty(), "{setup}");
        }
    }
}
