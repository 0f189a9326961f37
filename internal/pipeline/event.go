package pipeline

import (
	"sync"
	"sync/atomic"
	"time"
)

// Fate is what became of one event at one output.
type Fate uint8

const (
	// Delivered means the output holds the event safely: written to a
	// connection that survived the settle window, or durably spooled.
	Delivered Fate = iota + 1
	// Failed means the output gave the event up; its source must make the
	// data readable again (return the SQS message, keep the checkpoint).
	Failed
)

func (f Fate) String() string {
	switch f {
	case Delivered:
		return "delivered"
	case Failed:
		return "failed"
	}
	return "unknown"
}

// Event is one tagged record on its way to the outputs. Outputs must treat
// it as read-only: the same Event is handed to every output.
type Event struct {
	Tag     string
	Time    time.Time
	Payload []byte
	// Clean says Payload is valid UTF-8 holding no LF, so outputs may skip
	// their own checks. Set it only when the encoder guarantees it: every
	// jsonpay result (compact JSON, invalid UTF-8 replaced) qualifies.
	Clean bool
	// WriteAhead asks outputs that keep a write-ahead journal to make the
	// event durable first: such an output reports it Delivered once
	// journaled and sends it from the journal, in order. Sources set it
	// where the wait for a network output's settle holds them back (a FIFO
	// message group gets its next message only after this one's fate).
	WriteAhead bool

	batch *Batch
	unit  *Counters    // the emitting unit's counters, nil outside a unit
	ref   *Ref         // released once every output has reported, if set
	held  *Budget      // given back its cost once every output has reported, if set
	left  atomic.Int32 // outputs that have not reported a fate yet
	bad   atomic.Bool  // some output reported Failed
}

// Ref counts the holders of something events share, such as a buffer their
// payloads are carved from, so that its owner can reuse it once no event
// needs it any more. The zero Ref is not usable; Init it.
//
// Reuse is safe because of the output contract: an output reads an event
// only until it reports the event's fate (Queue.Settle), never after.
type Ref struct {
	n    atomic.Int32
	free func()
}

// Init gives r one hold, the caller's, and the function to run when the last
// hold is released. Init a Ref again only after free has run.
func (r *Ref) Init(free func()) {
	r.free = free
	r.n.Store(1)
}

// Release drops one hold; the last one runs free.
func (r *Ref) Release() {
	switch n := r.n.Add(-1); {
	case n == 0:
		r.free()
	case n < 0:
		panic("pipeline: Ref released more often than held")
	}
}

// Share makes e hold r until every output has reported e's fate. Call it
// after Init and before the event is emitted. An event that is never emitted
// never releases r: its memory is left to the garbage collector.
func (e *Event) Share(r *Ref) {
	r.n.Add(1)
	e.ref = r
}

// Counters receive a unit's per-event outcome once every output has
// reported: Delivered when all delivered it, Failed otherwise. Nil fields
// are not counted.
type Counters struct {
	Delivered, Failed *atomic.Int64
}

// NewEvent returns an event that belongs to b (b may be nil for events whose
// fate nobody waits for, such as the collector's own log records).
func NewEvent(b *Batch, tag string, t time.Time, payload []byte) *Event {
	e := new(Event)
	e.Init(b, tag, t, payload)
	return e
}

// Init makes e what NewEvent returns, for a source that allocates its events
// in bulk: slab := make([]Event, n), then slab[i].Init(...) and emit
// &slab[i]. e must be a zero Event that was never emitted (Init sets no fate
// state), and an Event must never be copied (it holds atomics): take its
// address in the slab. A slab stays in memory while any of its events does.
func (e *Event) Init(b *Batch, tag string, t time.Time, payload []byte) {
	e.Tag, e.Time, e.Payload, e.batch, e.Clean, e.WriteAhead = tag, t, payload, b, false, false
	e.ref, e.held = nil, nil
}

// Size is the number of bytes the event counts for in a queue's byte bound.
func (e *Event) Size() int64 { return int64(len(e.Payload) + len(e.Tag) + 64) }

func (e *Event) settle(f Fate) {
	// Everything settle needs of e is read before its last output's release
	// below, which may hand memory the event points into to a new owner.
	b := e.batch
	if f != Delivered {
		e.bad.Store(true)
	}
	last := e.left.Add(-1) == 0
	if last && e.unit != nil {
		c := e.unit.Delivered
		if e.bad.Load() {
			c = e.unit.Failed
		}
		if c != nil {
			c.Add(1)
		}
	}
	// The shared hold goes before the batch may fire: once a batch is done
	// its source may end, and the payload memory is free for reuse now.
	var held *Budget
	var cost int64
	if last && e.held != nil {
		held, cost = e.held, e.cost()
		e.held = nil
	}
	if last && e.ref != nil {
		ref := e.ref
		e.ref = nil
		ref.Release()
	}
	if held != nil {
		held.release(cost)
	}
	if b != nil {
		b.settle(f)
	}
}

// Result is a settled batch: how many event fates were delivered and failed.
type Result struct {
	Delivered, Failed int
}

// OK reports whether every fate of the batch was Delivered.
func (r Result) OK() bool { return r.Failed == 0 }

// Batch counts the fates of the events derived from one unit of upstream work.
// The zero value is not usable; use NewBatch.
type Batch struct {
	mu      sync.Mutex
	pending int
	res     Result
	closed  bool
	fired   bool
	done    func(Result)
}

// NewBatch returns an open batch. done runs exactly once, after Close, when
// every fate has been reported; it runs on the goroutine of the last Settle
// (or of Close) and must not block for long.
func NewBatch(done func(Result)) *Batch {
	return &Batch{done: done}
}

// add registers n more pending fates. It panics after Close: adding to a
// closed batch is a programming error that would make an ack unreliable.
func (b *Batch) add(n int) {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		panic("pipeline: event added to a closed batch")
	}
	b.pending += n
	b.mu.Unlock()
}

func (b *Batch) settle(f Fate) {
	b.mu.Lock()
	b.pending--
	if f == Delivered {
		b.res.Delivered++
	} else {
		b.res.Failed++
	}
	fire := b.closed && b.pending == 0 && !b.fired
	if fire {
		b.fired = true
	}
	res := b.res
	b.mu.Unlock()
	if fire && b.done != nil {
		b.done(res)
	}
}

// Fail records n fates as Failed without any event: a source uses it when
// part of its unit of work could not be turned into events (a read error in
// the middle of an object), so the batch cannot report success.
func (b *Batch) Fail() {
	b.add(1)
	b.settle(Failed)
}

// Close says no more events will be added. If every fate is already known
// (or the batch is empty), done runs now.
func (b *Batch) Close() {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return
	}
	b.closed = true
	fire := b.pending == 0 && !b.fired
	if fire {
		b.fired = true
	}
	res := b.res
	b.mu.Unlock()
	if fire && b.done != nil {
		b.done(res)
	}
}
