//! A shared region over a plain byte vector, for the fuzz targets whose decoders read shared memory.

use grantsvc::shared_memory::{check_bounds, OutOfBounds, SharedMemory};
use std::cell::RefCell;
use std::rc::Rc;

/// The peer's shared bytes, as the fuzzer wrote them; clones share the bytes, as the peer's and
/// grantsvc's mappings of one page do.
#[derive(Clone)]
pub struct Memory(Rc<RefCell<Vec<u8>>>);

impl Memory {
    /// A region holding `bytes`.
    pub fn new(bytes: Vec<u8>) -> Memory {
        Memory(Rc::new(RefCell::new(bytes)))
    }
}

impl SharedMemory for Memory {
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
    fn load_u32(&self, offset: usize) -> Result<u32, OutOfBounds> {
        let mut bytes = [0; 4];
        self.read_bytes(offset, &mut bytes)?;
        Ok(u32::from_le_bytes(bytes))
    }
    fn store_u32(&self, offset: usize, value: u32) -> Result<(), OutOfBounds> {
        self.write_bytes(offset, &value.to_le_bytes())
    }
    fn load_u8(&self, offset: usize) -> Result<u8, OutOfBounds> {
        let mut byte = [0; 1];
        self.read_bytes(offset, &mut byte)?;
        Ok(byte[0])
    }
    fn store_u8(&self, offset: usize, value: u8) -> Result<(), OutOfBounds> {
        self.write_bytes(offset, &[value])
    }
    fn fetch_or_u8(&self, offset: usize, bits: u8) -> Result<u8, OutOfBounds> {
        let previous = self.load_u8(offset)?;
        self.store_u8(offset, previous | bits)?;
        Ok(previous)
    }
    fn fetch_and_u8(&self, offset: usize, bits: u8) -> Result<u8, OutOfBounds> {
        let previous = self.load_u8(offset)?;
        self.store_u8(offset, previous & bits)?;
        Ok(previous)
    }
}
