package s3sqs

import (
	"context"
	"log/slog"
	"runtime"
	"testing"
	"time"

	"github.com/devo-aws-collector/devo-aws-collector/internal/pipeline"
	"github.com/devo-aws-collector/devo-aws-collector/internal/sqsengine"
	"github.com/devo-aws-collector/devo-aws-collector/internal/testutil/pipetest"
)

// TestLifecycleRestart: Run, stop, Run again on the same source; each run
// reads its message, and no goroutine is left behind.
func TestLifecycleRestart(t *testing.T) {
	if testing.Short() {
		t.Skip("starts the fauxqs emulator")
	}
	e := newE2E(t)
	url := e.emu.MustCreateQueue(t, "life", nil)
	svc := loadService(t, "non-cloudwatch-logs", "        types: [flowlogs]\n        sqs_queue_name: life\n", "")
	// A long poll cut short by the stop can still take the next message on
	// the emulator's side (as on SQS); a short visibility timeout brings
	// such a message back quickly.
	src := e.source(svc, slog.New(slog.DiscardHandler), nil, func(o *Options) {
		tune := o.Tune
		o.Tune = func(c *sqsengine.Config) { tune(c); c.VisibilityTimeout = 2 * time.Second }
	})
	e.put(vpcKey, gz(t, vpcText(10)))

	q := pipeline.NewQueue(1000, 1<<20)
	p := pipeline.New(slog.New(slog.DiscardHandler), pipeline.Options{}, []*pipeline.Output{{Name: "rec", Queue: q}}, nil)
	drainCtx, stopDrain := context.WithCancel(context.Background())
	defer stopDrain()
	drained := make(chan struct{})
	go func() {
		defer close(drained)
		for {
			evs, err := q.Get(drainCtx, nil, 100)
			if err != nil {
				return
			}
			for _, ev := range evs {
				q.Settle(ev, pipeline.Delivered)
			}
		}
	}()
	// After the first run, idle HTTP connections of the SDK clients exist;
	// a leak per run shows as growth from the first run to the second.
	after := make([]int, 3)
	for round := 1; round <= 2; round++ {
		e.send(url, []string{s3Body("us-east-1", e.bucket, vpcKey)})
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- src.Run(ctx, p) }()
		pipetest.WaitFor(t, time.Minute, "message deleted", func() bool {
			return src.Engine().Counters().Deleted.Load() == int64(round)
		})
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("round %d: Run: %v", round, err)
			}
		case <-time.After(30 * time.Second):
			t.Fatalf("round %d: Run did not return", round)
		}
		time.Sleep(200 * time.Millisecond) // let exiting goroutines finish
		after[round] = runtime.NumGoroutine()
	}
	if got := src.Counters().Events.Load(); got != 20 {
		t.Errorf("events %d, want 20", got)
	}
	if after[2] > after[1] {
		t.Errorf("goroutines grew from %d after the first run to %d after the second", after[1], after[2])
	}
	stopDrain()
	<-drained
}
