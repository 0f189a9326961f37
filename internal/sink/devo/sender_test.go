package devo

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/klauspost/compress/gzip"

	"github.com/devo-aws-collector/devo-aws-collector/internal/testutil/acceptloop"
	"github.com/devo-aws-collector/devo-aws-collector/internal/testutil/certs"
	"github.com/devo-aws-collector/devo-aws-collector/internal/testutil/rsyslog"
)

// gzipReceiver is a mutual-TLS server that reads each connection to its end
// and decompresses it as Devo does: concatenated gzip members, split on LF.
type gzipReceiver struct {
	ln      net.Listener
	mu      sync.Mutex
	lines   []string
	members int
	errs    []error
	wg      sync.WaitGroup
}

func startGzipReceiver(t *testing.T, c *certs.Set) *gzipReceiver {
	ln, err := tls.Listen("tcp", "127.0.0.1:0", c.ServerTLS(t))
	if err != nil {
		t.Fatal(err)
	}
	r := &gzipReceiver{ln: ln}
	acceptloop.Go(ln, &r.wg, func(nc net.Conn) {
		defer nc.Close()
		r.decode(nc)
	})
	t.Cleanup(func() { ln.Close(); r.wg.Wait() })
	return r
}

func (r *gzipReceiver) port() int { return r.ln.Addr().(*net.TCPAddr).Port }

func (r *gzipReceiver) decode(nc net.Conn) {
	br := bufio.NewReader(nc)
	if _, err := br.Peek(1); err != nil {
		return // connection without data (a probe)
	}
	zr, err := gzip.NewReader(br)
	if err != nil {
		r.fail(fmt.Errorf("stream does not start with a gzip member: %w", err))
		return
	}
	for {
		zr.Multistream(false)
		var out bytes.Buffer
		if _, err := io.Copy(&out, zr); err != nil {
			r.fail(fmt.Errorf("decompress member: %w", err))
			return
		}
		if out.Len() == 0 || out.Bytes()[out.Len()-1] != '\n' {
			r.fail(fmt.Errorf("member does not end with LF: %q", out.String()))
		}
		r.mu.Lock()
		r.members++
		r.lines = append(r.lines, strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")...)
		r.mu.Unlock()
		if err := zr.Reset(br); err == io.EOF {
			return
		} else if err != nil {
			r.fail(fmt.Errorf("next member: %w", err))
			return
		}
	}
}

func (r *gzipReceiver) fail(err error) {
	r.mu.Lock()
	r.errs = append(r.errs, err)
	r.mu.Unlock()
}

func TestGzipMembersDecompressAsDevoDoes(t *testing.T) {
	c := certs.New(t)
	r := startGzipReceiver(t, c)
	o := testOpts(r.port(), c)
	o.GzipThreshold = -1 // always
	o.GzipBuffer = 4096
	s, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	h := newHarness(t, s, 100)
	h.start(context.Background())
	const n = 2000
	for i := 0; i < n; i += 20 {
		var b [][2]string
		for j := i; j < i+20; j++ {
			b = append(b, [2]string{testTags[j%len(testTags)], fmt.Sprintf(`{"gz":%d}`, j)})
		}
		h.emit(context.Background(), b...)
	}
	if err := h.finish(30 * time.Second); err != nil {
		t.Fatal(err)
	}
	h.wantSettled(n)
	waitFor(5*time.Second, func() bool { r.mu.Lock(); defer r.mu.Unlock(); return len(r.lines) >= n })
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.errs) > 0 {
		t.Fatalf("receiver: %v", r.errs)
	}
	if len(r.lines) != n {
		t.Fatalf("got %d lines, want %d", len(r.lines), n)
	}
	for i, l := range r.lines {
		want := fmt.Sprintf(`<14>Jan  1 00:00:00 collector-test %s: {"gz":%d}`, testTags[i%len(testTags)], i)
		if l != want {
			t.Fatalf("line %d = %q, want %q", i, l, want)
		}
	}
	if r.members < 5 {
		t.Fatalf("%d gzip members for %d lines with a 4 KiB threshold", r.members, n)
	}
}

func TestGzipTimerFlushesPartialMember(t *testing.T) {
	c := certs.New(t)
	r := startGzipReceiver(t, c)
	o := testOpts(r.port(), c)
	o.GzipThreshold = -1
	o.GzipFlushInterval = 500 * time.Millisecond
	s, _ := New(o)
	h := newHarness(t, s, 10)
	h.start(context.Background())
	h.emit(context.Background(), [2]string{"a.b.c", "small"})
	if !waitFor(5*time.Second, func() bool { return h.delivered.Load() == 1 }) {
		t.Fatal("a partial gzip buffer was not flushed and settled by the timer")
	}
	// The event settled while the connection is still open: the member was
	// written by the timer, not by the close.
	if err := h.finish(10 * time.Second); err != nil {
		t.Fatal(err)
	}
}

func TestSpoolReplayedBeforeQueue(t *testing.T) {
	c := certs.New(t)
	srv := rsyslog.Start(t, rsyslog.Options{Certs: c})
	sp := &memSpool{}
	for i := range 250 {
		sp.evs = append(sp.evs, newEv("spool.tag.a.b", fmt.Sprintf("spooled %d", i)))
	}
	o := testOpts(srv.TLSPort, c)
	o.Spool = sp
	s, _ := New(o)
	h := newHarness(t, s, 1000)
	for i := range 50 {
		h.emit(context.Background(), [2]string{"queue.tag.a.b", fmt.Sprintf("queued %d", i)})
	}
	h.start(context.Background())
	if err := h.finish(30 * time.Second); err != nil {
		t.Fatal(err)
	}
	h.wantSettled(50)
	if sp.Len() != 0 {
		t.Fatalf("%d events left in the spool", sp.Len())
	}
	msgs := srv.WaitMessages(300, 10*time.Second)
	if len(msgs) != 300 {
		t.Fatalf("got %d messages", len(msgs))
	}
	for i, m := range msgs {
		want := fmt.Sprintf("spooled %d", i)
		if i >= 250 {
			want = fmt.Sprintf("queued %d", i-250)
		}
		if m.Payload() != want {
			t.Fatalf("message %d = %q, want %q", i, m.Payload(), want)
		}
	}
}

func closedPort(t *testing.T) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := l.Addr().(*net.TCPAddr).Port
	l.Close()
	return p
}

func TestSpoolWhileDownAndAtShutdown(t *testing.T) {
	c := certs.New(t)
	sp := &memSpool{}
	o := testOpts(closedPort(t), c)
	o.Spool = sp // the queue's own bound (20 events) makes it "full"
	o.SpoolAfter = 300 * time.Millisecond
	o.BatchSize = 10
	s, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	h := newHarness(t, s, 20)
	h.start(context.Background())
	const n = 200
	emitted := make(chan struct{})
	go func() {
		for i := range n {
			h.emit(context.Background(), [2]string{"a.b.c", fmt.Sprintf("ev %d", i)})
		}
		close(emitted)
	}()
	select {
	case <-emitted:
	case <-time.After(20 * time.Second):
		t.Fatalf("sources still blocked with the output down and a spool (%d spooled)", sp.Len())
	}
	if sp.Len() == 0 {
		t.Fatal("nothing was spooled while the output was down")
	}
	h.cancel() // shutdown with the receiver down
	if err := <-h.done; err != nil {
		t.Fatal(err)
	}
	h.done <- nil
	h.wantSettled(n)
	got := sp.payloads()
	for i := range n {
		if got[fmt.Sprintf("ev %d", i)] != 1 {
			t.Fatalf("event %d spooled %d times", i, got[fmt.Sprintf("ev %d", i)])
		}
	}
	if st := s.Stats(); st.Spooled != n || st.Total != 0 || st.Available != 0 {
		t.Fatalf("stats %+v", st)
	}
}

func TestNoSpoolFailsUnsentAtShutdown(t *testing.T) {
	c := certs.New(t)
	o := testOpts(closedPort(t), c)
	s, _ := New(o)
	h := newHarness(t, s, 100)
	h.start(context.Background())
	for i := range 30 {
		h.emit(context.Background(), [2]string{"a.b.c", fmt.Sprintf("ev %d", i)})
	}
	time.Sleep(300 * time.Millisecond)
	h.cancel()
	if err := <-h.done; err != nil {
		t.Fatal(err)
	}
	h.done <- nil
	if d, f := h.delivered.Load(), h.failed.Load(); d != 0 || f != 30 {
		t.Fatalf("delivered=%d failed=%d, want 0 and 30", d, f)
	}
}

func TestNewErrorsNameTheFiles(t *testing.T) {
	c := certs.New(t)
	base := testOpts(6514, c)
	for _, tc := range []struct {
		name string
		mod  func(*Options)
		want []string
	}{
		{"missing chain", func(o *Options) { o.Chain = c.Dir + "/nope.crt" }, []string{"chain file", "nope.crt"}},
		{"chain without certificates", func(o *Options) { o.Chain = c.ClientKey }, []string{"chain file", c.ClientKey, "no PEM certificate"}},
		{"unreadable cert", func(o *Options) { o.Cert = c.Dir + "/missing.crt" }, []string{"client certificate file", "missing.crt"}},
		{"unreadable key", func(o *Options) { o.Key = c.Dir + "/missing.key" }, []string{"client key file", "missing.key"}},
		{"mismatched pair", func(o *Options) { o.Key = c.RogueKey }, []string{c.ClientCert, c.RogueKey}},
		{"cert without key", func(o *Options) { o.Key = "" }, []string{"must be set together"}},
		{"no chain with tls", func(o *Options) { o.Chain = "" }, []string{"chain file"}},
		{"bad port", func(o *Options) { o.Port = 0 }, []string{"port 0"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := base
			tc.mod(&o)
			_, err := New(o)
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("%q does not contain %q", err, w)
				}
			}
		})
	}
}

func TestServerChainAlwaysVerified(t *testing.T) {
	c := certs.New(t)
	other := certs.New(t)
	r := startGzipReceiver(t, c)
	for _, check := range []bool{false, true} {
		o := testOpts(r.port(), c)
		o.Chain = other.CA // a chain that did not sign the server
		o.CheckHostname = check
		s, err := New(o)
		if err != nil {
			t.Fatal(err)
		}
		err = s.Check(context.Background())
		if err == nil || !strings.Contains(err.Error(), "certificate") {
			t.Fatalf("check_hostname=%v: server with a foreign chain accepted: %v", check, err)
		}
		o.Chain = c.CA
		s, _ = New(o)
		if err := s.Check(context.Background()); err != nil {
			t.Fatalf("check_hostname=%v: %v", check, err)
		}
	}
}

func TestBackoffSchedule(t *testing.T) {
	b := backoff{initial: 2 * time.Second, max: 60 * time.Second, retries: 5}
	caps := []time.Duration{2, 4, 8, 16, 32, 60, 60}
	for i, c := range caps {
		d := b.next()
		if d <= 0 || d > c*time.Second {
			t.Fatalf("attempt %d: %v not in (0, %v]", i+1, d, c*time.Second)
		}
	}
}

func TestWantGzipThreshold(t *testing.T) {
	s := &Sender{}
	for _, tc := range []struct {
		threshold float64
		samples   []float64
		want      bool
	}{
		{-1, nil, true},
		{1.1, []float64{1, 1}, false},
		{0.5, nil, false},
		{0.5, []float64{0.4, 0.6}, true},
		{0.5, []float64{0.4, 0.5}, false},
	} {
		s.opts.GzipThreshold = tc.threshold
		s.sampler = sampler{}
		for _, v := range tc.samples {
			s.sampler.add(v)
		}
		if got := s.wantGzip(); got != tc.want {
			t.Errorf("threshold %v samples %v: %v, want %v", tc.threshold, tc.samples, got, tc.want)
		}
	}
	var m sampler
	for range 1000 {
		m.add(1)
	}
	for range 1000 {
		m.add(0)
	}
	if v, _ := m.mean(); v != 0 {
		t.Errorf("mean over the last 1000 samples = %v, want 0", v)
	}
}

func TestQueueClosedWithReceiverDownSpoolsAtOnce(t *testing.T) {
	c := certs.New(t)
	sp := &memSpool{}
	o := testOpts(closedPort(t), c)
	o.Spool = sp
	s, _ := New(o)
	h := newHarness(t, s, 100)
	h.start(context.Background())
	for i := range 40 {
		h.emit(context.Background(), [2]string{"a.b.c", fmt.Sprintf("ev %d", i)})
	}
	// ctx stays alive: only the queue closes, as in an orderly shutdown.
	if err := h.finish(15 * time.Second); err != nil {
		t.Fatal(err)
	}
	h.wantSettled(40)
	if sp.Len() != 40 {
		t.Fatalf("spool holds %d, want 40", sp.Len())
	}
}
