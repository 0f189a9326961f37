package pullengine

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/smithy-go"

	"github.com/devo-aws-collector/devo-aws-collector/internal/pipeline"
	"github.com/devo-aws-collector/devo-aws-collector/internal/state"
	"github.com/devo-aws-collector/devo-aws-collector/internal/stats"
)

// hourStream has three events inside each hour and one exactly on every
// hour edge, which both windows sharing that edge return.
type hourStream struct {
	origin time.Time
	hours  int
	pulls  sync.Map // window start → attempts
	failOn map[int]int
}

type rec struct {
	id string
	t  time.Time
}

func (s *hourStream) events(w Window) []rec {
	var out []rec
	for h := 0; h <= s.hours; h++ {
		edge := s.origin.Add(time.Duration(h) * time.Hour)
		if !edge.Before(w.Start) && !edge.After(w.End) {
			out = append(out, rec{fmt.Sprint("edge-", h), edge})
		}
		if h == s.hours {
			break
		}
		for j := 1; j <= 3; j++ {
			t := edge.Add(time.Duration(j) * 15 * time.Minute)
			if !t.Before(w.Start) && !t.After(w.End) {
				out = append(out, rec{fmt.Sprintf("h%d-%d", h, j), t})
			}
		}
	}
	return out
}

func (s *hourStream) Windows(from, now time.Time) []Window {
	end := s.origin.Add(time.Duration(s.hours) * time.Hour)
	var out []Window
	for from.Before(end) {
		out = append(out, Window{Start: from, End: from.Add(time.Hour)})
		from = from.Add(time.Hour)
	}
	return out
}

func (s *hourStream) Pull(ctx context.Context, p *Pull) error {
	h := int(p.Window.Start.Sub(s.origin) / time.Hour)
	n, _ := s.pulls.LoadOrStore(h, new(int))
	*n.(*int)++
	for _, r := range s.events(p.Window) {
		if p.Seen(r.id, r.t) {
			continue
		}
		if err := p.Emit(ctx, pipeline.NewEvent(p.Batch(), "t", r.t, []byte(r.id))); err != nil {
			return err
		}
	}
	if left := s.failOn[h]; left > 0 && *n.(*int) <= left {
		// Throttling that outlasted the attempts: the window is pulled again.
		return fmt.Errorf("hour %d: %w", h, &smithy.GenericAPIError{Code: "ThrottlingException", Message: "injected"})
	}
	return nil
}

func (s *hourStream) CycleStarted(*stats.Cycle, time.Time, time.Time, int) {}
func (s *hourStream) WindowPulled(*stats.Cycle, int)                       {}
func (s *hourStream) CycleEnded(*stats.Cycle)                              {}

// runUntil runs eng into a pipeline whose one output randomSink drains
// (seed 3, no failures) until the checkpoint under key ends at end, then
// stops both. It returns what the sink delivered (id → true) and Run's
// error.
func runUntil(t *testing.T, eng *Engine, store state.Store, key state.Key, end time.Time) (*sync.Map, error) {
	t.Helper()
	q := pipeline.NewQueue(64, 1<<20)
	p := pipeline.New(slog.New(slog.DiscardHandler), pipeline.Options{}, []*pipeline.Output{{Name: "o", Queue: q}}, nil)
	ctx, cancel := context.WithCancel(context.Background())
	delivered := new(sync.Map)
	sinkDone := make(chan struct{})
	go func() { defer close(sinkDone); randomSink(ctx, q, 3, 0, delivered) }()
	done := make(chan error, 1)
	go func() { done <- eng.Run(ctx, p) }()
	deadline := time.Now().Add(20 * time.Second)
	for {
		if cp, ok, _ := LoadCheckpoint(store, key); ok && cp.End.Equal(end) {
			break
		}
		if time.Now().After(deadline) {
			cancel()
			t.Fatal("checkpoint never reached the end")
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	err := <-done
	<-sinkDone
	return delivered, err
}

// randomSink settles queued events in random order, failing some.
func randomSink(ctx context.Context, q *pipeline.Queue, seed uint64, failPct int, delivered *sync.Map) {
	rng := rand.New(rand.NewPCG(seed, 1))
	var held []*pipeline.Event
	buf := make([]*pipeline.Event, 0, 16)
	for ctx.Err() == nil {
		wctx, cancel := context.WithTimeout(ctx, 5*time.Millisecond)
		got, err := q.Get(wctx, buf[:0], 16)
		cancel()
		if err != nil && ctx.Err() != nil {
			break
		}
		held = append(held, got...)
		rng.Shuffle(len(held), func(i, j int) { held[i], held[j] = held[j], held[i] })
		k := rng.IntN(len(held) + 1)
		for _, ev := range held[:k] {
			if rng.IntN(100) < failPct {
				q.Settle(ev, pipeline.Failed)
				continue
			}
			delivered.Store(string(ev.Payload), true)
			q.Settle(ev, pipeline.Delivered)
		}
		held = append(held[:0], held[k:]...)
	}
	for _, ev := range held {
		q.Settle(ev, pipeline.Failed)
	}
}

// Through the engine: events settle out of order and some fail, some pulls
// fail; every saved checkpoint has every event up to it delivered, every
// event is eventually delivered, the edge event is emitted once per run, and
// a second Run resumes from the checkpoint instead of the origin.
func TestEngineCheckpointNeverPassesUndelivered(t *testing.T) {
	origin := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	st := &hourStream{origin: origin, hours: 40, failOn: map[int]int{3: 2, 17: 1}}
	store := state.NewMemory()
	key := state.Key{Input: "aws", Service: "svc", Region: "r", Sub: "s"}

	var delivered sync.Map
	var bad []string
	var mu sync.Mutex
	all := st.events(Window{Start: origin, End: origin.Add(40 * time.Hour)})
	eng, err := New(Config{
		Key: key, Store: store, Stream: st, Origin: "o",
		Start:  func(time.Time) time.Time { return origin },
		Now:    func() time.Time { return origin.Add(41 * time.Hour) },
		Period: time.Hour, MaxPending: 8, RetryBase: time.Millisecond, RetryMax: 5 * time.Millisecond,
		Log: slog.New(slog.DiscardHandler),
		OnCommit: func(m Mark) {
			for _, r := range all {
				if _, ok := delivered.Load(r.id); !r.t.After(m.End) && !ok {
					mu.Lock()
					bad = append(bad, fmt.Sprintf("checkpoint %v passes undelivered %s", m.End, r.id))
					mu.Unlock()
				}
			}
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	q := pipeline.NewQueue(64, 1<<20)
	p := pipeline.New(slog.New(slog.DiscardHandler), pipeline.Options{}, []*pipeline.Output{{Name: "o", Queue: q}}, nil)
	ctx, cancel := context.WithCancel(context.Background())
	sinkDone := make(chan struct{})
	go func() { defer close(sinkDone); randomSink(ctx, q, 42, 10, &delivered) }()
	done := make(chan error, 1)
	go func() { done <- eng.Run(ctx, p) }()

	deadline := time.Now().Add(30 * time.Second)
	for {
		cp, ok, _ := LoadCheckpoint(store, key)
		if ok && cp.End.Equal(origin.Add(40*time.Hour)) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("checkpoint never reached the end: %+v", cp)
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	<-sinkDone
	mu.Lock()
	defer mu.Unlock()
	if len(bad) > 0 {
		t.Fatalf("%d violations, first: %s", len(bad), bad[0])
	}
	for _, r := range all {
		if _, ok := delivered.Load(r.id); !ok {
			t.Errorf("%s never delivered", r.id)
		}
	}
	if v, _ := st.pulls.Load(3); *v.(*int) < 3 {
		t.Errorf("hour 3 pulled %d times, want 3 (two injected failures)", *v.(*int))
	}

	// A second Run starts at the checkpoint: no window before it is pulled.
	before := map[int]int{}
	st.pulls.Range(func(k, v any) bool { before[k.(int)] = *v.(*int); return true })
	st.hours = 42
	ctx2, cancel2 := context.WithCancel(context.Background())
	q2 := pipeline.NewQueue(64, 1<<20)
	p2 := pipeline.New(slog.New(slog.DiscardHandler), pipeline.Options{}, []*pipeline.Output{{Name: "o", Queue: q2}}, nil)
	var delivered2 sync.Map
	go randomSink(ctx2, q2, 7, 0, &delivered2)
	go func() { done <- eng.Run(ctx2, p2) }()
	for {
		cp, _, _ := LoadCheckpoint(store, key)
		if cp.End.Equal(origin.Add(42 * time.Hour)) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel2()
	<-done
	st.pulls.Range(func(k, v any) bool {
		if h := k.(int); h < 40 && *v.(*int) != before[h] {
			t.Errorf("hour %d pulled again after the restart", h)
		}
		return true
	})
	if _, ok := delivered2.Load("edge-40"); ok {
		t.Errorf("edge-40 (on the checkpoint's edge, delivered before) emitted again after the restart")
	}
	for _, id := range []string{"h40-1", "h41-3", "edge-41", "edge-42"} {
		if _, ok := delivered2.Load(id); !ok {
			t.Errorf("%s not delivered by the second run", id)
		}
	}
}

// failStream fails every pull with err.
type failStream struct {
	hourStream
	err error
}

func (s *failStream) Pull(context.Context, *Pull) error { return s.err }

// A pull error that is not throttling or transient (access denied) stops
// the Run with that error, for the runner to report and restart; the
// checkpoint does not move.
func TestPermanentPullErrorEndsRun(t *testing.T) {
	origin := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	denied := fmt.Errorf("LookupEvents: %w", &smithy.GenericAPIError{Code: "AccessDeniedException", Message: "no"})
	st := &failStream{hourStream: hourStream{origin: origin, hours: 5}, err: denied}
	store := state.NewMemory()
	eng, err := New(Config{
		Key: state.Key{Input: "a", Service: "s", Region: "r", Sub: "x"}, Store: store, Stream: st,
		Start: func(time.Time) time.Time { return origin },
		Now:   func() time.Time { return origin.Add(6 * time.Hour) },
	})
	if err != nil {
		t.Fatal(err)
	}
	q := pipeline.NewQueue(64, 1<<20)
	p := pipeline.New(slog.New(slog.DiscardHandler), pipeline.Options{}, []*pipeline.Output{{Name: "o", Queue: q}}, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := eng.Run(ctx, p); !errors.Is(err, denied) {
		t.Fatalf("Run returned %v, want the access error", err)
	}
	if _, ok, _ := LoadCheckpoint(store, state.Key{Input: "a", Service: "s", Region: "r", Sub: "x"}); ok {
		t.Errorf("a checkpoint was saved")
	}

	// Throttling that outlasted the attempts is not fatal: the window is
	// pulled again.
	throttled := &smithy.GenericAPIError{Code: "ThrottlingException", Message: "slow down"}
	if !retryable(throttled) || retryable(denied) {
		t.Errorf("retryable: throttling %v, access denied %v", retryable(throttled), retryable(denied))
	}
}

// alignedStream pulls nothing and records when each cycle starts; its grid
// is every period on the clock.
type alignedStream struct {
	hourStream
	period time.Duration
	mu     sync.Mutex
	starts []time.Time
}

func (s *alignedStream) CycleStarted(_ *stats.Cycle, _, now time.Time, _ int) {
	s.mu.Lock()
	s.starts = append(s.starts, now)
	s.mu.Unlock()
}

func (s *alignedStream) CycleOffset(start time.Time) time.Duration {
	return start.Truncate(s.period).Sub(start)
}

// A stream that implements Aligner has its cycles start on its grid, not a
// period after an arbitrary first start, and the engine logs the offset.
func TestAlignerPutsCyclesOnTheGrid(t *testing.T) {
	const period = 400 * time.Millisecond
	now := time.Now()
	st := &alignedStream{hourStream: hourStream{origin: now}, period: period}
	var logBuf syncBuffer
	eng, err := New(Config{
		Key: state.Key{Input: "a", Service: "s", Region: "r", Sub: "x"}, Store: state.NewMemory(), Stream: st,
		Start:  func(time.Time) time.Time { return now },
		Period: period,
		Log:    slog.New(slog.NewTextHandler(&logBuf, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	// Start off the grid.
	time.Sleep(time.Until(time.Now().Truncate(period).Add(period + period*3/5)))
	q := pipeline.NewQueue(64, 1<<20)
	p := pipeline.New(slog.New(slog.DiscardHandler), pipeline.Options{}, []*pipeline.Output{{Name: "o", Queue: q}}, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 4*period+period/2)
	defer cancel()
	if err := eng.Run(ctx, p); err != nil {
		t.Fatal(err)
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	if len(st.starts) < 3 {
		t.Fatalf("%d cycles", len(st.starts))
	}
	for i, s := range st.starts[1:] {
		// Timers never fire early; a loaded machine may fire them late.
		if off := s.Sub(s.Truncate(period)); off > period/2 {
			t.Errorf("cycle %d started %v after its grid point", i+2, off)
		}
	}
	if !strings.Contains(logBuf.String(), "Applied an offset to wait, retrieval_offset: -0.2") {
		t.Errorf("no offset line for the first cycle (started 3/5 of a period late):\n%s", logBuf.String())
	}
}

// syncBuffer is a bytes.Buffer safe for a logger and a reader.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// overlapStream has windows of one minute, each read from five minutes
// before its start (as CloudWatch Logs re-reads for late events), with an
// event every 10 s.
type overlapStream struct {
	hourStream
	emitted sync.Map // id → count
}

func (s *overlapStream) Windows(from, now time.Time) []Window {
	end := s.origin.Add(30 * time.Minute)
	var out []Window
	for from.Before(end) {
		out = append(out, Window{Start: from, End: from.Add(time.Minute)})
		from = from.Add(time.Minute)
	}
	return out
}

func (s *overlapStream) Pull(ctx context.Context, p *Pull) error {
	for t := p.Window.Start.Add(-5 * time.Minute); !t.After(p.Window.End); t = t.Add(10 * time.Second) {
		if t.Before(s.origin) {
			continue
		}
		id := t.Format(time.TimeOnly)
		if p.Seen(id, t) {
			continue
		}
		n, _ := s.emitted.LoadOrStore(id, new(int))
		*n.(*int)++
		if err := p.Emit(ctx, pipeline.NewEvent(p.Batch(), "t", t, []byte(id))); err != nil {
			return err
		}
	}
	return nil
}

// Reads that overlap the previous windows by more than one window: an
// event inherited from the previous window and seen again is carried on to
// the next one, so each event is emitted once.
func TestOverlappingReadsEmitOnce(t *testing.T) {
	origin := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	st := &overlapStream{hourStream: hourStream{origin: origin}}
	store := state.NewMemory()
	key := state.Key{Input: "aws", Service: "svc", Region: "r", Sub: "s"}
	eng, err := New(Config{
		Key: key, Store: store, Stream: st, Origin: "o",
		Start:    func(time.Time) time.Time { return origin },
		Now:      func() time.Time { return origin.Add(time.Hour) },
		EdgeSpan: 5*time.Minute + time.Second,
		Period:   time.Hour, RetryBase: time.Millisecond, RetryMax: 5 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	runUntil(t, eng, store, key, origin.Add(30*time.Minute))
	n := 0
	st.emitted.Range(func(k, v any) bool {
		n++
		if c := *v.(*int); c != 1 {
			t.Errorf("%s emitted %d times", k, c)
		}
		return true
	})
	if n != 181 {
		t.Errorf("%d distinct events emitted, want 181", n)
	}
}
