package devo

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/devo-aws-collector/devo-aws-collector/internal/pipeline"
	"github.com/devo-aws-collector/devo-aws-collector/internal/testutil/certs"
	"github.com/devo-aws-collector/devo-aws-collector/internal/testutil/poison"
)

var testLog = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))

// testOpts are the defaults with timers shortened for tests.
func testOpts(port int, c *certs.Set) Options {
	o := DefaultOptions()
	o.Name = "test"
	o.Address = "127.0.0.1"
	o.Port = port
	o.Hostname = "collector-test"
	if c != nil {
		o.Chain, o.Cert, o.Key = c.CA, c.ClientCert, c.ClientKey
	} else {
		o.TLS = false
	}
	o.ProbeTimeout = 300 * time.Millisecond
	o.AckSettle = 200 * time.Millisecond
	o.ConnectBackoffInitial = 100 * time.Millisecond
	o.ConnectBackoffMax = time.Second
	o.SendBackoffInitial = 100 * time.Millisecond
	o.SendBackoffMax = time.Second
	o.ConnectTimeout = 5 * time.Second
	o.Logger = testLog
	return o
}

// harness feeds one output's queue through a real pipeline.Emit, so batch
// accounting is the production one, and runs the sender.
type harness struct {
	t         *testing.T
	q         *pipeline.Queue
	p         *pipeline.Pipeline
	s         *Sender
	delivered atomic.Int64
	failed    atomic.Int64
	batches   atomic.Int64
	done      chan error
	cancel    context.CancelFunc
}

func newHarness(t *testing.T, s *Sender, maxMsgs int) *harness {
	h := &harness{t: t, s: s, q: pipeline.NewQueue(maxMsgs, 64<<20), done: make(chan error, 1)}
	h.p = pipeline.New(testLog, pipeline.Options{}, []*pipeline.Output{{Name: "test", Sink: s, Queue: h.q}}, nil)
	return h
}

func (h *harness) start(ctx context.Context) {
	ctx, h.cancel = context.WithCancel(ctx)
	go func() { h.done <- h.s.Run(ctx, h.q) }()
	h.t.Cleanup(func() {
		h.cancel()
		select {
		case <-h.done:
		case <-time.After(30 * time.Second):
		}
	})
}

// emit sends one batch of events and counts its settled fates. Each payload
// is overwritten with '#' as soon as its event's fate is final (through the
// pipeline's Ref, as a source that reuses payload memory does), so a sender
// that read an event after settling it would put '#'s on the wire and fail
// the tests that compare payloads.
func (h *harness) emit(ctx context.Context, evs ...[2]string) {
	h.emitWith(ctx, false, evs...)
}

// emitWith is emit with WriteAhead set on every event as wa says.
func (h *harness) emitWith(ctx context.Context, wa bool, evs ...[2]string) {
	b := pipeline.NewBatch(func(r pipeline.Result) {
		h.delivered.Add(int64(r.Delivered))
		h.failed.Add(int64(r.Failed))
		h.batches.Add(1)
	})
	for _, e := range evs {
		ev := pipeline.NewEvent(b, e[0], time.Now(), []byte(e[1]))
		ev.WriteAhead = wa
		poison.AfterFate(ev)
		if err := h.p.Emit(ctx, ev); err != nil {
			h.t.Errorf("emit: %v", err)
		}
	}
	b.Close()
}

// finish closes the queue and waits for Run.
func (h *harness) finish(timeout time.Duration) error {
	h.q.Close()
	select {
	case err := <-h.done:
		h.done <- err
		return err
	case <-time.After(timeout):
		h.t.Fatalf("sender did not finish within %v", timeout)
		return nil
	}
}

func (h *harness) wantSettled(n int64) {
	h.t.Helper()
	if d, f := h.delivered.Load(), h.failed.Load(); d != n || f != 0 {
		h.t.Fatalf("settled delivered=%d failed=%d, want %d and 0", d, f, n)
	}
	if d, f := h.q.Settled(); d != n || f != 0 {
		h.t.Fatalf("queue settled delivered=%d failed=%d, want %d and 0 (an event settled twice?)", d, f, n)
	}
}

// memSpool is an in-memory Spool.
type memSpool struct {
	mu      sync.Mutex
	evs     []*pipeline.Event
	appends int
	failing bool
}

func (m *memSpool) Append(evs []*pipeline.Event) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.failing {
		return fmt.Errorf("disk full")
	}
	for _, ev := range evs {
		m.evs = append(m.evs, pipeline.NewEvent(nil, ev.Tag, ev.Time, append([]byte(nil), ev.Payload...)))
	}
	m.appends++
	return nil
}

// ReplayWindow sends one chunk of up to 100 events at a time (the real
// spool's window is tested in internal/spool and with the real spool here).
func (m *memSpool) ReplayWindow(ctx context.Context, _ int, _ int64, send func([]*pipeline.Event) func() error) error {
	for {
		m.mu.Lock()
		n := min(100, len(m.evs))
		chunk := append([]*pipeline.Event(nil), m.evs[:n]...)
		m.mu.Unlock()
		if n == 0 {
			return nil
		}
		if err := send(chunk)(); err != nil {
			return err
		}
		m.mu.Lock()
		m.evs = m.evs[n:]
		m.mu.Unlock()
	}
}

func (m *memSpool) Len() int64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	return int64(len(m.evs))
}

func (m *memSpool) payloads() map[string]int {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := map[string]int{}
	for _, ev := range m.evs {
		out[string(ev.Payload)]++
	}
	return out
}

func newEv(tag, payload string) *pipeline.Event {
	return pipeline.NewEvent(nil, tag, time.Now(), []byte(payload))
}
