//! The UDP listener loop.
//!
//! hickory-server's `Server` spawns a task for every datagram and hands every answer to a
//! channel that another task writes to the socket. Profiling `hedgerow serve` under dnsperf
//! showed that machinery, not the pipeline, dominating a cached answer's cost, so UDP gets this
//! loop instead: it decodes hickory's `Request`, runs the same [`Handler`], and answers cached
//! and blocked names inline, without a spawn or a channel hop. Only a query that has to wait
//! (an upstream exchange) is moved to its own task. TCP stays on hickory-server.

use std::{
    future::Future,
    net::SocketAddr,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
};

use hickory_proto::{
    op::{Header, MessageType},
    rr::Record,
    serialize::binary::{BinDecodable, BinDecoder, BinEncoder},
};
use hickory_server::{
    net::{runtime::TokioTime, xfer::Protocol, NetError},
    server::{Request, RequestHandler, ResponseHandler, ResponseInfo},
    zone_handler::MessageResponse,
};
use tokio::net::UdpSocket;
use tokio_util::sync::CancellationToken;

use super::Handler;

/// Largest datagram we read; anything longer is not a DNS query we answer.
const MAX_DATAGRAM: usize = 4096;

/// Writes one response to one client.
#[derive(Clone)]
struct UdpReply {
    socket: Arc<UdpSocket>,
    client: SocketAddr,
}

#[async_trait::async_trait]
impl ResponseHandler for UdpReply {
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
        // RFC 1035 §4.2.1 / RFC 6891: the requestor's advertised size (512 without EDNS);
        // the encoder sets TC and drops records that do not fit.
        encoder.set_max_size(response.edns().map_or(512, |e| e.max_payload()));
        let info = response.destructive_emit(&mut encoder)?;
        match self.socket.try_send_to(&bytes, self.client) {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                self.socket.send_to(&bytes, self.client).await?;
            }
            Err(e) => return Err(e.into()),
        }
        Ok(info)
    }
}

/// Answers queries arriving on `socket` until `shutdown` is cancelled.
pub(crate) async fn serve(
    socket: Arc<UdpSocket>,
    handler: Arc<Handler>,
    shutdown: CancellationToken,
) {
    let mut buf = vec![0u8; MAX_DATAGRAM];
    loop {
        let (len, client) = tokio::select! {
            received = socket.recv_from(&mut buf) => match received {
                Ok(r) => r,
                Err(error) => {
                    // ICMP errors from earlier sends surface here on Linux; keep serving.
                    tracing::debug!(%error, "UDP receive error");
                    continue;
                }
            },
            _ = shutdown.cancelled() => break,
        };
        if client.port() == 0 {
            continue;
        }
        let bytes = &buf[..len];
        let request = match Request::from_bytes(bytes.to_vec(), client, Protocol::Udp) {
            Ok(request) => request,
            Err(_) => {
                form_error(&socket, bytes, client);
                continue;
            }
        };
        if request.metadata.message_type == MessageType::Response {
            // Never answer responses: that would make us a reflector.
            continue;
        }
        let reply = UdpReply {
            socket: socket.clone(),
            client,
        };
        let handler = handler.clone();
        let mut work = Box::pin(async move {
            handler
                .handle_request::<_, TokioTime>(&request, reply)
                .await;
        });
        // Cached answers and local decisions finish on the first poll; only queries that
        // wait for an upstream get a task of their own.
        if poll_once(work.as_mut()).is_pending() {
            tokio::spawn(work);
        }
    }
}

fn poll_once(fut: Pin<&mut (impl Future<Output = ()> + ?Sized)>) -> Poll<()> {
    let mut cx = Context::from_waker(std::task::Waker::noop());
    fut.poll(&mut cx)
}

/// FORMERR for a datagram with a readable header but an unreadable body; nothing for less.
fn form_error(socket: &UdpSocket, bytes: &[u8], client: SocketAddr) {
    let Ok(header) = Header::read(&mut BinDecoder::new(bytes)) else {
        return;
    };
    if header.metadata.message_type == MessageType::Response {
        return;
    }
    let mut reply = [0u8; 12];
    reply[..2].copy_from_slice(&header.metadata.id.to_be_bytes());
    // QR = 1, same opcode, RCODE = FORMERR; all counts zero.
    reply[2] = 0x80 | (u8::from(header.metadata.op_code) << 3);
    reply[3] = 0x01;
    let _ = socket.try_send_to(&reply, client);
}
