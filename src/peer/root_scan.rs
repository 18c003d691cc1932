//! A backend root scanned without waiting: which devices exist under `<root>/<frontend>/<device>`, listed with requests in flight that the service loop answers as their replies arrive.
//!
//! A xenbus backend (grant-share, blkif) watches its root; when the root itself or a frontend's
//! folder changes, every device below it is looked at again. The scan lists the root, then
//! every frontend's folder, all those listings in flight together, and reports the devices
//! present once the last listing is answered. A folder that went between the two listings (or
//! could not be listed) contributes nothing; the caller looks up every device present and every
//! device it has a session for, so a device missing from a scan is checked, never ended on the
//! scan's word alone. A scan asked for while one is in flight runs once more when it ends (it
//! would miss changes after its listings were sent); any number of such asks make one more scan.

use super::sorted_unique::sorted_unique;
use super::store_requests::{directory_names, StoreRequests};
use crate::ids::DomId;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use litemap::LiteMap;
use xenstore::{Operation, Reply, ReplyError, RequestId};

/// Parses a path at or below `<root>/<frontend>/<device>` into (frontend, device).
pub type DeviceOfPath<D> = fn(&str, &str) -> Option<(DomId, D)>;

/// A scan in flight.
#[derive(Debug)]
struct Scan<D> {
    /// The root's listing, until answered.
    root_listing: Option<RequestId>,
    /// Frontend folders' listings in flight, by request id.
    folders: LiteMap<RequestId, String>,
    /// The devices found so far, as listed (put in order when the scan ends).
    present: Vec<(DomId, D)>,
}

/// The scans of one backend root.
#[derive(Debug)]
pub struct RootScan<D> {
    root: String,
    device_of_path: DeviceOfPath<D>,
    scan: Option<Scan<D>>,
    /// Another scan was asked for while one was in flight.
    again: bool,
}

impl<D: Copy + Ord> RootScan<D> {
    /// Scans of `root`, whose devices `device_of_path` recognises.
    pub fn new(root: &str, device_of_path: DeviceOfPath<D>) -> RootScan<D> {
        RootScan {
            root: String::from(root),
            device_of_path,
            scan: None,
            again: false,
        }
    }

    /// The root.
    pub fn root(&self) -> &str {
        &self.root
    }

    /// Starts a scan, or asks for one more after the scan in flight.
    pub fn request<S: StoreRequests>(&mut self, store: &mut S) {
        if self.scan.is_some() {
            self.again = true;
            return;
        }
        let root_listing = match store.submit(&Operation::Directory { path: &self.root }) {
            Ok(id) => id,
            Err(error) => {
                log::warn!("listing {}: {error}", self.root);
                return;
            }
        };
        self.scan = Some(Scan {
            root_listing: Some(root_listing),
            folders: LiteMap::new(),
            present: Vec::new(),
        });
    }

    /// True while a scan is in flight.
    pub fn in_flight(&self) -> bool {
        self.scan.is_some()
    }

    /// The requests in flight.
    pub fn ids(&self) -> Vec<RequestId> {
        let Some(scan) = &self.scan else {
            return Vec::new();
        };
        scan.root_listing
            .into_iter()
            .chain(scan.folders.keys().copied())
            .collect()
    }

    /// Takes the reply to `id` (one of [`RootScan::ids`]); returns the devices present
    /// (ascending, each once) when it was the scan's last. A scan asked for meanwhile is
    /// started then.
    pub fn answer<S: StoreRequests>(
        &mut self,
        store: &mut S,
        id: RequestId,
        result: Result<Reply, ReplyError>,
    ) -> Option<Vec<(DomId, D)>> {
        let scan = self.scan.as_mut()?;
        if scan.root_listing == Some(id) {
            scan.root_listing = None;
            match directory_names(result) {
                Ok(frontends) => {
                    for frontend in frontends {
                        let folder = format!("{}/{frontend}", self.root);
                        match store.submit(&Operation::Directory { path: &folder }) {
                            Ok(id) => {
                                scan.folders.insert(id, folder);
                            }
                            Err(error) => log::warn!("listing {folder}: {error}"),
                        }
                    }
                }
                Err(error) => {
                    // Nothing to go by: this scan reports nothing (the next event scans again).
                    log::warn!("listing {}: {error}", self.root);
                    self.scan = None;
                    self.start_again(store);
                    return None;
                }
            }
        } else if let Some(folder) = scan.folders.remove(&id) {
            match directory_names(result) {
                Ok(devices) => {
                    for device in devices {
                        let path = format!("{folder}/{device}");
                        if let Some(found) = (self.device_of_path)(&self.root, &path) {
                            scan.present.push(found);
                        }
                    }
                }
                Err(error) => log::warn!("listing {folder}: {error}"),
            }
        } else {
            return None;
        }
        if scan.root_listing.is_some() || !scan.folders.is_empty() {
            return None;
        }
        let present = sorted_unique(core::mem::take(&mut scan.present));
        self.scan = None;
        self.start_again(store);
        Some(present)
    }

    /// Takes every reply that has arrived; the devices present for each scan that ended.
    pub fn take_replies<S: StoreRequests>(&mut self, store: &mut S) -> Vec<Vec<(DomId, D)>> {
        let mut ended = Vec::new();
        // A root listing's answer sends the folders' listings, whose replies may be here too.
        loop {
            let arrived = super::store_requests::take_arrived(store, &self.ids());
            if arrived.is_empty() {
                return ended;
            }
            for (id, result) in arrived {
                ended.extend(self.answer(store, id, result));
            }
        }
    }

    /// True when a reply of the scan's has arrived.
    pub fn has_replies<S: StoreRequests>(&self, store: &S) -> bool {
        self.ids().into_iter().any(|id| store.has_reply(id))
    }

    fn start_again<S: StoreRequests>(&mut self, store: &mut S) {
        if core::mem::take(&mut self.again) {
            self.request(store);
        }
    }
}

/// The devices a scan's answer asks to look up: each one `present` and each of `live` (a live
/// session's device whose directory went then reads as gone, and its session ends), once each,
/// in order.
pub fn devices_to_look_up<D: Ord>(
    mut present: Vec<(DomId, D)>,
    live: impl IntoIterator<Item = (DomId, D)>,
) -> Vec<(DomId, D)> {
    present.extend(live);
    sorted_unique(present)
}

#[cfg(test)]
mod tests;
