package devo

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// errServerData is a read result carrying bytes: Devo never sends
// application data, so anything read ends the connection.
var errServerData = errors.New("server sent unexpected data")

// sock is the TCP socket under a connection (under TLS too). It counts the
// bytes written to it, so that a write can be matched with the peer's TCP
// acknowledgement: the write's last byte is acknowledged once
// written − unacknowledged has reached its offset.
//
// Under TLS it also gathers the records of one write: crypto/tls writes
// every record (16 KiB at most, smaller ones after an idle spell) to its
// connection on its own, so a 64 KiB buffer cost four or more system
// calls, and as many loopback or NIC segments. Between hold and release
// the records are kept and then written with one call.
type sock struct {
	*net.TCPConn
	raw     syscall.RawConn // nil: the acknowledgement cannot be read here
	written atomic.Int64    // the TLS layer's reader may write too (a key update)

	mu      sync.Mutex // orders the TLS reader's rare writes with ours
	holding bool
	held    []byte
}

func (s *sock) Write(b []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.holding {
		s.held = append(s.held, b...)
		return len(b), nil
	}
	return s.write(b)
}

func (s *sock) write(b []byte) (int, error) {
	n, err := s.TCPConn.Write(b)
	s.written.Add(int64(n))
	return n, err
}

// hold keeps what is written from now on until release.
func (s *sock) hold() {
	s.mu.Lock()
	s.holding = true
	s.mu.Unlock()
}

// release writes what was kept since hold, in one call, and returns its
// error: the layer above already returned success for those bytes.
func (s *sock) release() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.holding = false
	if len(s.held) == 0 {
		return nil
	}
	_, err := s.write(s.held)
	s.held = s.held[:0]
	return err
}

// acked is how many of the bytes written the peer's TCP has acknowledged.
// The count is read before the queue, so a write in between can only make
// the result smaller than the truth, never larger.
func (s *sock) acked() (int64, error) {
	w := s.written.Load()
	q, err := unackedBytes(s.raw)
	if err != nil {
		return 0, err
	}
	return w - q, nil
}

// probeFloor is the shortest start-up probe. A rejection of the client
// certificate arrives half a round trip plus the server's verification
// after our handshake (measured against rsyslog on loopback: under 1 ms);
// this floor leaves a wide margin for a busy receiver.
const probeFloor = 250 * time.Millisecond

// probeFactor times the measured connect + handshake is the probe of a
// connection whose handshake is slow (a distant or busy receiver): that
// time already holds two round trips and the server's own signature.
const probeFactor = 4

// probeLength is the start-up probe of a connection whose connect and
// handshake took hs: max(probeFloor, probeFactor × hs), capped by max (the
// handshake_probe_timeout).
func probeLength(hs, limit time.Duration) time.Duration {
	return min(limit, max(probeFloor, probeFactor*hs))
}

// conn is one connection and its background reader (devo-output.md §15.3).
type conn struct {
	nc    net.Conn
	sock  *sock // nil when the socket is not TCP
	start time.Time
	probe time.Duration // this connection's start-up probe (probeLength)
	gzip  bool

	// ackSeen is the most the peer had acknowledged at the last look, and
	// ackMoved when that grew (unix nanoseconds); the worker's only.
	ackSeen, ackMoved int64

	// dead is cancelled by the reader on any read result, or by the worker
	// on a write error or a close.
	dead   context.Context
	kill   context.CancelFunc
	deadAt atomic.Int64 // unix nanoseconds of the first sign of death; 0 while alive
	err    atomic.Pointer[error]

	readerDone chan struct{}
	lastWrite  time.Time
	tls13      bool // rejection of the client certificate comes after the handshake
	gather     bool // TLS over sock: a write's records go out in one call (sock.hold)
	settled    bool // at least one event settled on it
	healthy    bool // passed the start-up probe
}

// die records why and when the connection ended (first caller wins).
func (c *conn) die(err error) {
	if c.deadAt.CompareAndSwap(0, time.Now().UnixNano()) {
		c.err.Store(&err)
	}
	c.kill()
}

// cause is the recorded reason of death, or nil.
func (c *conn) cause() error {
	if p := c.err.Load(); p != nil {
		return *p
	}
	return nil
}

// aliveAt reports whether the connection was alive at t.
func (c *conn) aliveAt(t int64) bool {
	d := c.deadAt.Load()
	return d == 0 || t <= d
}

func (c *conn) read() {
	defer close(c.readerDone)
	var b [256]byte
	n, err := c.nc.Read(b[:])
	if err == nil && n > 0 {
		err = fmt.Errorf("%w (%d bytes)", errServerData, n)
	}
	c.die(err)
}

// dial opens a connection, completes the TLS handshake and starts the
// reader. A certificate alert during the handshake (TLS 1.2) is an
// *AuthError.
func (s *Sender) dial(ctx context.Context, gz bool) (*conn, error) {
	addr := net.JoinHostPort(s.opts.Address, strconv.Itoa(s.opts.Port))
	dctx, cancel := context.WithTimeout(ctx, s.opts.ConnectTimeout)
	defer cancel()
	begin := time.Now()
	var d net.Dialer
	nc, err := d.DialContext(dctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("connect to %s: %w", addr, err)
	}
	var sk *sock
	if tc, ok := nc.(*net.TCPConn); ok {
		sk = &sock{TCPConn: tc}
		if raw, err := tc.SyscallConn(); err == nil {
			if _, err := unackedBytes(raw); err == nil {
				sk.raw = raw
			}
		}
		nc = sk
	}
	if s.tls != nil {
		tc := tls.Client(nc, s.tls)
		if err := tc.HandshakeContext(dctx); err != nil {
			nc.Close()
			if alert, ok := certAlert(err); ok {
				return nil, s.authError(alert)
			}
			return nil, fmt.Errorf("tls handshake with %s: %w", addr, err)
		}
		nc = tc
	}
	c := &conn{nc: nc, start: time.Now(), gzip: gz, readerDone: make(chan struct{})}
	c.probe = probeLength(c.start.Sub(begin), s.opts.ProbeTimeout)
	if sk != nil && sk.raw != nil {
		c.sock = sk
	}
	if tc, ok := nc.(*tls.Conn); ok {
		c.tls13 = tc.ConnectionState().Version == tls.VersionTLS13
		c.gather = c.sock != nil
	}
	c.lastWrite = c.start
	// dead also ends with ctx, so a wait on it wakes for shutdown too.
	c.dead, c.kill = context.WithCancel(ctx)
	go c.read()
	return c, nil
}

func (s *Sender) authError(alert string) *AuthError {
	s.rejected.Store(true)
	return &AuthError{Address: s.opts.Address, Port: s.opts.Port, Alert: alert, Cert: s.opts.Cert, Key: s.opts.Key}
}

// probeFailure classifies the death of a connection inside its start-up
// probe. A certificate alert is an *AuthError. An EOF or a reset on a TLS 1.3
// connection is only a suspicion: there the server checks the client
// certificate after our handshake has finished, and some servers (rsyslog
// with GnuTLS) drop the connection without an alert — but a receiver that
// stops or restarts right then looks the same. So the suspicion is
// confirmed first (confirmRejection); anything unconfirmed is an outage,
// retried with backoff.
func (s *Sender) probeFailure(ctx context.Context, c *conn) error {
	err := c.cause()
	if alert, ok := certAlert(err); ok {
		return s.authError(alert)
	}
	if c.tls13 && closedByPeer(err) {
		return s.confirmRejection(ctx, err)
	}
	return fmt.Errorf("connection to %s:%d closed during the start-up probe: %w", s.opts.Address, s.opts.Port, err)
}

// closedByPeer: the server ended the connection (EOF or reset).
func closedByPeer(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET)
}

// confirmRejection decides whether a TLS 1.3 connection that the server
// closed inside the probe was a rejection of the client certificate. It
// opens one fresh connection: if its handshake draws a certificate alert,
// or the server closes it again within the probe time, the certificate is
// rejected (*AuthError). If the receiver cannot be reached, or the fresh
// connection stays open, the first close was an outage or a restart: a
// plain error, so the caller retries with backoff and the collector keeps
// running.
func (s *Sender) confirmRejection(ctx context.Context, first error) error {
	outage := func(why error) error {
		return fmt.Errorf("connection to %s:%d closed during the start-up probe (%v), not a certificate rejection: %w",
			s.opts.Address, s.opts.Port, first, why)
	}
	c, err := s.dial(ctx, false)
	if err != nil {
		var ae *AuthError
		if errors.As(err, &ae) {
			return err
		}
		return outage(err)
	}
	t := time.NewTimer(s.opts.ProbeTimeout)
	defer t.Stop()
	select {
	case <-c.dead.Done():
	case <-t.C:
	}
	again := c.cause()
	c.closeNow(errors.New("rejection check done"))
	switch {
	case ctx.Err() != nil:
		return outage(ctx.Err())
	case again == nil:
		return outage(errors.New("a fresh connection stayed open"))
	}
	if alert, ok := certAlert(again); ok {
		return s.authError(alert)
	}
	if closedByPeer(again) {
		return s.authError(fmt.Sprintf("connection closed by the server right after the TLS 1.3 handshake, twice (%v)", first))
	}
	return outage(again)
}

// closeGracefully half-closes the write side (TLS close_notify, TCP FIN),
// waits for the server's EOF up to the sending timeout, then closes
// (devo-output.md §7). It runs in the background, tracked by s.bg.
func (s *Sender) closeGracefully(c *conn) {
	s.bg.Add(1)
	go func() {
		defer s.bg.Done()
		_ = c.nc.SetWriteDeadline(time.Now().Add(s.opts.SendingTimeout))
		type closeWriter interface{ CloseWrite() error }
		if cw, ok := c.nc.(closeWriter); ok {
			_ = cw.CloseWrite()
		}
		t := time.NewTimer(s.opts.SendingTimeout)
		select {
		case <-c.readerDone:
		case <-t.C:
		case <-s.stopBg:
		}
		t.Stop()
		c.die(errors.New("closed by the collector"))
		c.nc.Close()
		<-c.readerDone
	}()
}

// closeNow closes at once (the connection is already dead or unwanted).
func (c *conn) closeNow(reason error) {
	c.die(reason)
	c.nc.Close()
	<-c.readerDone
}
