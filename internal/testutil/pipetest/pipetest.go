// Package pipetest is the test kit of the SQS packages (the engine and the
// SQS sources): an output the test controls and records from, a real
// pipeline around it, and a polling wait.
package pipetest

import (
	"context"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/devo-aws-collector/devo-aws-collector/internal/pipeline"
	"github.com/devo-aws-collector/devo-aws-collector/internal/pullengine"
	"github.com/devo-aws-collector/devo-aws-collector/internal/state"
)

// Event is what the Recorder kept of one delivered event: copies, since an
// output must not read an event after reporting its fate.
type Event struct {
	Tag     string
	Time    time.Time
	Payload string
}

// Recorder is an output (a pipeline.Sink) the test controls. It takes
// events from a real pipeline.Queue and settles each one: Held events stay
// unsettled until the sink stops (then Failed, as a network output whose
// connection never confirmed them); the others wait Delay, then get
// Decide's fate (Delivered when Decide is nil). Delivered events are
// recorded in delivery order. Set the fields before the sink runs.
type Recorder struct {
	// Decide gives an event's fate; nil delivers every event.
	Decide func(ev *pipeline.Event) pipeline.Fate
	// Delay is how long each event waits before its fate, like a slow
	// output. An event still waiting when the sink stops is Failed.
	Delay time.Duration
	// Hold, when it returns true, keeps the event unsettled until the sink
	// stops. It is called under the Recorder's lock.
	Hold func(ev *pipeline.Event) bool

	mu        sync.Mutex
	events    []Event
	seen      map[string]int // tag + " " + payload → deliveries
	byPayload map[string]int
	byTag     map[string]int
	dupes     int
	held      []*pipeline.Event
}

// NewRecorder returns a Recorder that delivers everything.
func NewRecorder() *Recorder { return &Recorder{} }

// Run implements pipeline.Sink.
func (r *Recorder) Run(ctx context.Context, in *pipeline.Queue) error {
	defer func() {
		r.mu.Lock()
		held := r.held
		r.held = nil
		r.mu.Unlock()
		for _, ev := range held {
			in.Settle(ev, pipeline.Failed)
		}
	}()
	var buf []*pipeline.Event
	for {
		evs, err := in.Get(ctx, buf, 100)
		if err != nil {
			return nil
		}
		for _, ev := range evs {
			r.mu.Lock()
			hold := r.Hold != nil && r.Hold(ev)
			if hold {
				r.held = append(r.held, ev)
			}
			r.mu.Unlock()
			if hold {
				continue
			}
			if r.Delay > 0 {
				select {
				case <-time.After(r.Delay):
				case <-ctx.Done():
					in.Settle(ev, pipeline.Failed)
					continue
				}
			}
			f := pipeline.Delivered
			if r.Decide != nil {
				f = r.Decide(ev)
			}
			if f == pipeline.Delivered {
				r.record(ev)
			}
			in.Settle(ev, f)
		}
		buf = evs
	}
}

func (r *Recorder) record(ev *pipeline.Event) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.seen == nil {
		r.seen, r.byTag, r.byPayload = map[string]int{}, map[string]int{}, map[string]int{}
	}
	p := string(ev.Payload)
	r.events = append(r.events, Event{Tag: ev.Tag, Time: ev.Time, Payload: p})
	k := ev.Tag + " " + p
	if r.seen[k]++; r.seen[k] > 1 {
		r.dupes++
	}
	r.byTag[ev.Tag]++
	r.byPayload[p]++
}

// Delivered returns the delivered events in delivery order.
func (r *Recorder) Delivered() []Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Event(nil), r.events...)
}

// Payloads returns the delivered payloads in delivery order.
func (r *Recorder) Payloads() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]string, len(r.events))
	for i, e := range r.events {
		out[i] = e.Payload
	}
	return out
}

// Count is how often payload was delivered (under any tag).
func (r *Recorder) Count(payload string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.byPayload[payload]
}

// Total is the number of deliveries.
func (r *Recorder) Total() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.events)
}

// Tags returns the deliveries per tag.
func (r *Recorder) Tags() map[string]int {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make(map[string]int, len(r.byTag))
	for k, v := range r.byTag {
		out[k] = v
	}
	return out
}

// Duplicates is the number of deliveries of a (tag, payload) delivered
// before.
func (r *Recorder) Duplicates() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.dupes
}

// HeldCount is the number of events held unsettled.
func (r *Recorder) HeldCount() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.held)
}

// Emitter returns a real pipeline with rec as its one output and no units,
// for tests that drive a source or the engine themselves. rec runs until
// the test ends.
func Emitter(t testing.TB, rec *Recorder) pipeline.Emitter {
	t.Helper()
	q := pipeline.NewQueue(10000, 64<<20)
	p := pipeline.New(slog.New(slog.DiscardHandler), pipeline.Options{}, []*pipeline.Output{{Name: "recorder", Sink: rec, Queue: q}}, nil)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = rec.Run(ctx, q)
	}()
	t.Cleanup(func() {
		cancel()
		<-done
		q.FailRemaining()
	})
	return p
}

// Running is a real pipeline (pipeline.New(...).Run) with one Recorder
// output and its units.
type Running struct {
	stop context.CancelFunc
	done chan error
	once sync.Once
	err  error
}

// Run runs units behind a real pipeline with rec as its only output until
// Shutdown is called or the test ends.
func Run(t testing.TB, rec *Recorder, units ...pipeline.Unit) *Running {
	t.Helper()
	q := pipeline.NewQueue(10000, 64<<20)
	p := pipeline.New(slog.New(slog.DiscardHandler), pipeline.Options{DrainTimeout: 10 * time.Second},
		[]*pipeline.Output{{Name: "recorder", Sink: rec, Queue: q}}, units)
	stop, cancel := context.WithCancel(context.Background())
	r := &Running{stop: cancel, done: make(chan error, 1)}
	go func() { r.done <- p.Run(stop, context.Background()) }()
	t.Cleanup(func() { r.Shutdown(t) })
	return r
}

// Shutdown stops the pipeline and waits for it (at most 2 minutes); it
// fails t if the pipeline returned an error. Safe to call twice.
func (r *Running) Shutdown(t testing.TB) {
	t.Helper()
	r.stop()
	r.once.Do(func() {
		select {
		case r.err = <-r.done:
			if r.err != nil {
				t.Errorf("pipeline: %v", r.err)
			}
		case <-time.After(2 * time.Minute):
			t.Error("pipeline did not stop within 2 minutes")
		}
	})
}

// WaitFor polls cond every 20 ms until it holds, or fails t once limit has
// passed.
func WaitFor(t testing.TB, limit time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", limit, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Start runs src on its own goroutine with Emitter(t, rec) as its output.
// The returned stop cancels it, waits for Run to return and fails t if it
// returned an error; it runs at the end of the test too, so a test that
// fails early does not leave src running. Calling it twice is safe.
func Start(t testing.TB, rec *Recorder, src pipeline.Source) (stop func()) {
	t.Helper()
	p := Emitter(t, rec)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- src.Run(ctx, p) }()
	var once sync.Once
	stop = func() {
		t.Helper()
		cancel()
		once.Do(func() {
			if err := <-done; err != nil {
				t.Errorf("source: %v", err)
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

// WaitCheckpoint waits, at most limit, until the pull checkpoint saved
// under key in st ends at or after until, and returns its end. Otherwise
// it fails t, with log() after the message when log is not nil (the
// source's log lines, say).
func WaitCheckpoint(t testing.TB, st state.Store, key state.Key, until time.Time, limit time.Duration, log func() string) time.Time {
	t.Helper()
	deadline := time.Now().Add(limit)
	for {
		cp, ok, err := pullengine.LoadCheckpoint(st, key)
		if err != nil {
			t.Fatal(err)
		}
		if ok && !cp.End.Before(until) {
			return cp.End
		}
		if time.Now().After(deadline) {
			detail := ""
			if log != nil {
				detail = "\n" + log()
			}
			t.Fatalf("checkpoint %v never reached %v%s", cp.End, until, detail)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
