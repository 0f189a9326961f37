package devo

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/devo-aws-collector/devo-aws-collector/internal/pipeline"
	"github.com/devo-aws-collector/devo-aws-collector/internal/spool"
	"github.com/devo-aws-collector/devo-aws-collector/internal/testutil/certs"
)

// promptShutdown is how long Run may take to return once the queue is
// closed with the receiver down and a spool: a small fraction of the
// pipeline's 30 s drain timeout.
const promptShutdown = 5 * time.Second

// tcpReceiver is a plain-TCP receiver that counts payloads per line and
// can go down (listener and every connection closed) on demand.
type tcpReceiver struct {
	ln    net.Listener
	mu    sync.Mutex
	conns map[net.Conn]bool
	got   map[string]int
	lines int
	wg    sync.WaitGroup
}

func startTCPReceiver(t *testing.T) *tcpReceiver {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r := &tcpReceiver{ln: ln, conns: map[net.Conn]bool{}, got: map[string]int{}}
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		for {
			nc, err := ln.Accept()
			if err != nil {
				return
			}
			r.mu.Lock()
			r.conns[nc] = true
			r.mu.Unlock()
			r.wg.Add(1)
			go func() {
				defer r.wg.Done()
				defer nc.Close()
				sc := bufio.NewScanner(nc)
				for sc.Scan() {
					// "<14>Jan  1 00:00:00 HOST TAG: PAYLOAD"
					_, payload, _ := strings.Cut(sc.Text(), ": ")
					r.mu.Lock()
					r.got[payload]++
					r.lines++
					r.mu.Unlock()
				}
			}()
		}
	}()
	t.Cleanup(r.down)
	return r
}

func (r *tcpReceiver) port() int { return r.ln.Addr().(*net.TCPAddr).Port }

// down closes the listener and every connection, so nothing can connect.
func (r *tcpReceiver) down() {
	r.ln.Close()
	r.mu.Lock()
	for nc := range r.conns {
		nc.Close()
	}
	r.mu.Unlock()
	r.wg.Wait()
}

func (r *tcpReceiver) count(payload string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.got[payload]
}

func (r *tcpReceiver) total() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.lines
}

// emitN emits n events "<prefix> i", one batch of up to 100 at a time.
func (h *harness) emitN(prefix string, n int) {
	for i := 0; i < n; i += 100 {
		var b [][2]string
		for j := i; j < min(i+100, n); j++ {
			b = append(b, [2]string{testTags[j%len(testTags)], fmt.Sprintf("%s %d", prefix, j)})
		}
		h.emit(context.Background(), b...)
	}
}

// closeAndTime closes the queue and returns how long Run took to return.
func (h *harness) closeAndTime(limit time.Duration) time.Duration {
	h.t.Helper()
	start := time.Now()
	if err := h.finish(limit); err != nil {
		h.t.Fatal(err)
	}
	return time.Since(start)
}

// downOpts are options for a receiver that is down: long connect backoff,
// so a worker sits in its backoff wait when the queue closes, small
// batches and two connections, so the workers hold some events and the
// queue still holds more.
func downOpts(port int, c *certs.Set, sp Spool) Options {
	o := testOpts(port, c)
	o.Spool = sp
	o.Connections = 2
	o.BatchSize = 50
	o.ConnectBackoffInitial = 20 * time.Second
	o.ConnectBackoffMax = 60 * time.Second
	o.SpoolAfter = time.Hour // only the shutdown path may spool here
	return o
}

// fillWhileDown emits n events while the receiver is down and waits until
// the output says so, then checks that the queue still holds events (so
// the close really happens with a non-empty queue).
func fillWhileDown(t *testing.T, h *harness, n int) {
	t.Helper()
	h.emitN("ev", n)
	// A worker takes a batch before it dials, so the queue shrinking first
	// shows the workers are running (before Run starts them no connection
	// counts as available either).
	if !waitFor(5*time.Second, func() bool {
		depth, _ := h.q.Depth()
		return depth < int64(n) && h.s.Stats().Available == 0
	}) {
		t.Fatal("the output never took events and reported itself down")
	}
	if depth, _ := h.q.Depth(); depth == 0 || depth == int64(n) {
		t.Fatalf("queue depth %d at close: want the workers holding some of %d events and the queue the rest", depth, n)
	}
}

func TestClosedQueueReceiverDownMemSpool(t *testing.T) {
	c := certs.New(t)
	sp := &memSpool{}
	s, err := New(downOpts(closedPort(t), c, sp))
	if err != nil {
		t.Fatal(err)
	}
	const n = 1000
	h := newHarness(t, s, 2*n)
	h.start(context.Background())
	fillWhileDown(t, h, n)
	if took := h.closeAndTime(promptShutdown); took > promptShutdown {
		t.Fatalf("Run returned %v after the queue closed", took)
	}
	h.wantSettled(n)
	got := sp.payloads()
	if len(got) != n {
		t.Fatalf("spool holds %d distinct events, want %d", len(got), n)
	}
	for i := range n {
		if k := got[fmt.Sprintf("ev %d", i)]; k != 1 {
			t.Fatalf("event %d spooled %d times", i, k)
		}
	}
	if st := s.Stats(); st.Spooled != n || st.Total != 0 {
		t.Fatalf("stats %+v, want %d spooled and none sent", st, n)
	}
}

func TestClosedQueueReceiverDownRealSpool(t *testing.T) {
	c := certs.New(t)
	dir := t.TempDir()
	sp, err := spool.Open(dir, 0)
	if err != nil {
		t.Fatal(err)
	}
	s, err := New(downOpts(closedPort(t), c, sp))
	if err != nil {
		t.Fatal(err)
	}
	const n = 1000
	h := newHarness(t, s, 2*n)
	h.start(context.Background())
	fillWhileDown(t, h, n)
	if took := h.closeAndTime(promptShutdown); took > promptShutdown {
		t.Fatalf("Run returned %v after the queue closed", took)
	}
	h.wantSettled(n)
	if err := sp.Close(); err != nil {
		t.Fatal(err)
	}

	// What a restart finds on disk: each event exactly once.
	sp, err = spool.Open(dir, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer sp.Close()
	if sp.Len() != n {
		t.Fatalf("reopened spool holds %d events, want %d", sp.Len(), n)
	}
	got := map[string]int{}
	if err := sp.Replay(context.Background(), func(evs []*pipeline.Event) error {
		for _, ev := range evs {
			got[string(ev.Payload)]++
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	for i := range n {
		if k := got[fmt.Sprintf("ev %d", i)]; k != 1 {
			t.Fatalf("event %d on disk %d times", i, k)
		}
	}
}

// The receiver worked, then went away: connections that were healthy die,
// reconnects fail, and the queue closes with events in it.
func TestClosedQueueReceiverWentDownSpoolsAtOnce(t *testing.T) {
	r := startTCPReceiver(t)
	sp := &memSpool{}
	o := downOpts(r.port(), nil, sp)
	o.Connections = 3
	s, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	const before, n = 20, 600
	h := newHarness(t, s, 2*n)
	h.start(context.Background())
	h.emitN("first", before)
	if !waitFor(10*time.Second, func() bool { return h.delivered.Load() == before }) {
		t.Fatalf("%d of %d events delivered while the receiver was up", h.delivered.Load(), before)
	}
	r.down()
	// A worker learns the receiver is gone only when it has something to
	// send (until then it may even write into the dead connection): feed
	// probes until every connection has failed to reconnect. A worker that
	// is down holds its probe and takes nothing more, so the queue then
	// keeps all n events.
	probes := 0
	if !waitFor(10*time.Second, func() bool {
		if s.Stats().Available == 0 {
			return true
		}
		h.emit(context.Background(), [2]string{"a.b.c", fmt.Sprintf("probe %d", probes)})
		probes++
		return false
	}) {
		t.Fatal("the output never reported itself down")
	}
	h.emitN("ev", n)
	if depth, _ := h.q.Depth(); depth != n {
		t.Fatalf("queue depth %d at close, want %d", depth, n)
	}
	if took := h.closeAndTime(promptShutdown); took > promptShutdown {
		t.Fatalf("Run returned %v after the queue closed", took)
	}
	h.wantSettled(int64(before + probes + n))
	got := sp.payloads()
	// A probe written into the dead connection before its death was seen
	// may have settled over the network (no ack in the protocol); otherwise
	// it is spooled. The counts below hold either way only if no event got
	// two fates.
	for i := range probes {
		if k := got[fmt.Sprintf("probe %d", i)]; k > 1 {
			t.Fatalf("probe %d spooled %d times", i, k)
		}
	}
	for i := range n {
		if k := got[fmt.Sprintf("ev %d", i)]; k != 1 {
			t.Fatalf("event %d spooled %d times", i, k)
		}
	}
	for i := range before {
		p := fmt.Sprintf("first %d", i)
		if got[p] != 0 || r.count(p) == 0 {
			t.Fatalf("%q: spooled %d times, received %d times; want sent only", p, got[p], r.count(p))
		}
	}
	if st := s.Stats(); st.Spooled+st.Total != int64(before+probes+n) || st.Total < before {
		t.Fatalf("stats %+v, want %d sent and spooled in all, at least %d sent", st, before+probes+n, before)
	}
}

// With the receiver up, closing the queue drains it over the network even
// with a spool configured: nothing goes to the spool.
func TestClosedQueueReceiverUpDrainsOverNetwork(t *testing.T) {
	r := startTCPReceiver(t)
	sp := &memSpool{}
	o := testOpts(r.port(), nil)
	o.Spool = sp
	o.Connections = 3
	o.BatchSize = 50
	s, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	const n = 3000
	h := newHarness(t, s, n)
	h.emitN("ev", n) // all queued before Run starts
	h.start(context.Background())
	h.closeAndTime(20 * time.Second)
	h.wantSettled(n)
	if sp.Len() != 0 {
		t.Fatalf("%d events spooled with the receiver up", sp.Len())
	}
	if !waitFor(5*time.Second, func() bool { return r.total() >= n }) {
		t.Fatalf("receiver got %d lines, want %d", r.total(), n)
	}
	for i := range n {
		if k := r.count(fmt.Sprintf("ev %d", i)); k != 1 {
			t.Fatalf("event %d received %d times", i, k)
		}
	}
	if st := s.Stats(); st.Spooled != 0 || st.Total != n {
		t.Fatalf("stats %+v, want %d sent and none spooled", st, n)
	}
}

// Without a spool nothing changes: a closed queue with the receiver down
// keeps retrying until the pipeline cancels, then the events fail.
func TestClosedQueueReceiverDownNoSpoolWaitsForCancel(t *testing.T) {
	c := certs.New(t)
	s, err := New(downOpts(closedPort(t), c, nil))
	if err != nil {
		t.Fatal(err)
	}
	const n = 300
	h := newHarness(t, s, n)
	h.start(context.Background())
	fillWhileDown(t, h, n)
	h.q.Close()
	select {
	case err := <-h.done:
		t.Fatalf("Run returned (%v) before cancellation with no spool and the receiver down", err)
	case <-time.After(time.Second):
	}
	h.cancel()
	select {
	case err := <-h.done:
		if err != nil {
			t.Fatal(err)
		}
		h.done <- nil
	case <-time.After(promptShutdown):
		t.Fatal("Run did not return after cancellation")
	}
	if d, f := h.delivered.Load(), h.failed.Load(); d != 0 || f != n {
		t.Fatalf("delivered=%d failed=%d, want 0 and %d", d, f, n)
	}
}

func TestFillRatioFromQueueBounds(t *testing.T) {
	q := pipeline.NewQueue(10, 10_000)
	for range 4 {
		if err := q.Put(context.Background(), newEv("a.b.c", "x")); err != nil { // 70 bytes each
			t.Fatal(err)
		}
	}
	s := &Sender{}
	if f := s.fill(q); f != 0.4 {
		t.Errorf("fill with the queue's bounds = %v, want 0.4 (4 of 10 events)", f)
	}
	s.opts.QueueMaxMessages = 100
	if f := s.fill(q); f != 0.04 {
		t.Errorf("fill with QueueMaxMessages 100 = %v, want 0.04", f)
	}
	s.opts.QueueMaxBytes = 280
	if f := s.fill(q); f != 1 {
		t.Errorf("fill with QueueMaxBytes 280 = %v, want 1 (280 of 280 bytes)", f)
	}
}
