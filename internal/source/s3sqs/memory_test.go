package s3sqs

import (
	"context"
	"log/slog"
	"runtime"
	"testing"
	"time"

	"github.com/devo-aws-collector/devo-aws-collector/internal/pipeline"
	"github.com/devo-aws-collector/devo-aws-collector/internal/testutil/svcconfig"
)

// A large object is streamed in parts, its pace set by the in-flight
// budget: what the source allocates while reading 50 MB of decompressed
// CloudTrail or VPC Flow, and what its events hold at any moment, is bounded
// by the budget and the reader's buffers, not by the object's size. An
// output that holds what it takes until the budget is nearly spent (as the
// Devo output holds written events for ack_settle) makes the source wait
// many times over the object.
//
// A handler that read the whole object (or the whole Records array) into
// memory before emitting allocates at least the object's 50 MB and fails
// the allocation bound.
func TestLargeObjectMemoryBounded(t *testing.T) {
	const (
		objectBytes = 50 << 20
		budget      = 4 << 20
		// allocBound is what one pass may allocate: the payload blocks
		// and event slabs the budget keeps busy (about twice its bytes
		// at worst: blocks are recycled only once every event carved
		// from them settled), the gzip and bufio state, and slack. It is
		// a third of the object.
		allocBound = 16 << 20
	)
	cases := []struct {
		name, service, yaml, key string
		text                     func() []byte
	}{
		{"cloudtrail", "audit-events-all", "        types: [audits_s3]\n        sqs_queue_name: ct\n        auto_event_type: true\n", ctKey,
			func() []byte { return benchTrail(objectBytes / 1240) }},
		{"vpcflow", "non-cloudwatch-logs", logsYAML, vpcKey,
			func() []byte { return vpcText(objectBytes / 105) }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			text := tc.text()
			if len(text) < objectBytes*9/10 {
				t.Fatalf("object of %d bytes, want about %d", len(text), objectBytes)
			}
			svc := svcconfig.Load(t, tc.service, tc.yaml, "")
			h := newHarness(t, svc, nil)
			h.s3.put("b", tc.key, gz(t, text))
			size := len(text)
			text = nil // only the compressed object stays

			q := pipeline.NewQueue(1<<20, 1<<30) // the budget, not the queue, is the bound
			p := pipeline.New(slog.New(slog.DiscardHandler), pipeline.Options{InFlightBytes: budget},
				[]*pipeline.Output{{Name: "devo", Queue: q}}, nil)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			type tally struct {
				events, waits int
				peak          int64
			}
			got := make(chan tally, 1)
			go func() {
				// The output: takes what is queued, holds it until the
				// budget is nearly spent, then settles all of it.
				// It looks at the budget every millisecond as well: the
				// source may be waiting for budget with nothing queued.
				var tl tally
				var held, take []*pipeline.Event
				tick := time.NewTicker(time.Millisecond)
				defer tick.Stop()
				wake := make(chan struct{}, 1)
				go func() {
					for {
						select {
						case <-ctx.Done():
							return
						case <-tick.C:
							select {
							case wake <- struct{}{}:
							default:
							}
						}
					}
				}()
				for {
					err := q.Wait(ctx, wake) // ErrClosed once closed and empty
					take = q.TryGet(take, 1024)
					held = append(held, take...)
					tl.peak = max(tl.peak, p.Budget().Used())
					if p.Budget().Used() >= budget*9/10 || err != nil {
						if err == nil {
							tl.waits++
						}
						for _, ev := range held {
							q.Settle(ev, pipeline.Delivered)
						}
						tl.events += len(held)
						clear(held)
						held = held[:0]
					}
					if err != nil {
						got <- tl
						return
					}
				}
			}()

			var before, after runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&before)
			b := pipeline.NewBatch(nil)
			err := h.src.Handle(ctx, benchMessage(s3Body("eu-west-1", "b", tc.key)), b, p)
			runtime.ReadMemStats(&after)
			b.Close()
			q.Close()
			tl := <-got
			if err != nil {
				t.Fatal(err)
			}
			if c := h.src.counters.Events.Load(); c == 0 || int(c) != tl.events {
				t.Fatalf("the source emitted %d events, the output settled %d", c, tl.events)
			}
			alloc := after.TotalAlloc - before.TotalAlloc
			t.Logf("%d MB object, %d events: %.1f MB allocated, budget peak %.1f MB of %d, the source waited for the output %d times",
				size>>20, tl.events, float64(alloc)/(1<<20), float64(tl.peak)/(1<<20), budget>>20, tl.waits)
			if alloc > allocBound {
				t.Errorf("reading a %d MB object allocated %d MB, want at most %d MB: memory grows with the object", size>>20, alloc>>20, allocBound>>20)
			}
			if tl.peak > budget+64<<10 {
				t.Errorf("events held %d bytes at once, over the %d-byte budget", tl.peak, budget)
			}
			// The object is over ten budgets: unless the source waited for
			// the output again and again, it was not streamed.
			if tl.waits < size/budget/2 {
				t.Errorf("the source waited for the output %d times over a %d MB object, want at least %d", tl.waits, size>>20, size/budget/2)
			}
		})
	}
}
