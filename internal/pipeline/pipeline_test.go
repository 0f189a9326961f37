package pipeline

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func discardLog() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// recSink settles every event it takes with the fate fateOf decides, after
// an optional delay per batch; it records what it saw.
type recSink struct {
	delay  time.Duration
	fateOf func(*Event) Fate
	mu     sync.Mutex
	seen   []string
}

func (s *recSink) Run(ctx context.Context, in *Queue) error {
	var buf []*Event
	for {
		evs, err := in.Get(ctx, buf, 16)
		if err != nil {
			return nil
		}
		if s.delay > 0 {
			time.Sleep(s.delay)
		}
		for _, ev := range evs {
			s.mu.Lock()
			s.seen = append(s.seen, string(ev.Payload))
			s.mu.Unlock()
			f := Delivered
			if s.fateOf != nil {
				f = s.fateOf(ev)
			}
			in.Settle(ev, f)
		}
		buf = evs
	}
}

func (s *recSink) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.seen)
}

// batchSource emits n batches of k events and records each batch's result.
type batchSource struct {
	n, k    int
	size    int // payload bytes, at least the id
	mu      sync.Mutex
	results []Result
	emitted atomic.Int64
	done    chan struct{}
}

func (s *batchSource) Run(ctx context.Context, out Emitter) error {
	var wg sync.WaitGroup
	for i := 0; i < s.n; i++ {
		wg.Add(1)
		b := NewBatch(func(r Result) {
			s.mu.Lock()
			s.results = append(s.results, r)
			s.mu.Unlock()
			wg.Done()
		})
		for j := 0; j < s.k; j++ {
			payload := []byte(fmt.Sprintf("%d-%d", i, j))
			for len(payload) < s.size {
				payload = append(payload, '.')
			}
			if err := out.Emit(ctx, NewEvent(b, "t", time.Now(), payload)); err != nil {
				b.Close()
				return nil
			}
			s.emitted.Add(1)
		}
		b.Close()
	}
	go func() {
		wg.Wait()
		close(s.done)
	}()
	<-ctx.Done()
	return nil
}

func TestAcksReachSourceFromEveryOutput(t *testing.T) {
	failOdd := func(ev *Event) Fate {
		if ev.Payload[0] == '3' { // every event of batch 3 fails at the second output
			return Failed
		}
		return Delivered
	}
	a, b := &recSink{}, &recSink{fateOf: failOdd}
	outs := []*Output{
		{Name: "a", Sink: a, Queue: NewQueue(100, 1<<20)},
		{Name: "b", Sink: b, Queue: NewQueue(100, 1<<20)},
	}
	src := &batchSource{n: 5, k: 10, done: make(chan struct{})}
	var unitDelivered, unitFailed, outDelivered, outFailed atomic.Int64
	outs[1].Queue.CountInto(&outDelivered, &outFailed)
	p := New(discardLog(), Options{}, outs, []Unit{{Name: "u", Source: src, Counters: Counters{Delivered: &unitDelivered, Failed: &unitFailed}}})
	stop, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- p.Run(stop, context.Background()) }()
	select {
	case <-src.done:
	case <-time.After(20 * time.Second):
		t.Fatal("batches never settled")
	}
	cancel()
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	if len(src.results) != 5 {
		t.Fatalf("got %d batch results, want 5", len(src.results))
	}
	failed := 0
	for _, r := range src.results {
		if r.Delivered+r.Failed != 20 {
			t.Errorf("batch result %+v does not count 10 events x 2 outputs", r)
		}
		if !r.OK() {
			failed++
			if r.Failed != 10 {
				t.Errorf("failed batch %+v: want 10 failed fates", r)
			}
		}
	}
	if failed != 1 {
		t.Errorf("%d batches failed, want exactly 1", failed)
	}
	if a.count() != 50 || b.count() != 50 {
		t.Errorf("outputs saw %d and %d events, want 50 each", a.count(), b.count())
	}
	if d, f := outs[1].Queue.Settled(); d != 40 || f != 10 {
		t.Errorf("output b counters delivered=%d failed=%d, want 40/10", d, f)
	}
	if d, f := outDelivered.Load(), outFailed.Load(); d != 40 || f != 10 {
		t.Errorf("output b metrics delivered=%d failed=%d, want 40/10", d, f)
	}
	// An event counts for its unit once every output reported: delivered
	// only when both did.
	if d, f := unitDelivered.Load(), unitFailed.Load(); d != 40 || f != 10 {
		t.Errorf("unit counters delivered=%d failed=%d, want 40/10", d, f)
	}
}

func TestEmptyBatchSettlesOnClose(t *testing.T) {
	var got *Result
	b := NewBatch(func(r Result) { got = &r })
	b.Close()
	if got == nil || !got.OK() || got.Delivered != 0 {
		t.Fatalf("empty batch result %+v", got)
	}
	b.Close() // idempotent, must not fire twice
}

func TestBatchFailMarksFailure(t *testing.T) {
	var got Result
	fired := 0
	b := NewBatch(func(r Result) { got = r; fired++ })
	b.Fail()
	b.Close()
	if fired != 1 || got.OK() {
		t.Fatalf("fired=%d result=%+v, want one failed result", fired, got)
	}
}

func TestQueueBlocksOnMessageBound(t *testing.T) {
	q := NewQueue(3, 1<<20)
	ctx := context.Background()
	for i := 0; i < 3; i++ {
		if err := q.Put(ctx, NewEvent(nil, "t", time.Time{}, []byte("x"))); err != nil {
			t.Fatal(err)
		}
	}
	short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	if err := q.Put(short, NewEvent(nil, "t", time.Time{}, []byte("x"))); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("put on a full queue returned %v, want it to wait until the deadline", err)
	}
	if m, _ := q.Depth(); m != 3 {
		t.Fatalf("depth %d, want 3 (nothing dropped, nothing added)", m)
	}
	got, err := q.Get(ctx, nil, 1)
	if err != nil || len(got) != 1 {
		t.Fatal(got, err)
	}
	if err := q.Put(ctx, NewEvent(nil, "t", time.Time{}, []byte("x"))); err != nil {
		t.Fatalf("put after a get: %v", err)
	}
}

func TestQueueByteBound(t *testing.T) {
	ev := NewEvent(nil, "t", time.Time{}, make([]byte, 1000))
	q := NewQueue(1000, 3*ev.Size())
	ctx := context.Background()
	for i := 0; i < 3; i++ {
		if err := q.Put(ctx, NewEvent(nil, "t", time.Time{}, make([]byte, 1000))); err != nil {
			t.Fatal(err)
		}
	}
	short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	if err := q.Put(short, ev); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("put over the byte bound returned %v, want a wait", err)
	}
	// One event larger than the whole bound is accepted when the queue is empty.
	big := NewQueue(10, 10)
	if err := big.Put(ctx, ev); err != nil {
		t.Fatalf("oversized event into an empty queue: %v", err)
	}
}

func TestQueueCloseDrainsThenEnds(t *testing.T) {
	q := NewQueue(10, 1<<20)
	ctx := context.Background()
	_ = q.Put(ctx, NewEvent(nil, "t", time.Time{}, []byte("a")))
	q.Close()
	if err := q.Put(ctx, NewEvent(nil, "t", time.Time{}, []byte("b"))); !errors.Is(err, ErrClosed) {
		t.Fatalf("put after close: %v", err)
	}
	got, err := q.Get(ctx, nil, 10)
	if err != nil || len(got) != 1 {
		t.Fatalf("get after close: %v %v", got, err)
	}
	if _, err := q.Get(ctx, nil, 10); !errors.Is(err, ErrClosed) {
		t.Fatalf("get on closed empty queue: %v", err)
	}
}

// A slow output fills the bounded queue; the source then blocks instead of
// dropping, the queue never exceeds its bounds, and every event arrives.
func TestSlowOutputBackpressuresSource(t *testing.T) {
	const maxMsgs = 20
	ev := NewEvent(nil, "t", time.Time{}, make([]byte, 100))
	maxBytes := 10 * ev.Size() // the byte bound is the tighter one
	slow := &recSink{delay: 20 * time.Millisecond}
	q := NewQueue(maxMsgs, maxBytes)
	src := &batchSource{n: 10, k: 20, size: 100, done: make(chan struct{})}
	p := New(discardLog(), Options{}, []*Output{{Name: "slow", Sink: slow, Queue: q}}, []Unit{{Name: "u", Source: src}})

	var peakMsgs, peakBytes atomic.Int64
	watchCtx, stopWatch := context.WithCancel(context.Background())
	blocked := false
	go func() {
		for watchCtx.Err() == nil {
			m, b := q.Depth()
			if m > peakMsgs.Load() {
				peakMsgs.Store(m)
			}
			if b > peakBytes.Load() {
				peakBytes.Store(b)
			}
			time.Sleep(time.Millisecond)
		}
	}()
	stop, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- p.Run(stop, context.Background()) }()

	// While the sink is slow, the source must be ahead of the sink by at most the queue bound.
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		emitted, seen := src.emitted.Load(), int64(slow.count())
		if emitted-seen > 10+16+1 { // queue bound + one batch the sink holds + one in Put
			t.Fatalf("source ran ahead: emitted %d, sink saw %d", emitted, seen)
		}
		if emitted > 0 && emitted < 200 && emitted-seen >= 10 {
			blocked = true
		}
		time.Sleep(2 * time.Millisecond)
	}
	select {
	case <-src.done:
	case <-time.After(30 * time.Second):
		t.Fatal("source never finished")
	}
	cancel()
	<-errc
	stopWatch()
	if !blocked {
		t.Error("never saw the queue full while the source was still emitting")
	}
	if slow.count() != 200 {
		t.Errorf("sink saw %d events, want 200", slow.count())
	}
	if peakBytes.Load() > maxBytes {
		t.Errorf("queue held %d bytes, bound %d", peakBytes.Load(), maxBytes)
	}
	for _, r := range src.results {
		if !r.OK() {
			t.Errorf("batch failed: %+v", r)
		}
	}
}

type failingSource struct{ runs atomic.Int64 }

func (s *failingSource) Run(ctx context.Context, out Emitter) error {
	s.runs.Add(1)
	return errors.New("boom")
}

type panickingSource struct{ runs atomic.Int64 }

func (s *panickingSource) Run(ctx context.Context, out Emitter) error {
	s.runs.Add(1)
	panic("bad data")
}

type tickingSource struct{ ticks atomic.Int64 }

func (s *tickingSource) Run(ctx context.Context, out Emitter) error {
	t := time.NewTicker(5 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			s.ticks.Add(1)
		}
	}
}

func TestFailingUnitRestartsWithBackoffOthersKeepRunning(t *testing.T) {
	bad, pan, good := &failingSource{}, &panickingSource{}, &tickingSource{}
	var mu sync.Mutex
	var restarts []time.Time
	p := New(discardLog(), Options{
		RestartMin: 20 * time.Millisecond,
		RestartMax: 160 * time.Millisecond,
		UnitState: func(unit, state string, err error) {
			if unit == "bad" && state == "restarting" {
				mu.Lock()
				restarts = append(restarts, time.Now())
				mu.Unlock()
			}
		},
	}, []*Output{{Name: "a", Sink: &recSink{}, Queue: NewQueue(10, 1<<20)}},
		[]Unit{{Name: "bad", Source: bad}, {Name: "panic", Source: pan}, {Name: "good", Source: good}})
	stop, cancel := context.WithTimeout(context.Background(), 1500*time.Millisecond)
	defer cancel()
	if err := p.Run(stop, context.Background()); err != nil {
		t.Fatal(err)
	}
	runs := bad.runs.Load()
	// Backoff doubles 20→40→80→160 ms with ±50% jitter: in 1.5 s that is far
	// fewer than the ~1500 runs a hot loop would make, and more than one.
	if runs < 3 || runs > 20 {
		t.Errorf("failing unit ran %d times in 1.5s, want a backoff-paced handful", runs)
	}
	if pan.runs.Load() < 2 {
		t.Errorf("panicking unit ran %d times, want it restarted", pan.runs.Load())
	}
	if good.ticks.Load() < 50 {
		t.Errorf("healthy unit ticked %d times, it was disturbed", good.ticks.Load())
	}
	mu.Lock()
	defer mu.Unlock()
	if len(restarts) >= 4 {
		first := restarts[1].Sub(restarts[0])
		last := restarts[len(restarts)-1].Sub(restarts[len(restarts)-2])
		if last <= first {
			t.Errorf("backoff did not grow: first gap %v, last gap %v", first, last)
		}
	}
}

// blockedSink never takes anything until ctx ends, like an output whose
// receiver is down; at cancellation it settles nothing (the pipeline must).
type blockedSink struct{}

func (blockedSink) Run(ctx context.Context, in *Queue) error {
	<-ctx.Done()
	return nil
}

func TestShutdownGivesEveryEventAFate(t *testing.T) {
	q := NewQueue(100, 1<<20)
	src := &batchSource{n: 3, k: 5, done: make(chan struct{})}
	p := New(discardLog(), Options{DrainTimeout: 100 * time.Millisecond},
		[]*Output{{Name: "down", Sink: blockedSink{}, Queue: q}}, []Unit{{Name: "u", Source: src}})
	stop, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- p.Run(stop, context.Background()) }()
	for src.emitted.Load() < 15 {
		time.Sleep(time.Millisecond)
	}
	cancel()
	select {
	case err := <-errc:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("pipeline did not stop")
	}
	select {
	case <-src.done:
	case <-time.After(5 * time.Second):
		t.Fatal("batches never settled after shutdown")
	}
	for _, r := range src.results {
		if r.OK() {
			t.Errorf("batch reported delivered although the output never took it: %+v", r)
		}
	}
}

type fatalSink struct{}

func (fatalSink) Run(ctx context.Context, in *Queue) error { return errors.New("certificate rejected") }

func TestFatalOutputStopsPipeline(t *testing.T) {
	p := New(discardLog(), Options{}, []*Output{{Name: "devo", Sink: fatalSink{}, Queue: NewQueue(1, 1)}},
		[]Unit{{Name: "u", Source: &tickingSource{}}})
	done := make(chan error, 1)
	go func() { done <- p.Run(context.Background(), context.Background()) }()
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("want the output's error")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("pipeline kept running after its output failed")
	}
}

func TestEmitCancelledSettlesFailed(t *testing.T) {
	q := NewQueue(1, 1<<20)
	p := New(discardLog(), Options{}, []*Output{{Name: "a", Sink: blockedSink{}, Queue: q}}, nil)
	var got Result
	b := NewBatch(func(r Result) { got = r })
	ctx, cancel := context.WithCancel(context.Background())
	if err := p.Emit(ctx, NewEvent(b, "t", time.Time{}, []byte("1"))); err != nil {
		t.Fatal(err)
	}
	cancel()
	if err := p.Emit(ctx, NewEvent(b, "t", time.Time{}, []byte("2"))); err == nil {
		t.Fatal("emit into a full queue with a cancelled ctx succeeded")
	}
	b.Close()
	evs := q.TryGet(nil, 10)
	for _, ev := range evs {
		q.Settle(ev, Delivered)
	}
	if got.Delivered != 1 || got.Failed != 1 {
		t.Fatalf("result %+v, want 1 delivered and 1 failed", got)
	}
}

func TestQueueClosedSignalsAndBounds(t *testing.T) {
	q := NewQueue(7, 99)
	if m, b := q.Bounds(); m != 7 || b != 99 {
		t.Fatalf("bounds %d/%d", m, b)
	}
	select {
	case <-q.Closed():
		t.Fatal("closed before Close")
	default:
	}
	q.Close()
	select {
	case <-q.Closed():
	case <-time.After(time.Second):
		t.Fatal("Closed not signalled")
	}
}

// TestQueueWait: Wait returns once an event is queued without taking it, or
// when its other channel yields,
// ErrClosed on a closed empty queue, and ctx's error when ctx ends first.
func TestQueueWait(t *testing.T) {
	q := NewQueue(10, 1<<20)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := q.Wait(ctx, nil); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Wait on an empty queue = %v, want the deadline", err)
	}
	done := make(chan error, 1)
	go func() { done <- q.Wait(context.Background(), nil) }()
	time.Sleep(20 * time.Millisecond)
	if err := q.Put(context.Background(), NewEvent(nil, "t", time.Time{}, []byte("x"))); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Wait = %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Wait did not return when an event was queued")
	}
	if n, _ := q.Depth(); n != 1 {
		t.Fatalf("Wait took the event: depth %d", n)
	}
	if err := q.Wait(context.Background(), nil); err != nil {
		t.Fatalf("Wait with an event queued = %v", err)
	}
	also := make(chan struct{}, 1)
	q.TryGet(nil, 10)
	go func() { time.Sleep(20 * time.Millisecond); also <- struct{}{} }()
	if err := q.Wait(context.Background(), also); err != nil {
		t.Fatalf("Wait woken by also = %v", err)
	}
	if err := q.Put(context.Background(), NewEvent(nil, "t", time.Time{}, []byte("y"))); err != nil {
		t.Fatal(err)
	}
	q.Close()
	if err := q.Wait(context.Background(), nil); err != nil {
		t.Fatalf("Wait on a closed queue that still holds an event = %v", err)
	}
	q.TryGet(nil, 10)
	if err := q.Wait(context.Background(), nil); !errors.Is(err, ErrClosed) {
		t.Fatalf("Wait on a closed empty queue = %v, want ErrClosed", err)
	}
}
