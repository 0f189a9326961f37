package pipeline

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
)

// ErrClosed is returned by Put after Close, and by Get once a closed queue
// is empty.
var ErrClosed = errors.New("queue closed")

// Queue is a FIFO of events bounded both in messages and in bytes. A full
// queue makes Put wait: it applies backpressure and never drops. One event
// larger than the byte bound is still accepted when the queue is empty, so a
// big event cannot wedge the pipeline.
//
// Each output has its own Queue; the output settles the events it takes
// through Settle, which also keeps the output's delivered/failed counters.
type Queue struct {
	maxMsgs  int
	maxBytes int64

	mu     sync.Mutex
	items  []*Event
	head   int
	bytes  int64
	closed bool

	space    chan struct{} // a token: there may be room for a Put
	data     chan struct{} // a token: there may be events for a Get
	closedCh chan struct{}

	delivered, failed *atomic.Int64
}

// NewQueue returns a queue bounded by maxMsgs events and maxBytes bytes
// (non-positive values mean 1 event and 1 byte: effectively one at a time).
func NewQueue(maxMsgs int, maxBytes int64) *Queue {
	if maxMsgs < 1 {
		maxMsgs = 1
	}
	if maxBytes < 1 {
		maxBytes = 1
	}
	return &Queue{
		maxMsgs:   maxMsgs,
		maxBytes:  maxBytes,
		space:     make(chan struct{}, 1),
		data:      make(chan struct{}, 1),
		closedCh:  make(chan struct{}),
		delivered: new(atomic.Int64),
		failed:    new(atomic.Int64),
	}
}

// CountInto makes Settle count into delivered and failed (an output's
// metrics) instead of the queue's own counters. Call it before use.
func (q *Queue) CountInto(delivered, failed *atomic.Int64) {
	q.delivered, q.failed = delivered, failed
}

func signal(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}

func (q *Queue) len() int { return len(q.items) - q.head }

func (q *Queue) fits(size int64) bool {
	n := q.len()
	return n == 0 || (n < q.maxMsgs && q.bytes+size <= q.maxBytes)
}

// Put appends ev, waiting while the queue is full. It returns ctx.Err() if
// ctx ends first and ErrClosed if the queue is closed; the event is then not
// in the queue.
func (q *Queue) Put(ctx context.Context, ev *Event) error {
	size := ev.Size()
	for {
		q.mu.Lock()
		if q.closed {
			q.mu.Unlock()
			return ErrClosed
		}
		if q.fits(size) {
			q.items = append(q.items, ev)
			q.bytes += size
			room := q.fits(1)
			q.mu.Unlock()
			signal(q.data)
			if room {
				signal(q.space)
			}
			return nil
		}
		q.mu.Unlock()
		select {
		case <-q.space:
		case <-q.closedCh:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// Get takes up to max events, waiting until at least one is there. It
// returns ErrClosed when the queue is closed and empty, and ctx.Err() if ctx
// ends first. The returned slice is appended to dst[:0].
func (q *Queue) Get(ctx context.Context, dst []*Event, max int) ([]*Event, error) {
	for {
		out, ok, closed := q.take(dst, max)
		if ok {
			return out, nil
		}
		if closed {
			return dst[:0], ErrClosed
		}
		select {
		case <-q.data:
		case <-q.closedCh:
		case <-ctx.Done():
			return dst[:0], ctx.Err()
		}
	}
}

// Wait blocks until the queue holds an event, without taking it, or until
// also (which may be nil) yields. It returns ErrClosed when the queue is
// closed and empty, and ctx.Err() if ctx ends first. A taker that decides
// not to take after Wait leaves the events for the next Get or TryGet.
func (q *Queue) Wait(ctx context.Context, also <-chan struct{}) error {
	for {
		q.mu.Lock()
		n, closed := q.len(), q.closed
		q.mu.Unlock()
		if n > 0 {
			return nil
		}
		if closed {
			return ErrClosed
		}
		select {
		case <-q.data:
		case <-also:
			return nil
		case <-q.closedCh:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// TryGet is Get without waiting: it returns what is there now, possibly
// nothing.
func (q *Queue) TryGet(dst []*Event, max int) []*Event {
	out, _, _ := q.take(dst, max)
	return out
}

// take moves up to max events into dst. ok reports whether it took any;
// closed whether the queue is closed (meaningful when ok is false).
func (q *Queue) take(dst []*Event, max int) (out []*Event, ok, closed bool) {
	if max < 1 {
		max = 1
	}
	q.mu.Lock()
	n := q.len()
	if n == 0 {
		closed = q.closed
		q.mu.Unlock()
		return dst[:0], false, closed
	}
	if n > max {
		n = max
	}
	dst = append(dst[:0], q.items[q.head:q.head+n]...)
	for i := q.head; i < q.head+n; i++ {
		q.bytes -= q.items[i].Size()
		q.items[i] = nil
	}
	q.head += n
	if q.head == len(q.items) {
		q.items = q.items[:0]
		q.head = 0
	} else if q.head > 1024 && q.head > len(q.items)/2 {
		rest := copy(q.items, q.items[q.head:])
		clear(q.items[rest:])
		q.items = q.items[:rest]
		q.head = 0
	}
	more := q.len() > 0
	q.mu.Unlock()
	signal(q.space)
	if more {
		signal(q.data)
	}
	return dst, true, false
}

// Close stops further Puts and wakes every waiter. Events already queued
// stay until taken.
func (q *Queue) Close() {
	q.mu.Lock()
	defer q.mu.Unlock()
	if !q.closed {
		q.closed = true
		close(q.closedCh)
	}
}

// Closed is closed when Close is called: an output that cannot send can
// then persist what is left at once instead of waiting to be cancelled.
func (q *Queue) Closed() <-chan struct{} { return q.closedCh }

// Bounds are the queue's limits in events and bytes.
func (q *Queue) Bounds() (msgs int, bytes int64) { return q.maxMsgs, q.maxBytes }

// Depth is the number of events and bytes waiting in the queue.
func (q *Queue) Depth() (msgs, bytes int64) {
	q.mu.Lock()
	defer q.mu.Unlock()
	return int64(q.len()), q.bytes
}

// FillRatio is how full a queue holding msgs events and bytes payload bytes
// is against bounds maxMsgs and maxBytes: the larger of the two ratios.
func FillRatio(msgs, bytes int64, maxMsgs int, maxBytes int64) float64 {
	return max(float64(msgs)/float64(max(maxMsgs, 1)), float64(bytes)/float64(max(maxBytes, 1)))
}

// Settle reports the fate of one event this queue's output took. Call it
// exactly once per event taken.
func (q *Queue) Settle(ev *Event, f Fate) {
	if f == Delivered {
		q.delivered.Add(1)
	} else {
		q.failed.Add(1)
	}
	ev.settle(f)
}

// Settled returns how many events the output has reported delivered and
// failed so far.
func (q *Queue) Settled() (delivered, failed int64) {
	return q.delivered.Load(), q.failed.Load()
}

// FailRemaining takes every event still queued and settles it Failed. The
// pipeline calls it after an output has stopped, so no event is left without
// a fate.
func (q *Queue) FailRemaining() int {
	n := 0
	for {
		evs := q.TryGet(nil, 1024)
		if len(evs) == 0 {
			return n
		}
		for _, ev := range evs {
			q.Settle(ev, Failed)
		}
		n += len(evs)
	}
}
