//! One grant-share device driven step by step (publish, poll, check, revoke, tear down), so that one process can drive many devices at once or one device many times.
//!
//! `share` (share.rs) runs one device start to end with blocking waits; the soak and crowd
//! subcommands need the same protocol split into steps that never block, over one xenstore
//! connection and one event-channel device shared by all their devices.

use crate::evtchn::EventChannels;
use crate::frontend::{BackendResults, Publication, Shared};
use crate::gntalloc::GrantedPages;
use crate::store::{Step, Store};
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
        if let Err(error) = store.pipeline_all(&share.directory_steps(own, grantsvc)) {
            let _ = share.tear_down(store, channels);
            return Err(error);
        }
        Ok(share)
    }

    /// The requests that create both directories as a toolstack would, frontend first (so
    /// that it is whole when grantsvc sees the backend), after removing leftovers of an
    /// earlier run, which would be taken for this device: one pipelined batch, applied by
    /// xenstored in this order.
    fn directory_steps(&self, own: DomId, grantsvc: DomId) -> Vec<Step> {
        let initialising = XenbusState::Initialising.as_str().to_string();
        let publication = Publication::new(self.pages.refs(), self.port, self.shared.seed, true);
        let mut steps = vec![
            Step::Remove(self.frontend_dir.clone()),
            Step::Remove(self.backend_dir.clone()),
        ];
        let frontend_nodes = [
            (frontend::BACKEND, self.backend_dir.clone()),
            (frontend::BACKEND_ID, grantsvc.to_string()),
            (frontend::STATE, initialising.clone()),
        ];
        let publication_nodes = publication
            .nodes()
            .map(|(name, value)| (name, value.to_string()));
        let backend_nodes = [
            (backend::FRONTEND, self.frontend_dir.clone()),
            (backend::FRONTEND_ID, own.to_string()),
            (backend::STATE, initialising),
        ];
        for (directory, permissions, nodes) in [
            (
                &self.frontend_dir,
                NodePermissions::owner_and_reader(own, grantsvc),
                frontend_nodes
                    .into_iter()
                    .chain(publication_nodes)
                    .collect::<Vec<_>>(),
            ),
            (
                &self.backend_dir,
                NodePermissions::owner_and_reader(grantsvc, own),
                backend_nodes.to_vec(),
            ),
        ] {
            steps.push(Step::Mkdir(directory.clone()));
            // Nodes created below inherit the directory's permissions.
            steps.push(Step::Permissions(directory.clone(), permissions));
            steps.extend(
                nodes
                    .into_iter()
                    .map(|(name, value)| Step::Write(format!("{directory}/{name}"), value)),
            );
        }
        steps
    }

    /// The frontend says it is ready: state Initialised, one write.
    pub fn announce(&self, store: &mut Store) -> Result<(), String> {
        store.pipeline_all(&[self.announce_step()])
    }

    /// [`ShareDevice::announce`]'s write, for a pipelined batch.
    pub fn announce_step(&self) -> Step {
        Step::Write(
            format!("{}/{}", self.frontend_dir, frontend::STATE),
            XenbusState::Initialised.as_str().to_string(),
        )
    }

    /// The backend's state now (None while it has none).
    pub fn backend_state(&self, store: &mut Store) -> Result<Option<XenbusState>, String> {
        store.backend_state(&self.backend_dir)
    }

    /// Judges a backend that reached `state` (Connected or Closed): its result nodes, and for a
    /// connected device the pages as the frontend sees them and that it is still connected.
    pub fn judge(&self, store: &mut Store, state: XenbusState) -> Result<Answer, String> {
        let results: BackendResults = store.backend_results(&self.backend_dir)?;
        if state != XenbusState::Connected {
            return Ok(match results.error {
                Some(error) => Answer::Refused(error),
                None => Answer::ClosedSilently,
            });
        }
        let now = self.backend_state(store)?;
        if now != Some(XenbusState::Connected) {
            return Ok(Answer::ConnectedWrongly(format!(
                "then went to {} before the frontend let go (error node: {})",
                now.map_or("no state".to_string(), |state| state.to_string()),
                results.error.as_deref().unwrap_or("none")
            )));
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
        store.pipeline_all(&[self.revoke_step()])
    }

    /// [`ShareDevice::revoke`]'s write, for a pipelined batch.
    pub fn revoke_step(&self) -> Step {
        Step::Write(
            format!("{}/{}", self.frontend_dir, frontend::STATE),
            XenbusState::Closing.as_str().to_string(),
        )
    }

    /// The backend's `mapped-pages` as it reads now.
    pub fn backend_mapped_pages(&self, store: &mut Store) -> Result<Option<String>, String> {
        Ok(store.backend_results(&self.backend_dir)?.mapped_pages)
    }

    /// Says goodbye as a frontend and a toolstack would, then ends the port and the grants.
    pub fn tear_down(self, store: &mut Store, channels: &EventChannels) -> Result<(), String> {
        let state = format!("{}/{}", self.frontend_dir, frontend::STATE);
        let steps = [
            Step::Write(state, XenbusState::Closed.as_str().to_string()),
            Step::Remove(self.frontend_dir.clone()),
            Step::Remove(self.backend_dir.clone()),
        ];
        let mut errors: Vec<String> = match store.pipeline(&steps) {
            Ok(results) => results.into_iter().filter_map(Result::err).collect(),
            Err(error) => vec![error],
        };
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
