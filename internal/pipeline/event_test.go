package pipeline

import (
	"context"
	"sync/atomic"
	"testing"
	"time"
)

// TestEventInitInSlab: events initialised in place in a slab carry what
// NewEvent gives them and settle into their own batch, each independently,
// through a real pipeline emit.
func TestEventInitInSlab(t *testing.T) {
	now := time.Unix(1717161300, 0)
	var got []Result
	b := NewBatch(func(r Result) { got = append(got, r) })
	slab := make([]Event, 3)
	for i := range slab {
		slab[i].Init(b, "my.app.t", now.Add(time.Duration(i)), []byte{'a' + byte(i)})
	}
	want := NewEvent(b, "my.app.t", now, []byte("a"))
	e := &slab[0]
	if e.Tag != want.Tag || !e.Time.Equal(want.Time) || string(e.Payload) != string(want.Payload) || e.batch != want.batch {
		t.Fatalf("Init gave %+v, NewEvent %+v", e, want)
	}
	if string(slab[2].Payload) != "c" || !slab[2].Time.Equal(now.Add(2)) {
		t.Fatalf("slab[2] = %q at %v", slab[2].Payload, slab[2].Time)
	}

	// Two outputs: every event needs two fates.
	q1, q2 := NewQueue(10, 1<<20), NewQueue(10, 1<<20)
	p := &Pipeline{outputs: []*Output{{Name: "a", Queue: q1}, {Name: "b", Queue: q2}}}
	var delivered, failed atomic.Int64
	em := unitEmitter{p, &Counters{Delivered: &delivered, Failed: &failed}}
	for i := range slab {
		if err := em.Emit(context.Background(), &slab[i]); err != nil {
			t.Fatal(err)
		}
	}
	b.Close()
	for i := range slab {
		slab[i].settle(Delivered)
	}
	slab[1].settle(Failed)
	if len(got) != 0 {
		t.Fatalf("batch settled early: %+v", got)
	}
	slab[0].settle(Delivered)
	slab[2].settle(Delivered)
	if len(got) != 1 || got[0] != (Result{Delivered: 5, Failed: 1}) {
		t.Fatalf("batch results %+v, want one {5 1}", got)
	}
	if delivered.Load() != 2 || failed.Load() != 1 {
		t.Fatalf("unit counters delivered %d failed %d, want 2 and 1", delivered.Load(), failed.Load())
	}
}
