//! Hypervisor interface: event channels through Linux's `/dev/xen/evtchn` (all of this tool's unsafe for it).
//!
//! Layouts from Linux `include/uapi/xen/evtchn.h`: `IOCTL_EVTCHN_BIND_UNBOUND_PORT` allocates a
//! new port that `remote_domain` may bind to and returns it (as `xenevtchn_bind_unbound_port`
//! does); reading the file yields the 32-bit numbers of ports that fired, and writing a port
//! number back unmasks it. Closing the file unbinds every port it holds.

use grantsvc::ids::{DomId, EvtchnPort};
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::fd::AsRawFd;
use std::time::Duration;

const fn ioctl_none(kind: u8, number: u8, size: usize) -> libc::c_ulong {
    ((size as libc::c_ulong) << 16) | ((kind as libc::c_ulong) << 8) | number as libc::c_ulong
}

/// `struct ioctl_evtchn_bind_unbound_port`.
#[repr(C)]
struct BindUnboundPort {
    remote_domain: libc::c_uint,
}

/// `struct ioctl_evtchn_unbind` (and `_notify`: the same layout).
#[repr(C)]
struct PortRequest {
    port: libc::c_uint,
}

const IOCTL_EVTCHN_BIND_UNBOUND_PORT: libc::c_ulong =
    ioctl_none(b'E', 2, std::mem::size_of::<BindUnboundPort>());
const IOCTL_EVTCHN_UNBIND: libc::c_ulong = ioctl_none(b'E', 3, std::mem::size_of::<PortRequest>());
const IOCTL_EVTCHN_NOTIFY: libc::c_ulong = ioctl_none(b'E', 4, std::mem::size_of::<PortRequest>());

/// An open `/dev/xen/evtchn`.
pub struct EventChannels {
    device: File,
}

impl EventChannels {
    pub fn open() -> io::Result<EventChannels> {
        let device = OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/xen/evtchn")?;
        Ok(EventChannels { device })
    }

    /// Allocates a port that `remote` may bind to.
    pub fn allocate_unbound(&self, remote: DomId) -> io::Result<EvtchnPort> {
        let request = BindUnboundPort {
            remote_domain: libc::c_uint::from(remote.get()),
        };
        // SAFETY: the ioctl only reads `request`, which lives across the call.
        let result = unsafe {
            libc::ioctl(
                self.device.as_raw_fd(),
                IOCTL_EVTCHN_BIND_UNBOUND_PORT,
                &request as *const BindUnboundPort,
            )
        };
        let raw = u32::try_from(result).map_err(|_| io::Error::last_os_error())?;
        EvtchnPort::new(raw).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("the kernel allocated port {raw}, beyond any event-channel ABI"),
            )
        })
    }

    /// Closes `port`.
    pub fn unbind(&self, port: EvtchnPort) -> io::Result<()> {
        let request = PortRequest { port: port.get() };
        // SAFETY: the ioctl only reads `request`, which lives across the call.
        let result = unsafe {
            libc::ioctl(
                self.device.as_raw_fd(),
                IOCTL_EVTCHN_UNBIND,
                &request as *const PortRequest,
            )
        };
        if result < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Signals the other end of `port` (`IOCTL_EVTCHN_NOTIFY`).
    pub fn notify(&self, port: EvtchnPort) -> io::Result<()> {
        let request = PortRequest { port: port.get() };
        // SAFETY: the ioctl only reads `request`, which lives across the call.
        let result = unsafe {
            libc::ioctl(
                self.device.as_raw_fd(),
                IOCTL_EVTCHN_NOTIFY,
                &request as *const PortRequest,
            )
        };
        if result < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Waits up to `timeout` for a port to fire; returns it (unmasked again) or `None`.
    pub fn wait(&mut self, timeout: Duration) -> io::Result<Option<EvtchnPort>> {
        let mut poll = libc::pollfd {
            fd: self.device.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        let milliseconds = libc::c_int::try_from(timeout.as_millis()).unwrap_or(libc::c_int::MAX);
        // SAFETY: one valid `pollfd` that lives across the call.
        let ready = unsafe { libc::poll(&mut poll, 1, milliseconds) };
        if ready < 0 {
            return Err(io::Error::last_os_error());
        }
        if ready == 0 {
            return Ok(None);
        }
        let mut bytes = [0u8; 4];
        self.device.read_exact(&mut bytes)?;
        self.device.write_all(&bytes)?;
        let raw = u32::from_ne_bytes(bytes);
        EvtchnPort::new(raw).map(Some).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("the kernel reported port {raw}, beyond any event-channel ABI"),
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_numbers_match_the_linux_header() {
        // _IOC(_IOC_NONE, 'E', 2, 4) and _IOC(_IOC_NONE, 'E', 3, 4).
        assert_eq!(IOCTL_EVTCHN_BIND_UNBOUND_PORT, 0x0004_4502);
        assert_eq!(IOCTL_EVTCHN_UNBIND, 0x0004_4503);
        assert_eq!(IOCTL_EVTCHN_NOTIFY, 0x0004_4504);
    }
}
