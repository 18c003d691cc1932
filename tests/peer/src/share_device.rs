//! One grant-share device driven step by step (publish, poll, check, revoke, tear down), so that one process can drive many devices at once or one device many times.
//!
//! `share` (share.rs) runs one device start to end with blocking waits; the soak and crowd
//! subcommands need the same protocol split into steps that never block, over one xenstore
//! connection and one event-channel device shared by all their devices.

use crate::evtchn::EventChannels;
use crate::frontend::{BackendResults, Publication, Shared};
use crate::gntalloc::GrantedPages;
use crate::store::Store;
use grantsvc::ids::{DomId, EvtchnPort};
use grantsvc::peer::share::nodes::{self, backend, frontend};
// The protocol's names the load subcommands use, imported here once (one place to follow
// when the library's modules move).
pub use grantsvc::peer::device_id::DeviceId;
pub use grantsvc::peer::share::nodes::MAX_PAGES;
pub use grantsvc::peer::xenbus_state::XenbusState;
use xenstore::NodePermissions;

/// A published device: its grants, its port and its two directories.
pub struct ShareDevice {
    pub device: DeviceId,
    pub frontend_dir: String,
    pub backend_dir: String,
    pub shared: Shared,
    pages: GrantedPages,
    port: EvtchnPort,
}

/// How a device ended up once grantsvc answered (or did not).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Answer {
    /// Backend `Connected` and every result node and page checked.
    Served,
    /// Backend `Closed` with an `error` node: the reason a frontend can read.
    Refused(String),
    /// Backend `Connected` but its results or pages are wrong or missing.
    ConnectedWrongly(String),
    /// Backend `Closed` with no `error` node.
    ClosedSilently,
}

impl ShareDevice {
    /// [`ShareDevice::prepare`] then [`ShareDevice::announce`]: the device published at once.
    pub fn publish(
        store: &mut Store,
        channels: &EventChannels,
        grantsvc: DomId,
        device: DeviceId,
        pages: u32,
        seed: u32,
    ) -> Result<ShareDevice, String> {
        let share = ShareDevice::prepare(store, channels, grantsvc, device, pages, seed)?;
        if let Err(error) = share.announce(store) {
            let _ = share.tear_down(store, channels);
            return Err(error);
        }
        Ok(share)
    }

    /// Grants and fills `pages` pages, allocates a port on `channels`, creates both directories
    /// as a toolstack would and writes the frontend's nodes, its state still Initialising (so
    /// grantsvc waits for [`ShareDevice::announce`]).
    pub fn prepare(
        store: &mut Store,
        channels: &EventChannels,
        grantsvc: DomId,
        device: DeviceId,
        pages: u32,
        seed: u32,
    ) -> Result<ShareDevice, String> {
        let own = store.own_domid()?;
        let frontend_dir = nodes::frontend_path(own, device);
        let backend_dir = nodes::backend_path(grantsvc, own, device);
        // Leftovers of an earlier run would be taken for this device.
        store.remove(&frontend_dir)?;
        store.remove(&backend_dir)?;
        let shared = Shared {
            pages,
            seed,
            writable: true,
            corrupted: None,
        };
        let granted = GrantedPages::allocate(grantsvc, pages, true)
            .map_err(|error| format!("gntalloc of {pages} page(s) for d{grantsvc}: {error}"))?;
        for number in 0..pages {
            granted
                .write_page(number, &shared.written_page(number))
                .map_err(|error| format!("filling page {number}: {error}"))?;
        }
        let port = channels
            .allocate_unbound(grantsvc)
            .map_err(|error| format!("allocating a port for d{grantsvc}: {error}"))?;
        let share = ShareDevice {
            device,
            frontend_dir,
            backend_dir,
            shared,
            pages: granted,
            port,
        };
        if let Err(error) = share.write_directories(store, own, grantsvc) {
            let _ = share.tear_down(store, channels);
            return Err(error);
        }
        Ok(share)
    }

    fn write_directories(
        &self,
        store: &mut Store,
        own: DomId,
        grantsvc: DomId,
    ) -> Result<(), String> {
        let initialising = XenbusState::Initialising.as_str().to_string();
        store.create_directory(
            &self.frontend_dir,
            &NodePermissions::owner_and_reader(own, grantsvc),
            &[
                (frontend::BACKEND, self.backend_dir.clone()),
                (frontend::BACKEND_ID, grantsvc.to_string()),
                (frontend::STATE, initialising.clone()),
            ],
        )?;
        store.create_directory(
            &self.backend_dir,
            &NodePermissions::owner_and_reader(grantsvc, own),
            &[
                (backend::FRONTEND, self.frontend_dir.clone()),
                (backend::FRONTEND_ID, own.to_string()),
                (backend::STATE, initialising),
            ],
        )?;
        let publication = Publication::new(self.pages.refs(), self.port, self.shared.seed, true);
        store.write_nodes(&self.frontend_dir, &publication.nodes())
    }

    /// The frontend says it is ready: state Initialised, one write.
    pub fn announce(&self, store: &mut Store) -> Result<(), String> {
        store.write(
            &format!("{}/{}", self.frontend_dir, frontend::STATE),
            XenbusState::Initialised.as_str(),
        )
    }

    /// The backend's state now (None while it has none).
    pub fn backend_state(&self, store: &mut Store) -> Result<Option<XenbusState>, String> {
        store.backend_state(&self.backend_dir)
    }

    /// Judges a backend that reached `state` (Connected or Closed): its result nodes, and for a
    /// connected device the pages as the frontend sees them.
    pub fn judge(&self, store: &mut Store, state: XenbusState) -> Result<Answer, String> {
        let results: BackendResults = store.backend_results(&self.backend_dir)?;
        if state != XenbusState::Connected {
            return Ok(match results.error {
                Some(error) => Answer::Refused(error),
                None => Answer::ClosedSilently,
            });
        }
        if let Err(wrong) = self.shared.check_results(&results) {
            return Ok(Answer::ConnectedWrongly(wrong));
        }
        for number in 0..self.shared.pages {
            let page = self
                .pages
                .read_page(number)
                .map_err(|error| format!("reading page {number}: {error}"))?;
            if let Err(wrong) = self.shared.check_page(number, &page) {
                return Ok(Answer::ConnectedWrongly(wrong));
            }
        }
        Ok(Answer::Served)
    }

    /// The frontend revokes: state Closing, after which grantsvc must unmap and close.
    pub fn revoke(&self, store: &mut Store) -> Result<(), String> {
        store.write(
            &format!("{}/{}", self.frontend_dir, frontend::STATE),
            XenbusState::Closing.as_str(),
        )
    }

    /// The backend's `mapped-pages` as it reads now.
    pub fn backend_mapped_pages(&self, store: &mut Store) -> Result<Option<String>, String> {
        Ok(store.backend_results(&self.backend_dir)?.mapped_pages)
    }

    /// Says goodbye as a frontend and a toolstack would, then ends the port and the grants.
    pub fn tear_down(self, store: &mut Store, channels: &EventChannels) -> Result<(), String> {
        let mut errors = Vec::new();
        let state = format!("{}/{}", self.frontend_dir, frontend::STATE);
        for result in [
            store.write(&state, XenbusState::Closed.as_str()),
            store.remove(&self.frontend_dir),
            store.remove(&self.backend_dir),
        ] {
            errors.extend(result.err());
        }
        if let Err(error) = channels.unbind(self.port) {
            errors.push(format!("closing port {}: {error}", self.port));
        }
        if let Err(error) = self.pages.release() {
            errors.push(format!("ending the grants: {error}"));
        }
        match errors.is_empty() {
            true => Ok(()),
            false => Err(errors.join("; ")),
        }
    }
}
