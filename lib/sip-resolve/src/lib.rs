//! sip-resolve
