//! Zero-copy SIP message parsing.
