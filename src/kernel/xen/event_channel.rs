//! `HYPERVISOR_event_channel_op`: allocate, bind, send, close, unmask, and query event channels.

use super::hypercall::hypercall2;
use grantsvc::abi::event_channel::{
    status, EvtchnBindInterdomain, EvtchnBindVirq, EvtchnPortArgument, EvtchnStatus,
    EVTCHNOP_BIND_INTERDOMAIN, EVTCHNOP_BIND_VIRQ, EVTCHNOP_CLOSE, EVTCHNOP_SEND, EVTCHNOP_STATUS,
    EVTCHNOP_UNMASK,
};
#[cfg(any(test, feature = "lab"))]
use grantsvc::abi::event_channel::{EvtchnAllocUnbound, EVTCHNOP_ALLOC_UNBOUND};
use grantsvc::abi::hypercall_numbers::EVENT_CHANNEL_OP;
use grantsvc::hypervisor::XenError;
use grantsvc::ids::{DomId, EvtchnPort};

/// One event-channel operation on an argument struct of ours.
fn operation<T>(command: u32, argument: &mut T) -> Result<(), XenError> {
    // SAFETY: every EVTCHNOP_* used here reads and writes exactly its argument struct, which
    // the caller passes by exclusive reference for the duration of the call.
    let result = unsafe {
        hypercall2(
            EVENT_CHANNEL_OP,
            u64::from(command),
            core::ptr::from_mut(argument) as u64,
        )
    };
    XenError::check(result).map(|_| ())
}

/// A port Xen handed back. Xen never names one beyond the FIFO ABI's limit; if it did, the answer
/// is refused as an invalid one rather than trusted.
fn port_from_xen(raw: u32) -> Result<EvtchnPort, XenError> {
    EvtchnPort::new(raw).ok_or(XenError::EINVAL)
}

/// A domain Xen named in a port's status: always an ordinary domain for an inter-domain or
/// unbound port (Xen resolves `DOMID_SELF` when the port is made), refused otherwise.
fn domain_from_xen(raw: u32) -> Result<DomId, XenError> {
    u16::try_from(raw)
        .ok()
        .and_then(DomId::new)
        .ok_or(XenError::EINVAL)
}

/// A new port of ours that `remote` may bind to.
#[cfg(any(test, feature = "lab"))]
pub fn alloc_unbound(remote: DomId) -> Result<EvtchnPort, XenError> {
    let mut argument = EvtchnAllocUnbound {
        dom: DomId::SELF.get(),
        remote_dom: remote.get(),
        port: 0,
    };
    operation(EVTCHNOP_ALLOC_UNBOUND, &mut argument)?;
    port_from_xen(argument.port)
}

/// A new port of ours connected to `remote_port` of `remote`.
pub fn bind_interdomain(remote: DomId, remote_port: EvtchnPort) -> Result<EvtchnPort, XenError> {
    let mut argument = EvtchnBindInterdomain {
        remote_dom: remote.get(),
        remote_port: remote_port.get(),
        local_port: 0,
    };
    operation(EVTCHNOP_BIND_INTERDOMAIN, &mut argument)?;
    port_from_xen(argument.local_port)
}

/// A new port of ours that Xen raises for virtual interrupt `virq` on `vcpu`.
pub fn bind_virq(virq: u32, vcpu: u32) -> Result<EvtchnPort, XenError> {
    let mut argument = EvtchnBindVirq {
        virq,
        vcpu,
        port: 0,
    };
    operation(EVTCHNOP_BIND_VIRQ, &mut argument)?;
    port_from_xen(argument.port)
}

/// Notifies the other end of `port`.
pub fn send(port: EvtchnPort) -> Result<(), XenError> {
    operation(EVTCHNOP_SEND, &mut EvtchnPortArgument { port: port.get() })
}

/// Closes `port`.
pub fn close(port: EvtchnPort) -> Result<(), XenError> {
    operation(EVTCHNOP_CLOSE, &mut EvtchnPortArgument { port: port.get() })
}

/// Unmasks `port` (Xen re-raises the upcall if it is pending).
pub fn unmask(port: EvtchnPort) -> Result<(), XenError> {
    operation(
        EVTCHNOP_UNMASK,
        &mut EvtchnPortArgument { port: port.get() },
    )
}

/// What one of our ports is bound to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PortStatus {
    Closed,
    Unbound {
        remote: DomId,
    },
    Interdomain {
        remote: DomId,
        remote_port: EvtchnPort,
    },
    Pirq(u32),
    Virq(u32),
    Ipi,
    Unknown(u32),
}

/// The status of one of our ports.
pub fn port_status(port: EvtchnPort) -> Result<PortStatus, XenError> {
    let mut argument = EvtchnStatus {
        dom: DomId::SELF.get(),
        port: port.get(),
        ..EvtchnStatus::default()
    };
    operation(EVTCHNOP_STATUS, &mut argument)?;
    let [first, second] = argument.u;
    Ok(match argument.status {
        status::CLOSED => PortStatus::Closed,
        status::UNBOUND => PortStatus::Unbound {
            remote: domain_from_xen(first)?,
        },
        status::INTERDOMAIN => PortStatus::Interdomain {
            remote: domain_from_xen(first)?,
            remote_port: port_from_xen(second)?,
        },
        status::PIRQ => PortStatus::Pirq(first),
        status::VIRQ => PortStatus::Virq(first),
        status::IPI => PortStatus::Ipi,
        other => PortStatus::Unknown(other),
    })
}

#[cfg(test)]
mod tests;
