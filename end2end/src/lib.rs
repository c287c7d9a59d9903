//! The test bed every integration and browser test stands on: the real `epsm-ops` binary on a free
//! loopback port, a throwaway copy of the EPSM-like stack on the real Docker engine, and Chromium.
//! Nothing here is a fake: each piece is the thing a user meets, started and cleaned up per test.

pub mod bench;
pub mod healthcheck;
pub mod pysaml2;
pub mod receiver;
pub mod saml_attacks;
pub mod sftp;
pub mod smtp;

mod browser;
mod console;
mod host;
mod sse;
mod stack;

pub use browser::*;
pub use console::*;
pub use healthcheck::{Healthchecks, with_margin};
pub use host::{copy_tree, free_port, private_file, repo_root, self_signed_certificate};
pub use sse::*;
pub use stack::*;
