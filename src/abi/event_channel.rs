//! Xen ABI: `HYPERVISOR_event_channel_op` sub-operations and their argument structs (`public/event_channel.h`).

pub const EVTCHNOP_BIND_INTERDOMAIN: u32 = 0;
pub const EVTCHNOP_BIND_VIRQ: u32 = 1;
pub const EVTCHNOP_CLOSE: u32 = 3;
pub const EVTCHNOP_SEND: u32 = 4;
pub const EVTCHNOP_STATUS: u32 = 5;
pub const EVTCHNOP_ALLOC_UNBOUND: u32 = 6;
pub const EVTCHNOP_UNMASK: u32 = 9;

/// `VIRQ_TIMER`: the virtual interrupt `set_timer_op`'s one-shot timer raises (`public/xen.h`).
pub const VIRQ_TIMER: u32 = 0;

/// Ports of the 2-level event-channel ABI on x86-64 (64 words of 64 bits).
pub const EVTCHN_2L_NR_CHANNELS: u32 = 64 * 64;

/// `struct evtchn_alloc_unbound`: a port `remote_dom` may bind to.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct EvtchnAllocUnbound {
    pub dom: u16,
    pub remote_dom: u16,
    /// Out: the new local port.
    pub port: u32,
}

/// `struct evtchn_bind_interdomain`: binds a local port to `remote_port` of `remote_dom`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct EvtchnBindInterdomain {
    pub remote_dom: u16,
    pub remote_port: u32,
    /// Out: the new local port.
    pub local_port: u32,
}

/// `struct evtchn_bind_virq`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct EvtchnBindVirq {
    pub virq: u32,
    pub vcpu: u32,
    /// Out: the new local port.
    pub port: u32,
}

/// `struct evtchn_close`, `struct evtchn_send` and `struct evtchn_unmask`: one port.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct EvtchnPortArgument {
    pub port: u32,
}

/// `EVTCHNSTAT_*`: what an event channel is bound to.
pub mod status {
    pub const CLOSED: u32 = 0;
    pub const UNBOUND: u32 = 1;
    pub const INTERDOMAIN: u32 = 2;
    pub const PIRQ: u32 = 3;
    pub const VIRQ: u32 = 4;
    pub const IPI: u32 = 5;
}

/// `struct evtchn_status`. The union `u` is kept as raw words: `u.unbound.dom` and
/// `u.interdomain.dom` are the low 16 bits of `u[0]`, `u.interdomain.port` is `u[1]`,
/// `u.pirq` and `u.virq` are `u[0]`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct EvtchnStatus {
    pub dom: u16,
    pub port: u32,
    /// Out: `EVTCHNSTAT_*`.
    pub status: u32,
    /// Out: the vcpu the channel notifies.
    pub vcpu: u32,
    /// Out: the status-specific union.
    pub u: [u32; 2],
}
