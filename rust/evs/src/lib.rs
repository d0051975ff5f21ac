//! EVS node runtime around the sans-IO `totem` core; currently the packet-security layer.

pub mod crypto;
pub mod transport;
