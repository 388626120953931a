//! Black-box tests, one binary (see STYLE.md 4.4). One module per area.

mod beyond;
mod runtime;
