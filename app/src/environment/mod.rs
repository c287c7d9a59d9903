//! The environment of the compose project: `.env.production` parsed as compose parses it, and the
//! `${VAR}` interpolation compose applies. Pure functions over text; the audit rules, masking and the
//! page build on these.

pub mod envfile;
pub mod interpolate;
