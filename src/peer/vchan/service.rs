//! The byte-stream services a vchan can carry, chosen by the vchan's xenstore node name.

use super::command::CommandService;
use super::echo::EchoService;
use crate::peer::counters::ServiceCounters;
use alloc::vec::Vec;

/// Which service a vchan carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ServiceKind {
    /// Every byte written back unchanged.
    Echo,
    /// One-line commands (see [`super::command`]).
    Command,
}

impl ServiceKind {
    /// Node name that selects the command service; every other name selects the echo.
    pub const COMMAND_NODE_NAME: &'static str = "cmd";

    /// The service for a vchan published at `path` (decided by its last component).
    ///
    /// The choice is made out of band so that the echo never has to guess whether bytes are data
    /// or a command: any binary stream, including one containing "stats\n", echoes unchanged.
    pub fn for_path(path: &str) -> ServiceKind {
        match path.rsplit('/').next() {
            Some(Self::COMMAND_NODE_NAME) => ServiceKind::Command,
            _ => ServiceKind::Echo,
        }
    }
}

/// A byte-stream service: consumes input, produces output, with bounded buffering.
pub trait ByteService {
    /// Consumes a prefix of `input`, appending replies to `output` without letting it grow past
    /// `output_limit` bytes; returns how many input bytes were consumed. Consuming nothing while
    /// `output` is full is how a service pushes back.
    fn process(
        &mut self,
        input: &[u8],
        output: &mut Vec<u8>,
        output_limit: usize,
        counters: &ServiceCounters,
    ) -> usize;
}

/// One of the services, by value.
#[derive(Debug)]
pub enum Service {
    Echo(EchoService),
    Command(CommandService),
}

impl Service {
    /// A fresh service of `kind`.
    pub fn new(kind: ServiceKind) -> Service {
        match kind {
            ServiceKind::Echo => Service::Echo(EchoService::default()),
            ServiceKind::Command => Service::Command(CommandService::default()),
        }
    }
}

impl ByteService for Service {
    fn process(
        &mut self,
        input: &[u8],
        output: &mut Vec<u8>,
        output_limit: usize,
        counters: &ServiceCounters,
    ) -> usize {
        match self {
            Service::Echo(echo) => echo.process(input, output, output_limit, counters),
            Service::Command(command) => command.process(input, output, output_limit, counters),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_node_name_chooses_the_service() {
        assert_eq!(
            ServiceKind::for_path("/local/domain/0/data/vchan/5/cmd"),
            ServiceKind::Command
        );
        assert_eq!(ServiceKind::for_path("cmd"), ServiceKind::Command);
        assert_eq!(
            ServiceKind::for_path("/local/domain/0/data/vchan/5/echo"),
            ServiceKind::Echo
        );
        assert_eq!(ServiceKind::for_path("/x/cmdx"), ServiceKind::Echo);
        assert_eq!(ServiceKind::for_path(""), ServiceKind::Echo);
    }
}
