//go:build linux

package devo

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/devo-aws-collector/devo-aws-collector/internal/testutil/acceptloop"
	"github.com/devo-aws-collector/devo-aws-collector/internal/testutil/certs"
)

// stallReceiver is a mutual-TLS receiver whose first connection completes
// its handshake and then reads nothing, with a tiny receive buffer: its TCP
// acknowledges a few KiB and then advertises a zero window, as a receiver
// that hangs does (or, seen from the sender, a network that drops every
// packet). Later connections read normally.
type stallReceiver struct {
	t      *testing.T
	ln     net.Listener
	mu     sync.Mutex
	conns  []net.Conn
	lines  []string
	closed bool
	wg     sync.WaitGroup
}

func startStallReceiver(t *testing.T, c *certs.Set) *stallReceiver {
	t.Helper()
	cfg := c.ServerTLS(t)
	// Accepted sockets inherit the listener's receive buffer, and the
	// window they advertise follows from it.
	lc := net.ListenConfig{Control: func(_, _ string, rc syscall.RawConn) error {
		var serr error
		err := rc.Control(func(fd uintptr) {
			serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096)
		})
		if err != nil {
			return err
		}
		return serr
	}}
	ln, err := lc.Listen(context.Background(), "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r := &stallReceiver{t: t, ln: ln}
	acceptloop.Go(ln, &r.wg, func(nc net.Conn) {
		r.mu.Lock()
		if r.closed { // accepted while the test ended: nobody would close it
			r.mu.Unlock()
			nc.Close()
			return
		}
		first := len(r.conns) == 0
		r.conns = append(r.conns, nc)
		r.mu.Unlock()
		tc := tls.Server(nc, cfg)
		if err := tc.Handshake(); err != nil || first {
			return // the first connection is never read
		}
		sc := bufio.NewScanner(tc)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			r.mu.Lock()
			r.lines = append(r.lines, sc.Text())
			r.mu.Unlock()
		}
	})
	t.Cleanup(func() {
		ln.Close()
		r.mu.Lock()
		r.closed = true
		for _, c := range r.conns {
			c.Close()
		}
		r.mu.Unlock()
		r.wg.Wait()
	})
	return r
}

func (r *stallReceiver) connections() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.conns)
}

// closeStalled closes the first connection with its data unread: the
// receiver's kernel then resets it, as when a hung receiver is restarted.
func (r *stallReceiver) closeStalled() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.conns[0].Close()
}

// seen counts the lines received (over the connections that read) that
// end with each payload.
func (r *stallReceiver) seen(payloads []string) (missing int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	got := map[string]bool{}
	for _, l := range r.lines {
		if i := strings.LastIndex(l, ": "); i >= 0 {
			got[l[i+2:]] = true
		}
	}
	for _, p := range payloads {
		if !got[p] {
			missing++
		}
	}
	return missing
}

// Bytes that the receiver's TCP never acknowledged are not delivered,
// however long the connection stays open without an error: a rule of time
// alone (written, and the connection alive ack_settle later) counted them
// delivered after 200 ms here, and lost them when the receiver then went
// away. They are resent on the next connection, whether the stalled one is
// reset by the receiver or given up by the sender after sending_timeout.
func TestUnacknowledgedBytesAreNotDelivered(t *testing.T) {
	c := certs.New(t)
	for _, tc := range []struct {
		name    string
		timeout time.Duration // sending_timeout
		reset   bool          // the receiver resets the stalled connection
	}{
		{"receiver resets the stalled connection", 30 * time.Second, true},
		{"sender gives up after sending_timeout", 1500 * time.Millisecond, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := startStallReceiver(t, c)
			o := testOpts(r.ln.Addr().(*net.TCPAddr).Port, c)
			o.SendingTimeout = tc.timeout
			s, err := New(o)
			if err != nil {
				t.Fatal(err)
			}
			h := newHarness(t, s, 1000)
			h.start(context.Background())
			// 60 events of 2 KB: two writes, far beyond what the stalled
			// connection's window takes, well within the sender's socket
			// buffer, so no write blocks.
			var payloads []string
			var evs [][2]string
			for i := range 60 {
				p := fmt.Sprintf("event %03d %s", i, strings.Repeat("x", 2000))
				payloads = append(payloads, p)
				evs = append(evs, [2]string{"my.app.demo", p})
			}
			h.emit(context.Background(), evs...)
			if !waitFor(10*time.Second, func() bool { return r.connections() >= 1 }) {
				t.Fatal("the sender never connected")
			}
			// Probe (300 ms) and ack_settle (200 ms) passed several times
			// over; the connection is alive and the writes returned.
			time.Sleep(time.Second)
			if d := h.delivered.Load(); d != 0 {
				t.Fatalf("%d of 60 events counted delivered while the receiver had acknowledged none of their bytes", d)
			}
			if tc.reset {
				r.closeStalled()
			}
			if !waitFor(20*time.Second, func() bool { return h.delivered.Load() == 60 }) {
				t.Fatalf("delivered %d of 60 (failed %d)", h.delivered.Load(), h.failed.Load())
			}
			if n := r.seen(payloads); n != 0 {
				t.Fatalf("%d of 60 events never reached a connection that read them", n)
			}
			if err := h.finish(10 * time.Second); err != nil {
				t.Fatal(err)
			}
			h.wantSettled(60)
			if n := r.connections(); n < 2 {
				t.Fatalf("%d connections, want the events resent on a second one", n)
			}
		})
	}
}
