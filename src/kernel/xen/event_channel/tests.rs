//! Host tests of the event-channel operations against the fake Xen: the argument struct each one passes, the answer it takes back.

use super::super::fake_xen::{struct_mut, with_xen, Call};
use super::*;
use std::vec::Vec;

fn port(raw: u32) -> EvtchnPort {
    EvtchnPort::new(raw).unwrap()
}

fn domain(raw: u16) -> DomId {
    DomId::new(raw).unwrap()
}

/// Xen's view of the operation's argument struct.
fn argument<'call, T>(call: &Call) -> &'call mut T {
    assert_eq!(call.number, EVENT_CHANNEL_OP);
    // SAFETY: every EVTCHNOP_* passes one argument struct of the operation's type, which
    // `operation` borrows exclusively for the call.
    unsafe { struct_mut::<T>(call.arguments[1]) }
}

#[test]
fn binding_operations_send_their_struct_and_take_xens_port() {
    let xen = |call: &Call| {
        match call.arguments[0] as u32 {
            EVTCHNOP_ALLOC_UNBOUND => {
                let request = argument::<EvtchnAllocUnbound>(call);
                assert_eq!((request.dom, request.remote_dom), (DomId::SELF.get(), 3));
                request.port = 11;
            }
            EVTCHNOP_BIND_INTERDOMAIN => {
                let request = argument::<EvtchnBindInterdomain>(call);
                assert_eq!((request.remote_dom, request.remote_port), (4, 40));
                request.local_port = 12;
            }
            EVTCHNOP_BIND_VIRQ => {
                let request = argument::<EvtchnBindVirq>(call);
                assert_eq!((request.virq, request.vcpu), (0, 0));
                request.port = 13;
            }
            other => panic!("unexpected EVTCHNOP {other}"),
        }
        0
    };
    let (ports, calls) = with_xen(xen, || {
        (
            alloc_unbound(domain(3)),
            bind_interdomain(domain(4), port(40)),
            bind_virq(0, 0),
        )
    });
    assert_eq!(ports, (Ok(port(11)), Ok(port(12)), Ok(port(13))));
    assert_eq!(calls.len(), 3);
}

#[test]
fn a_port_xen_answers_beyond_any_abi_is_refused() {
    let xen = |call: &Call| {
        argument::<EvtchnAllocUnbound>(call).port = 1 << 20;
        0
    };
    let (result, _) = with_xen(xen, || alloc_unbound(domain(3)));
    assert_eq!(result, Err(XenError::EINVAL));
}

#[test]
fn send_close_and_unmask_pass_the_port_and_return_xens_error() {
    let seen = std::rc::Rc::new(std::cell::RefCell::new(Vec::new()));
    let record = seen.clone();
    let xen = move |call: &Call| {
        let request = argument::<EvtchnPortArgument>(call);
        record
            .borrow_mut()
            .push((call.arguments[0] as u32, request.port));
        if request.port == 99 {
            XenError::EINVAL.0
        } else {
            0
        }
    };
    let (results, _) = with_xen(xen, || (send(port(5)), close(port(6)), unmask(port(99))));
    assert_eq!(results, (Ok(()), Ok(()), Err(XenError::EINVAL)));
    assert_eq!(
        *seen.borrow(),
        [
            (EVTCHNOP_SEND, 5),
            (EVTCHNOP_CLOSE, 6),
            (EVTCHNOP_UNMASK, 99)
        ]
    );
}

#[test]
fn port_status_decodes_each_kind_and_refuses_impossible_answers() {
    let answer = |kind: u32, first: u32, second: u32| {
        move |call: &Call| {
            let request = argument::<EvtchnStatus>(call);
            assert_eq!((request.dom, request.port), (DomId::SELF.get(), 8));
            request.status = kind;
            request.u = [first, second];
            0
        }
    };
    let status_of =
        |kind, first, second| with_xen(answer(kind, first, second), || port_status(port(8))).0;
    assert_eq!(status_of(status::CLOSED, 0, 0), Ok(PortStatus::Closed));
    assert_eq!(
        status_of(status::UNBOUND, 3, 0),
        Ok(PortStatus::Unbound { remote: domain(3) })
    );
    assert_eq!(
        status_of(status::INTERDOMAIN, 4, 40),
        Ok(PortStatus::Interdomain {
            remote: domain(4),
            remote_port: port(40)
        })
    );
    assert_eq!(status_of(status::VIRQ, 0, 0), Ok(PortStatus::Virq(0)));
    assert_eq!(status_of(77, 0, 0), Ok(PortStatus::Unknown(77)));
    // A remote that is no ordinary domain, or a remote port beyond the ABI, is not trusted.
    assert_eq!(status_of(status::UNBOUND, 0x7ff0, 0), Err(XenError::EINVAL));
    assert_eq!(
        status_of(status::INTERDOMAIN, 4, 1 << 20),
        Err(XenError::EINVAL)
    );
}
