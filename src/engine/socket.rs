//! UDP sockets for media, and batched I/O over them.
//!
//! Receiving uses `recvmmsg` into buffers allocated once, so a busy stream takes one system call
//! per batch instead of one per packet. Sending uses `sendmmsg` with one iovec list per datagram:
//! the RTP header the sender wrote, then the payload segments a packetizer described, which point
//! straight into the caller's picture. A whole picture therefore leaves in one system call and is
//! never copied in user space. When the kernel lacks the batched calls (`ENOSYS`, seccomp filters,
//! old emulators) both paths fall back to one `recvmsg`/`sendmsg` per datagram, permanently.
//!
//! This file holds all of the engine's `unsafe` code: the raw message headers, `eventfd` and
//! `poll`. Everything else in the engine uses the safe types defined here.

use std::io;
use std::mem;
use std::net::{Ipv4Addr, Ipv6Addr, Shutdown, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::{Duration, SystemTime};

use socket2::{Domain, Protocol, SockAddr, Socket, Type};

/// Socket buffer size asked for: large enough to absorb a burst of a few 1080p keyframes while the
/// receive thread is descheduled. The kernel may clamp it to `net.core.rmem_max`/`wmem_max`.
pub const SOCKET_BUFFER_BYTES: usize = 4 * 1024 * 1024;

/// Most datagrams one batched call asks for. Linux caps a single `sendmmsg` at `UIO_MAXIOV`
/// (1024) messages, and each message at 1024 iovecs.
const MAX_BATCH: usize = 1024;

/// A bound UDP socket configured for media.
#[derive(Debug)]
pub struct MediaSocket {
    sock: Socket,
    local: SocketAddr,
}

impl MediaSocket {
    /// Binds a UDP socket with 4 MiB buffers. Port 0 picks a free port; the port actually bound
    /// is in [`MediaSocket::local_addr`]. No address reuse: UDP has no TIME_WAIT to skip, and
    /// reuse would let two programs share a port silently, each getting part of its packets.
    /// Without it a bind to a busy port fails, which is the atomic "is it free" check the port
    /// pools rely on.
    pub fn bind(addr: SocketAddr) -> io::Result<MediaSocket> {
        let sock = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
        sock.set_cloexec(true)?;
        // Smaller buffers than asked are not an error: the kernel limit is the administrator's call.
        let _ = sock.set_recv_buffer_size(SOCKET_BUFFER_BYTES);
        let _ = sock.set_send_buffer_size(SOCKET_BUFFER_BYTES);
        sock.bind(&SockAddr::from(addr))?;
        let local = sock
            .local_addr()?
            .as_socket()
            .ok_or_else(|| io::Error::other("bound socket has no IP address"))?;
        Ok(MediaSocket { sock, local })
    }

    /// The address and port the socket is bound to.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// The receive buffer size the kernel granted.
    pub fn recv_buffer_size(&self) -> io::Result<usize> {
        self.sock.recv_buffer_size()
    }

    /// Bounds how long a blocking receive waits; `None` waits forever.
    pub fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        self.sock.set_read_timeout(timeout)
    }

    /// Sends one contiguous datagram.
    pub fn send_to(&self, buf: &[u8], dest: SocketAddr) -> io::Result<usize> {
        self.sock.send_to(buf, &SockAddr::from(dest))
    }

    /// Wakes every thread blocked receiving on this socket; later receives return at once with
    /// empty datagrams. On Linux `shutdown` of an unconnected UDP socket reports `ENOTCONN` but
    /// still marks the socket shut and wakes its sleepers, which is all we need, so that error is
    /// expected and ignored.
    pub fn wake_receivers(&self) {
        let _ = self.sock.shutdown(Shutdown::Both);
    }

    /// Asks the kernel to stamp each received datagram with its arrival time
    /// (`SO_TIMESTAMPNS`), read by a [`RecvBatch`] made [`with_timestamps`]: how long a
    /// datagram waited in the receive queue is then known exactly (overload control).
    ///
    /// [`with_timestamps`]: RecvBatch::with_timestamps
    pub fn set_rx_timestamps(&self) -> io::Result<()> {
        let on: libc::c_int = 1;
        // SAFETY: `on` is a live c_int and the length passed is its size; the fd is ours.
        let r = unsafe {
            libc::setsockopt(
                self.fd(),
                libc::SOL_SOCKET,
                libc::SO_TIMESTAMPNS,
                (&on as *const libc::c_int).cast(),
                mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if r == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    }

    fn fd(&self) -> RawFd {
        self.sock.as_raw_fd()
    }
}

impl AsRawFd for MediaSocket {
    fn as_raw_fd(&self) -> RawFd {
        self.fd()
    }
}

/// One received datagram, borrowed from a [`RecvBatch`].
#[derive(Debug, Clone, Copy)]
pub struct Datagram<'a> {
    pub data: &'a [u8],
    /// The sender; `None` for the empty datagrams a shut-down socket returns.
    pub from: Option<SocketAddr>,
    /// The datagram was larger than the slot and was cut: it must be treated as malformed.
    pub truncated: bool,
    /// When the kernel queued it (wall clock), when the socket stamps datagrams
    /// ([`MediaSocket::set_rx_timestamps`]) and the batch reads the stamps.
    pub received: Option<SystemTime>,
}

/// Control-message space per slot, in 8-byte words: one `cmsghdr` (16 bytes) and a
/// `timespec` (16 bytes), with room to spare.
const CTRL_WORDS: usize = 8;

/// Slots a [`RecvBatch`] starts with.
const FIRST_SLOTS: usize = 4;

/// Reusable receive buffers and message headers for batched receiving. It starts small and
/// doubles, up to the size asked for, each time a receive fills every slot: a stream that gets a
/// packet at a time (audio) keeps a few kilobytes, one that gets bursts (video key pictures) grows
/// to what they need.
pub struct RecvBatch {
    slot_size: usize,
    max_slots: usize,
    bufs: Vec<u8>,
    iov: Vec<libc::iovec>,
    addrs: Vec<libc::sockaddr_storage>,
    msgs: Vec<libc::mmsghdr>,
    got: Vec<(usize, libc::socklen_t, bool)>,
    count: usize,
    batched: bool,
    /// Control-message buffers (`CTRL_WORDS` per slot, 8-byte aligned) when timestamps are
    /// read; empty otherwise.
    ctrl: Vec<u64>,
    /// Each slot's arrival stamp from its control message.
    stamps: Vec<Option<SystemTime>>,
}

// SAFETY: the raw pointers inside `iov` and `msgs` point only into this struct's own heap buffers
// (`bufs`, `iov`, `addrs`, `ctrl`), which move with it, and they are rebuilt before every system call.
// Nothing is shared with another thread.
unsafe impl Send for RecvBatch {}

impl std::fmt::Debug for RecvBatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecvBatch")
            .field("slots", &self.iov.len())
            .field("slot_size", &self.slot_size)
            .field("count", &self.count)
            .field("batched", &self.batched)
            .finish()
    }
}

/// Whether a receive may wait for its first datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wait {
    /// Block for the first datagram (bounded by the socket's read timeout), then take whatever else
    /// is already queued.
    ForOne,
    /// Take only what is already queued.
    No,
}

impl RecvBatch {
    /// Up to `slots` datagrams of up to `slot_size` bytes each per call (a few at first, more
    /// once the queue shows it has them).
    pub fn new(slots: usize, slot_size: usize) -> RecvBatch {
        let max_slots = slots.clamp(1, MAX_BATCH);
        let mut batch = RecvBatch {
            slot_size: slot_size.max(1),
            max_slots,
            bufs: Vec::new(),
            iov: Vec::new(),
            addrs: Vec::new(),
            msgs: Vec::new(),
            got: Vec::new(),
            count: 0,
            batched: true,
            ctrl: Vec::new(),
            stamps: Vec::new(),
        };
        batch.resize(FIRST_SLOTS.min(max_slots));
        batch
    }

    /// Gives the batch `slots` slots (the received datagrams are forgotten).
    fn resize(&mut self, slots: usize) {
        // SAFETY: sockaddr_storage and mmsghdr are plain C structs for which all-zero bytes are a
        // valid value (null pointers, zero lengths).
        let (addr0, msg0): (libc::sockaddr_storage, libc::mmsghdr) =
            unsafe { (mem::zeroed(), mem::zeroed()) };
        let iov0 = libc::iovec {
            iov_base: std::ptr::null_mut(),
            iov_len: 0,
        };
        self.bufs.resize(slots * self.slot_size, 0);
        self.iov.resize(slots, iov0);
        self.addrs.resize(slots, addr0);
        self.msgs.resize(slots, msg0);
        self.got.resize(slots, (0, 0, false));
        self.stamps.resize(slots, None);
        if !self.ctrl.is_empty() {
            self.ctrl.resize(slots * CTRL_WORDS, 0);
        }
        self.count = 0;
    }

    /// Datagrams the next receive can take.
    pub fn slots(&self) -> usize {
        self.iov.len()
    }

    /// The last receive filled every slot: more may be waiting. (The next receive takes twice as
    /// many, up to the batch's size.)
    pub fn filled(&self) -> bool {
        self.count > 0 && self.count == self.iov.len()
    }

    /// Also reads each datagram's arrival stamp (see [`MediaSocket::set_rx_timestamps`]).
    pub fn with_timestamps(mut self) -> RecvBatch {
        self.ctrl = vec![0; self.msgs.len() * CTRL_WORDS];
        self
    }

    /// Turns batching off, as if the kernel lacked `recvmmsg` (tests exercise the fallback).
    #[cfg(any(test, feature = "_internals"))]
    pub fn set_batched(&mut self, batched: bool) {
        self.batched = batched;
    }

    /// Receives up to one batch of datagrams; returns how many. With [`Wait::ForOne`] a read
    /// timeout surfaces as `WouldBlock`/`TimedOut`; with [`Wait::No`] an empty queue returns 0.
    pub fn recv(&mut self, sock: &MediaSocket, wait: Wait) -> io::Result<usize> {
        if self.filled() && self.slots() < self.max_slots {
            self.resize((self.slots() * 2).min(self.max_slots));
        }
        self.count = 0;
        self.prepare();
        if self.batched {
            match self.recv_batched(sock, wait) {
                Err(e) if e.raw_os_error() == Some(libc::ENOSYS) => self.batched = false,
                other => return other,
            }
        }
        self.recv_one_by_one(sock, wait)
    }

    /// Datagram `i` of the last receive (`i < count`).
    pub fn get(&self, i: usize) -> Datagram<'_> {
        let (len, addr_len, truncated) = self.got[i];
        let start = i * self.slot_size;
        Datagram {
            data: &self.bufs[start..start + len.min(self.slot_size)],
            from: sockaddr_to_std(&self.addrs[i], addr_len),
            truncated,
            received: self.stamps[i],
        }
    }

    /// How many datagrams the last receive returned.
    #[cfg(any(test, feature = "_internals"))]
    pub fn len(&self) -> usize {
        self.count
    }

    /// True when the last receive returned nothing.
    #[cfg(any(test, feature = "_internals"))]
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Points every header at its slot. The vectors grow only between receives (`resize`), so
    /// the pointers stay valid until the next call rebuilds them.
    fn prepare(&mut self) {
        let base = self.bufs.as_mut_ptr();
        for i in 0..self.iov.len() {
            // SAFETY: i * slot_size + slot_size <= bufs.len() by construction in `new`, so the
            // offset stays inside the allocation.
            self.iov[i].iov_base = unsafe { base.add(i * self.slot_size) }.cast();
            self.iov[i].iov_len = self.slot_size;
            let h = &mut self.msgs[i].msg_hdr;
            h.msg_name = (&mut self.addrs[i] as *mut libc::sockaddr_storage).cast();
            h.msg_namelen = mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            h.msg_iov = &mut self.iov[i];
            h.msg_iovlen = 1;
            if self.ctrl.is_empty() {
                h.msg_control = std::ptr::null_mut();
                h.msg_controllen = 0;
            } else {
                // SAFETY: i * CTRL_WORDS + CTRL_WORDS <= ctrl.len(): `with_timestamps` and
                // `resize` keep CTRL_WORDS per slot.
                h.msg_control = unsafe { self.ctrl.as_mut_ptr().add(i * CTRL_WORDS) }.cast();
                h.msg_controllen = CTRL_WORDS * mem::size_of::<u64>();
            }
            h.msg_flags = 0;
            self.stamps[i] = None;
            self.msgs[i].msg_len = 0;
        }
    }

    fn recv_batched(&mut self, sock: &MediaSocket, wait: Wait) -> io::Result<usize> {
        let flags = match wait {
            Wait::ForOne => libc::MSG_WAITFORONE,
            Wait::No => libc::MSG_DONTWAIT,
        };
        loop {
            // SAFETY: `msgs` holds `msgs.len()` initialised headers whose name, iovec and buffer
            // pointers were set by `prepare` to live, correctly sized memory owned by `self`,
            // which is borrowed mutably for the whole call. No timeout pointer is passed.
            let n = unsafe {
                libc::recvmmsg(
                    sock.fd(),
                    self.msgs.as_mut_ptr(),
                    self.msgs.len() as libc::c_uint,
                    flags,
                    std::ptr::null_mut(),
                )
            };
            if n >= 0 {
                let n = n as usize;
                for i in 0..n {
                    let m = &self.msgs[i];
                    self.got[i] = (
                        m.msg_len as usize,
                        m.msg_hdr.msg_namelen,
                        m.msg_hdr.msg_flags & libc::MSG_TRUNC != 0,
                    );
                    self.stamps[i] = self.stamp(i);
                }
                self.count = n;
                return Ok(n);
            }
            let e = io::Error::last_os_error();
            match e.kind() {
                io::ErrorKind::Interrupted => continue,
                io::ErrorKind::WouldBlock if wait == Wait::No => return Ok(0),
                _ => return Err(e),
            }
        }
    }

    /// The `SCM_TIMESTAMPNS` stamp in slot `i`'s control messages, if any.
    fn stamp(&self, i: usize) -> Option<SystemTime> {
        if self.ctrl.is_empty() {
            return None;
        }
        let h = &self.msgs[i].msg_hdr;
        if h.msg_controllen == 0 || h.msg_flags & libc::MSG_CTRUNC != 0 {
            return None;
        }
        // SAFETY: `h` is the header the kernel just filled: `msg_control` points into `ctrl`
        // (owned by `self`, borrowed for this call) and `msg_controllen` is what the kernel
        // wrote there, at most the buffer's size. The CMSG_* macros walk only within it, and
        // the timespec is read unaligned from inside a message of the right level, type and
        // length.
        unsafe {
            let mut c = libc::CMSG_FIRSTHDR(h);
            while !c.is_null() {
                let m = &*c;
                if m.cmsg_level == libc::SOL_SOCKET
                    && m.cmsg_type == libc::SCM_TIMESTAMPNS
                    && m.cmsg_len as usize
                        >= libc::CMSG_LEN(mem::size_of::<libc::timespec>() as u32) as usize
                {
                    let ts: libc::timespec =
                        std::ptr::read_unaligned(libc::CMSG_DATA(c).cast::<libc::timespec>());
                    let (secs, nanos) = (u64::try_from(ts.tv_sec).ok()?, ts.tv_nsec);
                    let nanos = u32::try_from(nanos).ok().filter(|n| *n < 1_000_000_000)?;
                    return SystemTime::UNIX_EPOCH.checked_add(Duration::new(secs, nanos));
                }
                c = libc::CMSG_NXTHDR(h, c);
            }
        }
        None
    }

    fn recv_one_by_one(&mut self, sock: &MediaSocket, wait: Wait) -> io::Result<usize> {
        let mut n = 0;
        while n < self.msgs.len() {
            let flags = if n == 0 && wait == Wait::ForOne {
                0
            } else {
                libc::MSG_DONTWAIT
            };
            // SAFETY: header `n` was prepared by `prepare` and points into memory owned by `self`,
            // which is borrowed mutably for the call.
            let r = unsafe { libc::recvmsg(sock.fd(), &mut self.msgs[n].msg_hdr, flags) };
            if r < 0 {
                let e = io::Error::last_os_error();
                match e.kind() {
                    io::ErrorKind::Interrupted => continue,
                    io::ErrorKind::WouldBlock if n > 0 || wait == Wait::No => break,
                    _ => return Err(e),
                }
            }
            let h = &self.msgs[n].msg_hdr;
            self.got[n] = (
                r.max(0) as usize,
                h.msg_namelen,
                h.msg_flags & libc::MSG_TRUNC != 0,
            );
            self.stamps[n] = self.stamp(n);
            let h = &self.msgs[n].msg_hdr;
            n += 1;
            if r == 0 && h.msg_namelen == 0 {
                // A shut-down socket: every further call would return at once, empty.
                break;
            }
        }
        self.count = n;
        Ok(n)
    }
}

/// Reusable iovec and message arrays for sending many datagrams in one call.
pub struct SendBatch {
    iov: Vec<libc::iovec>,
    spans: Vec<(usize, usize)>,
    msgs: Vec<libc::mmsghdr>,
    batched: bool,
}

// SAFETY: between calls the vectors hold no pointers that are ever dereferenced: `send` fills
// them, uses them while the borrowed slices are alive, and clears them before returning.
unsafe impl Send for SendBatch {}

impl std::fmt::Debug for SendBatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SendBatch")
            .field("batched", &self.batched)
            .finish()
    }
}

impl Default for SendBatch {
    fn default() -> Self {
        SendBatch::new()
    }
}

impl SendBatch {
    /// Empty arrays; they grow to the largest picture sent and are then reused.
    pub fn new() -> SendBatch {
        SendBatch {
            iov: Vec::new(),
            spans: Vec::new(),
            msgs: Vec::new(),
            batched: true,
        }
    }

    /// Turns batching off, as if the kernel lacked `sendmmsg` (tests exercise the fallback).
    #[cfg(any(test, feature = "_internals"))]
    pub fn set_batched(&mut self, batched: bool) {
        self.batched = batched;
    }

    /// Sends each item of `datagrams` as one datagram to `dest`, gathered from its slices.
    /// Returns the number of datagrams sent (all of them unless an error stopped the batch part
    /// way; an error before the first datagram is returned as the error).
    pub fn send<'a, I, D>(
        &mut self,
        sock: &MediaSocket,
        dest: SocketAddr,
        datagrams: I,
    ) -> io::Result<usize>
    where
        I: IntoIterator<Item = D>,
        D: IntoIterator<Item = &'a [u8]>,
    {
        self.iov.clear();
        self.spans.clear();
        for d in datagrams {
            let start = self.iov.len();
            for s in d {
                if s.is_empty() {
                    continue;
                }
                self.iov.push(libc::iovec {
                    iov_base: s.as_ptr() as *mut libc::c_void,
                    iov_len: s.len(),
                });
            }
            self.spans.push((start, self.iov.len() - start));
        }
        let dest = SockAddr::from(dest);
        let result = self.send_prepared(sock, &dest);
        self.iov.clear();
        self.msgs.clear();
        result
    }

    fn send_prepared(&mut self, sock: &MediaSocket, dest: &SockAddr) -> io::Result<usize> {
        // SAFETY: an all-zero mmsghdr is valid (null pointers, zero lengths).
        let zero: libc::mmsghdr = unsafe { mem::zeroed() };
        self.msgs.clear();
        self.msgs.resize(self.spans.len(), zero);
        let iov_base = self.iov.as_mut_ptr();
        for (m, &(start, len)) in self.msgs.iter_mut().zip(&self.spans) {
            m.msg_hdr.msg_name = dest.as_ptr() as *mut libc::c_void;
            m.msg_hdr.msg_namelen = dest.len();
            // SAFETY: start + len <= iov.len(), so the pointer stays inside the iovec array.
            m.msg_hdr.msg_iov = unsafe { iov_base.add(start) };
            m.msg_hdr.msg_iovlen = len as _;
        }
        let total = self.msgs.len();
        let mut sent = 0;
        while sent < total {
            let r = if self.batched {
                let chunk = (total - sent).min(MAX_BATCH);
                // SAFETY: msgs[sent..sent + chunk] are initialised headers pointing at `dest`
                // (alive for this call), at iovecs in `self.iov`, and through them at slices the
                // caller borrowed for the whole `send` call.
                let r = unsafe {
                    libc::sendmmsg(
                        sock.fd(),
                        self.msgs.as_mut_ptr().add(sent),
                        chunk as libc::c_uint,
                        0,
                    )
                };
                if r < 0 && io::Error::last_os_error().raw_os_error() == Some(libc::ENOSYS) {
                    self.batched = false;
                    continue;
                }
                r as isize
            } else {
                // SAFETY: as above, for the single header msgs[sent].
                let r = unsafe { libc::sendmsg(sock.fd(), &self.msgs[sent].msg_hdr, 0) };
                if r < 0 {
                    -1
                } else {
                    1
                }
            };
            if r < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return if sent > 0 { Ok(sent) } else { Err(e) };
            }
            sent += r as usize;
        }
        Ok(sent)
    }
}

fn sockaddr_to_std(s: &libc::sockaddr_storage, len: libc::socklen_t) -> Option<SocketAddr> {
    let len = len as usize;
    match s.ss_family as libc::c_int {
        libc::AF_INET if len >= mem::size_of::<libc::sockaddr_in>() => {
            // SAFETY: the family says the storage holds a sockaddr_in, the kernel wrote at least
            // that many bytes, and sockaddr_storage is larger and suitably aligned for it.
            let a = unsafe { &*(s as *const libc::sockaddr_storage).cast::<libc::sockaddr_in>() };
            Some(SocketAddr::V4(SocketAddrV4::new(
                Ipv4Addr::from(u32::from_be(a.sin_addr.s_addr)),
                u16::from_be(a.sin_port),
            )))
        }
        libc::AF_INET6 if len >= mem::size_of::<libc::sockaddr_in6>() => {
            // SAFETY: as above, for sockaddr_in6.
            let a = unsafe { &*(s as *const libc::sockaddr_storage).cast::<libc::sockaddr_in6>() };
            Some(SocketAddr::V6(SocketAddrV6::new(
                Ipv6Addr::from(a.sin6_addr.s6_addr),
                u16::from_be(a.sin6_port),
                u32::from_be(a.sin6_flowinfo),
                a.sin6_scope_id,
            )))
        }
        _ => None,
    }
}

/// A counter file descriptor (`eventfd`) that makes a thread sleeping in [`poll_readable`] return.
#[derive(Debug)]
pub struct Waker {
    fd: OwnedFd,
}

impl Waker {
    /// A new, unsignalled waker.
    pub fn new() -> io::Result<Waker> {
        // SAFETY: eventfd takes no pointers; a non-negative result is a new descriptor we own.
        let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` was just returned by eventfd and nothing else owns it.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        Ok(Waker { fd })
    }

    /// Signals the waker; it stays readable until [`Waker::reset`].
    pub fn wake(&self) {
        let one: u64 = 1;
        // SAFETY: writes 8 bytes from a live u64 to a descriptor we own. A full counter
        // (EAGAIN) already means "signalled", so the result is not needed.
        let _ = unsafe {
            libc::write(
                self.fd.as_raw_fd(),
                (&one as *const u64).cast(),
                mem::size_of::<u64>(),
            )
        };
    }

    /// Clears the signal.
    pub fn reset(&self) {
        let mut v: u64 = 0;
        // SAFETY: reads 8 bytes into a live u64 from a non-blocking descriptor we own.
        let _ = unsafe {
            libc::read(
                self.fd.as_raw_fd(),
                (&mut v as *mut u64).cast(),
                mem::size_of::<u64>(),
            )
        };
    }
}

impl AsRawFd for Waker {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

/// Waits until one of `fds` has one of its `events` (or an error or hang-up) or `timeout`
/// passes, and fills each `revents`. Returns how many are ready. For any number of descriptors
/// (the SIP thread polls its TCP/TLS connections too). `ppoll` takes the timeout to the
/// nanosecond, so a pacer releasing a packet every few hundred microseconds is woken on time rather
/// than at the next millisecond.
pub fn poll_fds(fds: &mut [libc::pollfd], timeout: Duration) -> io::Result<usize> {
    let ts = libc::timespec {
        tv_sec: timeout.as_secs().min(i32::MAX as u64) as libc::time_t,
        tv_nsec: libc::c_long::from(timeout.subsec_nanos() as i32),
    };
    loop {
        // SAFETY: `fds` is a live, initialised slice of `fds.len()` pollfd entries that the
        // kernel may write `revents` into, and `ts` a valid timespec that outlives the call; a
        // null signal mask leaves the mask unchanged.
        let r = unsafe {
            libc::ppoll(
                fds.as_mut_ptr(),
                fds.len() as libc::nfds_t,
                &ts,
                std::ptr::null(),
            )
        };
        if r < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        return Ok(r as usize);
    }
}

/// Waits until one of `fds` is readable (or hung up) or `timeout` passes; sets `ready[i]` for each
/// that is. Returns how many are ready. `ready` must be as long as `fds`.
pub fn poll_readable(fds: &[RawFd], ready: &mut [bool], timeout: Duration) -> io::Result<usize> {
    const MAX_FDS: usize = 4;
    assert!(fds.len() <= MAX_FDS && ready.len() >= fds.len());
    let mut pfds = [libc::pollfd {
        fd: -1,
        events: 0,
        revents: 0,
    }; MAX_FDS];
    for (p, &fd) in pfds.iter_mut().zip(fds) {
        p.fd = fd;
        p.events = libc::POLLIN;
    }
    let n = poll_fds(&mut pfds[..fds.len()], timeout)?;
    for (r, p) in ready.iter_mut().zip(&pfds[..fds.len()]) {
        *r = p.revents != 0;
    }
    Ok(n)
}

/// An `epoll` instance: one thread waits on many descriptors. Registrations are level-triggered
/// (see [`Epoll::add`]) or edge-triggered ([`Epoll::add_edge`]), each carrying a `u64` token
/// that comes back with its readiness.
#[derive(Debug)]
pub struct Epoll {
    fd: OwnedFd,
    /// `epoll_pwait2` (nanosecond timeout, Linux 5.11) is used until the kernel says `ENOSYS`.
    precise: std::sync::atomic::AtomicBool,
}

/// Readiness reported by [`Epoll::wait`]: the registration's token.
pub type EpollToken = u64;

impl Epoll {
    /// A new, empty instance.
    pub fn new() -> io::Result<Epoll> {
        // SAFETY: epoll_create1 takes no pointers; a non-negative result is a new descriptor.
        let fd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` was just returned by epoll_create1 and nothing else owns it.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        Ok(Epoll {
            fd,
            precise: std::sync::atomic::AtomicBool::new(true),
        })
    }

    /// Watches `fd` for input, level-triggered: as long as datagrams are queued every wait
    /// reports it, so a reader may stop part way (fairness between sockets) and lose nothing.
    pub fn add(&self, fd: RawFd, token: EpollToken) -> io::Result<()> {
        self.register(fd, token, libc::EPOLLIN as u32)
    }

    /// Watches `fd` for input, edge-triggered: a wait reports it when datagrams arrive (or were
    /// queued when it was added), once, so the reader must read until the socket is empty or
    /// remember to come back. A socket is not looked at again by waits after it was drained,
    /// which saves a poll of every socket reported by the previous wait.
    pub fn add_edge(&self, fd: RawFd, token: EpollToken) -> io::Result<()> {
        self.register(fd, token, (libc::EPOLLIN | libc::EPOLLET) as u32)
    }

    fn register(&self, fd: RawFd, token: EpollToken, events: u32) -> io::Result<()> {
        let mut ev = libc::epoll_event { events, u64: token };
        // SAFETY: `ev` is a live epoll_event for the duration of the call; the kernel copies it.
        let r = unsafe { libc::epoll_ctl(self.fd.as_raw_fd(), libc::EPOLL_CTL_ADD, fd, &mut ev) };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Stops watching `fd`. After it returns no later wait reports the descriptor.
    pub fn remove(&self, fd: RawFd) -> io::Result<()> {
        let mut ev = libc::epoll_event { events: 0, u64: 0 };
        // SAFETY: as in `add`; kernels before 2.6.9 wanted a non-null event even for DEL.
        let r = unsafe { libc::epoll_ctl(self.fd.as_raw_fd(), libc::EPOLL_CTL_DEL, fd, &mut ev) };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Waits until a registered descriptor is ready or `timeout` passes; pushes the ready
    /// tokens into `ready` (cleared first, at most its capacity, at least 1). With
    /// `epoll_pwait2` the timeout is kept to the nanosecond; without it, it is rounded up to
    /// the next millisecond (never early).
    pub fn wait(&self, ready: &mut Vec<EpollToken>, timeout: Duration) -> io::Result<usize> {
        const MAX_EVENTS: usize = 256;
        let mut evs = [libc::epoll_event { events: 0, u64: 0 }; MAX_EVENTS];
        let cap = ready.capacity().clamp(1, MAX_EVENTS) as libc::c_int;
        ready.clear();
        loop {
            let r = if self.precise.load(std::sync::atomic::Ordering::Relaxed) {
                let ts = libc::timespec {
                    tv_sec: timeout.as_secs().min(i32::MAX as u64) as libc::time_t,
                    tv_nsec: libc::c_long::from(timeout.subsec_nanos() as i32),
                };
                // SAFETY: `evs` has room for `cap` events the kernel writes; `ts` is a valid
                // timespec alive for the call; a null mask leaves the signal mask alone.
                let r = unsafe {
                    libc::epoll_pwait2(
                        self.fd.as_raw_fd(),
                        evs.as_mut_ptr(),
                        cap,
                        &ts,
                        std::ptr::null(),
                    )
                };
                if r < 0 && io::Error::last_os_error().raw_os_error() == Some(libc::ENOSYS) {
                    self.precise
                        .store(false, std::sync::atomic::Ordering::Relaxed);
                    continue;
                }
                r
            } else {
                let ms =
                    timeout.as_nanos().div_ceil(1_000_000).min(i32::MAX as u128) as libc::c_int;
                // SAFETY: `evs` has room for `cap` events the kernel writes.
                unsafe { libc::epoll_wait(self.fd.as_raw_fd(), evs.as_mut_ptr(), cap, ms) }
            };
            if r < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            let n = r as usize;
            ready.extend(evs[..n].iter().map(|e| e.u64));
            return Ok(n);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    fn lo() -> SocketAddr {
        "127.0.0.1:0".parse().unwrap()
    }

    #[test]
    fn binds_v4_and_v6_and_reports_port() {
        let a = MediaSocket::bind(lo()).unwrap();
        assert_ne!(a.local_addr().port(), 0);
        if let Ok(b) = MediaSocket::bind("[::1]:0".parse().unwrap()) {
            assert!(b.local_addr().is_ipv6());
            assert_ne!(b.local_addr().port(), 0);
        }
    }

    fn roundtrip(batched: bool) {
        let rx = MediaSocket::bind(lo()).unwrap();
        let tx = MediaSocket::bind(lo()).unwrap();
        rx.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        let picture: Vec<u8> = (0..5000u32).map(|i| i as u8).collect();
        let hdrs: Vec<[u8; 4]> = (0..5u8).map(|i| [i; 4]).collect();
        let mut sb = SendBatch::new();
        sb.set_batched(batched);
        let n = sb
            .send(
                &tx,
                rx.local_addr(),
                (0..5).map(|i| [&hdrs[i][..], &picture[i * 1000..(i + 1) * 1000]]),
            )
            .unwrap();
        assert_eq!(n, 5);
        let mut rb = RecvBatch::new(8, 2048);
        rb.set_batched(batched);
        let mut got = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(2);
        while got.len() < 5 && Instant::now() < deadline {
            let n = rb.recv(&rx, Wait::ForOne).unwrap();
            for i in 0..n {
                let d = rb.get(i);
                assert_eq!(d.from, Some(tx.local_addr()));
                assert!(!d.truncated);
                got.push(d.data.to_vec());
            }
        }
        assert_eq!(got.len(), 5);
        for (i, g) in got.iter().enumerate() {
            assert_eq!(&g[..4], &[i as u8; 4]);
            assert_eq!(&g[4..], &picture[i * 1000..(i + 1) * 1000]);
        }
    }

    #[test]
    fn batched_roundtrip() {
        roundtrip(true);
    }

    #[test]
    fn per_packet_fallback_roundtrip() {
        roundtrip(false);
    }

    #[test]
    fn batch_grows_only_when_the_queue_fills_it() {
        let rx = MediaSocket::bind(lo()).unwrap();
        let tx = MediaSocket::bind(lo()).unwrap();
        rx.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        let mut rb = RecvBatch::new(64, 2048);
        assert_eq!(rb.slots(), FIRST_SLOTS);
        // One datagram at a time: it stays small.
        for i in 0..10u8 {
            tx.send_to(&[i; 100], rx.local_addr()).unwrap();
            assert_eq!(rb.recv(&rx, Wait::ForOne).unwrap(), 1);
            assert!(!rb.filled());
        }
        assert_eq!(rb.slots(), FIRST_SLOTS);
        // A burst: each full receive doubles the next, nothing is lost or reordered, and the
        // size asked for is the ceiling.
        for i in 0..200u8 {
            tx.send_to(&[i; 100], rx.local_addr()).unwrap();
        }
        let mut got = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(2);
        while got.len() < 200 && Instant::now() < deadline {
            let n = rb.recv(&rx, Wait::ForOne).unwrap();
            got.extend((0..n).map(|i| rb.get(i).data[0]));
        }
        assert_eq!(got, (0..200u8).collect::<Vec<_>>());
        assert_eq!(rb.slots(), 64);
    }

    #[test]
    fn oversized_datagram_is_flagged_truncated() {
        let rx = MediaSocket::bind(lo()).unwrap();
        let tx = MediaSocket::bind(lo()).unwrap();
        rx.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        tx.send_to(&[7u8; 300], rx.local_addr()).unwrap();
        let mut rb = RecvBatch::new(4, 100);
        assert_eq!(rb.recv(&rx, Wait::ForOne).unwrap(), 1);
        assert!(rb.get(0).truncated);
        assert_eq!(rb.get(0).data.len(), 100);
    }

    /// A datagram left in the queue carries the time the kernel took it in, batched or not:
    /// after the send began and before the receive. (No floor on the wait: on a loaded machine
    /// the kernel may take a loopback datagram in late, and the stamp is that moment.)
    #[test]
    fn arrival_stamps_are_read_batched_or_not() {
        for batched in [true, false] {
            let rx = MediaSocket::bind(lo()).unwrap();
            let tx = MediaSocket::bind(lo()).unwrap();
            rx.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
            rx.set_rx_timestamps().unwrap();
            // The wall clock has microsecond-or-better steps; 1 ms covers any rounding.
            let before = SystemTime::now() - Duration::from_millis(1);
            tx.send_to(b"a", rx.local_addr()).unwrap();
            std::thread::sleep(Duration::from_millis(20));
            let mut rb = RecvBatch::new(4, 100).with_timestamps();
            rb.set_batched(batched);
            assert_eq!(rb.recv(&rx, Wait::ForOne).unwrap(), 1);
            let after = SystemTime::now();
            let d = rb.get(0);
            assert_eq!(d.data, b"a");
            let stamp = d.received.expect("stamped");
            assert!(
                before <= stamp && stamp <= after,
                "{stamp:?} {before:?} {after:?}"
            );
            // Without asking, no stamp.
            tx.send_to(b"b", rx.local_addr()).unwrap();
            let mut plain = RecvBatch::new(4, 100);
            assert_eq!(plain.recv(&rx, Wait::ForOne).unwrap(), 1);
            assert_eq!(plain.get(0).received, None);
        }
    }

    #[test]
    fn nonblocking_receive_of_empty_queue_is_zero() {
        let rx = MediaSocket::bind(lo()).unwrap();
        let mut rb = RecvBatch::new(4, 100);
        assert_eq!(rb.recv(&rx, Wait::No).unwrap(), 0);
        rb.set_batched(false);
        assert_eq!(rb.recv(&rx, Wait::No).unwrap(), 0);
    }

    #[test]
    fn waker_interrupts_poll() {
        let w = Waker::new().unwrap();
        let sock = MediaSocket::bind(lo()).unwrap();
        let mut ready = [false; 2];
        let fds = [sock.as_raw_fd(), w.as_raw_fd()];
        assert_eq!(
            poll_readable(&fds, &mut ready, Duration::from_millis(10)).unwrap(),
            0
        );
        w.wake();
        assert_eq!(
            poll_readable(&fds, &mut ready, Duration::from_secs(5)).unwrap(),
            1
        );
        assert_eq!(ready, [false, true]);
        w.reset();
        assert_eq!(
            poll_readable(&fds, &mut ready, Duration::from_millis(1)).unwrap(),
            0
        );
    }

    #[test]
    fn epoll_reports_tokens_and_forgets_removed() {
        let ep = Epoll::new().unwrap();
        let a = MediaSocket::bind(lo()).unwrap();
        let b = MediaSocket::bind(lo()).unwrap();
        ep.add(a.as_raw_fd(), 7).unwrap();
        ep.add(b.as_raw_fd(), 9).unwrap();
        let mut ready = Vec::with_capacity(8);
        assert_eq!(ep.wait(&mut ready, Duration::from_millis(5)).unwrap(), 0);
        b.send_to(&[1], b.local_addr()).unwrap();
        assert_eq!(ep.wait(&mut ready, Duration::from_secs(5)).unwrap(), 1);
        assert_eq!(ready, [9]);
        // Level-triggered: still queued, still reported.
        assert_eq!(ep.wait(&mut ready, Duration::from_secs(5)).unwrap(), 1);
        ep.remove(b.as_raw_fd()).unwrap();
        assert_eq!(ep.wait(&mut ready, Duration::from_millis(5)).unwrap(), 0);
    }
}
