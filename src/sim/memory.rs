//! Loads and stores through the simulated page tables: a virtual address is translated by walking them, so an access proves the mapping.

use super::machine::SimXen;
use crate::abi::mmu::pte;
use crate::addr::{Mfn, VirtAddr, PAGE_SIZE};
use crate::hypervisor::{ByteUpdate, MemoryFault, VirtualMemory};

impl SimXen {
    /// The machine frame and offset `address` translates to, if mapped (and writable when `write`).
    pub fn translate(&self, address: VirtAddr, write: bool) -> Option<(Mfn, usize)> {
        let mut table = self.root;
        for level in (1..=4).rev() {
            let entry = self.read_raw(table, address.table_index(level));
            if entry & pte::PRESENT == 0 || (write && entry & pte::WRITABLE == 0) {
                return None;
            }
            table = Mfn::of_page_table_entry(entry);
        }
        Some((table, (address.as_u64() % PAGE_SIZE as u64) as usize))
    }

    /// Visits each page-sized piece of an access of `length` bytes at `address`.
    fn for_each_piece(
        &mut self,
        address: VirtAddr,
        length: usize,
        write: bool,
        mut piece: impl FnMut(&mut [u8], usize),
    ) -> Result<(), MemoryFault> {
        let fault = MemoryFault { address, write };
        let mut done = 0;
        while done < length {
            let here = address.checked_add(done as u64).ok_or(fault)?;
            let (frame, offset) = self.translate(here, write).ok_or(fault)?;
            let take = (PAGE_SIZE - offset).min(length - done);
            let data = self
                .frames
                .get_mut(frame.get() as usize)
                .ok_or(fault)?
                .data
                .bytes_mut();
            piece(&mut data[offset..offset + take], done);
            done += take;
        }
        Ok(())
    }
}

impl VirtualMemory for SimXen {
    fn read_virtual(&self, address: VirtAddr, into: &mut [u8]) -> Result<(), MemoryFault> {
        let fault = MemoryFault {
            address,
            write: false,
        };
        let mut done = 0;
        while done < into.len() {
            let here = address.checked_add(done as u64).ok_or(fault)?;
            let (frame, offset) = self.translate(here, false).ok_or(fault)?;
            let take = (PAGE_SIZE - offset).min(into.len() - done);
            let data = self
                .frames
                .get(frame.get() as usize)
                .ok_or(fault)?
                .data
                .bytes();
            into[done..done + take].copy_from_slice(&data[offset..offset + take]);
            done += take;
        }
        Ok(())
    }

    fn write_virtual(&mut self, address: VirtAddr, from: &[u8]) -> Result<(), MemoryFault> {
        self.for_each_piece(address, from.len(), true, |target, done| {
            target.copy_from_slice(&from[done..done + target.len()]);
        })
    }

    fn load_u32_virtual(&self, address: VirtAddr) -> Result<u32, MemoryFault> {
        let mut bytes = [0; 4];
        self.read_virtual(address, &mut bytes)?;
        Ok(u32::from_le_bytes(bytes))
    }

    fn store_u32_virtual(&mut self, address: VirtAddr, value: u32) -> Result<(), MemoryFault> {
        self.write_virtual(address, &value.to_le_bytes())
    }

    fn update_u8_virtual(
        &mut self,
        address: VirtAddr,
        operation: ByteUpdate,
    ) -> Result<u8, MemoryFault> {
        let mut old = [0; 1];
        self.read_virtual(address, &mut old)?;
        let new = match operation {
            ByteUpdate::Load => return Ok(old[0]),
            ByteUpdate::Store(value) => value,
            ByteUpdate::Or(bits) => old[0] | bits,
            ByteUpdate::And(bits) => old[0] & bits,
        };
        self.write_virtual(address, &[new])?;
        Ok(old[0])
    }
}
