//! Kamailio database schemas.
