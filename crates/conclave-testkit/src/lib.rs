//! Test support shared by every conclave integration test (a dev-dependency
//! only, never shipped): one copy of the helpers the test files used to
//! repeat, so a fix to, say, how a child process is stopped lands everywhere.
#![forbid(unsafe_code)]

pub mod bits;
pub mod certs;
pub mod cmd;
pub mod files;
pub mod mem;
pub mod net;
pub mod origin;
pub mod proc;
pub mod rng;
pub mod wait;

pub use bits::{flip_bit, flip_bit_in};
pub use certs::{certs, generate_certs, without_client_cert};
pub use cmd::{conclave, on_path, run_ok, signal, stdout_ok};
pub use files::{file_with_extension, write_private};
pub use mem::{edge_and_client_grants, MemFixture};
pub use net::{free_port, wait_port};
pub use origin::{pattern, BlackHole, Recorded, Reply, TestOrigin};
pub use proc::Proc;
pub use rng::Rng;
pub use wait::{poll_until, wait_exit, wait_until, wait_until_async, within};
