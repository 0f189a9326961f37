package pipeline

import (
	"context"
	"errors"
	"log/slog"
	"testing"
	"time"
)

// Emit waits while the in-flight budget is spent, and the cost comes back
// only at the event's last fate, not when an output takes it from its queue.
func TestBudgetHoldsEmitUntilFate(t *testing.T) {
	q1, q2 := NewQueue(100, 1<<20), NewQueue(100, 1<<20)
	payload := make([]byte, 100)
	cost := int64(len(payload)+len("t")) + EventOverhead
	p := New(slog.New(slog.DiscardHandler), Options{InFlightBytes: 3 * cost},
		[]*Output{{Name: "a", Queue: q1}, {Name: "b", Queue: q2}}, nil)
	ctx := context.Background()
	b := NewBatch(nil)
	for range 3 {
		if err := p.Emit(ctx, NewEvent(b, "t", time.Time{}, payload)); err != nil {
			t.Fatal(err)
		}
	}
	if got := p.Budget().Used(); got != 3*cost {
		t.Fatalf("used %d, want %d", got, 3*cost)
	}
	short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	late := NewEvent(b, "t", time.Time{}, payload)
	if err := p.Emit(short, late); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("emit over budget: %v, want a deadline", err)
	}
	// Both outputs take every event: the budget is still spent.
	got1, _ := q1.Get(ctx, nil, 10)
	got2, _ := q2.Get(ctx, nil, 10)
	if p.Budget().Used() != 3*cost {
		t.Fatalf("taking from the queues gave budget back: used %d", p.Budget().Used())
	}
	done := make(chan error, 1)
	go func() { done <- p.Emit(ctx, NewEvent(b, "t", time.Time{}, payload)) }()
	// One output's fate is not the event's last: the emit still waits.
	q1.Settle(got1[0], Delivered)
	select {
	case err := <-done:
		t.Fatalf("emit returned (%v) before the event's last fate", err)
	case <-time.After(50 * time.Millisecond):
	}
	q2.Settle(got2[0], Failed)
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("emit still waiting after the last fate")
	}
	if got := p.Budget().Used(); got != 3*cost {
		t.Fatalf("used %d, want %d", got, 3*cost)
	}
	// The event that could not be emitted got its fates (Failed) and holds
	// nothing; a batch closed now still waits for the two events left.
	res := make(chan Result, 1)
	b.done = func(r Result) { res <- r }
	b.Close()
	for _, ev := range got1[1:] {
		q1.Settle(ev, Delivered)
	}
	for _, ev := range got2[1:] {
		q2.Settle(ev, Delivered)
	}
	for _, q := range []*Queue{q1, q2} {
		evs, _ := q.Get(ctx, nil, 10)
		for _, ev := range evs {
			q.Settle(ev, Delivered)
		}
	}
	if got := p.Budget().Used(); got != 0 {
		t.Fatalf("used %d after every fate, want 0", got)
	}
	if r := <-res; r.Delivered != 7 || r.Failed != 3 {
		t.Fatalf("batch result %+v, want 7 delivered and 3 failed (the late event at both outputs, one Failed fate)", r)
	}
}

// One event costing more than the whole budget passes when nothing else is
// held, so it cannot wedge the pipeline.
func TestBudgetLetsOneBigEventThrough(t *testing.T) {
	q := NewQueue(100, 1<<30)
	p := New(slog.New(slog.DiscardHandler), Options{InFlightBytes: 1000}, []*Output{{Name: "a", Queue: q}}, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := p.Emit(ctx, NewEvent(nil, "t", time.Time{}, make([]byte, 5000))); err != nil {
		t.Fatal(err)
	}
}
