//! supervisord compatibility: the XML-RPC API (`/RPC2`) and the log-following HTTP handlers
//! (`/logtail/...`, `/mainlogtail`) that the stock `supervisorctl` and Python
//! `xmlrpc.client` scripts use, served on connections the listener identified as HTTP.
//!
//! Layers, each in its own module:
//! - [`http`]: hyper HTTP/1.1 on one connection, routing, Basic auth ([`auth`]), body limits,
//!   the streamed log tails. Entry point: [`http::serve_http`].
//! - [`codec`]: `<methodCall>` in, `<methodResponse>` out (on the `dxr` crate), made safe
//!   for any bytes a log may contain.
//! - [`methods`]: the method table with supervisord's names, argument rules, faults and
//!   struct shapes.
//! - [`backend`]: the [`backend::Backend`] trait, everything the table needs from the daemon, with
//!   supervisord's semantics.
//! - [`adaptor`]: the production `Backend`, calling the daemon's `vigil_rpc::Control` service
//!   in process (the one tarpc serves), so both protocols share one implementation. Entry
//!   point for the listener: [`adaptor::serve_with`].
//!
//! This module does not own sockets or the protocol sniffing that sends a connection here,
//! and it holds no daemon state of its own (only, per connection, a `shutdown`/`restart`
//! waiting for its answer to be sent).
#![allow(
    rustdoc::private_intra_doc_links,
    reason = "this overview is for readers of the daemon's source; its layers stay crate-private"
)]

pub(crate) mod adaptor;
pub(crate) mod auth;
pub(crate) mod backend;
mod codec;
pub(crate) mod fault;
pub(crate) mod http;
mod methods;
#[cfg(test)]
mod testing;
