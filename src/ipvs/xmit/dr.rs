//! DR — direct routing (`ipvsadm -g`, IPVS `ip_vs_dr_xmit`): the frame
//! goes to the real server's MAC unchanged above L2; the real server holds
//! the VIP on a loopback and answers the client directly.

use super::{to_hop, trim};
use crate::ipvs::dest::Hop;
use crate::ipvs::netif::Links;
use crate::stats::DropReason;
use crate::wire::{Frame, Meta};

/// Sends the frame to `hop` (the real server's MAC), Ethernet padding
/// dropped like every other method's.
///
/// # Errors
/// [`DropReason::NoNeighbour`] for a hop on a link that does not exist,
/// no headroom for a VLAN tag.
#[inline]
pub fn xmit(fr: &mut Frame<'_>, m: &mut Meta, hop: &Hop, links: &Links) -> Result<u8, DropReason> {
    trim(fr, m);
    to_hop(fr, m, hop, links)
}
