package pullengine

import (
	"sync"
	"time"
)

// Mark is a point the checkpoint can stand on: every window ending at or
// before End was delivered. Edge holds the hashes (HashID) of the IDs of the
// events seen in the last EdgeSpan before End, so the window that starts at
// End (edges are inclusive on both sides) does not emit them twice.
type Mark struct {
	End  time.Time
	Edge []IDHash
}

// Slot states.
const (
	slotPulling = iota // being pulled, or pulled with its batch in flight
	slotDone           // every event delivered
	slotFailed         // the pull failed or an event was not delivered
)

// slot is one window known to the finalizer.
type slot struct {
	w     Window
	state int
	// pulled is set once the pull finished; edge is then what the window
	// saw in its last EdgeSpan.
	pulled bool
	edge   []IDHash
	// tries counts failed attempts, for the re-pull backoff.
	tries int
}

// finalizer advances a stream's checkpoint over the contiguous prefix of
// settled windows, whatever order the windows settle in.
//
// Windows are added in pull order (oldest first). A window that settles
// with every event delivered is done; the checkpoint then moves to the end
// of the longest run of done windows that starts at the current checkpoint.
// A window whose pull failed, or with any event not delivered, stays in
// place as a hole and is handed back by takeFailed to be pulled again: the
// checkpoint never passes it until a later attempt is delivered. Windows
// after a hole may settle meanwhile; they are kept and passed in one step
// once the hole is filled.
type finalizer struct {
	mu     sync.Mutex
	base   Mark
	slots  []*slot // after base, in pull order
	failed []*slot // slots waiting to be pulled again, oldest first
	// commit is called, under mu and so in order, with every new mark and
	// the number of windows it passed.
	commit func(m Mark, passed int)
	// changed is signalled (without blocking) when a slot fails or the
	// base moves, for a loop waiting on either.
	changed chan struct{}
}

func newFinalizer(base Mark, commit func(m Mark, passed int)) *finalizer {
	return &finalizer{base: base, commit: commit, changed: make(chan struct{}, 1)}
}

// add registers w, which must be newer than every window added before.
func (f *finalizer) add(w Window) *slot {
	f.mu.Lock()
	defer f.mu.Unlock()
	s := &slot{w: w}
	f.slots = append(f.slots, s)
	return s
}

// pulled records that s's pull finished and what it saw at its end edge.
func (f *finalizer) pulled(s *slot, edge []IDHash) {
	f.mu.Lock()
	defer f.mu.Unlock()
	s.pulled, s.edge = true, edge
}

// settle records the fate of s's attempt: ok when the pull succeeded and
// every event was delivered.
func (f *finalizer) settle(s *slot, ok bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !ok {
		s.state = slotFailed
		s.tries++
		f.failed = append(f.failed, s)
		f.signal()
		return
	}
	s.state = slotDone
	n := 0
	for n < len(f.slots) && f.slots[n].state == slotDone {
		n++
	}
	if n == 0 {
		return
	}
	last := f.slots[n-1]
	f.base = Mark{End: last.w.End, Edge: last.edge}
	clear(f.slots[:n])
	f.slots = f.slots[n:]
	if f.commit != nil {
		f.commit(f.base, n)
	}
	f.signal()
}

func (f *finalizer) signal() {
	select {
	case f.changed <- struct{}{}:
	default:
	}
}

// takeFailed returns the failed slots, oldest first, and marks them as
// being pulled again.
func (f *finalizer) takeFailed() []*slot {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := f.failed
	f.failed = nil
	for _, s := range out {
		s.state = slotPulling
		s.pulled = false
	}
	// Oldest first: the hole nearest the checkpoint holds it back most.
	for i := 1; i < len(out); i++ {
		for j := i; j > 0 && out[j].w.Seq < out[j-1].w.Seq; j-- {
			out[j], out[j-1] = out[j-1], out[j]
		}
	}
	return out
}

// edgeBefore is the edge of the window just before s: the previous slot's,
// or the checkpoint's when s starts where it stands. It is nil when
// unknown (the previous window has not been pulled), in which case nothing
// is taken as a duplicate.
func (f *finalizer) edgeBefore(s *slot) []IDHash {
	f.mu.Lock()
	defer f.mu.Unlock()
	for i, t := range f.slots {
		if t != s {
			continue
		}
		if i == 0 {
			if f.base.End.Equal(s.w.Start) {
				return f.base.Edge
			}
			return nil
		}
		if prev := f.slots[i-1]; prev.pulled && prev.w.End.Equal(s.w.Start) {
			return prev.edge
		}
		return nil
	}
	return nil
}

// pending is the number of windows not yet passed by the checkpoint.
func (f *finalizer) pending() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.slots)
}

// unsettled is the number of windows whose current attempt has not
// settled: what a Run that ends can still wait for.
func (f *finalizer) unsettled() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for _, s := range f.slots {
		if s.state == slotPulling {
			n++
		}
	}
	return n
}

// mark is the current checkpoint.
func (f *finalizer) mark() Mark {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.base
}
