//! Xen ABI: `struct xencons_interface`, the PV console ring page (`public/io/console.h`).

/// Bytes of the input ring (from the console daemon to the guest).
pub const IN_RING_SIZE: usize = 1024;
/// Bytes of the output ring (from the guest to the console daemon).
pub const OUT_RING_SIZE: usize = 2048;

/// `struct xencons_interface`. Indices are free-running; `index & (size - 1)` is the byte offset.
#[repr(C)]
pub struct XenconsInterface {
    pub input: [u8; IN_RING_SIZE],
    pub output: [u8; OUT_RING_SIZE],
    pub in_cons: u32,
    pub in_prod: u32,
    pub out_cons: u32,
    pub out_prod: u32,
}

/// Byte offset of `input` in the page.
pub const OFFSET_IN: usize = core::mem::offset_of!(XenconsInterface, input);
/// Byte offset of `output` in the page.
pub const OFFSET_OUT: usize = core::mem::offset_of!(XenconsInterface, output);
/// Byte offset of `in_cons`.
pub const OFFSET_IN_CONS: usize = core::mem::offset_of!(XenconsInterface, in_cons);
/// Byte offset of `in_prod`.
pub const OFFSET_IN_PROD: usize = core::mem::offset_of!(XenconsInterface, in_prod);
/// Byte offset of `out_cons`.
pub const OFFSET_OUT_CONS: usize = core::mem::offset_of!(XenconsInterface, out_cons);
/// Byte offset of `out_prod`.
pub const OFFSET_OUT_PROD: usize = core::mem::offset_of!(XenconsInterface, out_prod);
