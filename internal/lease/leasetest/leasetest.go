// Package leasetest is an in-memory lease.Holder whose leases a test grants
// and revokes by hand, and a state.Store fenced by it, for the unit tests of
// the API sources: a source runs only the streams it is granted, stops one
// whose lease is revoked and resumes it from its checkpoint when granted
// again, and a write under a revoked lease is refused with lease.ErrNotHeld
// as the shared store refuses it.
package leasetest

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/devo-aws-collector/devo-aws-collector/internal/lease"
	"github.com/devo-aws-collector/devo-aws-collector/internal/state"
)

// Holder is a lease.Holder driven by the test. A lease starts not held;
// Grant makes this collector its holder, Revoke takes it away (the running
// fn's context is cancelled). The zero value is not usable: call New.
type Holder struct {
	mu      sync.Mutex
	leases  map[state.Key]*entry
	changed chan struct{} // closed and replaced on every change
}

// entry is one lease's state.
type entry struct {
	held    bool
	gen     int                // counts grants, so a revoke ends only its own holding
	cancel  context.CancelFunc // ends the running fn; nil when none runs
	running bool
	calls   int  // how many times fn was called
	runs    bool // a Run registered it
}

var _ lease.Holder = (*Holder)(nil)

// New returns a Holder that holds no lease.
func New() *Holder {
	return &Holder{leases: map[state.Key]*entry{}, changed: make(chan struct{})}
}

func (h *Holder) entry(k state.Key) *entry {
	e := h.leases[k]
	if e == nil {
		e = &entry{}
		h.leases[k] = e
	}
	return e
}

// notify wakes everyone waiting for a change; h.mu is held.
func (h *Holder) notify() {
	close(h.changed)
	h.changed = make(chan struct{})
}

// Run implements lease.Holder: it registers k, then calls fn each time k is
// granted, with a context cancelled by Revoke or by ctx, until ctx ends. An
// error from fn while the lease is still held is returned; one after a
// revoke is the stream stopping on loss, and Run waits for the next grant.
func (h *Holder) Run(ctx context.Context, k state.Key, fn func(ctx context.Context) error) error {
	for {
		h.mu.Lock()
		e := h.entry(k)
		if !e.held {
			if !e.runs {
				e.runs = true
				h.notify() // a new stream is registered
			}
			wait := h.changed
			h.mu.Unlock()
			select {
			case <-ctx.Done():
				return nil
			case <-wait:
			}
			continue
		}
		e.runs = true
		lctx, cancel := context.WithCancel(ctx)
		gen := e.gen
		e.cancel, e.running = cancel, true
		e.calls++
		h.notify()
		h.mu.Unlock()

		err := fn(lctx)

		h.mu.Lock()
		stillHeld := e.held && e.gen == gen
		e.cancel, e.running = nil, false
		h.notify()
		h.mu.Unlock()
		cancel()
		if ctx.Err() != nil {
			return nil
		}
		if err != nil && stillHeld {
			return err
		}
		if stillHeld {
			// fn returned while the lease is held (a source stopping on
			// its own): nothing more to run under this holding.
			return nil
		}
	}
}

// Grant makes this collector the holder of k.
func (h *Holder) Grant(k state.Key) {
	h.mu.Lock()
	defer h.mu.Unlock()
	e := h.entry(k)
	if !e.held {
		e.held = true
		e.gen++
		h.notify()
	}
}

// Revoke takes k away: its running fn's context is cancelled.
func (h *Holder) Revoke(k state.Key) {
	h.mu.Lock()
	defer h.mu.Unlock()
	e := h.entry(k)
	if e.held {
		e.held = false
		if e.cancel != nil {
			e.cancel()
		}
		h.notify()
	}
}

// Held reports whether k is granted.
func (h *Holder) Held(k state.Key) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.leases[k] != nil && h.leases[k].held
}

// Running reports whether a fn runs under k now.
func (h *Holder) Running(k state.Key) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.leases[k] != nil && h.leases[k].running
}

// Calls is how many times fn was called for k.
func (h *Holder) Calls(k state.Key) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	if e := h.leases[k]; e != nil {
		return e.calls
	}
	return 0
}

// Streams returns the leases a Run registered so far: the streams the
// sources know of, held or not.
func (h *Holder) Streams() []state.Key {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []state.Key
	for k, e := range h.leases {
		if e.runs {
			out = append(out, k)
		}
	}
	return out
}

// Wait waits up to d until cond holds, checking it after every change of
// any lease; it reports whether cond held.
func (h *Holder) Wait(d time.Duration, cond func() bool) bool {
	deadline := time.NewTimer(d)
	defer deadline.Stop()
	for {
		h.mu.Lock()
		ch := h.changed
		h.mu.Unlock()
		if cond() {
			return true
		}
		select {
		case <-deadline.C:
			return cond()
		case <-ch:
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// Store is a state.Store fenced by a Holder: a Put or Delete under a key
// the Holder does not hold fails with lease.ErrNotHeld (wrapped) and
// changes nothing, as the shared store refuses a former owner's write.
// Keys never registered with the Holder (not a lease) are written freely.
type Store struct {
	state.Store
	H *Holder

	mu      sync.Mutex
	refused map[state.Key]int
}

// NewStore fences inner with h.
func NewStore(inner state.Store, h *Holder) *Store {
	return &Store{Store: inner, H: h, refused: map[state.Key]int{}}
}

func (s *Store) fenced(k state.Key) bool {
	s.H.mu.Lock()
	defer s.H.mu.Unlock()
	e := s.H.leases[k]
	return e != nil && !e.held
}

func (s *Store) refuse(k state.Key) error {
	s.mu.Lock()
	s.refused[k]++
	s.mu.Unlock()
	return fmt.Errorf("write %s: %w", k, lease.ErrNotHeld)
}

// Put implements state.Store.
func (s *Store) Put(k state.Key, v []byte) error {
	if s.fenced(k) {
		return s.refuse(k)
	}
	return s.Store.Put(k, v)
}

// Delete implements state.Store.
func (s *Store) Delete(k state.Key) error {
	if s.fenced(k) {
		return s.refuse(k)
	}
	return s.Store.Delete(k)
}

// Refused is how many writes under k were refused.
func (s *Store) Refused(k state.Key) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.refused[k]
}
