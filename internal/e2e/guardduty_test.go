package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/devo-aws-collector/devo-aws-collector/internal/awstest"
	"github.com/devo-aws-collector/devo-aws-collector/internal/source/guardduty"
	"github.com/devo-aws-collector/devo-aws-collector/internal/state"
	"github.com/devo-aws-collector/devo-aws-collector/internal/testutil/rsyslog"
)

var gdDetectors = []string{"6cb7e1f0a2d34c5e8f9a0b1c2d3e4f50", "9f8e7d6c5b4a39281706f5e4d3c2b1a0"}

const gdTag = "cloud.aws.guardduty.findings.000000000000.us-east-1.1"

// gdLoad puts n findings into each detector, updated from base on: groups of
// 7 share an updatedAt millisecond, and the last 60 share one (wider than a
// page of 50). It returns the IDs.
func gdLoad(g *awstest.GuardDuty, n int, base time.Time) []string {
	var ids []string
	for _, det := range gdDetectors {
		for i := 0; i < n; i++ {
			at := base.Add(time.Duration(i/7) * 1500 * time.Millisecond)
			if i >= n-60 {
				at = base.Add(time.Hour)
			}
			id := fmt.Sprintf("%s-%03d", det[:6], i)
			ids = append(ids, id)
			g.PutFindings(det, gdFinding(id, base, at, 1))
		}
	}
	return ids
}

func gdFinding(id string, created, updated time.Time, count int) awstest.Finding {
	return awstest.Finding{
		ID: id, AccountID: "000000000000", Type: "Recon:EC2/PortProbeUnprotectedPort", Severity: 5,
		Title: "Unprotected port on EC2 instance is being probed.", CreatedAt: created, UpdatedAt: updated,
		Resource: map[string]any{"resourceType": "Instance", "instanceDetails": map[string]any{"instanceId": "i-0a1b2c3d4e5f60718"}},
		Service:  map[string]any{"count": count, "eventLastSeen": updated.UTC().Format("2006-01-02T15:04:05.000Z")},
	}
}

// gdConfig writes a config with one aws-guardduty service reading the fake,
// at rps requests per second.
func (e *env) gdConfig(g *awstest.GuardDuty, rs *rsyslog.Server, rps float64, startTime string) string {
	e.t.Helper()
	out := e.devoOutput(rs.TLSPort, e.cert.ClientCert, e.cert.ClientKey, "      ack_settle: 200ms")
	cfg := fmt.Sprintf(`globals:
  name: e2e
  persistence: {type: filesystem, config: {directory_name: state}}
%s
inputs:
  aws:
    id: "42"
    requests_per_second: %g
    regions: [us-east-1]
    endpoint_url: %q
    credentials: {access_key: E2EACCESSKEY, access_secret: e2e-secret}
    services:
      aws-guardduty:
        request_period_in_seconds: 1
        start_time: %q
        endpoints: {guardduty: %q}
`, out, rps, e.emu.URL, startTime, g.URL)
	path := filepath.Join(e.dir, "config", "config.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		e.t.Fatal(err)
	}
	return path
}

type gdEvent struct {
	ID        string `json:"Id"`
	UpdatedAt string `json:"UpdatedAt"`
	Service   struct {
		Count      int    `json:"Count"`
		DetectorID string `json:"DetectorId"`
	} `json:"Service"`
	Pulling string `json:"@devo_pulling_id"`
}

// gdReceived reads the findings rsyslog got, by ID in arrival order, and
// checks their tag and shape.
func gdReceived(t *testing.T, rs *rsyslog.Server) (map[string][]gdEvent, int) {
	t.Helper()
	m := map[string][]gdEvent{}
	n := 0
	for _, msg := range dataMessages(rs.Messages()) {
		if msg.Tag != gdTag {
			t.Fatalf("tag %q, want %q", msg.Tag, gdTag)
		}
		var ev gdEvent
		if err := json.Unmarshal([]byte(msg.Payload()), &ev); err != nil || ev.ID == "" || ev.Pulling == "" || ev.Service.DetectorID == "" {
			t.Fatalf("payload %q: %v", msg.Payload(), err)
		}
		m[ev.ID] = append(m[ev.ID], ev)
		n++
	}
	return m, n
}

// gdCheckCalls checks one process's calls: ListFindings asks for updatedAt ≥
// the cursor, sorted by updatedAt ascending, 50 per page; and the calls keep
// to rps per second (a token bucket holding one second's worth).
func gdCheckCalls(t *testing.T, calls []awstest.Call, rps float64) {
	t.Helper()
	lists := 0
	for _, c := range calls {
		if c.ErrCode != "" {
			t.Errorf("%s answered %s", c.Op, c.ErrCode)
		}
		if in, ok := c.Input.(*awstest.ListFindingsRequest); ok {
			lists++
			fc := in.FindingCriteria
			if fc == nil || fc.Criterion["updatedAt"].GreaterThanOrEqual == nil || in.SortCriteria == nil ||
				in.SortCriteria.AttributeName != "updatedAt" || in.SortCriteria.OrderBy != "ASC" || in.MaxResults == nil || *in.MaxResults != 50 {
				t.Errorf("ListFindings request %+v", in)
			}
		}
	}
	if lists == 0 {
		t.Error("no ListFindings call")
	}
	for i := range calls {
		for j := i + 1; j < len(calls); j++ {
			span := calls[j].At.Sub(calls[i].At).Seconds()
			if allowed := rps + rps*span + 0.5; float64(j-i+1) > allowed {
				t.Fatalf("%d calls within %.2f s, more than %g per second allows", j-i+1, span, rps)
			}
		}
	}
	t.Logf("%d calls (%d ListFindings) in %.1f s", len(calls), lists, calls[len(calls)-1].At.Sub(calls[0].At).Seconds())
}

func gdCount(rs *rsyslog.Server) int { return len(dataMessages(rs.Messages())) }

// stableFor waits until rsyslog's count has not changed for d (and is at
// least min), and returns it.
func stableFor(t *testing.T, rs *rsyslog.Server, d time.Duration, min int, limit time.Duration) int {
	t.Helper()
	deadline := time.Now().Add(limit)
	last, since := -1, time.Now()
	for time.Now().Before(deadline) {
		n := gdCount(rs)
		if n != last {
			last, since = n, time.Now()
		} else if n >= min && time.Since(since) >= d {
			return n
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("rsyslog count not stable at ≥ %d within %v (last %d)", min, limit, last)
	return 0
}

// Two detectors × 230 findings with ties on updatedAt, through the binary
// and the Devo output into rsyslog: all delivered exactly once, the
// product's totals line; kill -9 mid-walk (between pages, once what was
// written had settled) and a restart: no duplicate, no miss; 10 findings
// per detector updated later: each delivered again, once, with its new
// content.
func TestGuardDutyFindingsThroughDevoIntoRsyslog(t *testing.T) {
	e := newEnv(t)
	rs := rsyslog.Start(t, rsyslog.Options{Certs: e.cert})
	g := awstest.NewGuardDuty(t)
	base := time.Now().Add(-3 * time.Hour).Truncate(time.Millisecond)
	ids := gdLoad(g, 230, base)
	// 2 requests/s: a page (ListFindings + GetFindings) about every second,
	// so the walk has quiet points between pages.
	cfg := e.gdConfig(g, rs, 2, base.Add(-time.Minute).UTC().Format(time.RFC3339))
	p := e.start(cfg)

	// Kill -9 in the middle of the walk, at a point where the last page
	// written has settled (ack_settle 200 ms) and its cursor is saved.
	n := stableFor(t, rs, 600*time.Millisecond, 100, 60*time.Second)
	if n >= len(ids) {
		t.Fatalf("the walk ended (%d findings) before the kill", n)
	}
	if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	p.wait(10 * time.Second)
	t.Logf("killed after %d of %d findings", n, len(ids))
	gdCheckCalls(t, g.Calls(), 2)

	p = e.start(cfg)
	eventually(t, 60*time.Second, "every finding in rsyslog", func() bool { return gdCount(rs) >= len(ids) })
	time.Sleep(2 * time.Second) // more cycles: nothing more may come
	got, total := gdReceived(t, rs)
	for _, id := range ids {
		if len(got[id]) != 1 {
			t.Errorf("finding %s delivered %d times, want 1", id, len(got[id]))
		}
	}
	if total != len(ids) {
		t.Errorf("%d events in rsyslog, want %d", total, len(ids))
	}
	if !strings.Contains(p.log(), "resuming from cursor") {
		t.Error("the restart did not resume from the saved cursors")
	}
	if !strings.Contains(p.log(), "Total event received: ") {
		t.Error("no \"Total event received: N, and sent: N\" line")
	}
	if !strings.Contains(p.log(), `msg="Starting a new pulling from \"GuardDuty findings\" at \"`) {
		t.Error("no start line")
	}

	// GuardDuty updates 10 findings of each detector (new count, new
	// updatedAt, some sharing a millisecond) while the collector runs.
	// updatedAt is the time of the update, as in GuardDuty, so the source
	// reads them once they are 30 s old (its settle delay).
	later := time.Now().Truncate(time.Millisecond)
	var updated []string
	for _, det := range gdDetectors {
		var fs []awstest.Finding
		for i := 0; i < 10; i++ {
			id := fmt.Sprintf("%s-%03d", det[:6], i*23)
			updated = append(updated, id)
			fs = append(fs, gdFinding(id, base, later.Add(time.Duration(i/3)*time.Millisecond), 9))
		}
		g.PutFindings(det, fs...)
	}
	eventually(t, 50*time.Second, "the 20 updates in rsyslog", func() bool { return gdCount(rs) >= len(ids)+20 })
	time.Sleep(2 * time.Second)
	terminate(t, p)
	got, total = gdReceived(t, rs)
	for _, id := range updated {
		evs := got[id]
		if len(evs) != 2 || evs[0].Service.Count != 1 || evs[1].Service.Count != 9 || evs[1].UpdatedAt == evs[0].UpdatedAt {
			t.Errorf("updated finding %s: %+v, want the first version then the update", id, evs)
		}
	}
	if total != len(ids)+20 {
		t.Errorf("%d events in rsyslog, want %d", total, len(ids)+20)
	}
}

// An output outage: the collector pulls every finding while rsyslog is down
// and is then killed; the saved cursors have not moved past anything, and
// once the receiver is back a restart delivers every finding exactly once.
func TestGuardDutyOutageDoesNotMoveCursor(t *testing.T) {
	e := newEnv(t)
	rs := rsyslog.Start(t, rsyslog.Options{Certs: e.cert})
	rs.Stop()
	g := awstest.NewGuardDuty(t)
	base := time.Now().Add(-3 * time.Hour).Truncate(time.Millisecond)
	ids := gdLoad(g, 230, base)
	start := base.Add(-time.Minute).UTC().Truncate(time.Second)
	cfg := e.gdConfig(g, rs, 1000, start.Format(time.RFC3339))
	p := e.start(cfg)
	eventually(t, 30*time.Second, "every finding read", func() bool {
		return g.Count("GetFindings") >= 2*5 && strings.Count(p.log(), "Total event received: ") >= 1
	})
	time.Sleep(3 * time.Second)
	if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	p.wait(10 * time.Second)

	// The cursors are where they started: nothing was delivered.
	stateDir := filepath.Join(e.dir, "state")
	if _, err := os.Stat(stateDir); err != nil {
		t.Fatalf("state directory: %v", err)
	}
	st, err := state.Open(stateDir)
	if err != nil {
		t.Fatal(err)
	}
	for _, det := range gdDetectors {
		c, ok, err := guardduty.LoadCursor(st, state.Key{Input: "aws", Service: "aws-guardduty", Region: "us-east-1", Sub: "detector/" + det})
		if err != nil || !ok {
			t.Fatalf("cursor of %s: ok=%v err=%v", det, ok, err)
		}
		if c.UpdatedAt != start.UnixMilli() || len(c.IDs) != 0 {
			t.Errorf("cursor of %s moved during the outage to %d (%d IDs), start %d", det, c.UpdatedAt, len(c.IDs), start.UnixMilli())
		}
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}

	rs.Start()
	p = e.start(cfg)
	eventually(t, 60*time.Second, "every finding in rsyslog", func() bool { return gdCount(rs) >= len(ids) })
	time.Sleep(2 * time.Second)
	terminate(t, p)
	got, total := gdReceived(t, rs)
	for _, id := range ids {
		if len(got[id]) != 1 {
			t.Errorf("finding %s delivered %d times, want 1", id, len(got[id]))
		}
	}
	if total != len(ids) {
		t.Errorf("%d events in rsyslog, want %d", total, len(ids))
	}
}

// The worst moment for a kill -9: just after a page reached the receiver and
// before it settled (ack_settle), so its cursor is not saved. After the
// restart nothing is missed, and only that page can arrive twice.
func TestGuardDutyKillBeforeSettleDuplicatesAtMostOnePage(t *testing.T) {
	e := newEnv(t)
	rs := rsyslog.Start(t, rsyslog.Options{Certs: e.cert})
	g := awstest.NewGuardDuty(t)
	base := time.Now().Add(-3 * time.Hour).Truncate(time.Millisecond)
	ids := gdLoad(g, 230, base)
	cfg := e.gdConfig(g, rs, 2, base.Add(-time.Minute).UTC().Format(time.RFC3339))
	p := e.start(cfg)
	// Wait for the count to move past the first page, then kill at once.
	var before int
	eventually(t, 60*time.Second, "a second page arriving", func() bool {
		before = gdCount(rs)
		return before > 50
	})
	if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	p.wait(10 * time.Second)
	atKill := gdCount(rs)

	p = e.start(cfg)
	eventually(t, 60*time.Second, "every finding in rsyslog", func() bool {
		got, _ := gdReceived(t, rs)
		return len(got) >= len(ids)
	})
	time.Sleep(2 * time.Second)
	terminate(t, p)
	got, total := gdReceived(t, rs)
	for _, id := range ids {
		if len(got[id]) == 0 {
			t.Errorf("finding %s lost", id)
		}
	}
	dups := total - len(got)
	t.Logf("killed with %d findings at the receiver; %d events in all, %d duplicates", atKill, total, dups)
	if dups > 50 {
		t.Errorf("%d duplicates, more than the one unsettled page", dups)
	}
}
