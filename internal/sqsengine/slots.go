package sqsengine

import (
	"context"
	"math/rand/v2"
	"sync"
	"time"
)

// slots bounds the messages in flight: a message takes a slot when it is
// received and gives it back when its fate has been carried out (or when it
// is left to reappear at shutdown).
type slots struct {
	mu      sync.Mutex
	n, max  int
	changed chan struct{} // a token: n went down
}

func newSlots(max int) *slots {
	return &slots{max: max, changed: make(chan struct{}, 1)}
}

// acquireUpTo waits for at least one free slot and takes up to k.
func (s *slots) acquireUpTo(ctx context.Context, k int) (int, error) {
	for {
		s.mu.Lock()
		if free := s.max - s.n; free > 0 {
			got := min(free, k)
			s.n += got
			s.mu.Unlock()
			return got, nil
		}
		s.mu.Unlock()
		select {
		case <-s.changed:
		case <-ctx.Done():
			return 0, ctx.Err()
		}
	}
}

func (s *slots) release(k int) {
	if k <= 0 {
		return
	}
	s.mu.Lock()
	s.n -= k
	if s.n < 0 {
		panic("sqsengine: slot released twice")
	}
	s.mu.Unlock()
	select {
	case s.changed <- struct{}{}:
	default:
	}
}

// full reports whether every slot is taken: a receive waits for one.
func (s *slots) full() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.n >= s.max
}

func (s *slots) used() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.n
}

// waitEmpty waits until every slot is free; false if ctx ended first.
func (s *slots) waitEmpty(ctx context.Context) bool {
	for {
		if s.used() == 0 {
			return true
		}
		select {
		case <-s.changed:
		case <-ctx.Done():
			return s.used() == 0
		}
	}
}

// backoff is capped exponential backoff with jitter: each wait is drawn
// from [d/2, d) where d doubles from min to max.
type backoff struct {
	min, max, cur time.Duration
}

func newBackoff(first, ceiling time.Duration) *backoff {
	return &backoff{min: first, max: ceiling, cur: first}
}

func (b *backoff) next() time.Duration {
	d := b.cur
	b.cur = min(b.cur*2, b.max)
	return d/2 + time.Duration(rand.Int64N(int64(d/2)+1))
}

func (b *backoff) reset() { b.cur = b.min }

// returnVisibility is how long a failed message stays hidden before it is
// received again: base doubling with each receive, capped, with ±20 %
// jitter so messages that failed together do not return together. Never
// below one second, so a failure can never become a hot loop.
func returnVisibility(base, ceiling time.Duration, receiveCount int) time.Duration {
	d := base
	for i := 1; i < receiveCount && d < ceiling; i++ {
		d *= 2
	}
	d = min(d, ceiling)
	d = d*4/5 + time.Duration(rand.Int64N(int64(d*2/5)+1))
	d = min(max(d.Round(time.Second), time.Second), 12*time.Hour)
	return d
}
