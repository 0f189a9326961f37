package sqsengine

import (
	"context"
	"testing"
	"time"

	"github.com/devo-aws-collector/devo-aws-collector/internal/pipeline"
	"github.com/devo-aws-collector/devo-aws-collector/internal/testutil/pipetest"
)

// newHoldingEngine is an engine on f whose deletes would wait an hour for
// company (DeleteFlush): a delete that goes out within the test went out
// because holding it could only delay it.
func newHoldingEngine(t *testing.T, f *fakeClient, h Handler, cfg Config) *Engine {
	t.Helper()
	cfg.Service, cfg.Region, cfg.Queue = "test", "eu-west-1", "q"
	cfg.DeleteFlush = time.Hour
	cfg.Log, _ = testLogger(t)
	e, err := New(f, h, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// At the end of a burst (every message received has settled) the deletes
// go out at once rather than after DeleteFlush: nothing could join them.
func TestDeleteNotHeldAtTheEndOfABurst(t *testing.T) {
	f := &fakeClient{}
	hs := []string{f.queue(1, "a"), f.queue(1, "b"), f.queue(1, "c")}
	out, _ := newTestPipeline(t, nil)
	e := newHoldingEngine(t, f, emitBody, Config{})
	stop, _ := runEngine(t, e, out)
	pipetest.WaitFor(t, 10*time.Second, "three deletes", func() bool { return e.Counters().Deleted.Load() == 3 })
	stop()
	d := f.deleted()
	for _, h := range hs {
		if d[h] != 1 {
			t.Errorf("deletes %v, want each of %v once", d, hs)
		}
	}
}

// When every in-flight slot is taken, a settled message's delete goes out
// at once, even with another message still unsettled: the receive waits for
// the slot it gives back.
func TestDeleteNotHeldWhenSlotsAreFull(t *testing.T) {
	f := &fakeClient{}
	slow := f.queue(1, "slow")
	hs := []string{f.queue(1, "a"), f.queue(1, "b"), f.queue(1, "c")}
	release := make(chan struct{})
	h := HandlerFunc(func(ctx context.Context, m Message, b *pipeline.Batch, out pipeline.Emitter) error {
		if m.Body == "slow" {
			select {
			case <-release:
			case <-ctx.Done():
			}
		}
		return emitBody(ctx, m, b, out)
	})
	out, _ := newTestPipeline(t, nil)
	e := newHoldingEngine(t, f, h, Config{Workers: 2, MaxInFlight: 2, MaxMessages: 1})
	stop, _ := runEngine(t, e, out)
	pipetest.WaitFor(t, 10*time.Second, "a, b and c deleted with slow in flight", func() bool { return e.Counters().Deleted.Load() == 3 })
	d := f.deleted()
	for _, h := range hs {
		if d[h] != 1 {
			t.Errorf("deletes %v, want each of %v once", d, hs)
		}
	}
	if d[slow] != 0 {
		t.Errorf("slow deleted before it was handled: %v", d)
	}
	close(release)
	pipetest.WaitFor(t, 10*time.Second, "slow deleted", func() bool { return e.Counters().Deleted.Load() == 4 })
	stop()
}
