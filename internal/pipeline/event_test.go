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

// TestRefFreedAfterLastFate: events sharing a Ref keep it until every output
// has reported each of them; free runs once, after the creator's hold and
// the last fate are gone, also for an event whose emit failed part way.
func TestRefFreedAfterLastFate(t *testing.T) {
	q1, q2 := NewQueue(10, 1<<20), NewQueue(1, 1<<20)
	p := &Pipeline{outputs: []*Output{{Name: "a", Queue: q1}, {Name: "b", Queue: q2}}}
	frees := 0
	var r Ref
	r.Init(func() { frees++ })
	slab := make([]Event, 2)
	for i := range slab {
		slab[i].Init(nil, "my.app.t", time.Time{}, []byte("x"))
		slab[i].Share(&r)
	}
	ctx := context.Background()
	for i := range slab {
		if i == 1 {
			// q2 holds one event: the second emit waits there until
			// its context ends, and settles the copy it could not queue.
			c, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
			if err := p.Emit(c, &slab[i]); err == nil {
				t.Fatal("emit into a full queue succeeded")
			}
			cancel()
			continue
		}
		if err := p.Emit(ctx, &slab[i]); err != nil {
			t.Fatal(err)
		}
	}
	r.Release() // the creator is done carving
	if frees != 0 {
		t.Fatal("freed while events are in the queues")
	}
	q1.Settle(&slab[0], Delivered)
	q2.Settle(&slab[0], Failed)
	if frees != 0 {
		t.Fatal("freed while slab[1] waits in q1")
	}
	q1.Settle(&slab[1], Delivered)
	if frees != 1 {
		t.Fatalf("free ran %d times after the last fate, want 1", frees)
	}
	defer func() {
		if recover() == nil {
			t.Fatal("releasing a Ref more often than held did not panic")
		}
	}()
	var once Ref
	once.Init(func() {})
	once.Release()
	once.Release()
}
