//! Datagrams in batches: one `recvmmsg` reads up to [`BATCH`] queries and one `sendmmsg`
//! writes the answers made meanwhile (Linux; one datagram per call elsewhere).
//!
//! On loopback under load the kernel's send and receive paths were over half of the server's
//! time, and much of it per system call; NSD, Knot and dnsdist batch for the same reason.

use std::{io, net::SocketAddr};

use tokio::{io::Interest, net::UdpSocket};

/// Datagrams per system call.
pub(super) const BATCH: usize = 32;
/// Largest datagram read; anything longer is not a DNS query we answer.
const MAX_DATAGRAM: usize = 4096;

/// Receive buffers for one batch.
pub(super) struct Received {
    buffers: Vec<[u8; MAX_DATAGRAM]>,
    lens: [usize; BATCH],
    senders: Vec<Option<SocketAddr>>,
    count: usize,
}

impl Received {
    pub(super) fn new() -> Received {
        Received {
            buffers: vec![[0; MAX_DATAGRAM]; BATCH],
            lens: [0; BATCH],
            senders: vec![None; BATCH],
            count: 0,
        }
    }

    /// Waits until `socket` is readable, then reads as many datagrams as are queued (at
    /// least one, at most [`BATCH`]).
    pub(super) async fn recv(&mut self, socket: &UdpSocket) -> io::Result<()> {
        loop {
            socket.readable().await?;
            match socket.try_io(Interest::READABLE, || self.read_queued(socket)) {
                Ok(count) => {
                    self.count = count;
                    return Ok(());
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Err(e),
            }
        }
    }

    /// The datagrams read, with their senders (`None` for an address family we do not serve).
    pub(super) fn iter(&self) -> impl Iterator<Item = (&[u8], Option<SocketAddr>)> {
        (0..self.count).map(|i| (&self.buffers[i][..self.lens[i]], self.senders[i]))
    }

    #[cfg(target_os = "linux")]
    fn read_queued(&mut self, socket: &UdpSocket) -> io::Result<usize> {
        use std::os::fd::AsRawFd;

        use socket2::{SockAddr, SockAddrStorage};

        let mut names: [SockAddrStorage; BATCH] =
            std::array::from_fn(|_| SockAddrStorage::zeroed());
        let name_len = names[0].size_of();
        // SAFETY: iovec and mmsghdr are plain C structs for which all-zero is valid.
        let mut iovecs: [libc::iovec; BATCH] = unsafe { std::mem::zeroed() };
        let mut headers: [libc::mmsghdr; BATCH] = unsafe { std::mem::zeroed() };
        for (i, ((iov, header), buffer)) in iovecs
            .iter_mut()
            .zip(headers.iter_mut())
            .zip(self.buffers.iter_mut())
            .enumerate()
        {
            iov.iov_base = buffer.as_mut_ptr().cast();
            iov.iov_len = MAX_DATAGRAM;
            header.msg_hdr.msg_name = (&mut names[i] as *mut SockAddrStorage).cast();
            header.msg_hdr.msg_namelen = name_len;
            header.msg_hdr.msg_iov = iov;
            header.msg_hdr.msg_iovlen = 1;
        }
        // SAFETY: every header points at a live buffer of MAX_DATAGRAM bytes and a live,
        // correctly sized address slot, all owned by this frame or `self` for the call.
        let count = unsafe {
            libc::recvmmsg(
                socket.as_raw_fd(),
                headers.as_mut_ptr(),
                BATCH as libc::c_uint,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            )
        };
        if count < 0 {
            return Err(io::Error::last_os_error());
        }
        let count = count as usize;
        for (i, header) in headers.iter().take(count).enumerate() {
            self.lens[i] = (header.msg_len as usize).min(MAX_DATAGRAM);
            // SAFETY: the kernel wrote an address of the socket's family and its length.
            let name = std::mem::replace(&mut names[i], SockAddrStorage::zeroed());
            let addr = unsafe { SockAddr::new(name, header.msg_hdr.msg_namelen) };
            self.senders[i] = addr.as_socket();
        }
        Ok(count)
    }

    #[cfg(not(target_os = "linux"))]
    fn read_queued(&mut self, socket: &UdpSocket) -> io::Result<usize> {
        let (len, from) = socket.try_recv_from(&mut self.buffers[0])?;
        self.lens[0] = len;
        self.senders[0] = Some(from);
        Ok(1)
    }
}

/// Answers made while a batch was handled, sent together.
#[derive(Default)]
pub(super) struct Replies {
    queued: Vec<(Vec<u8>, SocketAddr)>,
    spare: Vec<Vec<u8>>,
}

impl Replies {
    /// An empty buffer for the next answer (recycled from earlier batches).
    pub(super) fn buffer(&mut self) -> Vec<u8> {
        self.spare.pop().unwrap_or_else(|| Vec::with_capacity(512))
    }

    /// Queues `bytes` for `to`.
    pub(super) fn push(&mut self, bytes: Vec<u8>, to: SocketAddr) {
        self.queued.push((bytes, to));
    }

    /// Sends everything queued. A datagram the kernel refuses is dropped (and logged at
    /// debug level), as a lost UDP answer is: the client asks again.
    pub(super) async fn flush(&mut self, socket: &UdpSocket) {
        let mut sent = 0;
        while sent < self.queued.len() {
            let rest = &self.queued[sent..];
            match socket.try_io(Interest::WRITABLE, || send_queued(socket, rest)) {
                Ok(count) => sent += count.max(1),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if socket.writable().await.is_err() {
                        break;
                    }
                }
                Err(error) => {
                    tracing::debug!(%error, to = %rest[0].1, "failed to send a response");
                    sent += 1;
                }
            }
        }
        for (mut bytes, _) in self.queued.drain(..) {
            bytes.clear();
            self.spare.push(bytes);
        }
    }
}

#[cfg(target_os = "linux")]
fn send_queued(socket: &UdpSocket, queued: &[(Vec<u8>, SocketAddr)]) -> io::Result<usize> {
    use std::os::fd::AsRawFd;

    use socket2::SockAddr;

    let queued = &queued[..queued.len().min(BATCH)];
    let names: Vec<SockAddr> = queued.iter().map(|(_, to)| SockAddr::from(*to)).collect();
    // SAFETY: iovec and mmsghdr are plain C structs for which all-zero is valid.
    let mut iovecs: [libc::iovec; BATCH] = unsafe { std::mem::zeroed() };
    let mut headers: [libc::mmsghdr; BATCH] = unsafe { std::mem::zeroed() };
    for (((iov, header), (bytes, _)), name) in iovecs
        .iter_mut()
        .zip(headers.iter_mut())
        .zip(queued)
        .zip(&names)
    {
        iov.iov_base = bytes.as_ptr().cast_mut().cast();
        iov.iov_len = bytes.len();
        header.msg_hdr.msg_name = name.as_ptr().cast_mut().cast();
        header.msg_hdr.msg_namelen = name.len();
        header.msg_hdr.msg_iov = iov;
        header.msg_hdr.msg_iovlen = 1;
    }
    // SAFETY: the first `queued.len()` headers point at live byte buffers and addresses that
    // outlive the call; the kernel only reads them.
    let count = unsafe {
        libc::sendmmsg(
            socket.as_raw_fd(),
            headers.as_mut_ptr(),
            queued.len() as libc::c_uint,
            0,
        )
    };
    if count < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(count as usize)
}

#[cfg(not(target_os = "linux"))]
fn send_queued(socket: &UdpSocket, queued: &[(Vec<u8>, SocketAddr)]) -> io::Result<usize> {
    let (bytes, to) = &queued[0];
    socket.try_send_to(bytes, *to).map(|_| 1)
}
