//! The echo service: every byte written back unchanged and in order, whatever it is.

use super::service::ByteService;
use crate::peer::counters::ServiceCounters;
use alloc::vec::Vec;

/// Echoes its input; counts what it echoed.
#[derive(Debug, Default)]
pub struct EchoService {
    echoed: u64,
}

impl EchoService {
    /// Bytes echoed so far.
    pub fn echoed(&self) -> u64 {
        self.echoed
    }
}

impl ByteService for EchoService {
    fn process(
        &mut self,
        input: &[u8],
        output: &mut Vec<u8>,
        output_limit: usize,
        _counters: &ServiceCounters,
    ) -> usize {
        let count = input.len().min(output_limit.saturating_sub(output.len()));
        let (echoed, _) = input.split_at(count);
        output.extend_from_slice(echoed);
        self.echoed += count as u64;
        count
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn echo_stops_at_the_output_limit() {
        let mut echo = EchoService::default();
        let mut output = Vec::new();
        let counters = ServiceCounters::default();
        assert_eq!(echo.process(b"stats\n\0\xff", &mut output, 4, &counters), 4);
        assert_eq!(output, b"stat");
        assert_eq!(echo.process(b"s\n\0\xff", &mut output, 4, &counters), 0);
        output.clear();
        assert_eq!(echo.process(b"s\n\0\xff", &mut output, 100, &counters), 4);
        assert_eq!(output, b"s\n\0\xff");
        assert_eq!(echo.echoed(), 8);
    }
}
