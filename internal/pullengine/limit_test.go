package pullengine

import (
	"context"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"
)

// However late requests reach the "server" after being sent (random
// jitter) and however many callers compete, no n+1 arrivals fall within one
// period — the property a token bucket cannot promise — and the limiter
// still lets about n per period through.
func TestLimiterHoldsQuotaUnderJitter(t *testing.T) {
	const n, per = 2, 100 * time.Millisecond
	l := NewLimiter(n, per)
	var mu sync.Mutex
	var arrivals []time.Time
	var wg sync.WaitGroup
	start := time.Now()
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(w), 3))
			for range 10 {
				release, err := l.Acquire(context.Background())
				if err != nil {
					t.Error(err)
					return
				}
				time.Sleep(time.Duration(rng.IntN(30)) * time.Millisecond) // on the way
				mu.Lock()
				arrivals = append(arrivals, time.Now())
				mu.Unlock()
				time.Sleep(time.Duration(rng.IntN(30)) * time.Millisecond) // the answer's way back
				release()
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	slices.SortFunc(arrivals, func(a, b time.Time) int { return a.Compare(b) })
	for i := n; i < len(arrivals); i++ {
		if d := arrivals[i].Sub(arrivals[i-n]); d < per {
			t.Fatalf("arrivals %d and %d only %v apart: %d requests within one period", i-n, i, d, n+1)
		}
	}
	// 40 requests at 2 per 100 ms take at least 1.9 s; much slower means
	// the limiter wastes its quota.
	if elapsed > 4*time.Second {
		t.Errorf("40 requests took %v", elapsed)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	r1, _ := l.Acquire(context.Background())
	r2, _ := l.Acquire(context.Background())
	if _, err := l.Acquire(ctx); err == nil {
		t.Errorf("Acquire with every slot busy and a cancelled context succeeded")
	}
	r1()
	r2()
}

// A process's shared limiter starts with its quota spent, so that a
// restarted collector and the one before it stay within the quota together.
func TestSharedLimiterStartsSpent(t *testing.T) {
	const per = 300 * time.Millisecond
	l := SharedLimiter("starts-spent", "us-east-1", "test.Api", 2, per)
	start := time.Now()
	for range 2 {
		release, err := l.Acquire(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		release()
	}
	if d := time.Since(start); d < per {
		t.Errorf("first requests after %v, want at least one period (%v)", d, per)
	}
}
