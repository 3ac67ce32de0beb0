//! Tests with real processes (`sh`, `sleep`, `python3` listeners), all on 127.0.0.1.

mod lifecycle;
mod start;
mod support;
