package leasetest

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/devo-aws-collector/devo-aws-collector/internal/lease"
	"github.com/devo-aws-collector/devo-aws-collector/internal/state"
)

// Run calls fn only while the lease is granted, ends it on a revoke, calls
// it again on the next grant, and returns nil when ctx ends; the fenced
// store refuses writes under a lease not held and lets others through.
func TestHolderAndFencedStore(t *testing.T) {
	h := New()
	st := NewStore(state.NewMemory(), h)
	k := state.Key{Input: "i", Service: "s", Region: "r", Sub: "x"}
	free := state.Key{Input: "i", Service: "s", Region: "r", Sub: "not-a-lease"}
	ctx, cancel := context.WithCancel(context.Background())
	calls := make(chan context.Context, 4)
	done := make(chan error, 1)
	go func() {
		done <- h.Run(ctx, k, func(ctx context.Context) error {
			calls <- ctx
			<-ctx.Done()
			return ctx.Err()
		})
	}()
	if !h.Wait(2*time.Second, func() bool { return len(h.Streams()) == 1 }) {
		t.Fatal("Run did not register the lease")
	}
	if err := st.Put(k, []byte("v")); !errors.Is(err, lease.ErrNotHeld) || st.Refused(k) != 1 {
		t.Fatalf("Put under a lease not held: %v (refused %d)", err, st.Refused(k))
	}
	if err := st.Put(free, []byte("v")); err != nil {
		t.Fatalf("Put under a key that is no lease: %v", err)
	}
	for round := 1; round <= 2; round++ {
		h.Grant(k)
		var fctx context.Context
		select {
		case fctx = <-calls:
		case <-time.After(2 * time.Second):
			t.Fatalf("round %d: fn not called on the grant", round)
		}
		if err := st.Put(k, []byte("v")); err != nil {
			t.Fatalf("round %d: Put under a held lease: %v", round, err)
		}
		h.Revoke(k)
		select {
		case <-fctx.Done():
		case <-time.After(2 * time.Second):
			t.Fatalf("round %d: fn's context not ended by the revoke", round)
		}
		if !h.Wait(2*time.Second, func() bool { return !h.Running(k) }) {
			t.Fatalf("round %d: still running after the revoke", round)
		}
	}
	if h.Calls(k) != 2 {
		t.Errorf("fn called %d times, want 2", h.Calls(k))
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run after ctx ended: %v", err)
	}
}
