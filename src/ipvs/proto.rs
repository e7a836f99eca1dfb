//! Per-protocol connection state: the IPVS TCP state machine
//! (`ip_vs_proto_tcp.c`'s `tcp_states` table) and the timeouts of every
//! state (`ipvsadm --set tcp tcpfin udp` changes three of them).

/// IPVS TCP connection states, in IPVS's order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum TcpState {
    None = 0,
    Established,
    SynSent,
    SynRecv,
    FinWait,
    TimeWait,
    Close,
    CloseWait,
    LastAck,
    Listen,
    SynAck,
}

impl TcpState {
    pub const COUNT: usize = 11;
    pub const ALL: [TcpState; 11] = [
        TcpState::None,
        TcpState::Established,
        TcpState::SynSent,
        TcpState::SynRecv,
        TcpState::FinWait,
        TcpState::TimeWait,
        TcpState::Close,
        TcpState::CloseWait,
        TcpState::LastAck,
        TcpState::Listen,
        TcpState::SynAck,
    ];

    #[inline]
    pub fn from_u8(v: u8) -> TcpState {
        Self::ALL.get(v as usize).copied().unwrap_or(TcpState::Close)
    }

    /// As ipvsadm `-L -c` prints it.
    pub const fn name(self) -> &'static str {
        match self {
            TcpState::None => "NONE",
            TcpState::Established => "ESTABLISHED",
            TcpState::SynSent => "SYN_SENT",
            TcpState::SynRecv => "SYN_RECV",
            TcpState::FinWait => "FIN_WAIT",
            TcpState::TimeWait => "TIME_WAIT",
            TcpState::Close => "CLOSE",
            TcpState::CloseWait => "CLOSE_WAIT",
            TcpState::LastAck => "LAST_ACK",
            TcpState::Listen => "LISTEN",
            TcpState::SynAck => "SYNACK",
        }
    }
}

/// Which half of IPVS's state table applies to a packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TcpDir {
    /// Client → real server, on a connection whose replies we also see.
    Input,
    /// Real server → client (NAT/FULLNAT replies).
    Output,
    /// Client → real server on a connection whose replies bypass us
    /// (DR/TUN: IPVS's `NOOUTPUT` connections).
    InputOnly,
}

use TcpState::*;
const ES: TcpState = Established;
const SS: TcpState = SynSent;
const SR: TcpState = SynRecv;
const FW: TcpState = FinWait;
const TW: TcpState = TimeWait;
const CL: TcpState = Close;
const CW: TcpState = CloseWait;
const LA: TcpState = LastAck;
const LI: TcpState = Listen;

/// `[direction][event][current state]`; events: syn, fin, ack, rst.
/// The same transitions as IPVS's (non-secure_tcp) table.
static TABLE: [[[TcpState; 11]; 4]; 3] = [
    // INPUT       NO  ES  SS  SR  FW  TW  CL  CW  LA  LI  SA
    [
        /*syn*/ [SR, ES, ES, SR, SR, SR, SR, SR, SR, SR, SR],
        /*fin*/ [CL, CW, SS, TW, TW, TW, CL, CW, LA, LI, TW],
        /*ack*/ [CL, ES, SS, ES, FW, TW, CL, CW, CL, LI, ES],
        /*rst*/ [CL, CL, CL, SR, CL, CL, CL, CL, LA, LI, SR],
    ],
    // OUTPUT
    [
        /*syn*/ [SS, ES, SS, SR, SS, SS, SS, SS, SS, LI, SR],
        /*fin*/ [TW, FW, SS, TW, FW, TW, CL, TW, LA, LI, TW],
        /*ack*/ [ES, ES, SS, ES, FW, TW, CL, CW, LA, ES, ES],
        /*rst*/ [CL, CL, SS, CL, CL, TW, CL, CL, CL, CL, CL],
    ],
    // INPUT-ONLY
    [
        /*syn*/ [SR, ES, ES, SR, SR, SR, SR, SR, SR, SR, SR],
        /*fin*/ [CL, FW, SS, TW, FW, TW, CL, CW, LA, LI, TW],
        /*ack*/ [CL, ES, SS, ES, FW, TW, CL, CW, CL, LI, ES],
        /*rst*/ [CL, CL, CL, SR, CL, CL, CL, CL, LA, LI, CL],
    ],
];

/// The next state after a segment with `flags` (TCP flag byte) in `dir`.
/// RST wins over SYN over FIN over ACK (IPVS's `tcp_state_idx`); a segment
/// with none of them moves to CLOSE, as IPVS does.
///
/// One load from [`NEXT`], the same answers as [`tcp_next_by_tests`]
/// without its four flag tests per segment.
#[inline]
pub fn tcp_next(cur: TcpState, dir: TcpDir, flags: u8) -> TcpState {
    NEXT[dir as usize][(flags & FLAG_BITS) as usize][cur as usize]
}

/// The flags [`tcp_next`] reads: FIN, SYN, RST, ACK.
const FLAG_BITS: u8 = 0x17;

/// [`tcp_next`] for every direction, every combination of [`FLAG_BITS`]
/// and every state (a row of 16, the last five never read).
static NEXT: [[[TcpState; 16]; 32]; 3] = {
    let mut t = [[[Close; 16]; 32]; 3];
    let mut d = 0;
    while d < 3 {
        let mut f = 0;
        while f < 32 {
            let mut s = 0;
            while s < TcpState::COUNT {
                t[d][f][s] = tcp_next_by_tests(TcpState::ALL[s], d, f as u8);
                s += 1;
            }
            f += 1;
        }
        d += 1;
    }
    t
};

/// [`tcp_next`] by the flags' precedence, `dir` as `TcpDir as usize`:
/// what [`NEXT`] is made of.
const fn tcp_next_by_tests(cur: TcpState, dir: usize, flags: u8) -> TcpState {
    use crate::wire::tcp_flags as f;
    let ev = if flags & f::RST != 0 {
        3
    } else if flags & f::SYN != 0 {
        0
    } else if flags & f::FIN != 0 {
        1
    } else if flags & f::ACK != 0 {
        2
    } else {
        return Close;
    };
    TABLE[dir][ev][cur as usize]
}

use super::timer::MAX_TIMEOUT;

/// Connection timeouts in seconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timeouts {
    pub tcp: [u32; TcpState::COUNT],
    pub udp: u32,
}

impl Default for Timeouts {
    /// IPVS's defaults.
    fn default() -> Self {
        let mut tcp = [0; TcpState::COUNT];
        tcp[None as usize] = 2;
        tcp[Established as usize] = 15 * 60;
        tcp[SynSent as usize] = 2 * 60;
        tcp[SynRecv as usize] = 60;
        tcp[FinWait as usize] = 2 * 60;
        tcp[TimeWait as usize] = 2 * 60;
        tcp[Close as usize] = 10;
        tcp[CloseWait as usize] = 60;
        tcp[LastAck as usize] = 30;
        tcp[Listen as usize] = 2 * 60;
        tcp[SynAck as usize] = 120;
        Timeouts { tcp, udp: 5 * 60 }
    }
}

impl Timeouts {
    /// `ipvsadm --set tcp tcpfin udp`: 0 leaves a value unchanged.
    pub fn set(&mut self, tcp: u32, tcpfin: u32, udp: u32) {
        if tcp > 0 {
            self.tcp[Established as usize] = tcp;
        }
        if tcpfin > 0 {
            self.tcp[FinWait as usize] = tcpfin;
        }
        if udp > 0 {
            self.udp = udp;
        }
    }

    /// Checks every timeout against 1 ..= [`MAX_TIMEOUT`] seconds (a
    /// longer one would pass the timer wheel's horizon).
    ///
    /// # Errors
    /// The first value out of range, named as the config file names it
    /// (`tcp`, `tcp_fin`, `udp`, `tcp_state.<state>`), and why.
    pub fn check(&self) -> Result<(), String> {
        let bad = |field: String, v: u32| {
            if v == 0 {
                Err(format!("{field} is 0: a timeout is at least 1 s"))
            } else if v > MAX_TIMEOUT {
                Err(format!("{field} is {v} s: at most {MAX_TIMEOUT} s (31 days)"))
            } else {
                Ok(())
            }
        };
        for s in TcpState::ALL {
            let field = match s {
                Established => "tcp".to_string(),
                FinWait => "tcp_fin".to_string(),
                s => format!("tcp_state.{}", s.name().to_lowercase()),
            };
            bad(field, self.tcp[s as usize])?;
        }
        bad("udp".into(), self.udp)
    }

    /// The three values `ipvsadm -L --timeout` prints.
    pub fn triple(&self) -> (u32, u32, u32) {
        (self.tcp[Established as usize], self.tcp[FinWait as usize], self.udp)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::tcp_flags::*;

    /// The table answers as the flag tests do, for every flag byte.
    #[test]
    fn the_next_state_table_is_the_flag_tests() {
        for dir in [TcpDir::Input, TcpDir::Output, TcpDir::InputOnly] {
            for flags in 0..=255u8 {
                for cur in TcpState::ALL {
                    assert_eq!(tcp_next(cur, dir, flags), tcp_next_by_tests(cur, dir as usize, flags), "{dir:?} {flags:#04x} {cur:?}");
                }
            }
        }
    }

    fn walk(dir_flags: &[(TcpDir, u8)]) -> Vec<TcpState> {
        let mut s = TcpState::None;
        dir_flags
            .iter()
            .map(|&(d, f)| {
                s = tcp_next(s, d, f);
                s
            })
            .collect()
    }

    #[test]
    fn nat_handshake_data_and_close() {
        use TcpDir::*;
        let got = walk(&[
            (Input, SYN),
            (Output, SYN | ACK),
            (Input, ACK),
            (Input, ACK | PSH),
            (Input, FIN | ACK),
            (Output, FIN | ACK),
            (Input, ACK),
        ]);
        assert_eq!(got, vec![SynRecv, SynRecv, Established, Established, CloseWait, TimeWait, TimeWait]);
    }

    #[test]
    fn dr_input_only_close() {
        use TcpDir::*;
        let got = walk(&[(InputOnly, SYN), (InputOnly, ACK), (InputOnly, FIN | ACK), (InputOnly, ACK)]);
        assert_eq!(got, vec![SynRecv, Established, FinWait, FinWait]);
        assert_eq!(tcp_next(Established, InputOnly, RST), Close);
    }

    #[test]
    fn rst_wins_and_flagless_closes() {
        assert_eq!(tcp_next(Established, TcpDir::Input, RST | SYN), Close);
        assert_eq!(tcp_next(Established, TcpDir::Input, 0), Close);
        assert_eq!(tcp_next(SynRecv, TcpDir::Input, RST), SynRecv, "IPVS keeps SYN_RECV on input RST");
    }

    #[test]
    fn default_timeouts_are_ipvs() {
        let t = Timeouts::default();
        assert_eq!(t.tcp[Established as usize], 900);
        assert_eq!(t.tcp[SynRecv as usize], 60);
        assert_eq!(t.tcp[FinWait as usize], 120);
        assert_eq!(t.tcp[TimeWait as usize], 120);
        assert_eq!(t.tcp[Close as usize], 10);
        assert_eq!(t.udp, 300);
        let mut t2 = t;
        t2.set(3600, 0, 60);
        assert_eq!(t2.triple(), (3600, 120, 60));
        assert_eq!(t.check(), Ok(()));
    }

    #[test]
    fn timeouts_beyond_the_wheel_or_zero_are_named() {
        let mut t = Timeouts::default();
        t.set(MAX_TIMEOUT, MAX_TIMEOUT, MAX_TIMEOUT);
        assert_eq!(t.check(), Ok(()));
        t.set(MAX_TIMEOUT + 1, 0, 0);
        assert_eq!(t.check().unwrap_err(), "tcp is 2678401 s: at most 2678400 s (31 days)");
        let t = Timeouts { udp: u32::MAX, ..Timeouts::default() };
        assert!(t.check().unwrap_err().starts_with("udp is 4294967295 s"));
        let mut t = Timeouts::default();
        t.tcp[SynRecv as usize] = 0;
        assert_eq!(t.check().unwrap_err(), "tcp_state.syn_recv is 0: a timeout is at least 1 s");
        t.tcp[SynRecv as usize] = 60;
        t.tcp[FinWait as usize] = 10 * MAX_TIMEOUT;
        assert!(t.check().unwrap_err().starts_with("tcp_fin is "));
    }
}
