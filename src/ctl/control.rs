//! The control socket: how `xvsadm` (or any client) talks to `xvs run`.
//!
//! Protocol: a Unix stream socket (default [`DEFAULT_SOCKET`], mode 0600 so
//! only root may connect unless the operator widens it), carrying
//! newline-delimited JSON: one [`Request`] per line, one [`Response`] line
//! back, several requests per connection if the client likes.
//!
//! ```text
//! → {"ipvsadm":{"list":{"what":"all","numeric":true,...}}}
//! ← {"output":"IP Virtual Server version 1.2.1 (size=4096)\n..."}
//! → {"ipvsadm":{"add_service":{...}}}
//! ← {"output":"","error":{"kind":"failed","message":"Service already exists"}}
//! ```
//!
//! A response may also carry a `warning` (a listing that was capped):
//! the command worked, and the operator should know.
//!
//! The server is defensive, because a control socket must never disturb
//! forwarding: a request longer than [`ServerOpts::max_request`] gets a
//! `too_large` error and the connection is closed; a request not complete
//! within [`ServerOpts::timeout`] (slow or idle client) gets `timeout` and
//! is closed; bad JSON or an unknown request gets `bad_request` and the
//! connection stays usable; more than [`ServerOpts::max_clients`] at once
//! get `busy`. None of it touches the other clients. The server runs on
//! plain threads (an accept thread, one per client); the work behind a
//! request is the [`ControlHandler`]'s, which the daemon implements.
//! [`ModelHandler`] serves the ipvsadm table from an in-memory model.

use super::ipvsadm::{self, CmdError, Command, ConnEntry, Outcome, StatsView, View};
use super::model::Model;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Where `xvs run` listens unless told otherwise.
pub const DEFAULT_SOCKET: &str = "/run/xvs/xvs.sock";

/// Environment variable naming the socket (for xvsadm).
pub const ENV_SOCKET: &str = "XVS_SOCKET";

/// The socket path a client should use: `$XVS_SOCKET`, else the default.
pub fn socket_path_from_env() -> PathBuf {
    std::env::var_os(ENV_SOCKET).map_or_else(|| PathBuf::from(DEFAULT_SOCKET), PathBuf::from)
}

/// One request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Request {
    /// Is anyone there? Answers with the daemon's version line.
    Ping,
    /// An ipvsadm command, parsed by the client.
    Ipvsadm(Command),
}

/// What went wrong, as a client needs to tell it apart.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// A malformed command (xvsadm exits 2).
    Usage,
    /// The command was refused: "No such service", a validation error.
    Failed,
    /// Not JSON, or not a request this server knows.
    BadRequest,
    /// The request exceeded the size limit; the connection is closed.
    TooLarge,
    /// The request did not arrive in time; the connection is closed.
    Timeout,
    /// Too many clients at once; try again.
    Busy,
    /// This server does not do that (e.g. `--reload` without a daemon).
    Unsupported,
}

/// The error half of a response.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorReply {
    pub kind: ErrorKind,
    pub message: String,
}

/// One response: what the command printed, and an error if it failed.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Response {
    /// Standard output of the command (listings), possibly empty.
    #[serde(default)]
    pub output: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorReply>,
    /// Something the operator should know although the command worked
    /// (e.g. a capped listing); xvsadm prints it on standard error, so the
    /// output keeps ipvsadm's layout.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warning: Option<String>,
}

impl Response {
    /// Success with `output`.
    pub fn ok(output: impl Into<String>) -> Response {
        Response {
            output: output.into(),
            error: None,
            warning: None,
        }
    }

    /// A failure.
    pub fn error(kind: ErrorKind, message: impl Into<String>) -> Response {
        Response {
            output: String::new(),
            error: Some(ErrorReply {
                kind,
                message: message.into(),
            }),
            warning: None,
        }
    }

    /// The same response with `warning` attached.
    pub fn warn(mut self, warning: Option<String>) -> Response {
        self.warning = warning;
        self
    }

    /// ipvsadm's exit code: 0 ok, 2 usage, 1 anything else.
    pub fn exit_code(&self) -> i32 {
        match &self.error {
            None => 0,
            Some(ErrorReply {
                kind: ErrorKind::Usage,
                ..
            }) => 2,
            Some(_) => 1,
        }
    }
}

impl From<CmdError> for Response {
    fn from(e: CmdError) -> Response {
        let kind = if e.exit_code() == 2 {
            ErrorKind::Usage
        } else {
            ErrorKind::Failed
        };
        Response::error(kind, e.to_string())
    }
}

/// What serves requests; the daemon implements it. Called from several
/// client threads at once.
pub trait ControlHandler: Send + Sync {
    fn handle(&self, req: Request) -> Response;
}

/// Limits of the server.
#[derive(Clone, Debug)]
pub struct ServerOpts {
    /// Longest request line in bytes. `-R` sends its rules in one request,
    /// so this bounds a restore (1 MiB is some 15 000 rules).
    pub max_request: usize,
    /// Time a client has to send a whole request (and to take the reply).
    pub timeout: Duration,
    /// Clients served at once.
    pub max_clients: usize,
    /// Permissions of the socket file.
    pub mode: u32,
    /// The socket file's group (the daemon must be a member, or have
    /// CAP_CHOWN); `None`: the daemon's.
    pub group: Option<u32>,
}

impl Default for ServerOpts {
    fn default() -> Self {
        ServerOpts {
            max_request: 1 << 20,
            timeout: Duration::from_secs(5),
            max_clients: 32,
            mode: 0o600,
            group: None,
        }
    }
}

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("control socket {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("control socket {path}: another process is serving it")]
    InUse { path: PathBuf },
    #[error("control socket {path}: exists and is not a socket")]
    NotSocket { path: PathBuf },
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> ControlError + '_ {
    move |source| ControlError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panicking client thread must not take the server down with it.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// How often the accept thread looks for new clients and for shutdown.
const ACCEPT_POLL: Duration = Duration::from_millis(10);

/// State shared by the accept thread and the client threads.
struct Shared {
    handler: Arc<dyn ControlHandler>,
    opts: ServerOpts,
    stop: AtomicBool,
    active: AtomicUsize,
    /// Open client streams, so shutdown can wake their threads.
    clients: Mutex<HashMap<u64, UnixStream>>,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

/// A running control socket server. Dropping it stops it and removes the
/// socket file.
pub struct Server {
    path: PathBuf,
    shared: Arc<Shared>,
    accept: Option<JoinHandle<()>>,
}

impl Server {
    /// Binds `path` and starts serving with `handler`.
    ///
    /// A stale socket file (nobody listening) is replaced; a live one is
    /// left alone. The socket is bound under a temporary name, given
    /// `opts.mode` and renamed into place, so it never appears at `path`
    /// with wider permissions.
    ///
    /// # Errors
    /// The path is in use, is not a socket, or cannot be bound.
    pub fn bind(
        path: &Path,
        handler: Arc<dyn ControlHandler>,
        opts: ServerOpts,
    ) -> Result<Server, ControlError> {
        if let Ok(meta) = std::fs::symlink_metadata(path) {
            if !meta.file_type().is_socket() {
                return Err(ControlError::NotSocket {
                    path: path.to_path_buf(),
                });
            }
            if UnixStream::connect(path).is_ok() {
                return Err(ControlError::InUse {
                    path: path.to_path_buf(),
                });
            }
            std::fs::remove_file(path).map_err(io_err(path))?;
        }
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(io_err(path))?;
        }
        let mut tmp = path.as_os_str().to_owned();
        tmp.push(format!(".{}.tmp", std::process::id()));
        let tmp = PathBuf::from(tmp);
        let _ = std::fs::remove_file(&tmp);
        let listener = UnixListener::bind(&tmp).map_err(io_err(path))?;
        let placed = opts
            .group
            .map_or(Ok(()), |g| std::os::unix::fs::chown(&tmp, None, Some(g)))
            .and_then(|()| std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(opts.mode)))
            .and_then(|()| std::fs::rename(&tmp, path));
        if let Err(e) = placed {
            let _ = std::fs::remove_file(&tmp);
            return Err(io_err(path)(e));
        }
        let shared = Arc::new(Shared {
            handler,
            opts,
            stop: AtomicBool::new(false),
            active: AtomicUsize::new(0),
            clients: Mutex::new(HashMap::new()),
            threads: Mutex::new(Vec::new()),
        });
        let sh = shared.clone();
        let accept = std::thread::Builder::new()
            .name("xvs-control".into())
            .spawn(move || accept_loop(listener, sh))
            .map_err(io_err(path))?;
        Ok(Server {
            path: path.to_path_buf(),
            shared,
            accept: Some(accept),
        })
    }

    /// The socket path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Stops accepting, closes every client connection, waits for the
    /// threads and removes the socket file.
    pub fn shutdown(mut self) {
        self.stop_now();
    }

    fn stop_now(&mut self) {
        let Some(accept) = self.accept.take() else {
            return;
        };
        self.shared.stop.store(true, Ordering::SeqCst);
        let _ = accept.join();
        for s in lock(&self.shared.clients).values() {
            let _ = s.shutdown(std::net::Shutdown::Both);
        }
        let threads: Vec<JoinHandle<()>> = lock(&self.shared.threads).drain(..).collect();
        for t in threads {
            let _ = t.join();
        }
        let _ = std::fs::remove_file(&self.path);
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop_now();
    }
}

fn send(stream: &mut UnixStream, resp: &Response) -> io::Result<()> {
    let mut line = serde_json::to_vec(resp).map_err(io::Error::other)?;
    line.push(b'\n');
    stream.write_all(&line)
}

fn accept_loop(listener: UnixListener, sh: Arc<Shared>) {
    let mut next_id = 0u64;
    // Non-blocking accept polled every few milliseconds: shutdown needs no
    // wake-up connection (the socket file may already be gone) and no
    // unsafe code to interrupt a blocked accept.
    let _ = listener.set_nonblocking(true);
    loop {
        if sh.stop.load(Ordering::SeqCst) {
            break;
        }
        let mut stream = match listener.accept() {
            Ok((s, _)) => s,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                std::thread::sleep(ACCEPT_POLL);
                continue;
            }
            Err(_) => {
                // EMFILE and friends: back off rather than spin.
                std::thread::sleep(ACCEPT_POLL);
                continue;
            }
        };
        if stream.set_nonblocking(false).is_err() {
            continue;
        }
        let _ = stream.set_write_timeout(Some(sh.opts.timeout));
        if sh.active.load(Ordering::SeqCst) >= sh.opts.max_clients {
            let _ = send(
                &mut stream,
                &Response::error(ErrorKind::Busy, "too many control clients; try again"),
            );
            continue;
        }
        next_id += 1;
        let id = next_id;
        if let Ok(c) = stream.try_clone() {
            lock(&sh.clients).insert(id, c);
        }
        sh.active.fetch_add(1, Ordering::SeqCst);
        let sh2 = sh.clone();
        let spawned = std::thread::Builder::new()
            .name("xvs-control-client".into())
            .spawn(move || {
                serve_client(stream, &sh2);
                lock(&sh2.clients).remove(&id);
                sh2.active.fetch_sub(1, Ordering::SeqCst);
            });
        match spawned {
            Ok(t) => {
                let mut threads = lock(&sh.threads);
                threads.retain(|t| !t.is_finished());
                threads.push(t);
            }
            Err(_) => {
                lock(&sh.clients).remove(&id);
                sh.active.fetch_sub(1, Ordering::SeqCst);
            }
        }
    }
}

/// Why no request line came.
enum ReadFail {
    Closed,
    TooLarge,
    Timeout,
}

/// Reads one request line (without the newline) into `line`, keeping
/// what follows it in `pending`. The whole line must arrive before the
/// deadline, so a client trickling bytes cannot hold the thread.
fn read_line(
    stream: &mut UnixStream,
    pending: &mut Vec<u8>,
    opts: &ServerOpts,
) -> Result<Vec<u8>, ReadFail> {
    let deadline = Instant::now() + opts.timeout;
    let mut scanned = 0;
    loop {
        if let Some(i) = pending[scanned..].iter().position(|&b| b == b'\n') {
            let end = scanned + i;
            if end > opts.max_request {
                return Err(ReadFail::TooLarge);
            }
            let line = pending[..end].to_vec();
            pending.drain(..=end);
            return Ok(line);
        }
        scanned = pending.len();
        if pending.len() > opts.max_request {
            return Err(ReadFail::TooLarge);
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(ReadFail::Timeout);
        }
        let _ = stream.set_read_timeout(Some(left));
        let mut chunk = [0u8; 4096];
        match stream.read(&mut chunk) {
            Ok(0) => return Err(ReadFail::Closed),
            Ok(n) => pending.extend_from_slice(&chunk[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                return Err(ReadFail::Timeout)
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return Err(ReadFail::Closed),
        }
    }
}

fn serve_client(mut stream: UnixStream, sh: &Shared) {
    let mut pending = Vec::new();
    loop {
        if sh.stop.load(Ordering::SeqCst) {
            return;
        }
        let line = match read_line(&mut stream, &mut pending, &sh.opts) {
            Ok(l) => l,
            Err(ReadFail::Closed) => return,
            Err(ReadFail::TooLarge) => {
                let msg = format!("request larger than {} bytes", sh.opts.max_request);
                let _ = send(&mut stream, &Response::error(ErrorKind::TooLarge, msg));
                return;
            }
            Err(ReadFail::Timeout) => {
                let msg = format!(
                    "no complete request within {} ms",
                    sh.opts.timeout.as_millis()
                );
                let _ = send(&mut stream, &Response::error(ErrorKind::Timeout, msg));
                return;
            }
        };
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let resp = match serde_json::from_slice::<Request>(&line) {
            Ok(req) => {
                let h = sh.handler.clone();
                // A bug in a handler costs this request, not the server.
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || h.handle(req)))
                    .unwrap_or_else(|_| {
                        Response::error(
                            ErrorKind::Failed,
                            "internal error while handling the request",
                        )
                    })
            }
            Err(e) => Response::error(ErrorKind::BadRequest, format!("bad request: {e}")),
        };
        if send(&mut stream, &resp).is_err() {
            return;
        }
    }
}

/// Why a client request failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot reach xvs at {path}: {source}")]
    Connect { path: PathBuf, source: io::Error },
    #[error("talking to xvs: {0}")]
    Io(#[from] io::Error),
    #[error("xvs sent a reply this xvsadm does not understand: {0}")]
    BadReply(String),
}

/// A connection to the control socket.
pub struct Client {
    stream: UnixStream,
    pending: Vec<u8>,
}

/// Largest reply a client accepts (listings of huge tables included).
const MAX_REPLY: usize = 256 << 20;

impl Client {
    /// Connects to `path`; `timeout` bounds each request and reply.
    ///
    /// # Errors
    /// Nobody listens at `path`, or no permission.
    pub fn connect(path: &Path, timeout: Duration) -> Result<Client, ClientError> {
        let stream = UnixStream::connect(path).map_err(|source| ClientError::Connect {
            path: path.to_path_buf(),
            source,
        })?;
        stream.set_read_timeout(Some(timeout))?;
        stream.set_write_timeout(Some(timeout))?;
        Ok(Client {
            stream,
            pending: Vec::new(),
        })
    }

    /// Sends `req` and waits for its response.
    ///
    /// # Errors
    /// I/O errors, or a reply that is not a [`Response`].
    pub fn request(&mut self, req: &Request) -> Result<Response, ClientError> {
        let mut line = serde_json::to_vec(req).map_err(io::Error::other)?;
        line.push(b'\n');
        self.stream.write_all(&line)?;
        loop {
            if let Some(i) = self.pending.iter().position(|&b| b == b'\n') {
                let reply: Vec<u8> = self.pending.drain(..=i).collect();
                return serde_json::from_slice(&reply[..i])
                    .map_err(|e| ClientError::BadReply(e.to_string()));
            }
            if self.pending.len() > MAX_REPLY {
                return Err(ClientError::BadReply(format!(
                    "reply larger than {MAX_REPLY} bytes"
                )));
            }
            let mut chunk = [0u8; 65536];
            let n = self.stream.read(&mut chunk)?;
            if n == 0 {
                return Err(ClientError::BadReply(
                    "connection closed before the reply".into(),
                ));
            }
            self.pending.extend_from_slice(&chunk[..n]);
        }
    }
}

/// Called with the model after every change (inside the handler's lock,
/// so changes are published in order).
pub type Publisher = Box<dyn Fn(&Model) + Send + Sync>;

struct ModelState {
    model: Model,
    stats: StatsView,
    conns: Vec<ConnEntry>,
}

/// Serves the ipvsadm table from a [`Model`] in memory: applies changes
/// (all or nothing, see [`ipvsadm::apply`]), renders listings from the
/// figures last given with [`ModelHandler::set_view`], zeroes them on
/// `-Z`. Daemon commands (`--reload`, `--stats`) get `unsupported`: the
/// daemon wraps this handler and answers those itself.
pub struct ModelHandler {
    state: Mutex<ModelState>,
    publish: Option<Publisher>,
}

impl ModelHandler {
    /// A handler over `model`, with empty figures.
    pub fn new(model: Model) -> ModelHandler {
        ModelHandler {
            state: Mutex::new(ModelState {
                model,
                stats: StatsView::default(),
                conns: Vec::new(),
            }),
            publish: None,
        }
    }

    /// As [`ModelHandler::new`], calling `publish` after each change.
    pub fn with_publisher(model: Model, publish: Publisher) -> ModelHandler {
        ModelHandler {
            publish: Some(publish),
            ..ModelHandler::new(model)
        }
    }

    /// A copy of the current model.
    pub fn model(&self) -> Model {
        lock(&self.state).model.clone()
    }

    /// Replaces the figures the listings show.
    pub fn set_view(&self, stats: StatsView, conns: Vec<ConnEntry>) {
        let mut st = lock(&self.state);
        st.stats = stats;
        st.conns = conns;
    }

    /// A copy of the figures (after `-Z`, zeroed).
    pub fn stats(&self) -> StatsView {
        lock(&self.state).stats.clone()
    }
}

impl ControlHandler for ModelHandler {
    fn handle(&self, req: Request) -> Response {
        let cmd = match req {
            Request::Ping => return Response::ok(ipvsadm::version()),
            Request::Ipvsadm(cmd) => cmd,
        };
        let mut st = lock(&self.state);
        match ipvsadm::apply(&mut st.model, &cmd) {
            Ok(Outcome::Changed) => {
                if let Some(p) = &self.publish {
                    p(&st.model);
                }
                Response::ok("")
            }
            Ok(Outcome::Zero(svc)) => {
                st.stats.zero(svc.as_ref());
                Response::ok("")
            }
            Ok(Outcome::Query) => {
                let view = View { stats: &st.stats, conns: &st.conns, table_size: ipvsadm::TABLE_SIZE };
                match ipvsadm::render(&cmd, &st.model, &view) {
                    Ok(text) => Response::ok(text),
                    Err(e) => e.into(),
                }
            }
            Ok(Outcome::Daemon) => Response::error(
                ErrorKind::Unsupported,
                "this control socket serves the ipvsadm table only; --reload and --stats need `xvs run`",
            ),
            Err(e) => e.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::BufRead;

    fn start(opts: ServerOpts) -> (tempfile::TempDir, Server, Arc<ModelHandler>) {
        let dir = tempfile::tempdir().unwrap();
        let h = Arc::new(ModelHandler::new(Model::default()));
        let s = Server::bind(&dir.path().join("xvs.sock"), h.clone(), opts).unwrap();
        (dir, s, h)
    }

    /// Raw exchange: writes `bytes`, reads one reply line (None: closed).
    fn raw(path: &Path, bytes: &[u8]) -> (UnixStream, Option<Response>) {
        let mut s = UnixStream::connect(path).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let _ = s.write_all(bytes);
        let r = read_reply(&mut s);
        (s, r)
    }

    fn read_reply(s: &mut UnixStream) -> Option<Response> {
        let mut line = String::new();
        let mut rd = io::BufReader::new(s.try_clone().unwrap());
        match rd.read_line(&mut line) {
            Ok(0) | Err(_) => None,
            Ok(_) => Some(serde_json::from_str(&line).unwrap()),
        }
    }

    fn kind(r: &Option<Response>) -> Option<ErrorKind> {
        r.as_ref().and_then(|r| r.error.as_ref()).map(|e| e.kind)
    }

    fn ping_ok(path: &Path) {
        let mut c = Client::connect(path, Duration::from_secs(10)).unwrap();
        let r = c.request(&Request::Ping).unwrap();
        assert!(r.output.starts_with("xvsadm v"), "{r:?}");
    }

    #[test]
    fn a_socket_group_opens_it_to_the_group() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("g.sock");
        use std::os::unix::fs::MetadataExt;
        // Root may give any group (nogroup here, not its own); anyone else
        // its own.
        let own = std::fs::metadata(dir.path()).unwrap().gid();
        let gid = if crate::io::xdp::is_root() { 65534 } else { own };
        let opts = ServerOpts { group: Some(gid), mode: 0o660, ..ServerOpts::default() };
        let s = Server::bind(&path, Arc::new(ModelHandler::new(Model::default())), opts).unwrap();
        let meta = std::fs::metadata(s.path()).unwrap();
        assert_eq!((meta.permissions().mode() & 0o777, meta.gid()), (0o660, gid));
    }

    #[test]
        fn socket_is_private_and_replaced_when_stale() {
        let (dir, s, _) = start(ServerOpts::default());
        let mode = std::fs::metadata(s.path()).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let e = Server::bind(
            s.path(),
            Arc::new(ModelHandler::new(Model::default())),
            ServerOpts::default(),
        );
        assert!(
            matches!(e, Err(ControlError::InUse { .. })),
            "a live socket is not stolen"
        );
        let path = s.path().to_path_buf();
        // A stale socket file (listener gone, file left) is replaced.
        let stale = UnixListener::bind(dir.path().join("stale.sock")).unwrap();
        drop(stale);
        let s2 = Server::bind(
            &dir.path().join("stale.sock"),
            Arc::new(ModelHandler::new(Model::default())),
            ServerOpts::default(),
        )
        .unwrap();
        ping_ok(s2.path());
        s.shutdown();
        assert!(!path.exists(), "shutdown removes the socket");
        std::fs::write(dir.path().join("file"), b"x").unwrap();
        let e = Server::bind(
            &dir.path().join("file"),
            Arc::new(ModelHandler::new(Model::default())),
            ServerOpts::default(),
        );
        assert!(matches!(e, Err(ControlError::NotSocket { .. })));
    }

    #[test]
    fn shutdown_needs_no_socket_file() {
        let (dir, s, _) = start(ServerOpts::default());
        let mut held = Client::connect(s.path(), Duration::from_secs(10)).unwrap();
        held.request(&Request::Ping).unwrap();
        drop(dir); // the socket file and its directory are gone
        s.shutdown(); // returns: accept is polled, clients are shut down
        assert!(
            held.request(&Request::Ping).is_err(),
            "client connections are closed"
        );
    }

    #[test]
    fn commands_round_trip_through_the_socket() {
        let (_d, s, h) = start(ServerOpts::default());
        let mut c = Client::connect(s.path(), Duration::from_secs(10)).unwrap();
        let cmd = |line: &str| {
            Request::Ipvsadm(ipvsadm::parse(&line.split_whitespace().collect::<Vec<_>>()).unwrap())
        };
        assert_eq!(
            c.request(&cmd("-A -t 10.0.0.1:80 -s rr")).unwrap(),
            Response::ok("")
        );
        let r = c.request(&cmd("-A -t 10.0.0.1:80 -s rr")).unwrap();
        assert_eq!(
            (r.exit_code(), r.error.unwrap().message),
            (1, "Service already exists".to_string())
        );
        let r = c.request(&cmd("-S -n")).unwrap();
        assert_eq!(r.output, "-A -t 10.0.0.1:80 -s rr\n");
        let r = c.request(&cmd("--reload")).unwrap();
        assert_eq!(r.error.map(|e| e.kind), Some(ErrorKind::Unsupported));
        let r = c
            .request(&Request::Ipvsadm(Command::Restore {
                rules: "-a -t 10.0.0.1:80 -r 10.0.1.1 -w x\n".into(),
            }))
            .unwrap();
        assert_eq!(r.exit_code(), 2, "a usage error in rules is a usage error");
        assert_eq!(h.model().services.len(), 1);
    }

    #[test]
    fn bad_json_and_unknown_requests_get_errors_and_the_connection_lives() {
        let (_d, s, _) = start(ServerOpts::default());
        let (mut conn, r) = raw(s.path(), b"{not json\n");
        assert_eq!(kind(&r), Some(ErrorKind::BadRequest));
        conn.write_all(b"{\"frobnicate\":{}}\n").unwrap();
        let r = read_reply(&mut conn);
        assert_eq!(kind(&r), Some(ErrorKind::BadRequest));
        assert!(r
            .unwrap()
            .error
            .unwrap()
            .message
            .contains("unknown variant"));
        // A command that does not deserialize (bad field type).
        conn.write_all(b"{\"ipvsadm\":{\"zero\":42}}\n").unwrap();
        assert_eq!(kind(&read_reply(&mut conn)), Some(ErrorKind::BadRequest));
        // Same connection, good request.
        conn.write_all(b"\"ping\"\n").unwrap();
        let r = read_reply(&mut conn).unwrap();
        assert!(r.error.is_none() && r.output.starts_with("xvsadm"), "{r:?}");
        ping_ok(s.path());
    }

    #[test]
    fn oversized_request_is_refused_and_closed() {
        let opts = ServerOpts {
            max_request: 1024,
            ..ServerOpts::default()
        };
        let (_d, s, _) = start(opts);
        let mut big = vec![b'x'; 5000];
        big.push(b'\n');
        let (mut conn, r) = raw(s.path(), &big);
        assert_eq!(kind(&r), Some(ErrorKind::TooLarge));
        assert!(read_reply(&mut conn).is_none(), "connection closed");
        // Oversized with no newline at all: refused as soon as it passes the limit.
        let (_c, r) = raw(s.path(), &vec![b'{'; 3000]);
        assert_eq!(kind(&r), Some(ErrorKind::TooLarge));
        ping_ok(s.path());
    }

    #[test]
    fn slow_client_times_out_and_others_are_served_meanwhile() {
        let opts = ServerOpts {
            timeout: Duration::from_millis(300),
            ..ServerOpts::default()
        };
        let (_d, s, _) = start(opts);
        let mut slow = UnixStream::connect(s.path()).unwrap();
        slow.set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        slow.write_all(b"{\"ipvsa").unwrap();
        ping_ok(s.path());
        // Trickling bytes does not extend the deadline.
        for _ in 0..3 {
            std::thread::sleep(Duration::from_millis(50));
            let _ = slow.write_all(b" ");
        }
        let r = read_reply(&mut slow);
        assert_eq!(kind(&r), Some(ErrorKind::Timeout));
        assert!(read_reply(&mut slow).is_none(), "connection closed");
        ping_ok(s.path());
    }

    #[test]
    fn many_clients_at_once() {
        let (_d, s, h) = start(ServerOpts::default());
        let path = s.path().to_path_buf();
        let threads: Vec<_> = (0..16)
            .map(|i| {
                let path = path.clone();
                std::thread::spawn(move || {
                    let mut c = Client::connect(&path, Duration::from_secs(20)).unwrap();
                    let line = format!("-A -t 10.0.{i}.1:80 -s rr");
                    let cmd = ipvsadm::parse(&line.split_whitespace().collect::<Vec<_>>()).unwrap();
                    assert_eq!(c.request(&Request::Ipvsadm(cmd)).unwrap(), Response::ok(""));
                    for _ in 0..5 {
                        let r = c
                            .request(&Request::Ipvsadm(Command::Save { numeric: true }))
                            .unwrap();
                        assert!(r.output.contains(&format!("-A -t 10.0.{i}.1:80 -s rr\n")));
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(h.model().services.len(), 16);
    }

    #[test]
    fn beyond_max_clients_is_busy() {
        let opts = ServerOpts {
            max_clients: 2,
            timeout: Duration::from_secs(10),
            ..ServerOpts::default()
        };
        let (_d, s, _) = start(opts);
        let mut held = Vec::new();
        for _ in 0..2 {
            // Each holds a client thread: prove it is being served.
            let mut c = Client::connect(s.path(), Duration::from_secs(10)).unwrap();
            c.request(&Request::Ping).unwrap();
            held.push(c);
        }
        let (_c, r) = raw(s.path(), b"\"ping\"\n");
        assert_eq!(kind(&r), Some(ErrorKind::Busy));
        drop(held);
        // Threads notice the close and free their slots.
        let mut served = false;
        for _ in 0..200 {
            let (_c, r) = raw(s.path(), b"\"ping\"\n");
            if r.as_ref().is_some_and(|r| r.error.is_none()) {
                served = true;
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(served, "slots are released when clients leave");
    }

    #[test]
    fn publisher_sees_every_change_and_only_changes() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let s2 = seen.clone();
        let h = ModelHandler::with_publisher(
            Model::default(),
            Box::new(move |m: &Model| lock(&s2).push(m.services.len())),
        );
        let cmd = |line: &str| {
            Request::Ipvsadm(ipvsadm::parse(&line.split_whitespace().collect::<Vec<_>>()).unwrap())
        };
        assert_eq!(h.handle(cmd("-A -t 10.0.0.1:80 -s rr")).exit_code(), 0);
        assert_eq!(h.handle(cmd("-A -t 10.0.0.1:80 -s rr")).exit_code(), 1);
        assert_eq!(h.handle(cmd("-L -n")).exit_code(), 0);
        assert_eq!(h.handle(cmd("-A -t 10.0.0.2:80 -s rr")).exit_code(), 0);
        assert_eq!(*lock(&seen), vec![1, 2]);
    }

    #[test]
    fn handler_panic_costs_one_request() {
        struct Boom;
        impl ControlHandler for Boom {
            fn handle(&self, req: Request) -> Response {
                match req {
                    Request::Ping => Response::ok("pong"),
                    Request::Ipvsadm(_) => panic!("handler bug"),
                }
            }
        }
        let dir = tempfile::tempdir().unwrap();
        let s = Server::bind(&dir.path().join("s"), Arc::new(Boom), ServerOpts::default()).unwrap();
        let mut c = Client::connect(s.path(), Duration::from_secs(10)).unwrap();
        let r = c.request(&Request::Ipvsadm(Command::Clear)).unwrap();
        assert_eq!(r.error.map(|e| e.kind), Some(ErrorKind::Failed));
        assert_eq!(c.request(&Request::Ping).unwrap().output, "pong");
    }
}
