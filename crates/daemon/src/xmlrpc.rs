//! supervisord compatibility: the XML-RPC API (`/RPC2`) and the log-following HTTP handlers
//! (`/logtail/...`, `/mainlogtail`) that the stock `supervisorctl` and Python
//! `xmlrpc.client` scripts use, served on connections the listener identified as HTTP.
#![cfg_attr(
    not(test),
    expect(dead_code, reason = "the listener calls serve_http once wired at merge")
)]

mod backend;
mod codec;
mod fault;
mod methods;
#[cfg(test)]
mod testing;
