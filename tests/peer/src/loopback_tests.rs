//! The tool's frontend checks against grantsvc's own backend session, in-process: both sides of the protocol must agree.

use crate::frontend::{BackendResults, Publication, Shared};
use crate::garbage::{Expectation, Garbage};
use grantsvc::addr::PAGE_SIZE;
use grantsvc::ids::DomId;
use grantsvc::ids::{EvtchnPort, GrantRef};
use grantsvc::peer::device_id::DeviceId;
use grantsvc::peer::share::nodes::RawFrontendNodes;
use grantsvc::peer::share::protocol::ShareMapping;
use grantsvc::peer::share::session::{ShareAction, ShareEvent, ShareSession};
use grantsvc::shared_memory::{check_bounds, OutOfBounds, SharedMemory};
use std::cell::RefCell;
use std::rc::Rc;

/// The pages, seen by both "domains".
#[derive(Clone, Debug)]
struct Pages(Rc<RefCell<Vec<u8>>>);

impl SharedMemory for Pages {
    fn size(&self) -> usize {
        self.0.borrow().len()
    }
    fn read_bytes(&self, offset: usize, into: &mut [u8]) -> Result<(), OutOfBounds> {
        check_bounds(offset, into.len(), self.size())?;
        into.copy_from_slice(&self.0.borrow()[offset..offset + into.len()]);
        Ok(())
    }
    fn write_bytes(&self, offset: usize, from: &[u8]) -> Result<(), OutOfBounds> {
        check_bounds(offset, from.len(), self.size())?;
        self.0.borrow_mut()[offset..offset + from.len()].copy_from_slice(from);
        Ok(())
    }
    fn load_u32(&self, _: usize) -> Result<u32, OutOfBounds> {
        unreachable!("grant-share uses byte copies only")
    }
    fn store_u32(&self, _: usize, _: u32) -> Result<(), OutOfBounds> {
        unreachable!("grant-share uses byte copies only")
    }
    fn load_u8(&self, _: usize) -> Result<u8, OutOfBounds> {
        unreachable!("grant-share uses byte copies only")
    }
    fn store_u8(&self, _: usize, _: u8) -> Result<(), OutOfBounds> {
        unreachable!("grant-share uses byte copies only")
    }
    fn fetch_or_u8(&self, _: usize, _: u8) -> Result<u8, OutOfBounds> {
        unreachable!("grant-share uses byte copies only")
    }
    fn fetch_and_u8(&self, _: usize, _: u8) -> Result<u8, OutOfBounds> {
        unreachable!("grant-share uses byte copies only")
    }
}

/// What the backend published, as the tool would read it.
#[derive(Default)]
struct Backend {
    results: BackendResults,
    state: Option<String>,
}

impl Backend {
    fn apply(
        &mut self,
        actions: Vec<ShareAction<Pages>>,
        pages: &Pages,
    ) -> Vec<ShareEvent<'static, Pages>> {
        let mut follow_ups = Vec::new();
        let mut acknowledged = false;
        for action in actions {
            match action {
                ShareAction::WriteNodes(nodes) => {
                    // As xenstored: acknowledged once the batch is carried out.
                    acknowledged = true;
                    for (name, value) in nodes {
                        let slot = match name {
                            "mapped-pages" => &mut self.results.mapped_pages,
                            "pattern" => &mut self.results.pattern,
                            "digest" => &mut self.results.digest,
                            "answer" => &mut self.results.answer,
                            "error" => &mut self.results.error,
                            "state" => &mut self.state,
                            other => panic!("unexpected node {other}"),
                        };
                        *slot = Some(value);
                    }
                }
                ShareAction::MapGrants { .. } => follow_ups.push(ShareEvent::Mapped {
                    purpose: ShareMapping::Pages,
                    result: Ok(pages.clone()),
                }),
                ShareAction::BindInterdomain { remote_port, .. } => {
                    follow_ups.push(ShareEvent::PortBound(if remote_port.0 < 4096 {
                        Ok(EvtchnPort::new(9).unwrap())
                    } else {
                        Err(-22)
                    }))
                }
                _ => {}
            }
        }
        if acknowledged {
            follow_ups.push(ShareEvent::OwnNodesWritten);
        }
        follow_ups
    }
}

/// Runs one share of `count` pages through grantsvc's session; returns the backend's nodes.
fn exchange(count: u32, writable: bool, garbage: Option<Garbage>) -> (Shared, Pages, Backend) {
    let shared = Shared {
        pages: count,
        seed: 0x1234_5678,
        writable,
        corrupted: garbage.and_then(|kind| kind.corrupted_byte(count)),
    };
    let pages = Pages(Rc::new(RefCell::new(vec![0; count as usize * PAGE_SIZE])));
    for number in 0..count {
        pages
            .write_bytes(number as usize * PAGE_SIZE, &shared.written_page(number))
            .unwrap();
    }
    let refs: Vec<GrantRef> = (0..count).map(|index| GrantRef::new(100 + index)).collect();
    let mut publication =
        Publication::new(&refs, EvtchnPort::new(30).unwrap(), shared.seed, writable);
    if let Some(kind) = garbage {
        kind.corrupt(&mut publication);
    }
    let (mut session, actions) = ShareSession::new(DomId::new(0).unwrap(), DeviceId(0));
    let mut backend = Backend::default();
    backend.apply(actions, &pages);
    assert_eq!(backend.state.as_deref(), Some("2"));
    backend.apply(session.handle(ShareEvent::PeerState(b"3")), &pages);
    let raw = RawFrontendNodes {
        nr_pages: Some(publication.nr_pages.as_bytes()),
        refs: Some(publication.refs.as_bytes()),
        event_channel: Some(publication.event_channel.as_bytes()),
        pattern_seed: Some(publication.pattern_seed.as_bytes()),
        writable: Some(publication.writable.as_bytes()),
    };
    let mut events = backend.apply(
        session.handle(ShareEvent::PeerNodesRead(&raw.to_peer_nodes())),
        &pages,
    );
    while let Some(event) = events.pop() {
        events.extend(backend.apply(session.handle(event), &pages));
    }
    (shared, pages, backend)
}

fn page(pages: &Pages, number: u32) -> Vec<u8> {
    let mut bytes = vec![0; PAGE_SIZE];
    pages
        .read_bytes(number as usize * PAGE_SIZE, &mut bytes)
        .unwrap();
    bytes
}

#[test]
fn grantsvcs_answer_passes_the_tools_checks() {
    for writable in [true, false] {
        let (shared, pages, backend) = exchange(5, writable, None);
        assert_eq!(backend.state.as_deref(), Some("4"));
        assert_eq!(shared.check_results(&backend.results), Ok(()));
        for number in 0..5 {
            assert_eq!(shared.check_page(number, &page(&pages, number)), Ok(()));
        }
    }
}

#[test]
fn a_corrupted_pattern_is_reported_where_the_tool_expects() {
    let (shared, pages, backend) = exchange(3, true, Some(Garbage::Pattern));
    assert_eq!(backend.state.as_deref(), Some("4"));
    assert_eq!(shared.check_results(&backend.results), Ok(()));
    assert_eq!(shared.check_page(2, &page(&pages, 2)), Ok(()));
}

#[test]
fn every_refusal_the_tool_expects_is_the_one_grantsvc_gives() {
    for kind in Garbage::ALL {
        let Expectation::Refused(text) = kind.expectation(3) else {
            continue;
        };
        if kind == Garbage::RefsUngranted {
            continue; // only Xen refuses it
        }
        let (_, _, backend) = exchange(3, true, Some(kind));
        assert_eq!(backend.state.as_deref(), Some("6"), "{kind:?}");
        let error = backend.results.error.unwrap_or_default();
        assert!(error.contains(&text), "{kind:?}: '{error}' lacks '{text}'");
        assert_eq!(backend.results.mapped_pages.as_deref(), Some("0"));
    }
}
