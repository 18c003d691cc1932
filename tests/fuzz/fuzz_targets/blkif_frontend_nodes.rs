//! Fuzz target: a frontend's arbitrary xenstore nodes through the blkif frontend-node decoder.
//!
//! The input is `key=value` lines (the fuzzer finds the key names from the dictionary it
//! builds). Properties: nothing panics; a decoded configuration keeps every bound the offer set
//! (1..=max queues, order <= max, `2^order` ring refs per queue, ports in range).
#![no_main]

use grantsvc::peer::blkif::frontend_nodes::{BackendOffer, FrontendConfig, FrontendNodes};
use libfuzzer_sys::fuzz_target;
use std::collections::BTreeMap;

struct Nodes(BTreeMap<String, Vec<u8>>);

impl FrontendNodes for Nodes {
    fn read(&self, key: &str) -> Option<&[u8]> {
        self.0.get(key).map(Vec::as_slice)
    }
}

const OFFER: BackendOffer = BackendOffer {
    max_ring_page_order: 4,
    max_queues: 4,
    max_indirect_segments: 256,
};

fuzz_target!(|input: &[u8]| {
    let mut nodes = BTreeMap::new();
    for line in input.split(|&byte| byte == b'\n') {
        if let Some(split) = line.iter().position(|&byte| byte == b'=') {
            let (key, value) = line.split_at(split);
            nodes.insert(
                String::from_utf8_lossy(key).into_owned(),
                value[1..].to_vec(),
            );
        }
    }
    if let Ok(config) = FrontendConfig::decode(&Nodes(nodes), &OFFER) {
        assert!(!config.queues.is_empty() && config.queues.len() <= OFFER.max_queues as usize);
        assert!(config.ring_page_order <= OFFER.max_ring_page_order);
        for queue in &config.queues {
            assert_eq!(queue.ring_refs.len(), 1 << config.ring_page_order);
            // Through Display, so the check survives the port's number becoming private.
            let port: u32 = queue
                .event_channel
                .to_string()
                .parse()
                .expect("a decimal port");
            assert!(port > 0 && port < 1 << 17);
        }
    }
});
