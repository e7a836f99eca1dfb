use super::*;
use proptest::prelude::*;

fn v4(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn tcp_record() -> Record {
    Record {
        proto: 6,
        flags: flags::MASQ,
        state: 1,
        caddr: v4("192.0.2.1"),
        vaddr: v4("10.0.0.100"),
        daddr: v4("10.0.1.11"),
        cport: 40000,
        vport: 80,
        dport: 8080,
        fwmark: 0,
        timeout: 900,
        seq: None,
        pe_data: None,
        pe_name: None,
        xvs: None,
    }
}

fn build(recs: &[Record], trailer: Option<&Trailer>, mac: bool) -> Vec<u8> {
    let mut b = MsgBuilder::new(7, 1472);
    for r in recs {
        assert!(b.push(r, TRAILER_LEN + MAC_LEN).unwrap(), "fits");
    }
    b.finish(trailer, mac).to_vec()
}

#[test]
fn a_record_is_laid_out_as_the_kernel_reads_it() {
    let m = build(&[tcp_record()], None, false);
    #[rustfmt::skip]
    let want: [u8; 44] = [
        0, 7, 0, 44, 1, 1, 0, 0,                   // header: syncid 7, size 44, 1 record, v1
        0, 6, 0, 36,                               // IPv4, TCP, version 0 / size 36
        0, 0, 0, 0,                                // flags: MASQ
        0, 1, 0x9c, 0x40, 0, 80, 0x1f, 0x90,       // ESTABLISHED, 40000, 80, 8080
        0, 0, 0, 0, 0, 0, 0x03, 0x84,              // fwmark 0, timeout 900
        192, 0, 2, 1, 10, 0, 0, 100, 10, 0, 1, 11, // caddr vaddr daddr
    ];
    assert_eq!(m, want);
    let mut d = Decoded::default();
    decode(&m, &mut d).unwrap();
    assert_eq!((d.syncid, d.records.len(), d.trailer), (7, 1, None));
    assert_eq!(d.records[0], Ok(tcp_record()));
}

#[test]
fn options_pad_to_four_bytes_and_round_trip() {
    let mut r = tcp_record();
    r.flags |= flags::SEQ_MASK;
    let s = |x| Seq { init_seq: x, delta: x + 1, previous_delta: x + 2 };
    r.seq = Some((s(10), s(20)));
    r.pe_data = Some([1u8, 2, 3].into_iter().collect());
    r.pe_name = Some(b"sip".iter().copied().collect());
    assert_eq!(r.wire_len(), 36 + 26 + 5 + 5);
    let mut u = tcp_record();
    u.proto = 17;
    u.state = 0;
    u.caddr = v4("2001:db8::1");
    u.vaddr = v4("2001:db8::100");
    u.daddr = v4("2001:db8:1::11");
    u.xvs = Some(XvsOpt { local: Some((v4("2001:db8:1::200"), 5001)), seqadj: None });
    let m = build(&[r.clone(), u.clone()], None, false);
    // The second record starts on a 4-byte boundary after the first's 72.
    assert_eq!(&m[8 + 72..8 + 74], &[1, 17]);
    assert_eq!(m.len(), 8 + 72 + 72 + 72);
    let mut d = Decoded::default();
    decode(&m, &mut d).unwrap();
    assert_eq!(d.records, vec![Ok(r), Ok(u)]);
}

#[test]
fn the_xvs_option_is_as_long_as_an_ipv6_record_and_optional() {
    let mut r = tcp_record();
    r.xvs = Some(XvsOpt { local: Some((v4("10.0.1.200"), 1026)), seqadj: None });
    let m = build(&[r.clone()], None, false);
    let o = &m[8 + 36..];
    assert_eq!(o.len(), V6_LEN, "read by a v1 dissector as one IPv6 record");
    assert_eq!((o[0], o[1] as usize), (opt::XVS, XVS_OPT_DATA));
    assert_ne!(o[0] & opt::F_PARAM, 0, "a kernel skips it");
    assert!(![opt::SEQ_DATA, opt::PE_DATA, opt::PE_NAME].contains(&(o[0] & !opt::F_PARAM)));
}

#[test]
fn the_trailer_follows_the_last_record_and_is_counted_in_the_size() {
    let t = Trailer { kind: Kind::Hello, bulk_port: 8848, sender: 0x0102_0304_0506_0708, seq: 42, time_ms: 1_700_000_000_000, total: 0 };
    let mut m = build(&[], Some(&t), true);
    assert_eq!(m.len(), 8 + TRAILER_LEN + MAC_LEN);
    assert_eq!(u16::from_be_bytes([m[2], m[3]]) as usize, m.len());
    assert_eq!(m[4], 0, "no records");
    put_mac(&mut m, &[9; MAC_LEN]);
    assert_eq!(sign_range(&m).len(), 8 + TRAILER_LEN);
    let mut d = Decoded::default();
    decode(&m, &mut d).unwrap();
    assert_eq!((d.trailer, d.mac, d.signed), (Some(t), Some([9; MAC_LEN]), 8 + TRAILER_LEN));
}

#[test]
fn bad_headers_and_records_are_refused_whole() {
    let good = build(&[tcp_record(), tcp_record()], None, false);
    let mut d = Decoded::default();
    let check = |m: &[u8], want: DecodeError| {
        let mut d = Decoded::default();
        assert_eq!(decode(m, &mut d), Err(want), "{m:?}");
        assert!(d.records.is_empty());
    };
    check(&good[..5], DecodeError::Short);
    check(&good[..good.len() - 1], DecodeError::BadSize);
    let mut v0 = good.clone();
    v0[0] = 2;
    check(&v0, DecodeError::Version0);
    let mut v2 = good.clone();
    v2[5] = 2;
    check(&v2, DecodeError::BadHeader);
    let mut spare = good.clone();
    spare[7] = 1;
    check(&spare, DecodeError::BadHeader);
    // One record more than there is.
    let mut more = good.clone();
    more[4] = 3;
    check(&more, DecodeError::Truncated);
    let mut ty = good.clone();
    ty[8] = 4;
    check(&ty, DecodeError::BadRecord);
    let mut ver = good.clone();
    ver[10] |= 0x10;
    check(&ver, DecodeError::BadRecord);
    let mut small = good.clone();
    small[11] = 20;
    check(&small, DecodeError::BadRecord);
    let mut long = good.clone();
    long[8 + 36 + 3] = 40;
    check(&long, DecodeError::Truncated);
    // An option running past its record.
    let mut r = tcp_record();
    r.pe_name = Some(b"ab".iter().copied().collect());
    let mut o = build(&[r], None, false);
    o[8 + 37] = 3;
    check(&o, DecodeError::BadOption);
    o[8 + 37] = 0;
    check(&o, DecodeError::BadOption);
    // A trailer with an unknown kind.
    let t = Trailer { kind: Kind::Data, bulk_port: 0, sender: 1, seq: 1, time_ms: 1, total: 0 };
    let mut k = build(&[], Some(&t), false);
    k[8 + 4] = 9;
    check(&k, DecodeError::BadTrailer);
    decode(&good, &mut d).unwrap();
    assert_eq!(d.records.len(), 2);
}

#[test]
fn unusable_records_are_refused_alone() {
    let mut udp = tcp_record();
    udp.proto = 17;
    udp.state = 1;
    let mut sctp = tcp_record();
    sctp.proto = 132;
    let mut tcp = tcp_record();
    tcp.state = 11;
    let mut tmpl = tcp_record();
    tmpl.flags = flags::TEMPLATE;
    tmpl.proto = 0;
    tmpl.state = 0;
    let m = build(&[udp, sctp, tcp, tmpl.clone(), tcp_record()], None, false);
    let mut d = Decoded::default();
    decode(&m, &mut d).unwrap();
    assert_eq!(
        d.records,
        vec![Err(RecordError::State), Err(RecordError::Protocol), Err(RecordError::State), Ok(tmpl), Ok(tcp_record())]
    );
    // An unknown option: skipped with the optional bit, else the record goes.
    let mut r = tcp_record();
    r.pe_name = Some(b"ab".iter().copied().collect());
    let mut m = build(&[r.clone(), tcp_record()], None, false);
    m[8 + 36] = 0x40 | 9;
    decode(&m, &mut d).unwrap();
    r.pe_name = None;
    assert_eq!(d.records, vec![Ok(r), Ok(tcp_record())]);
    m[8 + 36] = 9;
    decode(&m, &mut d).unwrap();
    assert_eq!(d.records, vec![Err(RecordError::MandatoryOption), Ok(tcp_record())]);
}

#[test]
fn the_builder_stops_at_its_size_and_at_255_records() {
    let mut b = MsgBuilder::new(1, 1472);
    let mut n = 0;
    while b.push(&tcp_record(), TRAILER_LEN).unwrap() {
        n += 1;
    }
    assert_eq!(n, (1472 - 8 - TRAILER_LEN) / 36);
    let mut big = MsgBuilder::new(1, 65535);
    let mut n = 0;
    while big.push(&tcp_record(), 0).unwrap() {
        n += 1;
    }
    assert_eq!(n, 255);
    assert_eq!(big.finish(None, false).len(), 8 + 255 * 36);
    let mut mixed = tcp_record();
    mixed.daddr = v4("2001:db8::1");
    assert_eq!(b.push(&mixed, 0), Err(EncodeError::MixedFamily));
    let mut empty = tcp_record();
    empty.pe_data = Some(ArrayVec::new());
    assert_eq!(b.push(&empty, 0), Err(EncodeError::EmptyOption));
    let mut tiny = MsgBuilder::new(1, 0);
    assert_eq!(tiny.max(), HEADER_LEN + TRAILER_LEN + MAC_LEN);
    assert_eq!(tiny.push(&tcp_record(), TRAILER_LEN + MAC_LEN), Err(EncodeError::TooLong));
}

/// The PROXY header's length for record `r`'s addresses (0: none).
fn header_len(r: &Record, v: u8) -> u16 {
    use crate::wire::proxy::{header, Version, MAX_LEN};
    let Some(v) = Version::from_code(v) else { return 0 };
    let mut h = [0u8; MAX_LEN];
    (match (r.caddr, r.vaddr) {
        (IpAddr::V4(c), IpAddr::V4(a)) => header(v, c, r.cport, a, r.vport, &mut h),
        (IpAddr::V6(c), IpAddr::V6(a)) => header(v, c, r.cport, a, r.vport, &mut h),
        _ => unreachable!("one family"),
    }) as u16
}

/// A NAT connection's record with a PROXY v1 offset.
fn adjusted() -> Record {
    let mut r = tcp_record();
    let e = SeqAdj { start: 0xffff_fff0, out_delta: 0x0102_0304, len: 0, proxy: 1, acked: true, ..SeqAdj::default() };
    r.xvs = Some(XvsOpt { local: None, seqadj: Some(SeqAdj { len: header_len(&r, 1), ..e }) });
    r
}

#[test]
fn a_sequence_adjustment_rides_in_the_xvs_option() {
    let r = adjusted();
    assert_eq!(header_len(&r, 1), b"PROXY TCP4 192.0.2.1 10.0.0.100 40000 80\r\n".len() as u16);
    let m = build(&[r.clone(), tcp_record()], None, false);
    let o = &m[8 + 36..8 + 36 + 72];
    assert_eq!((o[0], o[1] as usize), (opt::XVS, XVS_OPT_DATA), "the same option, as long");
    let d = &o[2..];
    assert_eq!(d[1], xvs_flags::SEQ_ADJ, "no local address (NAT), an offset");
    #[rustfmt::skip]
    assert_eq!(&d[20..32], &[0xff, 0xff, 0xff, 0xf0, 1, 2, 3, 4, 0, 42, 1, xvs_flags::ACKED]);
    assert!(d[32..].iter().all(|&b| b == 0), "the rest reserved");
    let mut dec = Decoded::default();
    decode(&m, &mut dec).unwrap();
    assert_eq!(dec.records, vec![Ok(r), Ok(tcp_record())]);
    // FULLNAT over IPv6: the local address and the offset (v2: 16 + 36
    // bytes), not yet acknowledged.
    let mut f = tcp_record();
    f.flags = flags::FULLNAT;
    f.caddr = v4("2001:db8::1");
    f.vaddr = v4("2001:db8::100");
    f.daddr = v4("2001:db8:1::11");
    let e = SeqAdj { start: 5, out_delta: 0, len: 52, proxy: 2, acked: false, ..SeqAdj::default() };
    assert_eq!(header_len(&f, 2), 52);
    f.xvs = Some(XvsOpt { local: Some((v4("2001:db8:1::200"), 1029)), seqadj: Some(e) });
    let m = build(&[f.clone()], None, false);
    decode(&m, &mut dec).unwrap();
    assert_eq!(dec.records, vec![Ok(f.clone())]);
    // What an xvs that knows only the local address reads (the option's
    // first 20 bytes but the flag bit it ignores) is as before.
    let mut plain = f.clone();
    plain.xvs = Some(XvsOpt { local: plain.xvs.unwrap().local, seqadj: None });
    let before = build(&[plain], None, false);
    let (a, b) = (&m[8 + 72 + 2..8 + 72 + 22], &before[8 + 72 + 2..8 + 72 + 22]);
    assert_eq!((a[0], a[1] & !xvs_flags::SEQ_ADJ, &a[2..]), (b[0], b[1], &b[2..]));
    // A SYN proxy's offset alone (no header), with its phase, the
    // client's options and the window rescale of the splice.
    let mut s = tcp_record();
    let sp = SeqAdj { start: 0, out_delta: 99, len: 0, proxy: 0, acked: false, syn: crate::ipvs::seqadj::SPLICED, opts: 0x4b, win_shift: -4 };
    s.xvs = Some(XvsOpt { local: None, seqadj: Some(sp) });
    decode(&build(&[s.clone()], None, false), &mut dec).unwrap();
    assert_eq!(dec.records, vec![Ok(s)]);
}

#[test]
fn a_bad_sequence_adjustment_is_refused() {
    let mut dec = Decoded::default();
    // Cut short: the option (and its record) 40 bytes shorter — the
    // message is refused whole, as any option of the wrong length.
    let mut m = build(&[adjusted()], None, false);
    m[8 + 36 + 1] = (XVS_OPT_DATA - 40) as u8;
    m[8 + 3] = (36 + 72 - 40) as u8;
    m.truncate(8 + 36 + 72 - 40);
    m[3] = m.len() as u8;
    assert_eq!(decode(&m, &mut dec), Err(DecodeError::BadOption));
    // The message ends inside the option.
    let mut m = build(&[adjusted()], None, false);
    m.truncate(8 + 36 + 30);
    m[3] = m.len() as u8;
    assert_eq!(decode(&m, &mut dec), Err(DecodeError::Truncated));
    // A longer option: refused too.
    let mut m = build(&[adjusted()], None, false);
    m[8 + 36 + 1] = (XVS_OPT_DATA + 4) as u8;
    m[8 + 3] = (36 + 72 + 4) as u8;
    m.extend_from_slice(&[0; 4]);
    m[3] = m.len() as u8;
    assert_eq!(decode(&m, &mut dec), Err(DecodeError::BadOption));
    // Values that cannot be: the record alone goes (counted by its
    // reason), the next one is kept.
    let at = 8 + 36 + 2;
    type Bend = Box<dyn Fn(&mut Vec<u8>)>;
    let cases: Vec<(&str, Bend)> = vec![
        ("an unknown PROXY version", Box::new(move |m| m[at + 30] = 3)),
        ("a length not the header's", Box::new(move |m| m[at + 29] = 41)),
        ("a header length without a version", Box::new(move |m| m[at + 30] = 0)),
        ("reserved flag bits", Box::new(move |m| m[at + 31] |= 0x80)),
        ("an unknown SYN proxy phase", Box::new(move |m| m[at + 32] = 3)),
        ("a window rescale beyond 14", Box::new(move |m| m[at + 34] = 15)),
        ("a window rescale below -14", Box::new(move |m| m[at + 34] = (-15i8) as u8)),
        ("on a UDP record", Box::new(|m| m[8 + 1] = 17)),
        ("on a DR record", Box::new(|m| m[8 + 7] = flags::DROUTE as u8)),
        ("on a template", Box::new(|m| m[8 + 6] = (flags::TEMPLATE >> 8) as u8)),
    ];
    for (what, bend) in cases {
        let mut m = build(&[adjusted(), tcp_record()], None, false);
        bend(&mut m);
        decode(&m, &mut dec).unwrap_or_else(|e| panic!("{what}: {e}"));
        assert_eq!(dec.records, vec![Err(RecordError::SeqAdj), Ok(tcp_record())], "{what}");
    }
    assert_eq!(RecordError::SeqAdj.name(), "seq_adj");
    // The flag bit off: the same bytes are reserved ones, ignored.
    let mut m = build(&[adjusted()], None, false);
    m[at + 1] = 0;
    decode(&m, &mut dec).unwrap();
    let mut want = adjusted();
    want.xvs = Some(XvsOpt::default());
    assert_eq!(dec.records, vec![Ok(want)]);
}

fn arb_addrs() -> impl Strategy<Value = (IpAddr, IpAddr, IpAddr)> {
    prop_oneof![
        any::<([u8; 4], [u8; 4], [u8; 4])>().prop_map(|(a, b, c)| (
            IpAddr::from(a),
            IpAddr::from(b),
            IpAddr::from(c)
        )),
        any::<([u8; 16], [u8; 16], [u8; 16])>().prop_map(|(a, b, c)| (
            IpAddr::from(a),
            IpAddr::from(b),
            IpAddr::from(c)
        )),
    ]
}

fn arb_seq() -> impl Strategy<Value = Seq> {
    any::<(u32, u32, u32)>().prop_map(|(a, b, c)| Seq { init_seq: a, delta: b, previous_delta: c })
}

fn arb_local() -> impl Strategy<Value = Option<(IpAddr, u16)>> {
    proptest::option::of((prop_oneof![any::<[u8; 4]>().prop_map(IpAddr::from), any::<[u8; 16]>().prop_map(IpAddr::from)], any::<u16>()))
}

prop_compose! {
    /// Every record kind: IPv4 / IPv6, TCP in any state, UDP, templates
    /// (of a protocol or of a service group), every forwarding method,
    /// with any combination of options.
    fn arb_record()(
        (caddr, vaddr, daddr) in arb_addrs(),
        kind in 0u8..4,
        tcp_state in 0u16..11,
        fwd in 0u32..6,
        other in any::<u32>(),
        ports in any::<(u16, u16, u16)>(),
        fwmark in any::<u32>(),
        timeout in any::<u32>(),
        seq in proptest::option::of((arb_seq(), arb_seq())),
        pe_data in proptest::option::of(proptest::collection::vec(any::<u8>(), 1..=255)),
        pe_name in proptest::option::of(proptest::collection::vec(any::<u8>(), 1..=16)),
        xvs in proptest::option::of(arb_local()),
        adj in proptest::option::of(any::<(u32, u32, u8, bool)>()),
    ) -> Record {
        let (proto, state, template) = match kind {
            0 => (6, tcp_state, false),
            1 => (17, 0, false),
            2 => (6, 0, true),
            _ => (0, 0, true),
        };
        let mut flags = fwd | (other & (flags::NOOUTPUT | flags::INACTIVE | flags::SEQ_MASK | flags::NO_CPORT));
        if template {
            flags |= flags::TEMPLATE;
        }
        let mut r = Record {
            proto, flags, state, caddr, vaddr, daddr,
            cport: ports.0, vport: ports.1, dport: ports.2, fwmark, timeout, seq,
            pe_data: pe_data.map(|v| v.into_iter().collect()),
            pe_name: pe_name.map(|v| v.into_iter().collect()),
            xvs: xvs.map(|local| XvsOpt { local, seqadj: None }),
        };
        // A sequence adjustment where one can be (a NAT or FULLNAT TCP
        // connection), with its header's true length.
        if let Some((start, out_delta, v, acked)) = adj.filter(|_| kind == 0 && matches!(fwd, flags::MASQ | flags::FULLNAT) && caddr.is_ipv6() == vaddr.is_ipv6()) {
            let mut e = SeqAdj { start, out_delta, len: 0, proxy: v % 3, acked, syn: v % 3, opts: v, win_shift: (v % 29) as i8 - 14 };
            e.len = header_len(&r, e.proxy);
            let x = r.xvs.get_or_insert(XvsOpt::default());
            x.seqadj = Some(e);
        }
        r
    }
}

fn arb_trailer() -> impl Strategy<Value = Trailer> {
    (0u8..4, any::<(u16, u64, u64, u64, u32)>()).prop_map(|(k, (bulk_port, sender, seq, time_ms, total))| Trailer {
        kind: Kind::from_u8(k).unwrap(),
        bulk_port,
        sender,
        seq,
        time_ms,
        total,
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn messages_round_trip(
        recs in proptest::collection::vec(arb_record(), 0..40),
        trailer in proptest::option::of(arb_trailer()),
        mac in any::<bool>(),
        max in 100usize..4000,
        syncid in any::<u8>(),
    ) {
        let mut b = MsgBuilder::new(syncid, max);
        let mut kept = Vec::new();
        for r in &recs {
            match b.push(r, TRAILER_LEN + MAC_LEN) {
                Ok(true) => kept.push(r.clone()),
                Ok(false) => break,
                Err(EncodeError::TooLong) => prop_assert!(r.wire_len() + HEADER_LEN + TRAILER_LEN + MAC_LEN > b.max()),
                Err(e) => prop_assert!(false, "{e}"),
            }
        }
        let mac = mac && trailer.is_some();
        let m = b.finish(trailer.as_ref(), mac).to_vec();
        prop_assert!(m.len() <= b.max());
        let mut d = Decoded::default();
        decode(&m, &mut d).unwrap();
        prop_assert_eq!(d.syncid, syncid);
        prop_assert_eq!(d.trailer, trailer);
        prop_assert_eq!(d.mac.is_some(), mac);
        let got: Vec<Record> = d.records.into_iter().map(|r| r.unwrap()).collect();
        prop_assert_eq!(got, kept);
    }

    #[test]
    fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        let mut d = Decoded::default();
        let _ = decode(&bytes, &mut d);
    }

    #[test]
    fn damaged_messages_never_panic(
        recs in proptest::collection::vec(arb_record(), 1..8),
        cut in any::<prop::sample::Index>(),
        flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..6),
        fix_size in any::<bool>(),
    ) {
        let mut b = MsgBuilder::new(1, 4000);
        for r in &recs {
            let _ = b.push(r, 0);
        }
        let t = Trailer { kind: Kind::Data, bulk_port: 1, sender: 2, seq: 3, time_ms: 4, total: 0 };
        let mut m = b.finish(Some(&t), true).to_vec();
        for (i, v) in flips {
            let i = i.index(m.len());
            m[i] ^= v;
        }
        let n = cut.index(m.len() + 1);
        m.truncate(n);
        if fix_size && m.len() >= 4 {
            // Make the size right, so decoding goes past the header.
            let l = m.len() as u16;
            m[2..4].copy_from_slice(&l.to_be_bytes());
        }
        let mut d = Decoded::default();
        if decode(&m, &mut d).is_err() {
            prop_assert!(d.records.is_empty() && d.trailer.is_none());
        }
    }
}
