//! The DNS listeners — UDP by our own batched loop (plain queries read and answered with
//! [`crate::wire`]), TCP by our own accept loop with connection caps (`tcp.rs`) — and the
//! bridge ([`Handler`]) that turns a hickory request into a pipeline [`Query`] and the
//! pipeline's [`Answer`](crate::pipeline::Answer) into a response (TCP, and unusual UDP
//! queries).
//!
//! The pipeline in force sits behind an [`ArcSwap`], so a reload swaps it between two queries
//! without dropping any.
//!
//! Under abuse: a panic while answering costs one query or connection (`panics.rs`); a
//! listener that ends anyway is reported by [`Health`] and [`Listeners::failed`], so the
//! process can exit and be restarted rather than live on half-dead; descriptors are shared
//! out by [`descriptors::Budget`].

use std::{net::SocketAddr, sync::Arc, time::Duration};

use arc_swap::ArcSwap;
use hickory_proto::{
    op::{Edns, Metadata, OpCode, ResponseCode},
    rr::{DNSClass, Record},
};
use hickory_server::{
    net::{runtime::Time, xfer::Protocol},
    server::{Request, RequestHandler, ResponseHandler, ResponseInfo},
    zone_handler::MessageResponseBuilder,
};
use tokio::net::{TcpListener, UdpSocket};
use tokio_util::sync::CancellationToken;

use crate::{
    config::{ServerConfig, UdpSockets},
    metrics::Metrics,
    pipeline::{Pipeline, Query, Transport},
};

use drain::Drain;

/// Our EDNS UDP payload size (DNS flag day 2020); larger answers are truncated (TC).
pub const MAX_UDP_PAYLOAD: u16 = 1232;

/// The kernel receive buffer asked for on each UDP socket. Linux's default (208 KiB) holds
/// about 200 small queries: at 10,000 queries a second, 20 ms without the CPU (another
/// process's turn, a reload, a page fault) and the kernel drops every further query until the
/// loop reads again — the soak (`benches/soak.sh`) lost 4–8 % of its queries so, and its
/// in-group probe saw timeouts. 4 MiB holds several thousand, about half a second at that
/// rate, and a query answered late beats one the device must time out and resend. The kernel
/// caps it at `net.core.rmem_max` (raise that sysctl for the full size).
pub const UDP_RECEIVE_BUFFER: usize = 4 << 20;

/// Why the listener could not start.
#[derive(Debug, thiserror::Error)]
pub enum ListenError {
    /// A socket could not be bound.
    #[error("cannot listen on {addr} ({protocol}): {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// "UDP" or "TCP".
        protocol: &'static str,
        /// The OS error.
        source: std::io::Error,
    },
}

pub mod accept;
mod batch;
pub mod descriptors;
mod drain;
mod health;
mod panics;
mod tcp;
mod udp;

pub use health::Health;

/// Test helpers for other modules' unit tests.
#[cfg(test)]
pub(crate) mod testing {
    use super::Health;

    /// Registers a listener called `name` in `health` and marks it down.
    pub(crate) fn mark_down(health: &Health, name: &str) {
        let index = health.register(name.to_string());
        health.down(index, "ended");
    }
}
pub use tcp::MAX_QUERY as MAX_TCP_QUERY;
/// For the fuzz target that reads datagrams as the UDP listener does.
pub(crate) use udp::form_error_reply;
pub use udp::{query_from_wire, write_answer};

/// hickory's request handler, bridging into the pipeline in force.
#[derive(Clone)]
pub struct Handler {
    pipeline: Arc<ArcSwap<Pipeline>>,
    drain: Drain,
}

impl Handler {
    /// A handler running queries through whatever pipeline `pipeline` holds.
    pub fn new(pipeline: Arc<ArcSwap<Pipeline>>) -> Handler {
        Handler {
            pipeline,
            drain: Drain::default(),
        }
    }

    /// Whether the pipeline in force serves `client` (it belongs to a group).
    fn admits(&self, client: std::net::IpAddr) -> bool {
        self.pipeline.load().admits(client)
    }
}

#[async_trait::async_trait]
impl RequestHandler for Handler {
    async fn handle_request<R: ResponseHandler, T: Time>(
        &self,
        request: &Request,
        mut response: R,
    ) -> ResponseInfo {
        let Some(_guard) = self.drain.enter() else {
            // Draining for shutdown: stay silent so the client asks its other server.
            return dropped(request);
        };
        let client_edns = request.edns.as_ref();
        let mut edns = Edns::new();
        edns.set_max_payload(
            client_edns
                .map(|e| e.max_payload().clamp(512, MAX_UDP_PAYLOAD))
                .unwrap_or(512),
        );
        edns.set_dnssec_ok(client_edns.is_some_and(|e| e.flags().dnssec_ok));
        let mut builder = MessageResponseBuilder::from_message_request(request);
        if client_edns.is_some() {
            builder.edns(&edns);
        }

        let query = match (request.metadata.op_code, request.queries.queries()) {
            (OpCode::Query, [q])
                if q.query_class() == DNSClass::IN || q.query_class() == DNSClass::CH =>
            {
                q
            }
            (OpCode::Query, _) => {
                return send(
                    response,
                    builder.error_msg(&request.metadata, ResponseCode::FormErr),
                    request,
                )
                .await;
            }
            _ => {
                return send(
                    response,
                    builder.error_msg(&request.metadata, ResponseCode::NotImp),
                    request,
                )
                .await;
            }
        };
        if client_edns.is_some_and(|e| e.version() > 0) {
            // RFC 6891 §6.1.3: an EDNS version we do not implement gets BADVERS (a client then
            // retries with version 0; tests/binary.rs checks this with dig).
            return send(
                response,
                builder.error_msg(&request.metadata, ResponseCode::BADVERS),
                request,
            )
            .await;
        }

        let mut q = Query::new(
            request.src().ip(),
            match request.protocol() {
                Protocol::Udp => Transport::Udp,
                _ => Transport::Tcp,
            },
            query.original().name().clone(),
            query.query_type(),
        );
        q.qclass = query.query_class();
        q.dnssec_ok = edns.flags().dnssec_ok;
        q.checking_disabled = request.metadata.checking_disabled;

        let pipeline = self.pipeline.load_full();
        let answer = pipeline.resolve(&mut q).await;

        let mut metadata = Metadata::response_from_request(&request.metadata);
        metadata.recursion_available = true;
        metadata.authentic_data = answer.authentic_data && !q.checking_disabled;
        metadata.response_code = answer.rcode;
        let sections = answer.sections_as_sent();
        let strip = |r: &&Record| q.dnssec_ok || !r.record_type().is_dnssec();
        let message = builder.build(
            metadata,
            sections.answers.iter().filter(strip),
            sections.authorities.iter().filter(strip),
            std::iter::empty(),
            sections.additionals.iter().filter(strip),
        );
        match response.send_response(message).await {
            Ok(info) => info,
            Err(error) => {
                tracing::debug!(%error, "failed to send a response");
                dropped(request)
            }
        }
    }
}

/// What hickory is told when no response was sent.
fn dropped(request: &Request) -> ResponseInfo {
    let mut metadata = Metadata::response_from_request(&request.metadata);
    metadata.response_code = ResponseCode::ServFail;
    ResponseInfo::from(hickory_proto::op::Header {
        metadata,
        counts: Default::default(),
    })
}

async fn send<'a, R: ResponseHandler>(
    mut response: R,
    message: hickory_server::zone_handler::MessageResponse<
        '_,
        'a,
        impl Iterator<Item = &'a Record> + Send + 'a,
        impl Iterator<Item = &'a Record> + Send + 'a,
        impl Iterator<Item = &'a Record> + Send + 'a,
        impl Iterator<Item = &'a Record> + Send + 'a,
    >,
    request: &Request,
) -> ResponseInfo {
    match response.send_response(message).await {
        Ok(info) => info,
        Err(_) => dropped(request),
    }
}

/// Asks for [`UDP_RECEIVE_BUFFER`] on each socket of `group`; the kernel may grant less
/// (`net.core.rmem_max`), which is logged once with the hint, not an error: the socket works
/// with any buffer.
fn grow_receive_buffers(group: &[UdpSocket], addr: SocketAddr) {
    let mut granted = UDP_RECEIVE_BUFFER;
    for socket in group {
        let socket = socket2::SockRef::from(socket);
        if let Err(error) = socket.set_recv_buffer_size(UDP_RECEIVE_BUFFER) {
            tracing::warn!(%addr, %error, "cannot set the UDP receive buffer");
            return;
        }
        // Linux reports twice the size it set.
        granted = granted.min(socket.recv_buffer_size().unwrap_or(0) / 2);
    }
    if granted < UDP_RECEIVE_BUFFER {
        tracing::info!(
            %addr,
            granted,
            wanted = UDP_RECEIVE_BUFFER,
            "UDP receive buffer smaller than wanted: raise the sysctl net.core.rmem_max"
        );
    }
}

/// Sockets bound for DNS: per address, one UDP socket or a group of them (see
/// [`UdpSockets`]) and one TCP listener.
pub struct Sockets {
    udp: Vec<Vec<UdpSocket>>,
    tcp: Vec<TcpListener>,
}

impl Sockets {
    /// Binds every address (port 0 picks a free port, as tests do). With
    /// [`UdpSockets::PerWorker`] on Linux each address gets one UDP socket per worker thread
    /// of the current runtime, all on one port with `SO_REUSEPORT` (the kernel admits to a
    /// group only sockets of the same user); they share one cache and one policy.
    pub async fn bind(
        addrs: &[SocketAddr],
        udp_sockets: UdpSockets,
    ) -> Result<Sockets, ListenError> {
        let group = match udp_sockets {
            UdpSockets::PerWorker if cfg!(target_os = "linux") => workers(),
            _ => 1,
        };
        let mut udp = Vec::new();
        let mut tcp = Vec::new();
        for &addr in addrs {
            let (u, t) = bind_address(addr, group.max(1)).await?;
            udp.push(u);
            tcp.push(t);
        }
        Ok(Sockets { udp, tcp })
    }

    /// The kernel receive buffer of each UDP socket, in bytes, as the kernel reports it
    /// (Linux reports twice what was set, for its bookkeeping).
    pub fn udp_receive_buffers(&self) -> Vec<usize> {
        self.udp
            .iter()
            .flatten()
            .map(|s| socket2::SockRef::from(s).recv_buffer_size().unwrap_or(0))
            .collect()
    }

    /// The bound addresses (UDP and TCP share each port).
    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        self.udp
            .iter()
            .filter_map(|group| group.first()?.local_addr().ok())
            .collect()
    }

    /// Starts serving `handler` on every socket: UDP with our own batched loop, TCP with our
    /// own accept loop under `options`' caps.
    pub fn serve(self, handler: Handler, options: ServeOptions) -> Listeners {
        let shutdown = CancellationToken::new();
        let health = Health::default();
        let shared = Arc::new(handler.clone());
        let udp_panics = options.metrics.panics.with_label_values(&["udp"]);
        let mut tasks = Vec::new();
        for group in self.udp {
            let Some(first) = group.first() else { continue };
            let name = format!(
                "dns udp {}",
                first.local_addr().map_or("?".into(), |a| a.to_string())
            );
            // A group: one loop per socket, one socket per worker. One socket: one loop per
            // worker on it (up to 4), so that whichever worker is free reads the next
            // datagrams. Not one per CPU: a datagram's readiness wakes every loop waiting on
            // the socket, and loops beyond the workers only add wake-ups that find nothing.
            let loops_per_socket = if group.len() > 1 { 1 } else { workers().min(4) };
            let mut i = 0;
            for socket in group {
                let socket = Arc::new(socket);
                for _ in 0..loops_per_socket {
                    tasks.push(supervise(
                        &health,
                        format!("{name} loop {i}"),
                        &shutdown,
                        udp::serve(
                            socket.clone(),
                            shared.clone(),
                            shutdown.clone(),
                            udp_panics.clone(),
                        ),
                    ));
                    i += 1;
                }
            }
        }
        let slots = tcp::Slots::new(
            options.budget,
            options.metrics.connections_open.with_label_values(&["tcp"]),
        );
        let tcp_shared = Arc::new(tcp::Shared {
            handler: shared,
            slots,
            idle_timeout: options.tcp_idle_timeout,
            metrics: options.metrics.clone(),
            shutdown: shutdown.clone(),
        });
        for listener in self.tcp {
            let name = format!(
                "dns tcp {}",
                listener.local_addr().map_or("?".into(), |a| a.to_string())
            );
            tasks.push(supervise(
                &health,
                name,
                &shutdown,
                tcp::serve(listener, tcp_shared.clone()),
            ));
        }
        Listeners {
            tasks,
            shutdown,
            drain: handler.drain.clone(),
            health,
        }
    }
}

/// Binds `addr`'s TCP listener and its UDP group of `group` sockets, on one port.
///
/// TCP first, and the UDP port taken from it: a second server started on a port in use fails
/// there, before any of its UDP sockets could join the first one's group and take a share of
/// its queries; and port 0 never picks a port whose group another server holds (the kernel
/// would offer such a UDP port to a socket of the same user, but not its TCP twin).
async fn bind_address(
    addr: SocketAddr,
    group: usize,
) -> Result<(Vec<UdpSocket>, TcpListener), ListenError> {
    // Port 0 (tests): the UDP twin of the port picked for TCP may be taken (by some client's
    // socket); pick again rather than fail.
    let tries = if addr.port() == 0 { 20 } else { 1 };
    let mut attempt = 0;
    loop {
        attempt += 1;
        let tcp = TcpListener::bind(addr)
            .await
            .map_err(|source| ListenError::Bind {
                addr,
                protocol: "TCP",
                source,
            })?;
        let bound = tcp.local_addr().unwrap_or(addr);
        match (0..group)
            .map(|_| bind_udp(bound, group > 1))
            .collect::<std::io::Result<Vec<_>>>()
        {
            Ok(udp) => {
                grow_receive_buffers(&udp, bound);
                return Ok((udp, tcp));
            }
            Err(e) if attempt < tries && e.kind() == std::io::ErrorKind::AddrInUse => {}
            Err(source) => {
                return Err(ListenError::Bind {
                    addr: bound,
                    protocol: "UDP",
                    source,
                })
            }
        }
    }
}

/// One non-blocking UDP socket on `addr`, in a `SO_REUSEPORT` group when `reuse_port`.
fn bind_udp(addr: SocketAddr, reuse_port: bool) -> std::io::Result<UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    #[cfg(target_os = "linux")]
    if reuse_port {
        socket.set_reuse_port(true)?;
    }
    #[cfg(not(target_os = "linux"))]
    let _ = reuse_port;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    UdpSocket::from_std(socket.into())
}

/// How the listeners run: the TCP idle timeout and connection caps, and where they count.
#[derive(Clone)]
pub struct ServeOptions {
    /// A TCP connection with no complete query for this long is closed.
    pub tcp_idle_timeout: Duration,
    /// Connection caps.
    pub budget: descriptors::Budget,
    /// Where panics and refused connections are counted.
    pub metrics: Arc<Metrics>,
}

impl ServeOptions {
    /// The options `server` asks for, with caps lowered to fit `open_file_limit`
    /// descriptors (the caps in force are logged).
    pub fn new(server: &ServerConfig, open_file_limit: u64, metrics: Arc<Metrics>) -> Self {
        let budget = descriptors::Budget::new(server, open_file_limit);
        tracing::info!(
            tcp = budget.tcp,
            tcp_per_client = budget.tcp_per_client,
            tcp_outsiders = budget.tcp_outsiders,
            http = budget.http,
            "connection caps"
        );
        ServeOptions {
            tcp_idle_timeout: server.tcp_idle_timeout,
            budget,
            metrics,
        }
    }
}

/// The current runtime's worker threads (1 outside a runtime).
fn workers() -> usize {
    tokio::runtime::Handle::try_current().map_or(1, |h| h.metrics().num_workers())
}

/// Runs a listener task; if it ends (or panics) before shutdown, marks it down in `health`.
fn supervise(
    health: &Health,
    name: String,
    shutdown: &CancellationToken,
    task: impl std::future::Future<Output = ()> + Send + 'static,
) -> tokio::task::JoinHandle<()> {
    let index = health.register(name);
    let (health, shutdown) = (health.clone(), shutdown.clone());
    tokio::spawn(async move {
        // The listener runs in a task of its own so that a panic in its loop is seen here.
        let panicked = tokio::spawn(task).await.is_err_and(|e| e.is_panic());
        if !shutdown.is_cancelled() {
            health.down(index, if panicked { "panicked" } else { "ended" });
        }
    })
}

/// Running DNS listeners.
pub struct Listeners {
    tasks: Vec<tokio::task::JoinHandle<()>>,
    shutdown: CancellationToken,
    drain: Drain,
    health: Health,
}

impl Listeners {
    /// Each listener's state, for `/healthz`.
    pub fn health(&self) -> Health {
        self.health.clone()
    }

    /// Completes, saying which, when a listener has ended or panicked before shutdown: the
    /// process should then exit non-zero so that systemd restarts it.
    pub fn failed(&self) -> impl std::future::Future<Output = String> + Send + 'static {
        let health = self.health.clone();
        async move { health.failed().await }
    }

    /// Stops taking new queries, lets those in flight finish (up to `grace`), then stops the
    /// listeners.
    pub async fn shutdown(self, grace: Duration) {
        let left = self.drain.drain(grace).await;
        if left > 0 {
            tracing::warn!(
                left,
                "grace period over; abandoning queries still in flight"
            );
        }
        self.stop().await;
    }

    /// Stops accepting, then waits (up to a second) for the listener tasks to end.
    async fn stop(self) {
        self.shutdown.cancel();
        let _ = tokio::time::timeout(Duration::from_secs(1), async {
            for task in self.tasks {
                let _ = task.await;
            }
        })
        .await;
    }
}
