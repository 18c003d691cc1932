//! Xen ABI: `struct xenstore_domain_interface`, the xenstore ring page (`public/io/xs_wire.h`).

/// Bytes of each of the request and response rings.
pub const XENSTORE_RING_SIZE: usize = 1024;
/// Largest payload of one xenstore message.
pub const XENSTORE_PAYLOAD_MAX: usize = 4096;
/// Longest absolute path.
pub const XENSTORE_ABS_PATH_MAX: usize = 3072;
/// Longest relative path.
pub const XENSTORE_REL_PATH_MAX: usize = 2048;

/// `server_features` bit: the server supports the reconnection protocol.
pub const XENSTORE_SERVER_FEATURE_RECONNECTION: u32 = 1;
/// `server_features` bit: the server reports errors in `error`.
pub const XENSTORE_SERVER_FEATURE_ERROR: u32 = 2;
/// `connection`: the steady state.
pub const XENSTORE_CONNECTED: u32 = 0;
/// `connection`: a reconnection is in progress.
pub const XENSTORE_RECONNECT: u32 = 1;

/// `struct xenstore_domain_interface`. Indices are free-running, masked with the ring size.
#[repr(C)]
pub struct XenstoreDomainInterface {
    /// Requests to the xenstore daemon.
    pub req: [u8; XENSTORE_RING_SIZE],
    /// Replies and asynchronous watch events.
    pub rsp: [u8; XENSTORE_RING_SIZE],
    pub req_cons: u32,
    pub req_prod: u32,
    pub rsp_cons: u32,
    pub rsp_prod: u32,
    pub server_features: u32,
    pub connection: u32,
    pub error: u32,
}

/// Byte offset of `req`.
pub const OFFSET_REQ: usize = core::mem::offset_of!(XenstoreDomainInterface, req);
/// Byte offset of `rsp`.
pub const OFFSET_RSP: usize = core::mem::offset_of!(XenstoreDomainInterface, rsp);
/// Byte offset of `req_cons`.
pub const OFFSET_REQ_CONS: usize = core::mem::offset_of!(XenstoreDomainInterface, req_cons);
/// Byte offset of `req_prod`.
pub const OFFSET_REQ_PROD: usize = core::mem::offset_of!(XenstoreDomainInterface, req_prod);
/// Byte offset of `rsp_cons`.
pub const OFFSET_RSP_CONS: usize = core::mem::offset_of!(XenstoreDomainInterface, rsp_cons);
/// Byte offset of `rsp_prod`.
pub const OFFSET_RSP_PROD: usize = core::mem::offset_of!(XenstoreDomainInterface, rsp_prod);
/// Byte offset of `server_features`.
pub const OFFSET_SERVER_FEATURES: usize =
    core::mem::offset_of!(XenstoreDomainInterface, server_features);
/// Byte offset of `connection`.
pub const OFFSET_CONNECTION: usize = core::mem::offset_of!(XenstoreDomainInterface, connection);
/// Byte offset of `error`.
pub const OFFSET_ERROR: usize = core::mem::offset_of!(XenstoreDomainInterface, error);
