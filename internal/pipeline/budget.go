package pipeline

import (
	"context"
	"sync/atomic"
)

// EventOverhead is what one event costs in memory beyond its payload and
// tag bytes, as the budget counts it: the Event itself (112 bytes), an
// output's record of it while it waits to settle, and the slack of the
// blocks and slabs a source carves them from. (Counting only the first two,
// 144 bytes without the tag, let VPC Flow's live heap outgrow the memory
// limit that the default budget implies: the collector then spent most of
// its CPU collecting garbage.)
const EventOverhead = 160

// Budget bounds the memory held by events between the moment a source
// emits them and their last fate, across every unit and output. Each output
// queue bounds only what waits in it; an event the output has taken and
// written still waits for its settle window (ack_settle), and its source's
// buffers stay in memory with it. Emit takes an event's cost from the
// budget, waiting while the budget is spent, so sources slow down
// (backpressure) instead of memory growing with the event rate; the cost is
// given back when the last output reports the event's fate.
//
// One event costing more than the whole budget is still let through when
// nothing else is held, so that a big event cannot wedge the pipeline.
type Budget struct {
	max   int64
	used  atomic.Int64
	space chan struct{} // a token: some cost was given back
}

// NewBudget returns a budget of max bytes (non-positive: unbounded, nil).
func NewBudget(max int64) *Budget {
	if max <= 0 {
		return nil
	}
	return &Budget{max: max, space: make(chan struct{}, 1)}
}

// cost is what ev counts for in a budget.
func (e *Event) cost() int64 { return int64(len(e.Payload)+len(e.Tag)) + EventOverhead }

// acquire takes n bytes, waiting while they do not fit. It returns ctx.Err()
// if ctx ends first; nothing is then taken.
func (b *Budget) acquire(ctx context.Context, n int64) error {
	for {
		if u := b.used.Add(n); u <= b.max || u == n {
			if u < b.max {
				// Someone else may fit too: pass the token on.
				signal(b.space)
			}
			return nil
		}
		b.used.Add(-n)
		select {
		case <-b.space:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// release gives n bytes back.
func (b *Budget) release(n int64) {
	b.used.Add(-n)
	signal(b.space)
}

// Max is the budget's bound in bytes.
func (b *Budget) Max() int64 { return b.max }

// Used is how many bytes events hold now.
func (b *Budget) Used() int64 { return b.used.Load() }
