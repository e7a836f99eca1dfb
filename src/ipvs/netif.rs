//! The director's network interfaces as the data path sees them.

use crate::wire::Mac;
use std::net::{Ipv4Addr, Ipv6Addr};

/// A network interface of the director (a netif, as DPVS says; the
/// configuration calls it a port), compiled.
#[derive(Clone, Debug)]
pub struct Netif {
    pub name: String,
    pub mac: Mac,
    pub mtu: u16,
    /// The director's first address of each family on this port (the
    /// source of tunnels and of ICMP errors we originate).
    pub v4: Option<Ipv4Addr>,
    pub v6: Option<Ipv6Addr>,
}

/// A link of the director, compiled: what a frame sent on it needs. The
/// first `ports.len()` links are the ports themselves (untagged); the
/// rest are their sub-interfaces.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Link {
    /// The port (AF_XDP interface) it is on.
    pub port: u8,
    /// The 802.1Q VLAN id frames carry on the port; 0: untagged.
    pub vid: u16,
    /// Our MAC on it: the source of every frame sent on it.
    pub mac: Mac,
    pub mtu: u16,
    /// The source of tunnels and of ICMP errors sent on it: its first
    /// address of the family, else its port's.
    pub v4: Option<Ipv4Addr>,
    pub v6: Option<Ipv6Addr>,
}

/// What a frame sent on a link needs of it, in [`Links`]'s fixed array:
/// 16 bytes, so a link's entry is one shift away from the array.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(C, align(16))]
pub struct Egress {
    /// Our MAC on the link.
    pub mac: Mac,
    /// The 802.1Q VLAN id; 0: untagged; [`NO_LINK`]: no link has this
    /// index.
    pub vid: u16,
    pub mtu: u16,
    pub port: u8,
    /// Whether `v4` is the link's IPv4 source (tunnels).
    pub has_v4: bool,
    pub v4: [u8; 4],
}

/// [`Egress::vid`] of an index no link has: never a VLAN id (1-4094), so
/// the test for a tag to put in or take out also catches it, and the
/// untagged frame on a link that exists pays no other test.
pub const NO_LINK: u16 = 0xffff;

impl Egress {
    /// The entry of an index no link has.
    pub const NONE: Egress = Egress { mac: [0; 6], vid: NO_LINK, mtu: 0, port: 0, has_v4: false, v4: [0; 4] };

    fn of(l: &Link) -> Egress {
        Egress { mac: l.mac, vid: l.vid, mtu: l.mtu, port: l.port, has_v4: l.v4.is_some(), v4: l.v4.map_or([0; 4], |a| a.octets()) }
    }
}

/// The director's links (`Snapshot::links`): the list, read as a slice
/// of [`Link`], and a copy of what sending needs in a fixed array of 256
/// entries indexed by the link byte (`Hop::link`) — no bounds check on
/// the path of every forwarded frame; an index no link has reads
/// [`Egress::NONE`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Links {
    list: Vec<Link>,
    egress: [Egress; 256],
}

impl Default for Links {
    fn default() -> Self {
        Links { list: Vec::new(), egress: [Egress::NONE; 256] }
    }
}

impl Links {
    /// Adds a link with the next index (past 255 links only to the list:
    /// index 255 is `Hop::LEARN`'s, which names no link, and no link byte
    /// names the rest).
    pub fn push(&mut self, l: Link) {
        if self.list.len() < 255 {
            self.egress[self.list.len()] = Egress::of(&l);
        }
        self.list.push(l);
    }

    /// The egress entry of link `link` ([`Egress::NONE`] if there is none).
    #[inline(always)]
    pub fn egress(&self, link: u8) -> &Egress {
        &self.egress[link as usize]
    }
}

impl std::ops::Deref for Links {
    type Target = [Link];
    fn deref(&self) -> &[Link] {
        &self.list
    }
}

impl From<Vec<Link>> for Links {
    fn from(v: Vec<Link>) -> Self {
        let mut links = Links::default();
        for l in v {
            links.push(l);
        }
        links
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn link(port: u8, vid: u16) -> Link {
        Link { port, vid, mac: [2, 0, 0, 0, port, vid as u8], mtu: 1500 - vid, v4: Some(Ipv4Addr::new(10, 0, port, 1)), v6: None }
    }

    #[test]
    fn egress_entries_follow_the_list_and_the_rest_name_no_link() {
        let l: Links = vec![link(0, 0), link(1, 0), Link { v4: None, ..link(0, 20) }].into();
        assert_eq!(l.len(), 3);
        assert_eq!(l[2].vid, 20, "the list reads as a slice");
        for i in 0..3u8 {
            let (e, k) = (l.egress(i), &l[i as usize]);
            assert_eq!((e.mac, e.vid, e.mtu, e.port), (k.mac, k.vid, k.mtu, k.port), "link {i}");
            assert_eq!(e.has_v4.then_some(Ipv4Addr::from(e.v4)), k.v4, "link {i}");
        }
        for i in 3..=255u8 {
            assert_eq!(*l.egress(i), Egress::NONE, "link {i}");
        }
        assert_eq!(std::mem::size_of::<Egress>(), 16);
    }

    #[test]
    fn links_past_255_stay_in_the_list_only() {
        let mut l = Links::default();
        for i in 0..300u16 {
            l.push(link(0, i + 1));
        }
        assert_eq!(l.len(), 300);
        assert_eq!(l.egress(254).vid, 255);
        assert_eq!(*l.egress(255), Egress::NONE, "Hop::LEARN's index names no link");
    }
}
