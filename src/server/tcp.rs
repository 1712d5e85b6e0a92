//! The DNS-over-TCP listener: our own accept loop, connection caps and framing.
//!
//! hickory-server's TCP listener accepts every connection, keeps each until it has been idle
//! for the timeout, and on an accept error (EMFILE) retries at once. A laptop opening ~1,100
//! idle connections therefore used to take every descriptor (no upstream socket could be
//! opened, so every uncached name got SERVFAIL) and set the accept loop spinning. Here:
//!
//! - every connection takes a slot under three caps ([`Budget`]): in all, per client
//!   address, and for clients outside every group; a connection over a cap is closed at once;
//! - a failed `accept` backs off (10 ms doubling to 1 s) instead of spinning;
//! - each frame must arrive whole within the idle timeout (a client trickling bytes cannot
//!   hold a connection), and a query frame is at most [`MAX_QUERY`] bytes, read into a buffer
//!   only as large as the frame, so stalled connections pin little memory;
//! - a REFUSED answer (a client outside every group, or over its rate limit) is written and
//!   the connection closed, so refused clients hold no connection;
//! - each connection runs under `catch_unwind`: a panic costs that connection only.
//!
//! Queries on one connection are answered in order, one at a time (as hickory-server did).

use std::{
    collections::HashMap,
    io,
    net::{IpAddr, SocketAddr},
    sync::{Arc, Mutex},
    time::Duration,
};

use hickory_proto::{op::ResponseCode, rr::Record, serialize::binary::BinEncoder};
use hickory_server::{
    net::{runtime::TokioTime, xfer::Protocol, NetError},
    server::{Request, RequestHandler, ResponseHandler, ResponseInfo},
    zone_handler::MessageResponse,
};
use prometheus::IntGauge;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{tcp::OwnedReadHalf, TcpListener, TcpStream},
};
use tokio_util::sync::CancellationToken;

use super::{accept::Acceptor, descriptors::Budget, panics::CatchUnwind, Handler};
use crate::{log_limit::LogLimit, metrics::Metrics};

/// The largest query frame read. A query is one name and an OPT record (cookies, padding),
/// well under this; larger frames (UPDATE, AXFR payloads we do not serve) close the
/// connection instead of pinning up to 64 KB each.
pub const MAX_QUERY: usize = 4096;

static ACCEPT_WARNINGS: LogLimit = LogLimit::new("TCP accept failed", 5);
static CAP_WARNINGS: LogLimit = LogLimit::new("TCP connection cap reached", 5);

/// Which cap closed a connection (the metric's `cap` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Cap {
    /// All connections.
    Total,
    /// Connections from one address.
    Client,
    /// Connections from clients outside every group.
    Outsider,
}

impl Cap {
    pub(crate) fn label(self) -> &'static str {
        match self {
            Cap::Total => "total",
            Cap::Client => "client",
            Cap::Outsider => "outsider",
        }
    }
}

/// Counts connections against the caps. Shared by every TCP listener of one server.
pub(crate) struct Slots {
    budget: Budget,
    state: Mutex<SlotState>,
    open: IntGauge,
}

#[derive(Default)]
struct SlotState {
    total: usize,
    outsiders: usize,
    per_client: HashMap<IpAddr, usize>,
}

/// One connection's place under the caps; given back when dropped.
pub(crate) struct Slot {
    slots: Arc<Slots>,
    client: IpAddr,
    outsider: bool,
}

impl Slots {
    pub(crate) fn new(budget: Budget, open: IntGauge) -> Arc<Slots> {
        Arc::new(Slots {
            budget,
            state: Mutex::new(SlotState::default()),
            open,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, SlotState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A slot for a connection from `client`, unless a cap is reached.
    pub(crate) fn take(self: &Arc<Self>, client: IpAddr, outsider: bool) -> Result<Slot, Cap> {
        let client = client_key(client);
        let mut state = self.lock();
        if state.total >= self.budget.tcp {
            return Err(Cap::Total);
        }
        if outsider && state.outsiders >= self.budget.tcp_outsiders {
            return Err(Cap::Outsider);
        }
        let mine = state.per_client.entry(client).or_insert(0);
        if *mine >= self.budget.tcp_per_client {
            return Err(Cap::Client);
        }
        *mine += 1;
        state.total += 1;
        if outsider {
            state.outsiders += 1;
        }
        self.open.inc();
        Ok(Slot {
            slots: self.clone(),
            client,
            outsider,
        })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut state = self.slots.lock();
        state.total = state.total.saturating_sub(1);
        if self.outsider {
            state.outsiders = state.outsiders.saturating_sub(1);
        }
        if let Some(n) = state.per_client.get_mut(&self.client) {
            *n -= 1;
            if *n == 0 {
                state.per_client.remove(&self.client);
            }
        }
        self.slots.open.dec();
    }
}

/// Whose connection it is, for the per-client cap: an IPv6 client counts by its /64, since
/// one laptop can take as many addresses in its /64 as it likes (privacy addresses).
fn client_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6((u128::from(v6) & !((1u128 << 64) - 1)).into()),
        },
        v4 => v4,
    }
}

/// What every connection of one listener shares.
pub(crate) struct Shared {
    pub(crate) handler: Arc<Handler>,
    pub(crate) slots: Arc<Slots>,
    pub(crate) idle_timeout: Duration,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) shutdown: CancellationToken,
}

/// Accepts connections on `listener` until `shutdown` is cancelled.
pub(crate) async fn serve(listener: TcpListener, shared: Arc<Shared>) {
    let panics = shared.metrics.panics.with_label_values(&["tcp"]);
    let mut acceptor = Acceptor::new(listener, &ACCEPT_WARNINGS);
    while let Some((stream, peer)) = acceptor.accept(&shared.shutdown).await {
        let outsider = !shared.handler.admits(peer.ip());
        let slot = match shared.slots.take(peer.ip(), outsider) {
            Ok(slot) => slot,
            Err(cap) => {
                shared
                    .metrics
                    .connections_rejected
                    .with_label_values(&["tcp", cap.label()])
                    .inc();
                crate::warn_limited!(
                    CAP_WARNINGS,
                    cap = cap.label(),
                    "DNS-over-TCP connection closed at once: connection cap reached"
                );
                // Dropping the stream closes it; the client falls back to its other server.
                drop(stream);
                continue;
            }
        };
        let shared = shared.clone();
        tokio::spawn(CatchUnwind::new(
            async move {
                let _slot = slot;
                connection(stream, peer, &shared).await;
            },
            panics.clone(),
            "tcp",
        ));
    }
}

/// Why a connection ended without an error worth logging.
enum Frame {
    /// A query of this many bytes is in the buffer.
    Query,
    /// The client closed the connection between queries.
    Closed,
}

/// Reads one length-prefixed frame into `buf` (resized to the frame).
async fn read_frame(reader: &mut OwnedReadHalf, buf: &mut Vec<u8>) -> io::Result<Frame> {
    let mut len = [0u8; 2];
    match reader.read(&mut len[..1]).await? {
        0 => return Ok(Frame::Closed),
        _ => reader.read_exact(&mut len[1..]).await?,
    };
    let len = usize::from(u16::from_be_bytes(len));
    if !(12..=MAX_QUERY).contains(&len) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("query frame of {len} bytes"),
        ));
    }
    buf.clear();
    buf.resize(len, 0);
    reader.read_exact(buf).await?;
    Ok(Frame::Query)
}

/// Serves one connection: frames in, answers out, in order.
async fn connection(stream: TcpStream, peer: SocketAddr, shared: &Shared) {
    // Answers are small and written whole; Nagle would only delay them.
    let _ = stream.set_nodelay(true);
    let (mut reader, mut writer) = stream.into_split();
    let mut buf = Vec::new();
    loop {
        let frame = tokio::select! {
            frame = tokio::time::timeout(shared.idle_timeout, read_frame(&mut reader, &mut buf)) => frame,
            _ = shared.shutdown.cancelled() => return,
        };
        match frame {
            Ok(Ok(Frame::Query)) => {}
            Ok(Ok(Frame::Closed)) => return,
            Ok(Err(error)) => {
                tracing::debug!(%error, "TCP connection closed");
                return;
            }
            Err(_) => return, // idle, or a frame too slow to arrive
        }
        let Some((reply, rcode)) = answer(&buf, peer, &shared.handler).await else {
            continue;
        };
        let Ok(len) = u16::try_from(reply.len()) else {
            return;
        };
        let mut out = Vec::with_capacity(2 + reply.len());
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(&reply);
        // A client that does not read its answers must not hold the connection forever.
        match tokio::time::timeout(shared.idle_timeout, writer.write_all(&out)).await {
            Ok(Ok(())) => {}
            _ => return,
        }
        if rcode == Some(ResponseCode::Refused) {
            // Outside every group (or over its rate limit): it has its answer, and holds no
            // connection.
            let _ = writer.shutdown().await;
            return;
        }
    }
}

/// The answer to one query frame, and its response code when it was a full answer.
/// `None`: nothing is sent (a response, not a query; or draining for shutdown).
async fn answer(
    bytes: &[u8],
    peer: SocketAddr,
    handler: &Handler,
) -> Option<(Vec<u8>, Option<ResponseCode>)> {
    let request = match Request::from_bytes(bytes.to_vec(), peer, Protocol::Tcp) {
        Ok(request) => request,
        Err(_) => return super::udp::form_error_reply(bytes).map(|r| (r.to_vec(), None)),
    };
    if request.metadata.message_type == hickory_proto::op::MessageType::Response {
        return None;
    }
    let reply = TcpReply::default();
    handler
        .handle_request::<_, TokioTime>(&request, reply.clone())
        .await;
    let taken = reply.0.lock().unwrap_or_else(|p| p.into_inner()).take();
    taken.map(|(bytes, rcode)| (bytes, Some(rcode)))
}

/// An encoded response and its response code.
type Encoded = (Vec<u8>, ResponseCode);

/// Catches the one response the handler sends.
#[derive(Clone, Default)]
struct TcpReply(Arc<Mutex<Option<Encoded>>>);

#[async_trait::async_trait]
impl ResponseHandler for TcpReply {
    async fn send_response<'a>(
        &mut self,
        response: MessageResponse<
            '_,
            'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
        >,
    ) -> Result<ResponseInfo, NetError> {
        let mut bytes = Vec::with_capacity(512);
        let mut encoder = BinEncoder::new(&mut bytes);
        encoder.set_max_size(u16::MAX);
        let info = response.destructive_emit(&mut encoder)?;
        let rcode = info.response_code;
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = Some((bytes, rcode));
        Ok(info)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slots(tcp: usize, per_client: usize, outsiders: usize) -> Arc<Slots> {
        let budget = Budget {
            tcp,
            tcp_per_client: per_client,
            tcp_outsiders: outsiders,
            http: 1,
        };
        Slots::new(budget, IntGauge::new("open", "open").unwrap())
    }

    #[test]
    fn caps_per_client_for_outsiders_and_in_all() {
        let s = slots(5, 2, 1);
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let out: IpAddr = "192.0.2.1".parse().unwrap();
        let a1 = s.take(a, false).unwrap();
        let _a2 = s.take(a, false).unwrap();
        assert_eq!(s.take(a, false).err(), Some(Cap::Client));
        let _o = s.take(out, true).unwrap();
        assert_eq!(
            s.take("192.0.2.2".parse().unwrap(), true).err(),
            Some(Cap::Outsider)
        );
        let _b1 = s.take(b, false).unwrap();
        let _b2 = s.take(b, false).unwrap();
        assert_eq!(
            s.take("10.0.0.3".parse().unwrap(), false).err(),
            Some(Cap::Total)
        );
        drop(a1);
        assert!(
            s.take(a, false).is_ok(),
            "a closed connection gives its slot back"
        );
        assert_eq!(s.lock().per_client.len(), 3);
    }

    #[test]
    fn an_ipv6_client_counts_by_its_64() {
        let s = slots(10, 2, 10);
        let _a = s.take("2001:db8:1:2::1".parse().unwrap(), false).unwrap();
        let _b = s
            .take("2001:db8:1:2::ffff".parse().unwrap(), false)
            .unwrap();
        assert_eq!(
            s.take("2001:db8:1:2:abcd::7".parse().unwrap(), false).err(),
            Some(Cap::Client)
        );
        assert!(s.take("2001:db8:1:3::1".parse().unwrap(), false).is_ok());
        // A v4-mapped address is the IPv4 client it maps.
        let _c = s.take("10.0.0.1".parse().unwrap(), false).unwrap();
        let _d = s.take("::ffff:10.0.0.1".parse().unwrap(), false).unwrap();
        assert_eq!(
            s.take("10.0.0.1".parse().unwrap(), false).err(),
            Some(Cap::Client)
        );
    }
}
