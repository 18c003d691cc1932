//! Host tests' xenstore: the xenstore crate's ring client over its fake xenstored, as [`StoreRequests`], with the test choosing when xenstored answers.

use super::store_requests::StoreRequests;
use xenstore::fake_xenstored::Xenstored;
use xenstore::ring_client::{RingClient, SubmitError};
use xenstore::{Operation, Reply, ReplyError, RequestId, TransactionId, WatchEvent};

/// A client and its fake xenstored; nothing is answered until [`FakeStore::serve`].
pub struct FakeStore {
    pub server: Xenstored,
    client: RingClient<u32>,
    /// Requests submitted since the test last looked.
    pub submitted: usize,
    /// Refuse every submission, as a client whose backlog is full does.
    pub refuse_submissions: bool,
}

impl Default for FakeStore {
    fn default() -> FakeStore {
        FakeStore::new()
    }
}

impl FakeStore {
    pub fn new() -> FakeStore {
        let server = Xenstored::new();
        let client = RingClient::attach(&server.page).unwrap();
        FakeStore {
            server,
            client,
            submitted: 0,
            refuse_submissions: false,
        }
    }

    /// Sets `path` to `value` in the store (as another domain's write, firing watches).
    pub fn put(&mut self, path: &str, value: &str) {
        self.server
            .values
            .insert(path.into(), value.as_bytes().to_vec());
        self.server.fire(path);
        self.client.pump(&self.server.page);
    }

    /// Removes `path` and everything below it.
    pub fn remove(&mut self, path: &str) {
        let below = alloc::format!("{path}/");
        self.server
            .values
            .retain(|key, _| key != path && !key.starts_with(&below));
    }

    /// Lets xenstored answer every request sent so far; the replies wait in the client.
    pub fn serve(&mut self) {
        for _ in 0..64 {
            self.client.pump(&self.server.page);
            self.server.serve();
            self.client.pump(&self.server.page);
            if self.client.in_flight() == 0 || self.server.hold_replies {
                break;
            }
        }
    }

    /// Registers a watch and waits for its acknowledgement.
    pub fn watch(&mut self, path: &str, token: &str) {
        let id = self.client.submit_watch(path, token, 0).unwrap();
        self.serve();
        assert_eq!(self.client.take_reply(id), Some(Ok(Reply::Acknowledged)));
    }

    /// Watch events received so far.
    pub fn take_watch_events(&mut self) -> alloc::vec::Vec<WatchEvent> {
        self.client
            .take_watch_events()
            .into_iter()
            .map(|(_, event)| event)
            .collect()
    }

    /// Requests sent whose replies have not been taken or dropped.
    pub fn in_flight(&self) -> usize {
        self.client.in_flight() + self.client.queued_replies()
    }
}

impl StoreRequests for FakeStore {
    type Error = SubmitError;

    fn submit_in(
        &mut self,
        transaction: TransactionId,
        operation: &Operation<'_>,
    ) -> Result<RequestId, SubmitError> {
        if self.refuse_submissions {
            return Err(SubmitError::Backlog);
        }
        let id = self.client.submit(transaction, operation)?;
        self.submitted += 1;
        self.client.pump(&self.server.page);
        Ok(id)
    }

    fn take_reply(&mut self, id: RequestId) -> Option<Result<Reply, ReplyError>> {
        self.client.take_reply(id)
    }

    fn has_reply(&self, id: RequestId) -> bool {
        self.client.has_reply(id)
    }

    fn abandon(&mut self, id: RequestId) {
        self.client.abandon(id);
    }
}
