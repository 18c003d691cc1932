//! One minimal libxenvchan server (rings of orders 10 and 11 inside the shared page, as `vchan-socket-proxy` asks for) driven step by step, so that one process can publish many at once and see when grantsvc connects each.

use crate::evtchn::EventChannels;
use crate::gntalloc::GrantedPages;
use crate::store::{Step, Store};
use grantsvc::abi::vchan as abi;
use grantsvc::addr::PAGE_SIZE;
use grantsvc::ids::{DomId, EvtchnPort};
use xenstore::NodePermissions;

/// A published vchan server: its one granted page, its port and its xenstore directory.
pub struct VchanPeer {
    pub path: String,
    page: GrantedPages,
    port: EvtchnPort,
}

fn io(what: &str) -> impl Fn(std::io::Error) -> String + '_ {
    move |error| format!("{what}: {error}")
}

impl VchanPeer {
    /// Grants the shared page laid out as `init_gnt_srv` leaves it (server live, client not
    /// yet) and allocates a port on `channels`; [`VchanPeer::announce_steps`] publishes them at `path`.
    pub fn prepare(
        store: &mut Store,
        channels: &EventChannels,
        grantsvc: DomId,
        path: &str,
    ) -> Result<VchanPeer, String> {
        store.remove(path)?;
        let page =
            GrantedPages::allocate(grantsvc, 1, true).map_err(io("granting the shared page"))?;
        let mut bytes = vec![0u8; PAGE_SIZE];
        let mut put = |offset: usize, value: &[u8]| {
            if let Some(slot) = bytes.get_mut(offset..offset + value.len()) {
                slot.copy_from_slice(value);
            }
        };
        put(abi::LEFT_ORDER_OFFSET, &abi::SMALL_RING_ORDER.to_le_bytes());
        put(
            abi::RIGHT_ORDER_OFFSET,
            &abi::LARGE_RING_ORDER.to_le_bytes(),
        );
        put(abi::CLI_LIVE_OFFSET, &[abi::LIVE_NOT_YET_CONNECTED]);
        put(abi::SRV_LIVE_OFFSET, &[abi::LIVE_CONNECTED]);
        put(abi::CLI_NOTIFY_OFFSET, &[abi::NOTIFY_WRITE]);
        page.write_bytes(0, &bytes)
            .map_err(io("writing the shared page"))?;
        let port = channels
            .allocate_unbound(grantsvc)
            .map_err(io("allocating the event channel"))?;
        Ok(VchanPeer {
            path: path.to_string(),
            page,
            port,
        })
    }

    /// The requests that publish `ring-ref` and `event-channel` under the path, readable by
    /// `grantsvc` (from then on grantsvc may connect), for a pipelined batch that xenstored
    /// applies in order: the directory and its permissions, then `event-channel`, then `ring-ref` last,
    /// so that a client that waits for both finds both.
    pub fn announce_steps(&self, own: DomId, grantsvc: DomId) -> Vec<Step> {
        let ring_ref = self
            .page
            .refs()
            .first()
            .map_or(0, |grant| grant.get())
            .to_string();
        vec![
            Step::Mkdir(self.path.clone()),
            Step::Permissions(
                self.path.clone(),
                NodePermissions::owner_and_reader(own, grantsvc),
            ),
            Step::Write(
                format!("{}/{}", self.path, abi::EVENT_CHANNEL_NODE),
                self.port.get().to_string(),
            ),
            Step::Write(format!("{}/{}", self.path, abi::RING_REF_NODE), ring_ref),
        ]
    }

    /// Whether grantsvc has connected (cli_live = 1); Err for a value no client may leave.
    pub fn connected(&self) -> Result<bool, String> {
        match self
            .page
            .load_u8(abi::CLI_LIVE_OFFSET)
            .map_err(io("reading cli_live"))?
        {
            abi::LIVE_CONNECTED => Ok(true),
            abi::LIVE_NOT_YET_CONNECTED => Ok(false),
            other => Err(format!(
                "cli_live is {other} (grantsvc left or garbled it) before the server closed"
            )),
        }
    }

    /// Closes as libxenvchan_close does: srv_live = 0, then a signal; grantsvc must unmap.
    pub fn hang_up(&self, channels: &EventChannels) -> Result<(), String> {
        self.page
            .store_u8(abi::SRV_LIVE_OFFSET, abi::LIVE_GONE)
            .map_err(io("clearing srv_live"))?;
        channels.notify(self.port).map_err(io("notifying"))
    }

    /// Unpublishes, then ends the port and the grant.
    pub fn tear_down(self, store: &mut Store, channels: &EventChannels) -> Result<(), String> {
        let mut errors: Vec<String> = store.remove(&self.path).err().into_iter().collect();
        if let Err(error) = channels.unbind(self.port) {
            errors.push(format!("closing port {}: {error}", self.port));
        }
        if let Err(error) = self.page.release() {
            errors.push(format!("ending the grant: {error}"));
        }
        match errors.is_empty() {
            true => Ok(()),
            false => Err(errors.join("; ")),
        }
    }
}
