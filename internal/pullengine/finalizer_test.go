package pullengine

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"
)

// Windows settle in random order, about a third of attempts fail and are
// taken back and pulled again, and settlements come from several
// goroutines. At every commit the checkpoint must stand exactly at the end
// of the longest delivered prefix — never past a window whose latest
// attempt is not delivered — commits must only move forward, and at the end
// every window is passed, with the last window's edge.
func TestFinalizerRandomOrderWithFailures(t *testing.T) {
	for seed := uint64(1); seed <= 200; seed++ {
		t.Run(fmt.Sprint("seed", seed), func(t *testing.T) { finalizerRun(t, seed) })
	}
}

func finalizerRun(t *testing.T, seed uint64) {
	rng := rand.New(rand.NewPCG(seed, seed*7919))
	origin := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	n := 5 + rng.IntN(60)

	var (
		mu        sync.Mutex
		delivered = make([]bool, n) // latest attempt of window i delivered
		commits   []Mark
	)
	endOf := func(i int) time.Time { return origin.Add(time.Duration(i+1) * time.Hour) }
	var errs []string
	f := newFinalizer(Mark{End: origin, Edge: []IDHash{HashID("base")}}, func(m Mark, passed int) {
		// Called under the finalizer's lock, in order.
		mu.Lock()
		defer mu.Unlock()
		if len(commits) > 0 && !m.End.After(commits[len(commits)-1].End) {
			errs = append(errs, fmt.Sprintf("commit went from %v to %v", commits[len(commits)-1].End, m.End))
		}
		k := int(m.End.Sub(origin)/time.Hour) - 1
		for i := 0; i <= k; i++ {
			if !delivered[i] {
				errs = append(errs, fmt.Sprintf("checkpoint at window %d passes window %d, not delivered", k, i))
			}
		}
		if want := fmt.Sprint("edge-", k); len(m.Edge) != 1 || m.Edge[0] != HashID(want) {
			errs = append(errs, fmt.Sprintf("commit at %d carries edge %v, want [%s]", k, m.Edge, want))
		}
		commits = append(commits, m)
	})

	slots := make([]*slot, n)
	for i := range n {
		w := Window{Seq: uint64(i + 1), Start: origin.Add(time.Duration(i) * time.Hour), End: endOf(i)}
		slots[i] = f.add(w)
	}
	// The first window starts at the base: it dedups against the base edge.
	if got := f.edgeBefore(slots[0]); !slices.Equal(got, []IDHash{HashID("base")}) {
		t.Fatalf("edge before the first window = %v, want [base]", got)
	}
	inFlight := slices.Clone(slots)
	for _, s := range slots {
		f.pulled(s, []IDHash{HashID(fmt.Sprint("edge-", s.w.Seq-1))})
	}
	if got := f.edgeBefore(slots[1]); !slices.Equal(got, []IDHash{HashID("edge-0")}) {
		t.Fatalf("edge before window 1 = %v, want [edge-0]", got)
	}

	rounds := 0
	for len(inFlight) > 0 {
		rounds++
		if rounds > 10000 {
			t.Fatal("windows never all delivered")
		}
		rng.Shuffle(len(inFlight), func(i, j int) { inFlight[i], inFlight[j] = inFlight[j], inFlight[i] })
		// Settle a random part of what is in flight, concurrently.
		k := 1 + rng.IntN(len(inFlight))
		batch, rest := inFlight[:k], slices.Clone(inFlight[k:])
		oks := make([]bool, len(batch))
		for i := range batch {
			oks[i] = rng.IntN(3) != 0
		}
		var wg sync.WaitGroup
		for i, s := range batch {
			wg.Add(1)
			go func() {
				defer wg.Done()
				mu.Lock()
				delivered[s.w.Seq-1] = oks[i]
				mu.Unlock()
				f.settle(s, oks[i])
			}()
		}
		wg.Wait()
		// Failed windows come back to be pulled again, oldest first.
		again := f.takeFailed()
		for i := 1; i < len(again); i++ {
			if again[i].w.Seq < again[i-1].w.Seq {
				t.Fatalf("takeFailed not oldest first: %d before %d", again[i-1].w.Seq, again[i].w.Seq)
			}
		}
		var failed int
		for i := range batch {
			if !oks[i] {
				failed++
			}
		}
		if len(again) != failed {
			t.Fatalf("takeFailed returned %d windows, %d failed", len(again), failed)
		}
		for _, s := range again {
			mu.Lock()
			delivered[s.w.Seq-1] = false
			mu.Unlock()
			f.pulled(s, []IDHash{HashID(fmt.Sprint("edge-", s.w.Seq-1))})
		}
		inFlight = append(rest, again...)
		// Once the round has settled, the checkpoint stands exactly at the
		// end of the longest delivered prefix: not short of it either.
		prefix := 0
		for prefix < n && delivered[prefix] {
			prefix++
		}
		if want := origin.Add(time.Duration(prefix) * time.Hour); !f.mark().End.Equal(want) {
			errs = append(errs, fmt.Sprintf("checkpoint at %v, the delivered prefix ends at %v", f.mark().End, want))
		}
		if len(errs) > 0 {
			t.Fatalf("after round %d: %v", rounds, errs)
		}
	}
	if m := f.mark(); !m.End.Equal(endOf(n - 1)) {
		t.Fatalf("final checkpoint %v, want %v", m.End, endOf(n-1))
	}
	if f.pending() != 0 {
		t.Fatalf("%d windows pending at the end", f.pending())
	}
	if got := commits[len(commits)-1].Edge; !slices.Equal(got, []IDHash{HashID(fmt.Sprint("edge-", n-1))}) {
		t.Fatalf("final edge %v", got)
	}
}

// A failed window blocks the checkpoint however many later windows are
// delivered, and the checkpoint jumps over all of them once it is.
func TestFinalizerHoleHoldsCheckpoint(t *testing.T) {
	origin := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	var got []time.Time
	f := newFinalizer(Mark{End: origin}, func(m Mark, _ int) { got = append(got, m.End) })
	var ss []*slot
	for i := range 5 {
		ss = append(ss, f.add(Window{Seq: uint64(i + 1), Start: origin.Add(time.Duration(i) * time.Hour), End: origin.Add(time.Duration(i+1) * time.Hour)}))
	}
	f.settle(ss[0], true)
	f.settle(ss[1], false)
	for _, s := range ss[2:] {
		f.settle(s, true)
	}
	if want := []time.Time{origin.Add(time.Hour)}; !slices.Equal(got, want) {
		t.Fatalf("commits %v, want %v", got, want)
	}
	again := f.takeFailed()
	if len(again) != 1 || again[0] != ss[1] {
		t.Fatalf("takeFailed = %v", again)
	}
	f.settle(again[0], true)
	if want := []time.Time{origin.Add(time.Hour), origin.Add(5 * time.Hour)}; !slices.Equal(got, want) {
		t.Fatalf("commits %v, want %v", got, want)
	}
}
