package sqsengine

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/devo-aws-collector/devo-aws-collector/internal/pipeline"
	"github.com/devo-aws-collector/devo-aws-collector/internal/testutil/pipetest"
	"github.com/devo-aws-collector/devo-aws-collector/internal/testutil/syncbuf"
)

// newTestPipeline returns an Emitter with one output, a recorder that
// settles each event with the fate decide gives (Delivered when decide is
// nil), running until the test ends.
func newTestPipeline(t *testing.T, decide func(ev *pipeline.Event) pipeline.Fate) (pipeline.Emitter, *pipetest.Recorder) {
	t.Helper()
	rec := &pipetest.Recorder{Decide: decide}
	return pipetest.Emitter(t, rec), rec
}

// emitBody is a handler that emits each line of the body as one event.
var emitBody = HandlerFunc(func(ctx context.Context, m Message, b *pipeline.Batch, out pipeline.Emitter) error {
	for _, line := range strings.Split(m.Body, "\n") {
		if err := out.Emit(ctx, pipeline.NewEvent(b, "test.tag", time.Now(), []byte(line))); err != nil {
			return err
		}
	}
	return nil
})

// logBuffer is a concurrency-safe log sink for asserting on log lines.
type logBuffer struct{ syncbuf.Buffer }

func testLogger(t *testing.T) (*slog.Logger, *logBuffer) {
	lb := &logBuffer{}
	var w io.Writer = lb
	if testing.Verbose() {
		w = io.MultiWriter(lb, tWriter{t})
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug})), lb
}

type tWriter struct{ t *testing.T }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// runEngine runs e until the test ends (or stop is called) and reports Run's
// return on the returned channel.
func runEngine(t *testing.T, e *Engine, out pipeline.Emitter) (stop func(), result <-chan error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	res := make(chan error, 1)
	go func() { res <- e.Run(ctx, out) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-res:
				if err != nil {
					t.Errorf("Run returned %v", err)
				}
			case <-time.After(60 * time.Second):
				t.Errorf("Run did not return within 60s of the end of its context")
			}
		})
	}
	t.Cleanup(stop)
	return stop, res
}

// forwarder is a TCP proxy on 127.0.0.1 that can be cut and restored on the
// same port, to make a real outage between the SDK and the emulator.
type forwarder struct {
	target string
	addr   string

	mu    sync.Mutex
	l     net.Listener
	conns map[net.Conn]struct{}
	wg    sync.WaitGroup
}

func newForwarder(t *testing.T, target string) *forwarder {
	t.Helper()
	f := &forwarder{target: target, conns: map[net.Conn]struct{}{}}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f.addr = l.Addr().String()
	f.serve(l)
	t.Cleanup(f.cut)
	return f
}

func (f *forwarder) serve(l net.Listener) {
	f.mu.Lock()
	f.l = l
	f.mu.Unlock()
	f.wg.Add(1)
	go func() {
		defer f.wg.Done()
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			up, err := net.Dial("tcp", f.target)
			if err != nil {
				c.Close()
				continue
			}
			f.mu.Lock()
			f.conns[c], f.conns[up] = struct{}{}, struct{}{}
			f.mu.Unlock()
			f.wg.Add(2)
			go func() { defer f.wg.Done(); _, _ = io.Copy(up, c); up.Close() }()
			go func() { defer f.wg.Done(); _, _ = io.Copy(c, up); c.Close() }()
		}
	}()
}

// cut closes the listener and every connection: requests fail with
// "connection refused" until restore.
func (f *forwarder) cut() {
	f.mu.Lock()
	if f.l != nil {
		f.l.Close()
		f.l = nil
	}
	for c := range f.conns {
		c.Close()
	}
	clear(f.conns)
	f.mu.Unlock()
	f.wg.Wait()
}

func (f *forwarder) restore(t *testing.T) {
	t.Helper()
	l, err := net.Listen("tcp", f.addr)
	if err != nil {
		t.Fatalf("listen again on %s: %v", f.addr, err)
	}
	f.serve(l)
}

// countingTransport counts the HTTP requests an SDK client sends.
type countingTransport struct {
	next http.RoundTripper
	n    atomic.Int64
}

func (c *countingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	c.n.Add(1)
	return c.next.RoundTrip(r)
}
