//! `pua`: the presence user agent client.

pub mod body;
pub mod config;
pub mod engine;
pub mod events;
pub mod record;
pub mod store;
