package cloudtrailapi

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/devo-aws-collector/devo-aws-collector/internal/awstest"
	"github.com/devo-aws-collector/devo-aws-collector/internal/lease/leasetest"
	"github.com/devo-aws-collector/devo-aws-collector/internal/pullengine"
	"github.com/devo-aws-collector/devo-aws-collector/internal/source/apisource"
	"github.com/devo-aws-collector/devo-aws-collector/internal/state"
	"github.com/devo-aws-collector/devo-aws-collector/internal/stats"
	"github.com/devo-aws-collector/devo-aws-collector/internal/testutil/pipetest"
)

// The region's trail is pulled only while its lease is held: nothing before
// the grant, nothing after the revoke, and on the next grant it resumes
// from the checkpoint (no request starts before it), so every event arrives
// once.
func TestTrailRunsUnderItsLease(t *testing.T) {
	now := time.Now().UTC()
	start := now.Add(-3 * time.Hour).Truncate(time.Hour)
	h := &harness{t: t, ct: awstest.NewCloudTrail(t), reg: stats.NewRegistry()}
	leases := leasetest.New()
	store := leasetest.NewStore(state.NewMemory(), leases)
	h.store = store
	for i := range 100 {
		h.ct.AddEvents(awstest.LookupEvent{EventID: fmt.Sprint("e-", i), EventSource: "s3.amazonaws.com", EventName: "Call", EventTime: start.Add(time.Duration(i) * time.Minute)})
	}
	svc := loadService(t, fmt.Sprintf("        start_time: %q\n        gap_until_now_in_minutes: 1\n", start.Format(time.RFC3339)))
	src, err := New(Options{
		Common: apisource.Common{
			Service: svc, Region: "us-east-1", InputName: "aws",
			AccountID: func(context.Context) (string, error) { return "123456789012", nil },
			Store:     store,
			Leases:    leases,
			Log:       slog.New(slog.NewTextHandler(&h.log, nil)),
		},
		NewClient:   h.source(svc).o.NewClient,
		QuotaPeriod: time.Millisecond,
		Tune: func(c *pullengine.Config) {
			c.Period, c.Grace = 20*time.Millisecond, 100*time.Millisecond
			c.RetryBase, c.RetryMax = time.Millisecond, 10*time.Millisecond
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	key := state.Key{Input: "aws", Service: "audit-events-all", Region: "us-east-1", Sub: StreamName}
	sk := pipetest.NewRecorder()
	stop := pipetest.Start(t, sk, src)

	checkpoint := func() time.Time {
		cp, _, _ := pullengine.LoadCheckpoint(store, key)
		return cp.End
	}
	if !leases.Wait(5*time.Second, func() bool { return len(leases.Streams()) == 1 }) {
		t.Fatal("the trail never registered its lease")
	}
	if got := leases.Streams()[0]; got != key {
		t.Fatalf("lease %v, want the checkpoint key %v", got, key)
	}
	time.Sleep(100 * time.Millisecond)
	if n := len(h.ct.Calls()); n != 0 {
		t.Fatalf("%d LookupEvents calls without the lease", n)
	}

	leases.Grant(key)
	if !leases.Wait(10*time.Second, func() bool { return checkpoint().After(start.Add(100 * time.Minute)) }) {
		t.Fatalf("checkpoint %v under the lease\n%s", checkpoint(), h.log.String())
	}
	leases.Revoke(key)
	if !leases.Wait(5*time.Second, func() bool { return !leases.Running(key) }) {
		t.Fatal("the trail kept running after its lease was revoked")
	}
	lost := checkpoint()
	// A request cancelled on the wire may still reach the fake a moment
	// later; count from after it.
	time.Sleep(50 * time.Millisecond)
	calls := len(h.ct.Calls())
	time.Sleep(200 * time.Millisecond) // ten periods: none may pull
	if n := len(h.ct.Calls()); n != calls {
		t.Fatalf("%d LookupEvents calls after the lease was revoked", n-calls)
	}

	// Another owner would have moved on; here a new event comes after the
	// checkpoint, and the regained lease resumes from it.
	h.ct.AddEvents(awstest.LookupEvent{EventID: "late", EventSource: "s3.amazonaws.com", EventName: "Call", EventTime: lost.Add(time.Second)})
	leases.Grant(key)
	if !leases.Wait(10*time.Second, func() bool { return ids(t, sk)["late"] == 1 }) {
		t.Fatalf("the event after the checkpoint never arrived\n%s", h.log.String())
	}
	for _, c := range h.ct.Calls()[calls:] {
		if in := c.Input.(*awstest.LookupEventsRequest); in.StartTime.Before(lost.Truncate(time.Second)) {
			t.Fatalf("after the regain a request starts at %v, before the checkpoint %v", in.StartTime, lost)
		}
	}
	stop()
	got := ids(t, sk)
	for i := range 100 {
		if n := got[fmt.Sprint("e-", i)]; n != 1 {
			t.Errorf("e-%d arrived %d times", i, n)
		}
	}
	if n := strings.Count(h.log.String(), "level=ERROR"); n != 0 {
		t.Errorf("%d ERROR lines:\n%s", n, h.log.String())
	}
}
