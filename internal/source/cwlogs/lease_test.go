package cwlogs

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/devo-aws-collector/devo-aws-collector/internal/awstest"
	"github.com/devo-aws-collector/devo-aws-collector/internal/lease/leasetest"
	"github.com/devo-aws-collector/devo-aws-collector/internal/pullengine"
	"github.com/devo-aws-collector/devo-aws-collector/internal/state"
	"github.com/devo-aws-collector/devo-aws-collector/internal/testutil/pipetest"
)

// Every group is listed, but only a group whose lease is held is pulled:
// two of three granted, the third never read until it is granted; a
// revoked group stops (an event written meanwhile waits), and granted
// again it resumes from its checkpoint: every event once.
func TestGroupsRunUnderTheirLeases(t *testing.T) {
	leases := leasetest.New()
	store := leasetest.NewStore(state.NewMemory(), leases)
	h := &harness{t: t, account: "555555555555", logs: awstest.NewLogs(t), store: store, leases: leases}
	groups := []string{"/a", "/b", "/c"}
	h.logs.AddGroup(groups...)
	start := time.Now().UTC().Add(-time.Minute).Truncate(time.Second)
	want := map[string]bool{}
	for _, g := range groups {
		for i := range 20 {
			id := fmt.Sprintf("%s-%d", g, i)
			h.logs.AddEvents(g, awstest.LogEvent{Stream: "s", Timestamp: start.Add(time.Duration(i) * time.Second), EventID: id, Message: id})
			want[id] = true
		}
	}
	svc := loadService(t, fmt.Sprintf("        log_group: /\n        start_time: %q\n", start.Format(time.RFC3339)))
	key := func(g string) state.Key {
		return state.Key{Input: "aws", Service: "cwl_1", Region: "us-east-1", Sub: g}
	}
	filtered := func(g string) (n int, last *awstest.FilterLogEventsRequest) {
		for _, c := range h.logs.Calls() {
			if in, ok := c.Input.(*awstest.FilterLogEventsRequest); ok && in.LogGroupName == g {
				n, last = n+1, in
			}
		}
		return n, last
	}
	delivered := func(s *pipetest.Recorder, g string) int {
		n := 0
		for id, k := range ids(t, s) {
			if strings.HasPrefix(id, g+"-") {
				n += k
			}
		}
		return n
	}

	leases.Grant(key("/a"))
	leases.Grant(key("/b"))
	s, stop := h.start(h.source(svc, 50))
	pipetest.WaitFor(t, 10*time.Second, "the held groups' events", func() bool { return delivered(s, "/a") == 20 && delivered(s, "/b") == 20 })
	if !leases.Wait(5*time.Second, func() bool { return len(leases.Streams()) == 3 }) {
		t.Fatalf("leases registered: %v, want the three groups", leases.Streams())
	}
	for _, g := range groups {
		if !slices.Contains(leases.Streams(), key(g)) {
			t.Errorf("no lease for %s", g)
		}
	}
	time.Sleep(600 * time.Millisecond) // two periods
	if n, _ := filtered("/c"); n != 0 || delivered(s, "/c") != 0 {
		t.Fatalf("/c, not held, was read %d times", n)
	}
	if h.logs.Count("DescribeLogGroups") < 2 {
		t.Errorf("%d listings: the groups are listed whether held or not", h.logs.Count("DescribeLogGroups"))
	}

	// /a lost: it stops; an event written meanwhile waits for the lease.
	leases.Revoke(key("/a"))
	if !leases.Wait(5*time.Second, func() bool { return !leases.Running(key("/a")) }) {
		t.Fatal("/a kept running after its lease was revoked")
	}
	cp, _, _ := pullengine.LoadCheckpoint(store, key("/a"))
	time.Sleep(50 * time.Millisecond) // a request cancelled on the wire may reach the fake a moment later
	before, _ := filtered("/a")
	h.logs.AddEvents("/a", awstest.LogEvent{Stream: "s", Timestamp: time.Now(), EventID: "/a-late", Message: "late"})
	want["/a-late"] = true
	time.Sleep(600 * time.Millisecond)
	if n, _ := filtered("/a"); n != before {
		t.Fatalf("/a read %d times after its lease was revoked", n-before)
	}

	// /a regained from its checkpoint, /c granted for the first time.
	leases.Grant(key("/a"))
	leases.Grant(key("/c"))
	pipetest.WaitFor(t, 10*time.Second, "the late event and /c", func() bool { return ids(t, s)["/a-late"] == 1 && delivered(s, "/c") == 20 })
	seen := 0
	for _, c := range h.logs.Calls() {
		in, ok := c.Input.(*awstest.FilterLogEventsRequest)
		if !ok || in.LogGroupName != "/a" {
			continue
		}
		if seen++; seen <= before {
			continue
		}
		// The first read after the regain: from the checkpoint, less the
		// overlap re-read for late ingestion, not from start_time.
		if from := time.UnixMilli(*in.StartTime); from.Before(cp.End.Add(-4*time.Second - time.Millisecond)) {
			t.Errorf("after the regain /a is read from %v, before its checkpoint %v less the overlap", from, cp.End)
		}
		break
	}
	stop()
	got := ids(t, s)
	for id := range want {
		if got[id] != 1 {
			t.Errorf("%s delivered %d times", id, got[id])
		}
	}
	if len(got) != len(want) {
		t.Errorf("%d events delivered, want %d", len(got), len(want))
	}
}
