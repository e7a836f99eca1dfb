//! The pcap driver: replays a capture through the real worker code and
//! writes every transmitted frame to another capture.
//!
//! Input may be a classic pcap or a pcapng file with Ethernet frames; in
//! pcapng the interface id of each packet is the director port it arrived
//! on. The worker's clock follows the capture's timestamps, so timeouts
//! and persistence behave as they would have at the capture's pace. A
//! burst is cut when it is full or when the capture's time moves on by
//! more than [`BURST_SPAN_NS`], so no frame is processed at another
//! frame's time by more than that. Output is a classic pcap (nanosecond
//! timestamps) with each transmitted frame at its input frame's time (the
//! fragments a tunnelled datagram was cut into follow its first, at its
//! time).

use super::mem::Batch;
use crate::worker::{Verdict, Worker};
use pcap_file::pcap::{PcapHeader, PcapPacket, PcapReader, PcapWriter};
use pcap_file::pcapng::{Block, PcapNgReader};
use pcap_file::{DataLink, TsResolution};
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The worker clock at the first frame of a capture.
pub const CLOCK_START_NS: u64 = 1_000_000_000;

/// Longest capture time a burst may span.
pub const BURST_SPAN_NS: u64 = 1_000_000;

/// Why a replay failed.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path}: not a pcap or pcapng capture: {msg}")]
    Format { path: PathBuf, msg: String },
    #[error("{path}: link type {link} is not Ethernet (xvs replays Ethernet frames)")]
    LinkType { path: PathBuf, link: String },
    #[error("{path}: packet {index}: {msg}")]
    Packet { path: PathBuf, index: u64, msg: String },
    #[error("{path}: writing: {msg}")]
    Write { path: PathBuf, msg: String },
}

/// What a replay did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReplaySummary {
    /// Frames read from the input.
    pub frames_in: u64,
    /// Frames written to the output.
    pub frames_out: u64,
}

/// One input frame, whatever the capture format.
struct InFrame<'a> {
    ts: Duration,
    port: u8,
    data: std::borrow::Cow<'a, [u8]>,
}

enum Input<R: Read> {
    Pcap(PcapReader<R>),
    PcapNg(PcapNgReader<R>),
}

impl<R: Read> Input<R> {
    fn next(&mut self, path: &Path, index: u64) -> Option<Result<InFrame<'_>, ReplayError>> {
        let perr = |msg: String| ReplayError::Packet { path: path.to_owned(), index, msg };
        match self {
            Input::Pcap(r) => r.next_packet().map(|p| {
                p.map(|p| InFrame { ts: p.timestamp, port: 0, data: p.data }).map_err(|e| perr(e.to_string()))
            }),
            Input::PcapNg(r) => loop {
                match r.next_block()? {
                    Err(e) => return Some(Err(perr(e.to_string()))),
                    Ok(Block::EnhancedPacket(p)) => {
                        return Some(Ok(InFrame {
                            ts: p.timestamp,
                            port: p.interface_id.min(u8::MAX as u32) as u8,
                            // Owned: the borrow checker cannot yet let a
                            // block borrowed in one loop turn be returned.
                            data: std::borrow::Cow::Owned(p.data.into_owned()),
                        }))
                    }
                    Ok(Block::SimplePacket(p)) => {
                        return Some(Ok(InFrame { ts: Duration::ZERO, port: 0, data: std::borrow::Cow::Owned(p.data.into_owned()) }))
                    }
                    Ok(Block::InterfaceDescription(i)) if i.linktype != DataLink::ETHERNET => {
                        return Some(Err(ReplayError::LinkType { path: path.to_owned(), link: format!("{:?}", i.linktype) }))
                    }
                    Ok(_) => continue,
                }
            },
        }
    }
}

fn open_input(path: &Path) -> Result<Input<BufReader<std::fs::File>>, ReplayError> {
    let io = |source| ReplayError::Io { path: path.to_owned(), source };
    let mut f = std::fs::File::open(path).map_err(io)?;
    let mut magic = [0u8; 4];
    let n = f.read(&mut magic).map_err(io)?;
    drop(f);
    let f = BufReader::new(std::fs::File::open(path).map_err(io)?);
    let fmt = |msg: String| ReplayError::Format { path: path.to_owned(), msg };
    if n == 4 && magic == [0x0a, 0x0d, 0x0d, 0x0a] {
        return PcapNgReader::new(f).map(Input::PcapNg).map_err(|e| fmt(e.to_string()));
    }
    let r = PcapReader::new(f).map_err(|e| fmt(e.to_string()))?;
    let link = r.header().datalink;
    if link != DataLink::ETHERNET {
        return Err(ReplayError::LinkType { path: path.to_owned(), link: format!("{link:?}") });
    }
    Ok(Input::Pcap(r))
}

/// Replays `input` through `worker` (created with its clock at
/// [`CLOCK_START_NS`]), writing transmitted frames to
/// `output`. `progress` is called now and then with the frames read so
/// far (for long runs).
///
/// # Errors
/// Unreadable or malformed captures (naming the file and the packet),
/// non-Ethernet link types, write failures.
pub fn replay(worker: &mut Worker, input: &Path, output: &Path, progress: impl FnMut(u64)) -> Result<ReplaySummary, ReplayError> {
    replay_with(worker, input, output, &[], progress)
}

/// [`replay`], with the configuration changing during the capture: at
/// each `(offset, snapshot)` of `reloads` (in order; nanoseconds after
/// the capture's first frame) the worker switches to the snapshot, as a
/// running director's workers do on a reload — between bursts, the burst
/// before it ending there.
///
/// # Errors
/// As [`replay`].
pub fn replay_with(
    worker: &mut Worker,
    input: &Path,
    output: &Path,
    reloads: &[(u64, std::sync::Arc<crate::ipvs::snapshot::Snapshot>)],
    mut progress: impl FnMut(u64),
) -> Result<ReplaySummary, ReplayError> {
    let mut reloads = reloads.iter().peekable();
    let mut inp = open_input(input)?;
    let file = std::fs::File::create(output).map_err(|source| ReplayError::Io { path: output.to_owned(), source })?;
    let header = PcapHeader { ts_resolution: TsResolution::NanoSecond, endianness: pcap_file::Endianness::Little, ..PcapHeader::default() };
    let werr = |e: pcap_file::PcapError| ReplayError::Write { path: output.to_owned(), msg: e.to_string() };
    let mut out = PcapWriter::with_header(BufWriter::new(file), header).map_err(werr)?;
    let mut batch = Batch::new();
    let mut stamps = [Duration::ZERO; crate::worker::BURST];
    let mut sum = ReplaySummary::default();
    let mut burst_start: Option<u64> = None;
    let mut first_ts: Option<u64> = None;
    let mut write_err: Option<pcap_file::PcapError> = None;

    let mut flush = |batch: &mut Batch, stamps: &[Duration], worker: &mut Worker, sum: &mut ReplaySummary, t0: u64| {
        let n = batch.len();
        batch.process_indexed(worker, t0, |src, v, bytes| {
            if let Verdict::Tx { .. } = v {
                if write_err.is_none() {
                    // Fragments a frame was cut into come after it, at its
                    // time.
                    let ts = stamps[src.min(n.saturating_sub(1))];
                    if let Err(e) = out.write_packet(&PcapPacket::new(ts, bytes.len() as u32, bytes)) {
                        write_err = Some(e);
                    }
                }
                sum.frames_out += 1;
            }
        });
    };

    loop {
        let next = inp.next(input, sum.frames_in);
        let Some(fr) = next else { break };
        let fr = fr?;
        sum.frames_in += 1;
        if sum.frames_in % (1 << 20) == 0 {
            progress(sum.frames_in);
        }
        // The worker's clock starts at 1 s on the first frame: captures
        // carry wall-clock time, the worker wants a monotonic clock.
        let abs = fr.ts.as_nanos().min(u64::MAX as u128) as u64;
        let base = *first_ts.get_or_insert(abs);
        let ts = abs.saturating_sub(base) + CLOCK_START_NS;
        while let Some((_, snap)) = reloads.next_if(|(at, _)| *at <= ts - CLOCK_START_NS) {
            if let Some(t0) = burst_start.take() {
                flush(&mut batch, &stamps, worker, &mut sum, t0);
            }
            worker.set_snapshot(snap.clone());
        }
        if let Some(t0) = burst_start {
            if batch.is_full() || ts.saturating_sub(t0) > BURST_SPAN_NS {
                flush(&mut batch, &stamps, worker, &mut sum, t0);
                burst_start = None;
            }
        }
        let t0 = *burst_start.get_or_insert(ts);
        match batch.push(&fr.data, fr.port) {
            Ok(()) => stamps[batch.len() - 1] = fr.ts,
            Err(r) => {
                worker.set_clock(t0);
                worker.count_drop(r);
            }
        }
    }
    if let Some(t0) = burst_start {
        flush(&mut batch, &stamps, worker, &mut sum, t0);
    }
    if let Some(e) = write_err {
        return Err(werr(e));
    }
    out.into_writer().flush().map_err(|source| ReplayError::Io { path: output.to_owned(), source })?;
    progress(sum.frames_in);
    Ok(sum)
}
