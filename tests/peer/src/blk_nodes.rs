//! The xenstore nodes of one vbd as data: the toolstack's (as libxl writes them), the frontend's negotiation (as Linux blkfront writes them), and the garbage blk-hostile puts in each frontend node.
//!
//! Toolstack nodes from Xen 4.17 `tools/libs/light/libxl_disk.c` `device_disk_add` and
//! `libxl_device.c` `libxl__device_generic_add`, for a disk whose backend is a driver domain
//! (`type` phy, `params` the target verbatim, no `script` run, no `physical-device`). Frontend
//! nodes from Linux `drivers/block/xen-blkfront.c` `talk_to_blkback`: with one queue and ring
//! order 0 only `ring-ref` and `event-channel`, with order n `ring-page-order` and
//! `ring-ref0..ring-ref<2^n-1>`; then `protocol` and `feature-persistent`.

use grantsvc::abi::blkif::PROTOCOL_X86_64;
use grantsvc::ids::{DomId, EvtchnPort, GrantRef};
use grantsvc::peer::value::RemotePort;
use grantsvc::peer::xenbus_state::XenbusState;

/// A ref no domain has granted (far beyond any grant table's default 64 frames).
pub const UNGRANTED_REF: u32 = 0x0fff_ffff;

/// A port valid in form that grantsvc was never offered: the last one of the FIFO ABI.
pub const UNOFFERED_PORT: u32 = RemotePort::LIMIT - 1;

/// The backend directory of device `devid` of frontend `frontend` served by `backend`.
pub fn backend_path(backend: DomId, frontend: DomId, devid: u32) -> String {
    format!("/local/domain/{backend}/backend/vbd/{frontend}/{devid}")
}

/// The frontend directory of device `devid` of `frontend`.
pub fn frontend_path(frontend: DomId, devid: u32) -> String {
    format!("/local/domain/{frontend}/device/vbd/{devid}")
}

/// Where Linux's `xenbus_dev_error` puts a device's error: under the backend's own home.
pub fn error_path(backend: DomId, frontend: DomId, devid: u32) -> String {
    format!("/local/domain/{backend}/error/backend/vbd/{frontend}/{devid}/error")
}

/// What the toolstack is asked to attach.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attach {
    pub backend: DomId,
    pub frontend: DomId,
    pub devid: u32,
    /// The `target` (for example `ram:16M`), written verbatim as `params`.
    pub target: String,
    pub writable: bool,
}

impl Attach {
    /// The backend directory's nodes, `state` Initialising.
    pub fn backend_nodes(&self) -> Vec<(&'static str, String)> {
        vec![
            ("frontend", frontend_path(self.frontend, self.devid)),
            ("params", self.target.clone()),
            ("frontend-id", self.frontend.to_string()),
            ("online", "1".to_string()),
            ("removable", "0".to_string()),
            ("bootable", "1".to_string()),
            ("state", XenbusState::Initialising.as_str().to_string()),
            ("dev", format!("hostile{}", self.devid)),
            ("type", "phy".to_string()),
            ("mode", if self.writable { "w" } else { "r" }.to_string()),
            ("device-type", "disk".to_string()),
            ("discard-enable", "1".to_string()),
        ]
    }

    /// The frontend directory's nodes, `state` Initialising.
    pub fn frontend_nodes(&self) -> Vec<(&'static str, String)> {
        vec![
            (
                "backend",
                backend_path(self.backend, self.frontend, self.devid),
            ),
            ("backend-id", self.backend.to_string()),
            ("state", XenbusState::Initialising.as_str().to_string()),
            ("virtual-device", self.devid.to_string()),
            ("device-type", "disk".to_string()),
            ("trusted", "1".to_string()),
        ]
    }
}

/// The frontend's negotiation nodes, before garbage.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Negotiation {
    /// Node name and value, in the order they are written; `state` last.
    pub nodes: Vec<(String, String)>,
}

impl Negotiation {
    /// What blkfront writes for one queue on a ring of `refs.len()` = `2^order` pages.
    pub fn new(refs: &[GrantRef], order: u32, port: EvtchnPort, persistent: bool) -> Negotiation {
        let mut nodes = Vec::new();
        if order == 0 {
            let first = refs.first().map_or(0, |gref| gref.get());
            nodes.push(("ring-ref".to_string(), first.to_string()));
        } else {
            nodes.push(("ring-page-order".to_string(), order.to_string()));
            for (index, gref) in refs.iter().enumerate() {
                nodes.push((format!("ring-ref{index}"), gref.get().to_string()));
            }
        }
        nodes.push(("event-channel".to_string(), port.get().to_string()));
        nodes.push(("protocol".to_string(), PROTOCOL_X86_64.to_string()));
        nodes.push((
            "feature-persistent".to_string(),
            if persistent { "1" } else { "0" }.to_string(),
        ));
        nodes.push((
            "state".to_string(),
            XenbusState::Initialised.as_str().to_string(),
        ));
        Negotiation { nodes }
    }

    /// The value of `key`, if written.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.nodes
            .iter()
            .find(|(name, _)| name == key)
            .map(|(_, value)| value.as_str())
    }

    fn set(&mut self, key: &str, value: &str) {
        match self.nodes.iter_mut().find(|(name, _)| name == key) {
            Some((_, old)) => *old = value.to_string(),
            // Before `state`, which stays last.
            None => {
                let at = self.nodes.len().saturating_sub(1);
                self.nodes.insert(at, (key.to_string(), value.to_string()));
            }
        }
    }

    fn remove(&mut self, key: &str) {
        self.nodes.retain(|(name, _)| name != key);
    }
}

/// One kind of garbage in a frontend node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NodeGarbage {
    ProtocolX86_32,
    ProtocolUnknown,
    PersistentNotBoolean,
    QueuesZero,
    QueuesHuge,
    QueuesNonNumeric,
    OrderHuge,
    OrderNonNumeric,
    RingRefNonNumeric,
    RingRefMissing,
    RingRefUngranted,
    EventChannelZero,
    EventChannelHuge,
    EventChannelNonNumeric,
    EventChannelUnoffered,
    /// `state` is not a number at Initialised.
    StateNonNumeric,
    /// `state` beyond the enum at Initialised.
    StateHuge,
}

impl NodeGarbage {
    pub const ALL: [NodeGarbage; 17] = [
        NodeGarbage::ProtocolX86_32,
        NodeGarbage::ProtocolUnknown,
        NodeGarbage::PersistentNotBoolean,
        NodeGarbage::QueuesZero,
        NodeGarbage::QueuesHuge,
        NodeGarbage::QueuesNonNumeric,
        NodeGarbage::OrderHuge,
        NodeGarbage::OrderNonNumeric,
        NodeGarbage::RingRefNonNumeric,
        NodeGarbage::RingRefMissing,
        NodeGarbage::RingRefUngranted,
        NodeGarbage::EventChannelZero,
        NodeGarbage::EventChannelHuge,
        NodeGarbage::EventChannelNonNumeric,
        NodeGarbage::EventChannelUnoffered,
        NodeGarbage::StateNonNumeric,
        NodeGarbage::StateHuge,
    ];

    pub fn name(self) -> &'static str {
        match self {
            NodeGarbage::ProtocolX86_32 => "node-protocol-x86-32",
            NodeGarbage::ProtocolUnknown => "node-protocol-unknown",
            NodeGarbage::PersistentNotBoolean => "node-persistent-not-boolean",
            NodeGarbage::QueuesZero => "node-queues-zero",
            NodeGarbage::QueuesHuge => "node-queues-huge",
            NodeGarbage::QueuesNonNumeric => "node-queues-non-numeric",
            NodeGarbage::OrderHuge => "node-order-huge",
            NodeGarbage::OrderNonNumeric => "node-order-non-numeric",
            NodeGarbage::RingRefNonNumeric => "node-ring-ref-non-numeric",
            NodeGarbage::RingRefMissing => "node-ring-ref-missing",
            NodeGarbage::RingRefUngranted => "node-ring-ref-ungranted",
            NodeGarbage::EventChannelZero => "node-event-channel-zero",
            NodeGarbage::EventChannelHuge => "node-event-channel-huge",
            NodeGarbage::EventChannelNonNumeric => "node-event-channel-non-numeric",
            NodeGarbage::EventChannelUnoffered => "node-event-channel-unoffered",
            NodeGarbage::StateNonNumeric => "node-state-non-numeric",
            NodeGarbage::StateHuge => "node-state-huge",
        }
    }

    /// Spoils the negotiation (order 0, one queue) about to be written.
    pub fn corrupt(self, negotiation: &mut Negotiation) {
        match self {
            NodeGarbage::ProtocolX86_32 => negotiation.set("protocol", "x86_32-abi"),
            NodeGarbage::ProtocolUnknown => negotiation.set("protocol", "x86_65-abi"),
            NodeGarbage::PersistentNotBoolean => negotiation.set("feature-persistent", "yes"),
            NodeGarbage::QueuesZero => negotiation.set("multi-queue-num-queues", "0"),
            NodeGarbage::QueuesHuge => negotiation.set("multi-queue-num-queues", "4294967295"),
            NodeGarbage::QueuesNonNumeric => negotiation.set("multi-queue-num-queues", "two"),
            NodeGarbage::OrderHuge => negotiation.set("ring-page-order", "31"),
            NodeGarbage::OrderNonNumeric => negotiation.set("ring-page-order", "0x1"),
            NodeGarbage::RingRefNonNumeric => negotiation.set("ring-ref", "12ab"),
            NodeGarbage::RingRefMissing => negotiation.remove("ring-ref"),
            NodeGarbage::RingRefUngranted => {
                negotiation.set("ring-ref", &UNGRANTED_REF.to_string())
            }
            NodeGarbage::EventChannelZero => negotiation.set("event-channel", "0"),
            NodeGarbage::EventChannelHuge => negotiation.set("event-channel", "4294967296"),
            NodeGarbage::EventChannelNonNumeric => negotiation.set("event-channel", "-1"),
            NodeGarbage::EventChannelUnoffered => {
                negotiation.set("event-channel", &UNOFFERED_PORT.to_string())
            }
            NodeGarbage::StateNonNumeric => negotiation.set("state", "Initialised"),
            NodeGarbage::StateHuge => negotiation.set("state", "99"),
        }
    }

    /// True when only Xen can refuse the value (a well-formed ref or port that does not map or
    /// bind), so that grantsvc's node decoder accepts it.
    pub fn refused_by_xen(self) -> bool {
        matches!(
            self,
            NodeGarbage::RingRefUngranted | NodeGarbage::EventChannelUnoffered
        )
    }

    /// True when the garbage is in `state`: the backend may never read the other nodes.
    pub fn in_state(self) -> bool {
        matches!(self, NodeGarbage::StateNonNumeric | NodeGarbage::StateHuge)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use grantsvc::peer::blkif::frontend_nodes::{
        BackendOffer, FrontendConfig, FrontendFault, FrontendNodes,
    };

    struct Nodes<'a>(&'a Negotiation);

    impl FrontendNodes for Nodes<'_> {
        fn read(&self, key: &str) -> Option<&[u8]> {
            self.0.get(key).map(str::as_bytes)
        }
    }

    const OFFER: BackendOffer = BackendOffer {
        max_ring_page_order: 4,
        max_queues: 1,
        max_indirect_segments: 256,
    };

    fn negotiation() -> Negotiation {
        Negotiation::new(&[GrantRef::new(8)], 0, EvtchnPort::new(40).unwrap(), false)
    }

    #[test]
    fn a_clean_negotiation_is_what_blkfront_writes_and_grantsvc_accepts() {
        let clean = negotiation();
        let names: Vec<&str> = clean.nodes.iter().map(|(name, _)| name.as_str()).collect();
        assert_eq!(
            names,
            [
                "ring-ref",
                "event-channel",
                "protocol",
                "feature-persistent",
                "state"
            ]
        );
        let config = FrontendConfig::decode(&Nodes(&clean), &OFFER).unwrap();
        assert_eq!(config.queues[0].ring_refs, [GrantRef::new(8)]);
        let order_two = Negotiation::new(
            &[1, 2, 3, 4].map(GrantRef::new),
            2,
            EvtchnPort::new(40).unwrap(),
            true,
        );
        let config = FrontendConfig::decode(&Nodes(&order_two), &OFFER).unwrap();
        assert_eq!((config.ring_page_order, config.persistent), (2, true));
        assert_eq!(config.queues[0].ring_refs.len(), 4);
    }

    #[test]
    fn every_node_garbage_is_refused_by_grantsvc_or_left_to_xen() {
        for kind in NodeGarbage::ALL {
            let mut spoiled = negotiation();
            kind.corrupt(&mut spoiled);
            assert_ne!(spoiled, negotiation(), "{kind:?} changed nothing");
            if kind.in_state() {
                assert!(XenbusState::parse(spoiled.get("state").unwrap().as_bytes()).is_err());
                continue;
            }
            let decoded = FrontendConfig::decode(&Nodes(&spoiled), &OFFER);
            match (kind.refused_by_xen(), decoded) {
                (false, Err(fault)) => {
                    if kind == NodeGarbage::ProtocolX86_32 {
                        assert_eq!(fault, FrontendFault::X86_32Refused);
                    }
                }
                (true, Ok(_)) => {}
                (refused_by_xen, result) => {
                    panic!("{kind:?} (Xen's to refuse: {refused_by_xen}): {result:?}")
                }
            }
        }
    }

    #[test]
    fn the_toolstack_nodes_are_libxls() {
        let attach = Attach {
            backend: DomId::new(3).unwrap(),
            frontend: DomId::DOM0,
            devid: 51728,
            target: "ram:16M".to_string(),
            writable: false,
        };
        let backend = attach.backend_nodes();
        assert!(backend.contains(&("frontend", "/local/domain/0/device/vbd/51728".to_string())));
        assert!(backend.contains(&("params", "ram:16M".to_string())));
        assert!(backend.contains(&("mode", "r".to_string())));
        assert!(attach
            .frontend_nodes()
            .contains(&("backend", "/local/domain/3/backend/vbd/0/51728".to_string())));
    }
}
