package pullengine

import (
	"context"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/devo-aws-collector/devo-aws-collector/internal/lease/leasetest"
	"github.com/devo-aws-collector/devo-aws-collector/internal/pipeline"
	"github.com/devo-aws-collector/devo-aws-collector/internal/state"
)

// gateSink delivers the events of hours before open and holds the others
// until release.
type gateSink struct {
	mu      sync.Mutex
	open    int // events up to open hours after origin are delivered at once
	held    []*pipeline.Event
	origin  time.Time
	deliver map[string]int
}

func (g *gateSink) run(ctx context.Context, q *pipeline.Queue) {
	buf := make([]*pipeline.Event, 0, 16)
	for ctx.Err() == nil {
		wctx, cancel := context.WithTimeout(ctx, 5*time.Millisecond)
		got, _ := q.Get(wctx, buf[:0], 16)
		cancel()
		g.mu.Lock()
		for _, ev := range got {
			if !ev.Time.After(g.origin.Add(time.Duration(g.open) * time.Hour)) {
				g.deliver[string(ev.Payload)]++
				q.Settle(ev, pipeline.Delivered)
				continue
			}
			g.held = append(g.held, ev)
		}
		g.mu.Unlock()
	}
}

// release delivers every held event.
func (g *gateSink) release(q *pipeline.Queue) {
	g.mu.Lock()
	held := g.held
	g.held = nil
	g.open = 1000
	for _, ev := range held {
		g.deliver[string(ev.Payload)]++
	}
	g.mu.Unlock()
	for _, ev := range held {
		q.Settle(ev, pipeline.Delivered)
	}
}

func (g *gateSink) heldN() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return len(g.held)
}

// A stream runs under its lease: nothing is pulled before the lease is
// granted; a revoke stops it, and the late settlement of what it had in
// flight cannot move the checkpoint (the fenced store refuses the write; one
// INFO line says so, no ERROR); granted again, it resumes from the
// checkpoint, so only the unsettled windows are pulled twice.
func TestLeaseLossStopsAndRegainResumes(t *testing.T) {
	origin := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	st := &hourStream{origin: origin, hours: 10}
	h := leasetest.New()
	store := leasetest.NewStore(state.NewMemory(), h)
	key := state.Key{Input: "aws", Service: "svc", Region: "r", Sub: "s"}
	var logs syncBuffer
	eng, err := New(Config{
		Key: key, Store: store, Stream: st, Origin: "o",
		Start:  func(time.Time) time.Time { return origin },
		Now:    func() time.Time { return origin.Add(11 * time.Hour) },
		Period: time.Hour, Grace: 50 * time.Millisecond,
		Log: slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	})
	if err != nil {
		t.Fatal(err)
	}
	q := pipeline.NewQueue(256, 1<<20)
	p := pipeline.New(slog.New(slog.DiscardHandler), pipeline.Options{}, []*pipeline.Output{{Name: "o", Queue: q}}, nil)
	sink := &gateSink{open: 5, origin: origin, deliver: map[string]int{}}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go sink.run(ctx, q)
	done := make(chan error, 1)
	go func() { done <- h.Run(ctx, key, func(ctx context.Context) error { return eng.Run(ctx, p) }) }()

	pulls := func(hour int) int {
		if v, ok := st.pulls.Load(hour); ok {
			return *v.(*int)
		}
		return 0
	}
	checkpoint := func() time.Time {
		cp, _, err := LoadCheckpoint(store, key)
		if err != nil {
			t.Fatal(err)
		}
		return cp.End
	}

	// Registered, not held: nothing pulled.
	if !h.Wait(2*time.Second, func() bool { return len(h.Streams()) == 1 }) {
		t.Fatal("the stream never registered its lease")
	}
	time.Sleep(100 * time.Millisecond)
	if pulls(0) != 0 || h.Running(key) {
		t.Fatalf("pulled %d times without the lease", pulls(0))
	}

	// Held: hours 0–4 delivered, 5–9 pulled and held in flight.
	h.Grant(key)
	if !h.Wait(5*time.Second, func() bool { return checkpoint().Equal(origin.Add(5*time.Hour)) && sink.heldN() > 0 && pulls(9) == 1 }) {
		t.Fatalf("checkpoint %v, held %d, hour 9 pulled %d times", checkpoint(), sink.heldN(), pulls(9))
	}

	// Lost: the Run ends; what it had in flight settles afterwards and
	// cannot move the checkpoint.
	h.Revoke(key)
	if !h.Wait(5*time.Second, func() bool { return !h.Running(key) }) {
		t.Fatal("the stream did not stop when its lease was revoked")
	}
	sink.release(q)
	if !h.Wait(2*time.Second, func() bool { return store.Refused(key) > 0 }) {
		t.Fatal("the late settlement did not try to save")
	}
	time.Sleep(50 * time.Millisecond)
	if got := checkpoint(); !got.Equal(origin.Add(5 * time.Hour)) {
		t.Fatalf("checkpoint moved to %v after the lease was lost", got)
	}
	if n := strings.Count(logs.String(), "lease lost, checkpoint left to the new owner"); n != 1 {
		t.Errorf("lease-lost line logged %d times, want 1:\n%s", n, logs.String())
	}
	if strings.Contains(logs.String(), "level=ERROR") {
		t.Errorf("an ERROR was logged for a refused write:\n%s", logs.String())
	}

	// Regained: resumes from hour 5; hours 0–4 are not pulled again.
	h.Grant(key)
	if !h.Wait(5*time.Second, func() bool { return checkpoint().Equal(origin.Add(10 * time.Hour)) }) {
		t.Fatalf("checkpoint %v after regaining the lease", checkpoint())
	}
	for hour := range 10 {
		want := 1
		if hour >= 5 {
			want = 2
		}
		if got := pulls(hour); got != want {
			t.Errorf("hour %d pulled %d times, want %d", hour, got, want)
		}
	}
	if h.Calls(key) != 2 {
		t.Errorf("fn called %d times, want 2", h.Calls(key))
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// A Run that ended may still save what settles late (a collector alone,
// stopping); once retired (its lease was lost) it saves nothing more, even
// in a store that would take the write: the checkpoint can only be moved by
// the next Run.
func TestRetiredRunNoLongerSaves(t *testing.T) {
	origin := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	for _, retire := range []bool{false, true} {
		st := &hourStream{origin: origin, hours: 10}
		store := state.NewMemory()
		key := state.Key{Input: "aws", Service: "svc", Region: "r", Sub: "s"}
		eng, err := New(Config{
			Key: key, Store: store, Stream: st, Origin: "o",
			Start:  func(time.Time) time.Time { return origin },
			Now:    func() time.Time { return origin.Add(11 * time.Hour) },
			Period: time.Hour, Grace: 20 * time.Millisecond,
		})
		if err != nil {
			t.Fatal(err)
		}
		q := pipeline.NewQueue(256, 1<<20)
		p := pipeline.New(slog.New(slog.DiscardHandler), pipeline.Options{}, []*pipeline.Output{{Name: "o", Queue: q}}, nil)
		sink := &gateSink{open: 5, origin: origin, deliver: map[string]int{}}
		ctx, cancel := context.WithCancel(context.Background())
		sinkCtx, stopSink := context.WithCancel(context.Background())
		go sink.run(sinkCtx, q)
		done := make(chan error, 1)
		go func() { done <- eng.Run(ctx, p) }()
		deadline := time.Now().Add(5 * time.Second)
		for {
			cp, _, _ := LoadCheckpoint(store, key)
			if cp.End.Equal(origin.Add(5*time.Hour)) && sink.heldN() > 0 {
				if v, ok := st.pulls.Load(9); ok && *v.(*int) == 1 {
					break
				}
			}
			if time.Now().After(deadline) {
				t.Fatalf("retire=%v: checkpoint %v", retire, cp.End)
			}
			time.Sleep(5 * time.Millisecond)
		}
		cancel()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		if retire {
			eng.Retire()
		}
		sink.release(q)
		time.Sleep(100 * time.Millisecond)
		stopSink()
		cp, _, _ := LoadCheckpoint(store, key)
		want := origin.Add(10 * time.Hour) // the ended Run's late settlements saved
		if retire {
			want = origin.Add(5 * time.Hour) // nothing saved after the retirement
		}
		if !cp.End.Equal(want) {
			t.Errorf("retire=%v: checkpoint %v, want %v", retire, cp.End, want)
		}
	}
}
