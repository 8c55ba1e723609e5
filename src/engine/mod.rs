//! Sockets, I/O threads, channels and callback dispatch: the only code that does I/O.

pub mod dispatch;
pub mod io_thread;
pub mod port_pool;
pub mod socket;

pub use dispatch::Dispatcher;
pub use io_thread::{IoThread, StopSignal};
pub use port_pool::{PortLease, PortPool};
pub use socket::{MediaSocket, RecvBatch, SendBatch, Waker};
