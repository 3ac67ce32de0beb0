//! The Markdown summary (in progress).
