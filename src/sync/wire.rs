//! IPVS sync protocol version 1 on the wire (`ip_vs_sync.c`), and what xvs
//! adds to it in ways a kernel receiver ignores.
//!
//! ```text
//! message  = header (8) · record* · [trailer (40) · [HMAC-SHA256 (32)]]
//! header   = 0 · syncid · size (be16, the whole datagram) · count · version 1 · 0 0
//! record   = type (0 IPv4 / 1 IPv6) · protocol · ver_size (be16: version 0 in
//!            the top 4 bits, the record's length with its options below)
//!            · flags (be32) · state (be16) · cport · vport · dport
//!            · fwmark (be32) · timeout (be32, seconds) · caddr · vaddr · daddr
//!            · option*                       (36 bytes for IPv4, 72 for IPv6)
//! option   = type · length (1..255) · data   (1 sequence data, 2 PE data,
//!            3 PE name; with 0x40 set an unknown type is skipped, not fatal)
//! ```
//!
//! Each record starts on a 4-byte boundary (the padding after a record is
//! not counted in its length). A kernel receiver reads `count` records and
//! nothing after them.
//!
//! xvs's additions:
//!
//! - **The xvs option** (type [`opt::XVS`] = 0x78 = 0x40 | 0x38: optional, so
//!   a kernel skips it) carries what v1 cannot: the FULLNAT local address
//!   and port, and a connection's sequence adjustment (`ipvs::seqadj`: the
//!   PROXY protocol header's offset, a SYN proxy's, and whether the server
//!   has acknowledged the header). It is 72 bytes long, some of them
//!   reserved (zero), and
//!   that is deliberate: Wireshark's IPVS dissector (4.x) does not skip v1
//!   options but reads the next record where the option starts; an option
//!   whose type byte is not 0 and that is exactly as long as an IPv6
//!   record is read as one, and the records after it stay aligned, so
//!   every message xvs sends dissects without a malformed field.
//! - **The trailer**, after the last record (and counted in the header's
//!   size, as the kernel requires): a magic, the message kind (data,
//!   hello, bulk request, end of bulk), the sender's id and sequence
//!   number, a timestamp, and optionally an HMAC over everything before
//!   it. A kernel receiver never looks past its `count` records.
//!
//! Decoding never panics: a message that is structurally bad (short,
//! wrong size, a record or option past the end, an option twice, ...) is
//! refused whole with a [`DecodeError`]; a record that is well-formed but
//! unusable (an unknown mandatory option, a protocol or state xvs does not
//! know) is refused alone ([`RecordError`]) and the others are kept.

use crate::ipvs::seqadj::SeqAdj;
use arrayvec::ArrayVec;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// The IPVS sync port (multicast and unicast; bulk pulls use TCP on it).
pub const PORT: u16 = 8848;
/// The IPVS sync multicast group.
pub const GROUP_V4: Ipv4Addr = Ipv4Addr::new(224, 0, 0, 81);
/// Message header length.
pub const HEADER_LEN: usize = 8;
/// Fixed part of an IPv4 record.
pub const V4_LEN: usize = 36;
/// Fixed part of an IPv6 record.
pub const V6_LEN: usize = 72;
/// The protocol version in the header.
pub const VERSION: u8 = 1;
/// Records per message at most (the count is one byte).
pub const MAX_RECORDS: usize = 255;
/// Longest record (its length has 12 bits).
pub const MAX_RECORD_LEN: usize = 0x0fff;
/// Longest message (the size field has 16 bits).
pub const MAX_MESSAGE: usize = u16::MAX as usize;
/// Length of the sequence-data option's data: two `ip_vs_seq`.
pub const SEQ_DATA_LEN: usize = 24;
/// Longest persistence-engine data (`IP_VS_PEDATA_MAXLEN`).
pub const PE_DATA_MAX: usize = 255;
/// Longest persistence-engine name (`IP_VS_PENAME_MAXLEN`).
pub const PE_NAME_MAX: usize = 16;
/// The xvs option's data length (with its type and length bytes: 72).
pub const XVS_OPT_DATA: usize = 70;
/// The trailer's length without its MAC.
pub const TRAILER_LEN: usize = 40;
/// The HMAC-SHA256 after an authenticated trailer.
pub const MAC_LEN: usize = 32;
/// The trailer's first bytes.
pub const TRAILER_MAGIC: [u8; 4] = *b"XVS1";

/// IPVS connection flags (`IP_VS_CONN_F_*`).
pub mod flags {
    pub const FWD_MASK: u32 = 0x0007;
    pub const MASQ: u32 = 0x0000;
    pub const LOCALNODE: u32 = 0x0001;
    pub const TUNNEL: u32 = 0x0002;
    pub const DROUTE: u32 = 0x0003;
    pub const BYPASS: u32 = 0x0004;
    /// What Alibaba's and DPVS's FULLNAT use; a kernel receiver takes the
    /// method from its own real server instead.
    pub const FULLNAT: u32 = 0x0005;
    pub const SYNC: u32 = 0x0020;
    pub const HASHED: u32 = 0x0040;
    pub const NOOUTPUT: u32 = 0x0080;
    pub const INACTIVE: u32 = 0x0100;
    pub const OUT_SEQ: u32 = 0x0200;
    pub const IN_SEQ: u32 = 0x0400;
    pub const SEQ_MASK: u32 = 0x0600;
    pub const NO_CPORT: u32 = 0x0800;
    pub const TEMPLATE: u32 = 0x1000;
    pub const ONE_PACKET: u32 = 0x2000;
    /// The bits a backup takes from a record (`IP_VS_CONN_F_BACKUP_MASK`).
    pub const BACKUP_MASK: u32 = FWD_MASK | NOOUTPUT | INACTIVE | SEQ_MASK | NO_CPORT | TEMPLATE;
}

/// Option types.
pub mod opt {
    pub const SEQ_DATA: u8 = 1;
    pub const PE_DATA: u8 = 2;
    pub const PE_NAME: u8 = 3;
    /// "Optional parameter": a receiver that does not know the type skips it.
    pub const F_PARAM: u8 = 0x40;
    /// xvs's own (0x40 | 0x38, an 'x').
    pub const XVS: u8 = 0x78;
}

/// One direction's TCP sequence adjustment (`struct ip_vs_seq`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Seq {
    pub init_seq: u32,
    pub delta: u32,
    pub previous_delta: u32,
}

/// What the xvs option carries.
///
/// Its data (70 bytes): `[0]` the option's version (1); `[1]` flags: bit 0
/// a local address follows, bit 1 it is IPv6, bit 2 a sequence adjustment
/// follows (other bits: ignored, for what a later xvs adds); `[2..4]` local
/// port; `[4..20]` local address; `[20..32]` the sequence adjustment:
/// `start` (be32), `out_delta` (be32), `len` (be16), the PROXY version
/// (0 none, 1, 2), flags (bit 0: the server acknowledged the header; the
/// others must be zero); the rest zero. An xvs that knows only the local
/// address reads `[0..20]` and skips the rest, so it takes such a record
/// as before (without the offset).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct XvsOpt {
    /// The FULLNAT local address and port.
    pub local: Option<(IpAddr, u16)>,
    /// The connection's sequence adjustment (a TCP connection through
    /// NAT or FULLNAT only: see [`RecordError::SeqAdj`]).
    pub seqadj: Option<SeqAdj>,
}

/// Bits of the xvs option's flags byte.
pub mod xvs_flags {
    pub const LOCAL: u8 = 1;
    pub const LOCAL_V6: u8 = 2;
    pub const SEQ_ADJ: u8 = 4;
    /// In the sequence adjustment's own flags: the header was acknowledged.
    pub const ACKED: u8 = 1;
}

/// One connection (or persistence template) record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    /// IP protocol number (0 for a service group's template).
    pub proto: u8,
    /// [`flags`] bits.
    pub flags: u32,
    /// IPVS state number (TCP: `TcpState as u16`).
    pub state: u16,
    pub caddr: IpAddr,
    pub vaddr: IpAddr,
    pub daddr: IpAddr,
    pub cport: u16,
    pub vport: u16,
    pub dport: u16,
    pub fwmark: u32,
    /// Seconds the receiver keeps it without news.
    pub timeout: u32,
    /// Input and output sequence adjustments.
    pub seq: Option<(Seq, Seq)>,
    pub pe_data: Option<ArrayVec<u8, PE_DATA_MAX>>,
    pub pe_name: Option<ArrayVec<u8, PE_NAME_MAX>>,
    pub xvs: Option<XvsOpt>,
}

impl Record {
    /// An IPv6 record (else IPv4).
    pub fn is_v6(&self) -> bool {
        self.caddr.is_ipv6()
    }

    /// Its length on the wire, options included, padding not.
    pub fn wire_len(&self) -> usize {
        let mut n = if self.is_v6() { V6_LEN } else { V4_LEN };
        if self.seq.is_some() {
            n += 2 + SEQ_DATA_LEN;
        }
        if let Some(d) = &self.pe_data {
            n += 2 + d.len();
        }
        if let Some(d) = &self.pe_name {
            n += 2 + d.len();
        }
        if self.xvs.is_some() {
            n += 2 + XVS_OPT_DATA;
        }
        n
    }
}

/// What a message is for (xvs's trailer; a message without one is data).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Kind {
    /// Connection records.
    Data = 0,
    /// "A sync daemon is here" (no records), sent when nothing else was:
    /// names the sender's bulk port to peers that want the whole table.
    Hello = 1,
    /// Over the bulk TCP stream: "send me your whole table".
    BulkRequest = 2,
    /// Over the bulk TCP stream: the table is complete; `total` records
    /// were sent.
    BulkEnd = 3,
}

impl Kind {
    fn from_u8(v: u8) -> Option<Kind> {
        Some(match v {
            0 => Kind::Data,
            1 => Kind::Hello,
            2 => Kind::BulkRequest,
            3 => Kind::BulkEnd,
            _ => return None,
        })
    }
}

/// xvs's trailer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Trailer {
    pub kind: Kind,
    /// The TCP port the sender serves bulk pulls on (0: none).
    pub bulk_port: u16,
    /// Random per sync-daemon start: tells a restarted sender's sequence
    /// numbers from its previous life's.
    pub sender: u64,
    /// The sender's message counter.
    pub seq: u64,
    /// The sender's clock (Unix milliseconds).
    pub time_ms: u64,
    /// For [`Kind::BulkEnd`]: records sent in the bulk stream.
    pub total: u32,
}

/// Why a message was refused whole.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DecodeError {
    /// Shorter than a header.
    Short,
    /// The header's size is not the datagram's length.
    BadSize,
    /// A version 0 message (first byte not zero); xvs speaks version 1 only.
    Version0,
    /// Version not 1, or the reserved bytes not zero.
    BadHeader,
    /// A record, or its fixed part, runs past the end.
    Truncated,
    /// A record with an unknown type byte or record version.
    BadRecord,
    /// An option that runs past its record, of length 0 or of the wrong
    /// length, or found twice.
    BadOption,
    /// A trailer that is not one (bad magic placement or kind).
    BadTrailer,
}

impl DecodeError {
    pub const ALL: [DecodeError; 8] = [
        DecodeError::Short,
        DecodeError::BadSize,
        DecodeError::Version0,
        DecodeError::BadHeader,
        DecodeError::Truncated,
        DecodeError::BadRecord,
        DecodeError::BadOption,
        DecodeError::BadTrailer,
    ];

    /// Counter name.
    pub const fn name(self) -> &'static str {
        match self {
            DecodeError::Short => "short",
            DecodeError::BadSize => "bad_size",
            DecodeError::Version0 => "version0",
            DecodeError::BadHeader => "bad_header",
            DecodeError::Truncated => "truncated",
            DecodeError::BadRecord => "bad_record",
            DecodeError::BadOption => "bad_option",
            DecodeError::BadTrailer => "bad_trailer",
        }
    }
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Why one record was refused (the rest of its message is kept).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecordError {
    /// An option of unknown type without the optional bit.
    MandatoryOption,
    /// A connection of a protocol other than TCP and UDP.
    Protocol,
    /// A state the protocol does not have.
    State,
    /// A sequence adjustment that cannot be: on a template, a UDP record
    /// or a method that does not rewrite the stream (DR, TUN), of an
    /// unknown PROXY version, a length that is not that header's for the
    /// record's addresses, or reserved flag bits set.
    SeqAdj,
}

impl RecordError {
    pub const ALL: [RecordError; 4] = [RecordError::MandatoryOption, RecordError::Protocol, RecordError::State, RecordError::SeqAdj];

    pub const fn name(self) -> &'static str {
        match self {
            RecordError::MandatoryOption => "mandatory_option",
            RecordError::Protocol => "protocol",
            RecordError::State => "state",
            RecordError::SeqAdj => "seq_adj",
        }
    }
}

/// Why a record could not be encoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EncodeError {
    /// Its addresses are not all of one family.
    MixedFamily,
    /// An option with no data (the protocol forbids length 0).
    EmptyOption,
    /// The record alone is longer than a record or message may be.
    TooLong,
}

impl fmt::Display for EncodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            EncodeError::MixedFamily => "addresses of mixed families",
            EncodeError::EmptyOption => "an option with no data",
            EncodeError::TooLong => "record too long",
        })
    }
}

#[inline]
fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

#[inline]
fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

#[inline]
fn be64(b: &[u8], at: usize) -> u64 {
    let mut x = [0u8; 8];
    x.copy_from_slice(&b[at..at + 8]);
    u64::from_be_bytes(x)
}

fn addr_bytes(a: IpAddr, out: &mut [u8]) {
    match a {
        IpAddr::V4(a) => out[..4].copy_from_slice(&a.octets()),
        IpAddr::V6(a) => out[..16].copy_from_slice(&a.octets()),
    }
}

fn addr_at(b: &[u8], at: usize, v6: bool) -> IpAddr {
    if v6 {
        let mut x = [0u8; 16];
        x.copy_from_slice(&b[at..at + 16]);
        IpAddr::V6(Ipv6Addr::from(x))
    } else {
        IpAddr::V4(Ipv4Addr::new(b[at], b[at + 1], b[at + 2], b[at + 3]))
    }
}

/// Writes `r` at the start of `out` (at least [`Record::wire_len`] long).
fn write_record(r: &Record, out: &mut [u8]) -> Result<usize, EncodeError> {
    let v6 = r.is_v6();
    if r.vaddr.is_ipv6() != v6 || r.daddr.is_ipv6() != v6 {
        return Err(EncodeError::MixedFamily);
    }
    if r.pe_data.as_ref().is_some_and(|d| d.is_empty()) || r.pe_name.as_ref().is_some_and(|d| d.is_empty()) {
        return Err(EncodeError::EmptyOption);
    }
    let len = r.wire_len();
    if len > MAX_RECORD_LEN {
        return Err(EncodeError::TooLong);
    }
    let out = &mut out[..len];
    out.fill(0);
    out[0] = v6 as u8;
    out[1] = r.proto;
    out[2..4].copy_from_slice(&(len as u16).to_be_bytes());
    out[4..8].copy_from_slice(&r.flags.to_be_bytes());
    out[8..10].copy_from_slice(&r.state.to_be_bytes());
    out[10..12].copy_from_slice(&r.cport.to_be_bytes());
    out[12..14].copy_from_slice(&r.vport.to_be_bytes());
    out[14..16].copy_from_slice(&r.dport.to_be_bytes());
    out[16..20].copy_from_slice(&r.fwmark.to_be_bytes());
    out[20..24].copy_from_slice(&r.timeout.to_be_bytes());
    let al = if v6 { 16 } else { 4 };
    addr_bytes(r.caddr, &mut out[24..]);
    addr_bytes(r.vaddr, &mut out[24 + al..]);
    addr_bytes(r.daddr, &mut out[24 + 2 * al..]);
    let mut p = 24 + 3 * al;
    if let Some((i, o)) = &r.seq {
        out[p] = opt::SEQ_DATA;
        out[p + 1] = SEQ_DATA_LEN as u8;
        p += 2;
        for s in [i, o] {
            out[p..p + 4].copy_from_slice(&s.init_seq.to_be_bytes());
            out[p + 4..p + 8].copy_from_slice(&s.delta.to_be_bytes());
            out[p + 8..p + 12].copy_from_slice(&s.previous_delta.to_be_bytes());
            p += 12;
        }
    }
    for (t, d) in [(opt::PE_DATA, r.pe_data.as_deref()), (opt::PE_NAME, r.pe_name.as_deref())] {
        if let Some(d) = d {
            out[p] = t;
            out[p + 1] = d.len() as u8;
            out[p + 2..p + 2 + d.len()].copy_from_slice(d);
            p += 2 + d.len();
        }
    }
    if let Some(x) = &r.xvs {
        out[p] = opt::XVS;
        out[p + 1] = XVS_OPT_DATA as u8;
        let d = &mut out[p + 2..p + 2 + XVS_OPT_DATA];
        // d[0]: the option's own version; d[1]: bit 0 a local address
        // follows, bit 1 it is IPv6; d[2..4] local port; d[4..20] address.
        d[0] = 1;
        if let Some((a, port)) = x.local {
            d[1] = xvs_flags::LOCAL | if a.is_ipv6() { xvs_flags::LOCAL_V6 } else { 0 };
            d[2..4].copy_from_slice(&port.to_be_bytes());
            addr_bytes(a, &mut d[4..]);
        }
        if let Some(e) = &x.seqadj {
            d[1] |= xvs_flags::SEQ_ADJ;
            d[20..24].copy_from_slice(&e.start.to_be_bytes());
            d[24..28].copy_from_slice(&e.out_delta.to_be_bytes());
            d[28..30].copy_from_slice(&e.len.to_be_bytes());
            d[30] = e.proxy;
            d[31] = if e.acked { xvs_flags::ACKED } else { 0 };
            // The SYN proxy's state: its phase, the client's SYN options
            // and the window rescale of a spliced connection.
            d[32] = e.syn;
            d[33] = e.opts;
            d[34] = e.win_shift as u8;
        }
        p += 2 + XVS_OPT_DATA;
    }
    debug_assert_eq!(p, len);
    Ok(len)
}

/// Builds one message: records are added while they fit in `max` bytes
/// (room kept for the trailer); [`MsgBuilder::finish`] writes the header.
#[derive(Debug)]
pub struct MsgBuilder {
    buf: Vec<u8>,
    max: usize,
    count: usize,
    syncid: u8,
}

impl MsgBuilder {
    /// An empty message for `syncid`, at most `max` bytes long (clamped
    /// to what a header and one trailer with its MAC need, and 65535).
    pub fn new(syncid: u8, max: usize) -> MsgBuilder {
        let max = max.clamp(HEADER_LEN + TRAILER_LEN + MAC_LEN, MAX_MESSAGE);
        let mut buf = Vec::with_capacity(max);
        buf.resize(HEADER_LEN, 0);
        MsgBuilder { buf, max, count: 0, syncid }
    }

    /// Starts over (same syncid and size).
    pub fn clear(&mut self) {
        self.buf.truncate(HEADER_LEN);
        self.count = 0;
    }

    /// Sets the sync id of the next message.
    pub fn set_syncid(&mut self, syncid: u8) {
        self.syncid = syncid;
    }

    /// Records so far.
    pub fn count(&self) -> usize {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The largest message it builds.
    pub fn max(&self) -> usize {
        self.max
    }

    /// Adds `r` if it fits with `reserve` bytes to spare (for the trailer).
    /// `Ok(false)`: no room (send this message first).
    ///
    /// # Errors
    /// The record cannot be encoded at all.
    pub fn push(&mut self, r: &Record, reserve: usize) -> Result<bool, EncodeError> {
        let len = r.wire_len();
        let at = (self.buf.len() + 3) & !3;
        if len > MAX_RECORD_LEN || HEADER_LEN + len + reserve > self.max {
            return Err(EncodeError::TooLong);
        }
        // The trailer (if any) starts on a 4-byte boundary too.
        if self.count >= MAX_RECORDS || ((at + len + 3) & !3) + reserve > self.max {
            return Ok(false);
        }
        self.buf.resize(at + len, 0);
        if let Err(e) = write_record(r, &mut self.buf[at..]) {
            self.buf.truncate(at);
            return Err(e);
        }
        self.count += 1;
        Ok(true)
    }

    /// Completes the message with `trailer` (and room for a MAC when
    /// `mac` is set: the caller signs [`sign_range`] and writes it with
    /// [`put_mac`]) and returns it. The builder keeps it until `clear`.
    pub fn finish(&mut self, trailer: Option<&Trailer>, mac: bool) -> &mut [u8] {
        if let Some(t) = trailer {
            let end = (self.buf.len() + 3) & !3;
            self.buf.resize(end, 0);
            let at = self.buf.len();
            self.buf.resize(at + TRAILER_LEN + if mac { MAC_LEN } else { 0 }, 0);
            let b = &mut self.buf[at..];
            b[..4].copy_from_slice(&TRAILER_MAGIC);
            b[4] = t.kind as u8;
            b[5] = mac as u8;
            b[6..8].copy_from_slice(&t.bulk_port.to_be_bytes());
            b[8..16].copy_from_slice(&t.sender.to_be_bytes());
            b[16..24].copy_from_slice(&t.seq.to_be_bytes());
            b[24..32].copy_from_slice(&t.time_ms.to_be_bytes());
            b[32..36].copy_from_slice(&t.total.to_be_bytes());
        }
        let size = self.buf.len() as u16;
        let h = &mut self.buf[..HEADER_LEN];
        h[0] = 0;
        h[1] = self.syncid;
        h[2..4].copy_from_slice(&size.to_be_bytes());
        h[4] = self.count as u8;
        h[5] = VERSION;
        h[6] = 0;
        h[7] = 0;
        &mut self.buf
    }
}

/// The part of a finished, MAC-carrying message the MAC covers: all but
/// its last [`MAC_LEN`] bytes.
pub fn sign_range(msg: &[u8]) -> &[u8] {
    &msg[..msg.len().saturating_sub(MAC_LEN)]
}

/// Writes `mac` into the last [`MAC_LEN`] bytes of `msg`.
pub fn put_mac(msg: &mut [u8], mac: &[u8; MAC_LEN]) {
    let n = msg.len();
    if n >= MAC_LEN {
        msg[n - MAC_LEN..].copy_from_slice(mac);
    }
}

/// A message, checked and decoded.
#[derive(Debug, Default)]
pub struct Decoded {
    pub syncid: u8,
    /// One entry per record, in order.
    pub records: Vec<Result<Record, RecordError>>,
    pub trailer: Option<Trailer>,
    /// The MAC after the trailer and the bytes it covers (`..signed`).
    pub mac: Option<[u8; MAC_LEN]>,
    pub signed: usize,
}

/// Decodes a whole message into `out` (whose record vector is reused).
///
/// # Errors
/// See [`DecodeError`]: the message is refused whole and `out.records` is
/// left empty.
pub fn decode(buf: &[u8], out: &mut Decoded) -> Result<(), DecodeError> {
    out.records.clear();
    out.trailer = None;
    out.mac = None;
    out.signed = 0;
    let r = decode_inner(buf, out);
    if r.is_err() {
        out.records.clear();
        out.trailer = None;
        out.mac = None;
    }
    r
}

fn decode_inner(buf: &[u8], out: &mut Decoded) -> Result<(), DecodeError> {
    if buf.len() < HEADER_LEN {
        return Err(DecodeError::Short);
    }
    if buf[0] != 0 {
        return Err(DecodeError::Version0);
    }
    if be16(buf, 2) as usize != buf.len() {
        return Err(DecodeError::BadSize);
    }
    if buf[5] != VERSION || buf[6] != 0 || buf[7] != 0 {
        return Err(DecodeError::BadHeader);
    }
    out.syncid = buf[1];
    let count = buf[4] as usize;
    let mut p = HEADER_LEN;
    for _ in 0..count {
        if p + V4_LEN > buf.len() {
            return Err(DecodeError::Truncated);
        }
        let vs = be16(buf, p + 2);
        let size = (vs & 0x0fff) as usize;
        if vs >> 12 != 0 {
            return Err(DecodeError::BadRecord);
        }
        let v6 = match buf[p] {
            0 => false,
            1 => true,
            _ => return Err(DecodeError::BadRecord),
        };
        let fixed = if v6 { V6_LEN } else { V4_LEN };
        if size < fixed {
            return Err(DecodeError::BadRecord);
        }
        if p + size > buf.len() {
            return Err(DecodeError::Truncated);
        }
        out.records.push(record(&buf[p..p + size], v6)?);
        p += (size + 3) & !3;
    }
    // What follows the records: nothing, or xvs's trailer.
    let rest = buf.get(p..).unwrap_or(&[]);
    if rest.len() >= TRAILER_LEN && rest[..4] == TRAILER_MAGIC {
        let kind = Kind::from_u8(rest[4]).ok_or(DecodeError::BadTrailer)?;
        let mac = rest[5] & 1 != 0;
        let want = TRAILER_LEN + if mac { MAC_LEN } else { 0 };
        if rest.len() != want || rest[5] & !1 != 0 {
            return Err(DecodeError::BadTrailer);
        }
        out.trailer = Some(Trailer {
            kind,
            bulk_port: be16(rest, 6),
            sender: be64(rest, 8),
            seq: be64(rest, 16),
            time_ms: be64(rest, 24),
            total: be32(rest, 32),
        });
        if mac {
            let mut m = [0u8; MAC_LEN];
            m.copy_from_slice(&rest[TRAILER_LEN..]);
            out.mac = Some(m);
            out.signed = p + TRAILER_LEN;
        }
    }
    Ok(())
}

/// One record (`b` is exactly its length). A structural error refuses the
/// message; a semantic one only the record (the inner `Err`).
fn record(b: &[u8], v6: bool) -> Result<Result<Record, RecordError>, DecodeError> {
    let al = if v6 { 16 } else { 4 };
    let mut r = Record {
        proto: b[1],
        flags: be32(b, 4),
        state: be16(b, 8),
        cport: be16(b, 10),
        vport: be16(b, 12),
        dport: be16(b, 14),
        fwmark: be32(b, 16),
        timeout: be32(b, 20),
        caddr: addr_at(b, 24, v6),
        vaddr: addr_at(b, 24 + al, v6),
        daddr: addr_at(b, 24 + 2 * al, v6),
        seq: None,
        pe_data: None,
        pe_name: None,
        xvs: None,
    };
    let mut p = 24 + 3 * al;
    let mut bad: Option<RecordError> = None;
    while p < b.len() {
        if p + 2 > b.len() {
            return Err(DecodeError::BadOption);
        }
        let (t, len) = (b[p], b[p + 1] as usize);
        p += 2;
        if len == 0 || p + len > b.len() {
            return Err(DecodeError::BadOption);
        }
        let d = &b[p..p + len];
        match t & !opt::F_PARAM {
            opt::SEQ_DATA => {
                if len != SEQ_DATA_LEN || r.seq.is_some() {
                    return Err(DecodeError::BadOption);
                }
                let s = |o: usize| Seq { init_seq: be32(d, o), delta: be32(d, o + 4), previous_delta: be32(d, o + 8) };
                r.seq = Some((s(0), s(12)));
            }
            opt::PE_DATA => {
                if r.pe_data.is_some() {
                    return Err(DecodeError::BadOption);
                }
                r.pe_data = Some(d.iter().copied().collect());
            }
            opt::PE_NAME => {
                if len > PE_NAME_MAX || r.pe_name.is_some() {
                    return Err(DecodeError::BadOption);
                }
                r.pe_name = Some(d.iter().copied().collect());
            }
            _ if t == opt::XVS => {
                if len != XVS_OPT_DATA || r.xvs.is_some() {
                    return Err(DecodeError::BadOption);
                }
                let mut x = XvsOpt::default();
                if d[1] & xvs_flags::LOCAL != 0 {
                    let a = addr_at(d, 4, d[1] & xvs_flags::LOCAL_V6 != 0);
                    x.local = Some((a, be16(d, 2)));
                }
                if d[1] & xvs_flags::SEQ_ADJ != 0 {
                    let win_shift = d[34] as i8;
                    if d[31] & !xvs_flags::ACKED != 0
                        || !matches!(d[32], 0 | crate::ipvs::seqadj::SYN_SENT | crate::ipvs::seqadj::SPLICED)
                        || !(-14..=14).contains(&win_shift)
                    {
                        bad = bad.or(Some(RecordError::SeqAdj));
                    }
                    x.seqadj = Some(SeqAdj {
                        start: be32(d, 20),
                        out_delta: be32(d, 24),
                        len: be16(d, 28),
                        proxy: d[30],
                        acked: d[31] & xvs_flags::ACKED != 0,
                        syn: d[32],
                        opts: d[33],
                        win_shift,
                    });
                }
                r.xvs = Some(x);
            }
            _ if t & opt::F_PARAM != 0 => {}
            _ => bad = bad.or(Some(RecordError::MandatoryOption)),
        }
        p += len;
    }
    if let Some(e) = bad {
        return Ok(Err(e));
    }
    if let Some(e) = r.xvs.and_then(|x| x.seqadj) {
        if !seqadj_fits(&r, &e) {
            return Ok(Err(RecordError::SeqAdj));
        }
    }
    if r.flags & flags::TEMPLATE == 0 {
        match r.proto {
            6 if r.state as usize >= crate::ipvs::proto::TcpState::COUNT => return Ok(Err(RecordError::State)),
            17 if r.state != 0 => return Ok(Err(RecordError::State)),
            6 | 17 => {}
            _ => return Ok(Err(RecordError::Protocol)),
        }
    }
    Ok(Ok(r))
}

/// Whether sequence adjustment `e` can be one of record `r`'s: a TCP
/// connection (not a template) through NAT or FULLNAT, no header without a
/// PROXY version, and the header the record's addresses make exactly
/// `len` long (the receiver makes the header again from them, for a
/// client that resends its first bytes).
pub fn seqadj_fits(r: &Record, e: &SeqAdj) -> bool {
    use crate::wire::proxy::{self, Version};
    let fwd = r.flags & flags::FWD_MASK;
    if r.flags & flags::TEMPLATE != 0 || r.proto != 6 || !matches!(fwd, flags::MASQ | flags::FULLNAT) {
        return false;
    }
    if e.proxy == 0 {
        return e.len == 0;
    }
    let Some(v) = Version::from_code(e.proxy) else { return false };
    let mut h = [0u8; proxy::MAX_LEN];
    let n = match (r.caddr, r.vaddr) {
        (IpAddr::V4(c), IpAddr::V4(a)) => proxy::header(v, c, r.cport, a, r.vport, &mut h),
        (IpAddr::V6(c), IpAddr::V6(a)) => proxy::header(v, c, r.cport, a, r.vport, &mut h),
        _ => return false,
    };
    n == e.len as usize
}

#[cfg(test)]
mod tests;
