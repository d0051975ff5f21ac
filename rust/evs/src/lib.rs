//! EVS node runtime around the sans-IO `totem` core; currently the packet-security layer.

pub mod config;
pub mod crypto;
pub mod transport;
