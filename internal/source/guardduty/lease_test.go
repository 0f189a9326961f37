package guardduty

import (
	"strings"
	"testing"
	"time"

	"github.com/devo-aws-collector/devo-aws-collector/internal/awstest"
	"github.com/devo-aws-collector/devo-aws-collector/internal/lease/leasetest"
	"github.com/devo-aws-collector/devo-aws-collector/internal/state"
	"github.com/devo-aws-collector/devo-aws-collector/internal/testutil/pipetest"
)

// Detectors are listed by every collector but walked only under their
// leases: with one of two granted, the other is never read; revoked, the
// first stops (a finding updated meanwhile waits); granted again with the
// second, both are walked, the first from its saved cursor: every finding
// once.
func TestDetectorsRunUnderTheirLeases(t *testing.T) {
	leases := leasetest.New()
	store := leasetest.NewStore(state.NewMemory(), leases)
	h := &harness{t: t, gd: awstest.NewGuardDuty(t), store: store, leases: leases}
	svc := loadService(t)
	base := time.Now().Add(-3 * time.Hour).Truncate(time.Millisecond)
	a, b := "aaaa1111", "bbbb2222"
	all := append(load(h, a, 80, base), load(h, b, 80, base)...)
	key := func(d string) state.Key {
		return state.Key{Input: "aws", Service: "aws-guardduty", Region: "us-east-1", Sub: "detector/" + d}
	}
	reads := func(d string) int {
		n := 0
		for _, c := range h.gd.Calls() {
			switch in := c.Input.(type) {
			case *awstest.ListFindingsRequest:
				if in.DetectorID == d {
					n++
				}
			case *awstest.GetFindingsRequest:
				if in.DetectorID == d {
					n++
				}
			}
		}
		return n
	}

	leases.Grant(key(a))
	rec := pipetest.NewRecorder()
	stop := h.start(h.source(svc), rec)
	pipetest.WaitFor(t, 10*time.Second, "the held detector's 80 findings", func() bool { return rec.Total() >= 80 })
	if !leases.Wait(5*time.Second, func() bool { return len(leases.Streams()) == 2 }) {
		t.Fatalf("leases registered: %v, want both detectors", leases.Streams())
	}
	time.Sleep(300 * time.Millisecond) // several periods
	if n := reads(b); n != 0 || rec.Total() != 80 {
		t.Fatalf("%s, not held, read %d times; %d findings delivered", b, n, rec.Total())
	}
	if _, ok, _ := store.Get(key(b)); ok {
		t.Errorf("a cursor was saved for %s, not held", b)
	}

	leases.Revoke(key(a))
	if !leases.Wait(5*time.Second, func() bool { return !leases.Running(key(a)) }) {
		t.Fatalf("%s kept its holding after the revoke", a)
	}
	time.Sleep(50 * time.Millisecond) // a request cancelled on the wire may reach the fake a moment later
	before := reads(a)
	h.gd.PutFindings(a, awstest.Finding{ID: "late", Type: "T", Severity: 2, CreatedAt: base, UpdatedAt: time.Now().Add(-time.Second)})
	all = append(all, "late")
	time.Sleep(300 * time.Millisecond)
	if n := reads(a); n != before || rec.Total() != 80 {
		t.Fatalf("%s read %d times after the revoke; %d findings delivered", a, n-before, rec.Total())
	}

	resumes := strings.Count(h.log.String(), "resuming from cursor")
	leases.Grant(key(a))
	leases.Grant(key(b))
	pipetest.WaitFor(t, 10*time.Second, "all 161 findings", func() bool { return rec.Total() >= 161 })
	time.Sleep(300 * time.Millisecond)
	stop()
	got := counts(t, rec)
	for _, id := range all {
		if len(got[id]) != 1 {
			t.Errorf("finding %s delivered %d times, want 1", id, len(got[id]))
		}
	}
	if rec.Total() != 161 {
		t.Errorf("%d findings delivered, want 161", rec.Total())
	}
	if n := strings.Count(h.log.String(), "resuming from cursor") - resumes; n != 1 {
		t.Errorf("%d 'resuming from cursor' lines on the regain, want 1 (%s)", n, a)
	}
	if strings.Contains(h.log.String(), "level=ERROR") {
		t.Errorf("ERROR lines:\n%s", h.log.String())
	}
}

// A detector whose lease is lost while its pages are still in flight: the
// walk stops, the pages settle afterwards, and their cursor saves are
// refused by the fenced store (one INFO line, no ERROR), so the cursor
// stays where the lease left it; granted again, the walk resumes from that
// cursor and every finding arrives.
func TestDetectorLeaseLostWithPagesInFlight(t *testing.T) {
	leases := leasetest.New()
	store := leasetest.NewStore(state.NewMemory(), leases)
	h := &harness{t: t, gd: awstest.NewGuardDuty(t), store: store, leases: leases}
	svc := loadService(t)
	base := time.Now().Add(-3 * time.Hour).Truncate(time.Millisecond)
	a := "aaaa1111"
	all := load(h, a, 400, base)
	key := state.Key{Input: "aws", Service: "aws-guardduty", Region: "us-east-1", Sub: "detector/" + a}
	cursor := func() Cursor {
		c, _, err := LoadCursor(store, key)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}

	leases.Grant(key)
	rec := pipetest.NewRecorder()
	rec.Delay = 2 * time.Millisecond // pages stay in flight a while
	stop := h.start(h.source(svc), rec)
	pipetest.WaitFor(t, 10*time.Second, "a first page delivered", func() bool { return rec.Total() >= 60 })
	leases.Revoke(key)
	if !leases.Wait(10*time.Second, func() bool { return !leases.Running(key) }) {
		t.Fatal("the detector kept its holding after the revoke")
	}
	lost := cursor()
	pipetest.WaitFor(t, 10*time.Second, "the pages in flight settled", func() bool { return store.Refused(key) > 0 })
	time.Sleep(200 * time.Millisecond)
	if got := cursor(); got.UpdatedAt != lost.UpdatedAt || len(got.IDs) != len(lost.IDs) {
		t.Fatalf("cursor moved from %v to %v after the lease was lost", lost.UpdatedAt, got.UpdatedAt)
	}
	if n := strings.Count(h.log.String(), "lease lost, checkpoint left to the new owner"); n != 1 {
		t.Errorf("%d lease-lost lines, want 1\n%s", n, h.log.String())
	}
	if strings.Contains(h.log.String(), "level=ERROR") {
		t.Errorf("ERROR lines:\n%s", h.log.String())
	}

	leases.Grant(key)
	pipetest.WaitFor(t, 20*time.Second, "every finding", func() bool {
		got := counts(t, rec)
		for _, id := range all {
			if len(got[id]) == 0 {
				return false
			}
		}
		return true
	})
	stop()
	t.Logf("%d findings, %d deliveries (%d again after the regain, from the cursor the lease left)", len(all), rec.Total(), rec.Total()-len(all))
}
