package e2e

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/devo-aws-collector/devo-aws-collector/internal/awstest"
	"github.com/devo-aws-collector/devo-aws-collector/internal/pullengine"
	"github.com/devo-aws-collector/devo-aws-collector/internal/state"
	"github.com/devo-aws-collector/devo-aws-collector/internal/testutil/rsyslog"
)

// Upgrading over a CloudWatch Logs checkpoint written before edge hashing
// (its edge a list of eventIds): the binary reads that edge, so the events
// the old collector delivered in the overlap it re-reads are not sent
// again, while an event of the overlap that is not in the edge (a late one)
// is; the checkpoint it then saves holds the edge as hashes. About 15 s.
func TestCWLogsUpgradeFromIDEdgeCheckpoint(t *testing.T) {
	t.Setenv("COLLECTOR_LOGS_OVERLAP_SECONDS", fmt.Sprint(int(cwlOverlap/time.Second)))
	t.Setenv("COLLECTOR_LOGS_SAFETY_SECONDS", fmt.Sprint(int(cwlSafety/time.Second)))
	e := newEnv(t)
	rs := rsyslog.Start(t, rsyslog.Options{Certs: e.cert})
	w := &cwlWorld{logs: awstest.NewLogs(t), want: map[string]cwlEvent{}}

	const group = "/app/orders"
	cpEnd := time.Now().UTC().Add(-3 * time.Minute).Truncate(time.Millisecond)
	origin := cpEnd.Add(-time.Hour).Truncate(time.Second).Format(time.RFC3339)
	id := func(n int) string { return fmt.Sprintf("%056d", n) } // eventIds are 56 digits
	var (
		delivered = id(1) // in the old edge, 30 s before its end
		onEnd     = id(2) // in the old edge, exactly on its end
		late      = id(3) // in the overlap, not in the edge: not delivered before
		after     = id(4) // after the checkpoint
		recent    = id(5) // in the edge the upgraded collector saves
	)
	w.add(group, "s", delivered, cpEnd.Add(-30*time.Second), false)
	w.add(group, "s", onEnd, cpEnd, false)
	w.add(group, "s", late, cpEnd.Add(-20*time.Second), false)
	w.add(group, "s", after, cpEnd.Add(30*time.Second), false)
	w.add(group, "s", recent, time.Now().UTC().Add(-10*time.Second).Truncate(time.Millisecond), false)

	// The checkpoint as the collector wrote it before edge hashing.
	key := state.Key{Input: "aws", Service: "cwl_1", Region: "us-east-1", Sub: group}
	old, err := json.Marshal(map[string]any{"v": 1, "origin": origin, "end": cpEnd, "edge": []string{delivered, onEnd}, "saved": cpEnd})
	if err != nil {
		t.Fatal(err)
	}
	st, err := state.Open(filepath.Join(e.dir, "state"))
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Put(key, old); err != nil {
		t.Fatal(err)
	}
	st.Close()

	cfgPath := e.writeConfig("", e.devoOutput(rs.TLSPort, e.cert.ClientCert, e.cert.ClientKey, "      ack_settle: 200ms\n"), fmt.Sprintf(`
      cwl_1:
        types: [logs]
        log_group: %q
        start_time: %q
        request_period_in_seconds: 2
        endpoints: {logs: %q}
`, group, origin, w.logs.URL))
	p := e.start(cfgPath)
	eventually(t, 60*time.Second, "the events not delivered before the upgrade", func() bool {
		got := w.received(t, rs.Messages())
		return got[late] > 0 && got[after] > 0 && got[recent] > 0
	})
	// A few more cycles, each re-reading the overlap: a repeat would show.
	time.Sleep(4 * time.Second)
	terminate(t, p)

	got := w.received(t, rs.Messages())
	if got[delivered] != 0 || got[onEnd] != 0 {
		t.Errorf("events in the old checkpoint's edge sent again after the upgrade: %d and %d times", got[delivered], got[onEnd])
	}
	if got[late] != 1 || got[after] != 1 || got[recent] != 1 {
		t.Errorf("the late event arrived %d times, the ones after the checkpoint %d and %d times; want once each", got[late], got[after], got[recent])
	}

	st, err = state.Open(filepath.Join(e.dir, "state"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	raw, _, err := st.Get(key)
	if err != nil {
		t.Fatal(err)
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(raw, &fields); err != nil {
		t.Fatal(err)
	}
	_, ids := fields["edge"]
	_, hashes := fields["edge_hashes"]
	cp, ok, err := pullengine.LoadCheckpoint(st, key)
	if err != nil || !ok || !cp.End.After(cpEnd) || ids || !hashes || !slices.Contains(cp.Edge, pullengine.HashID(recent)) {
		t.Errorf("checkpoint after the upgrade: %s (loaded: %v %v), want the edge as hashes, with the recent event's", raw, ok, err)
	}
}
