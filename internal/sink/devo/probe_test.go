package devo

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/devo-aws-collector/devo-aws-collector/internal/testutil/acceptloop"
	"github.com/devo-aws-collector/devo-aws-collector/internal/testutil/certs"
)

// flakyReceiver is a TLS 1.3 receiver with mutual TLS that closes the first
// `drop` connections right after their handshake, as a relay does when it
// restarts (or as rsyslog does when it rejects a certificate, when drop is
// large), and can go away and come back on the same port.
type flakyReceiver struct {
	t    *testing.T
	cfg  *tls.Config
	port int
	drop atomic.Int64

	mu    sync.Mutex
	ln    net.Listener
	lines []string
	wg    sync.WaitGroup
}

func startFlakyReceiver(t *testing.T, c *certs.Set, drop int64) *flakyReceiver {
	t.Helper()
	cfg := c.ServerTLS(t)
	cfg.MinVersion = tls.VersionTLS13
	r := &flakyReceiver{t: t, cfg: cfg}
	r.drop.Store(drop)
	r.up()
	t.Cleanup(r.down)
	return r
}

// up listens (again) on the receiver's port.
func (r *flakyReceiver) up() {
	addr := "127.0.0.1:" + strconv.Itoa(r.port)
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		r.t.Fatalf("listen %s: %v", addr, err)
	}
	r.port = ln.Addr().(*net.TCPAddr).Port
	r.mu.Lock()
	r.ln = ln
	r.mu.Unlock()
	acceptloop.Go(ln, &r.wg, r.serve)
}

func (r *flakyReceiver) serve(nc net.Conn) {
	defer nc.Close()
	tc := tls.Server(nc, r.cfg)
	if err := tc.Handshake(); err != nil {
		return
	}
	if r.drop.Add(-1) >= 0 {
		return // closed right after the handshake, without an alert
	}
	sc := bufio.NewScanner(tc)
	for sc.Scan() {
		r.mu.Lock()
		r.lines = append(r.lines, sc.Text())
		r.mu.Unlock()
	}
}

// down stops listening; open connections end too.
func (r *flakyReceiver) down() {
	r.mu.Lock()
	if r.ln != nil {
		r.ln.Close()
		r.ln = nil
	}
	r.mu.Unlock()
}

func (r *flakyReceiver) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.lines)
}

func tls13Opts(port int, c *certs.Set) Options {
	o := testOpts(port, c)
	o.ProbeTimeout = time.Second
	return o
}

// A receiver that closes the probe connection and is then gone (a relay
// restarting while the collector starts) is an outage, not a rejected
// certificate; one that closes the probe connection once and then stays
// up was a restart. A receiver that closes every connection right after the
// handshake rejects the certificate.
func TestProbeTellsRejectionFromOutage(t *testing.T) {
	c := certs.New(t)
	t.Run("closed then gone", func(t *testing.T) {
		r := startFlakyReceiver(t, c, 1)
		s, err := New(tls13Opts(r.port, c))
		if err != nil {
			t.Fatal(err)
		}
		// The receiver goes away as soon as it has dropped the probe
		// connection.
		go func() {
			for r.drop.Load() > 0 {
				time.Sleep(time.Millisecond)
			}
			r.down()
		}()
		err = s.Check(context.Background())
		var ae *AuthError
		if err == nil || errors.As(err, &ae) {
			t.Fatalf("Check = %v, want an outage error that is not an *AuthError", err)
		}
	})
	t.Run("closed once then up", func(t *testing.T) {
		r := startFlakyReceiver(t, c, 1)
		s, _ := New(tls13Opts(r.port, c))
		err := s.Check(context.Background())
		var ae *AuthError
		if err == nil || errors.As(err, &ae) {
			t.Fatalf("Check = %v, want an outage error that is not an *AuthError", err)
		}
	})
	t.Run("always closed", func(t *testing.T) {
		r := startFlakyReceiver(t, c, 1<<30)
		s, _ := New(tls13Opts(r.port, c))
		start := time.Now()
		err := s.Check(context.Background())
		var ae *AuthError
		if !errors.As(err, &ae) {
			t.Fatalf("Check = %v, want *AuthError", err)
		}
		if took := time.Since(start); took > 2*time.Second {
			t.Errorf("rejection confirmed after %v, want well within two probe timeouts", took)
		}
	})
}

// The output starts, the receiver drops the first connection inside its
// probe and is away for a while, then comes back: the sender keeps
// retrying and delivers, and Run never returns an *AuthError.
func TestRunSurvivesReceiverRestartDuringProbe(t *testing.T) {
	c := certs.New(t)
	r := startFlakyReceiver(t, c, 1)
	go func() {
		for r.drop.Load() > 0 {
			time.Sleep(time.Millisecond)
		}
		r.down()
		time.Sleep(1500 * time.Millisecond)
		r.up()
	}()
	s, _ := New(tls13Opts(r.port, c))
	h := newHarness(t, s, 100)
	h.start(context.Background())
	for i := range 20 {
		h.emit(context.Background(), [2]string{"my.app.demo", "event " + strconv.Itoa(i)})
	}
	if !waitFor(20*time.Second, func() bool { return h.delivered.Load() == 20 }) {
		t.Fatalf("delivered %d of 20 (failed %d)", h.delivered.Load(), h.failed.Load())
	}
	if err := h.finish(10 * time.Second); err != nil {
		t.Fatalf("Run = %v, want nil", err)
	}
	if n := r.count(); n < 20 {
		t.Fatalf("receiver got %d lines, want ≥ 20", n)
	}
}

// The start-up probe follows the connection's connect + handshake time:
// never under the floor, four times a slow handshake, never over the
// configured handshake_probe_timeout.
func TestProbeLength(t *testing.T) {
	for _, tc := range []struct{ hs, limit, want time.Duration }{
		{time.Millisecond, 2 * time.Second, probeFloor},
		{50 * time.Millisecond, 2 * time.Second, probeFloor},
		{100 * time.Millisecond, 2 * time.Second, 400 * time.Millisecond},
		{time.Second, 2 * time.Second, 2 * time.Second},
		{time.Millisecond, 100 * time.Millisecond, 100 * time.Millisecond},
	} {
		if got := probeLength(tc.hs, tc.limit); got != tc.want {
			t.Errorf("probeLength(%v, %v) = %v, want %v", tc.hs, tc.limit, got, tc.want)
		}
	}
}
