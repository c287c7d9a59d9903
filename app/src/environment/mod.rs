//! The environment of the compose project: `.env.production` parsed as compose parses it, the
//! `${VAR}` interpolation compose applies, and secrets: what is secret, how it is masked, and the one
//! scrubber all output passes. Pure functions over text; the audit rules and the page build on these.

pub mod envfile;
pub mod interpolate;
#[cfg(feature = "ssr")]
pub mod secrets;
