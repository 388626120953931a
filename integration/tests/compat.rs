//! Wire compatibility with supervisord, as a separate test binary: the stock
//! `supervisorctl` and Python `xmlrpc.client` from the `supervisor` PyPI package, run
//! against `vigild` and, for reference, against the real `supervisord`.
//!
//! The package comes from the virtualenv in `$VIGIL_SUPERVISOR_VENV`, else
//! `target/supervisor-venv` (`scripts/test` makes it); without it these tests fail.

#[path = "compat/auth.rs"]
mod auth;
#[path = "compat/debuglog.rs"]
mod debuglog;
#[path = "compat/harness.rs"]
mod harness;
#[path = "compat/supervisorctl.rs"]
mod supervisorctl;
#[path = "compat/xmlrpc.rs"]
mod xmlrpc;
