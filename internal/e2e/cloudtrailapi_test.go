package e2e

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/devo-aws-collector/devo-aws-collector/internal/awstest"
	"github.com/devo-aws-collector/devo-aws-collector/internal/pullengine"
	"github.com/devo-aws-collector/devo-aws-collector/internal/spool"
	"github.com/devo-aws-collector/devo-aws-collector/internal/state"
	"github.com/devo-aws-collector/devo-aws-collector/internal/testutil/rsyslog"
)

// trail is a LookupEvents history of days × 400 events from start, one
// every 216 s: the first of each day lies exactly on the 24-hour slot edge
// (and every 50th on an hour edge). Per day: 150 s3 (25 of them recorded in
// eu-west-1: other_region), 102 ec2 with the two edge events of the slot
// (50 named DescribeInstances: dropped), 50 iam, 99 kms (a source the
// configuration does not list).
type trail struct {
	start time.Time
	days  int
	want  map[string]time.Time // eventID → time of every event that must arrive
	src   map[string]string    // eventID → eventSource, for the tag check
}

const trailAccount = "000000000000" // fauxqs's GetCallerIdentity account

func newTrail(ct *awstest.CloudTrail, start time.Time, days int) *trail {
	tr := &trail{start: start, days: days, want: map[string]time.Time{}, src: map[string]string{}}
	var evs []awstest.LookupEvent
	for d := 0; d <= days; d++ {
		for k := range 400 {
			if d == days && k > 0 {
				break // the last slot's closing edge only
			}
			at := start.Add(time.Duration(d)*24*time.Hour + time.Duration(k)*216*time.Second)
			id := fmt.Sprintf("ev-%02d-%03d", d, k)
			src, name, region, emit := "", "Call", "us-east-1", true
			switch {
			case k == 0:
				src = "ec2.amazonaws.com"
			case k%8 >= 1 && k%8 <= 3:
				src = "s3.amazonaws.com"
				if k%16 == 3 {
					region, emit = "eu-west-1", false
				}
			case k%8 == 4:
				src = "ec2.amazonaws.com"
			case k%8 == 5:
				src, name, emit = "ec2.amazonaws.com", "DescribeInstances", false
			case k%8 == 7:
				src = "iam.amazonaws.com"
			default:
				src, emit = "kms.amazonaws.com", false
			}
			rec := fmt.Sprintf(`{"eventVersion":"1.09","eventTime":%q,"eventSource":%q,"eventName":%q,"awsRegion":%q,"eventID":%q,"eventType":"AwsApiCall","recipientAccountId":%q}`,
				at.UTC().Format(time.RFC3339), src, name, region, id, trailAccount)
			evs = append(evs, awstest.LookupEvent{EventID: id, EventName: name, EventSource: src, EventTime: at, CloudTrailEvent: rec})
			if emit {
				tr.want[id] = at
				tr.src[id] = src
			}
		}
	}
	ct.AddEvents(evs...)
	return tr
}

// slotsOf are the slots an event belongs to: one, or two for an event on
// the edge they share.
func (tr *trail) slotsOf(at time.Time) []int {
	off := at.Sub(tr.start)
	s := int(off / (24 * time.Hour))
	if off%(24*time.Hour) == 0 && s > 0 {
		return []int{s - 1, s}
	}
	return []int{s}
}

// received counts, per eventID, the CloudTrail events at rsyslog, checking
// each one's tag and its final pulling id.
func (tr *trail) received(t *testing.T, msgs []rsyslog.Message) map[string]int {
	t.Helper()
	got := map[string]int{}
	bad := 0
	for _, m := range dataMessages(msgs) {
		var rec struct {
			EventID     string `json:"eventID"`
			EventSource string `json:"eventSource"`
			Pulling     string `json:"@devo_pulling_id"`
		}
		if err := json.Unmarshal([]byte(m.Payload()), &rec); err != nil {
			t.Fatalf("payload %.200q: %v", m.Payload(), err)
		}
		got[rec.EventID]++
		wantTag := "cloud.aws.cloudtrail." + strings.TrimSuffix(rec.EventSource, ".amazonaws.com") + "." + trailAccount + ".us-east-1.1"
		if (m.Tag != wantTag || rec.Pulling == "" || !strings.Contains(m.Payload(), `,"@devo_pulling_id":"`+rec.Pulling+`"}`)) && bad < 5 {
			bad++
			t.Errorf("event %s: tag %q (want %q), payload %.300q", rec.EventID, m.Tag, wantTag, m.Payload())
		}
	}
	return got
}

// checkRate asserts that no second held more than two LookupEvents
// requests, from the fake's arrival times, and that none was throttled.
func checkRate(t *testing.T, ct *awstest.CloudTrail) {
	t.Helper()
	calls := ct.Calls()
	worst := 0
	for i := range calls {
		n := 0
		for j := i; j >= 0 && calls[i].At.Sub(calls[j].At) < time.Second; j-- {
			n++
		}
		worst = max(worst, n)
		if n > 2 {
			t.Errorf("%d LookupEvents requests within one second ending at %v", n, calls[i].At.Format(time.StampMilli))
			break
		}
	}
	if ct.Throttled() != 0 {
		t.Errorf("%d requests throttled by the fake's 2/s quota", ct.Throttled())
	}
	t.Logf("%d LookupEvents requests, at most %d in any second, %d throttled", len(calls), worst, ct.Throttled())
}

// readCheckpoint reads the audits_api checkpoint of a collector that is
// not running.
func readCheckpoint(t *testing.T, e *env) pullengine.Checkpoint {
	t.Helper()
	st, err := state.Open(filepath.Join(e.dir, "state"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	cp, ok, err := pullengine.LoadCheckpoint(st, state.Key{Input: "aws", Service: "audit-events-all", Region: "us-east-1", Sub: "trail"})
	if err != nil || !ok {
		t.Fatalf("no checkpoint saved: %v", err)
	}
	return cp
}

func (e *env) cloudTrailConfig(rs *rsyslog.Server, ct *awstest.CloudTrail, start time.Time, globals string) string {
	return e.writeConfig(globals, e.devoOutput(rs.TLSPort, e.cert.ClientCert, e.cert.ClientKey, "      ack_settle: 200ms\n"), fmt.Sprintf(`
      audit-events-all:
        types: [audits_api]
        start_time: %q
        time_slot_in_hours: 24
        gap_until_now_in_minutes: 15
        auto_event_type: true
        sources: [s3.amazonaws.com, ec2.amazonaws.com, iam.amazonaws.com]
        drop_event_names: [DescribeInstances]
        endpoints: {cloudtrail: %q}
`, start.UTC().Format(time.RFC3339), ct.URL))
}

// The backfill, at real scale and at LookupEvents' real 2 TPS:
// 30 days × 400 events in slots of 24 hours, through the binary and the
// Devo output into rsyslog. The collector is killed with SIGKILL 25 s in
// and started again: every expected eventID arrives with the right tag,
// drop_event_names, other regions and unlisted sources are not sent, the
// only duplicates come from the one slot that was in flight, the second
// process starts at its checkpoint rather than at start_time, and no second
// ever carried more than two requests. About 2 minutes: 213 requests at
// 1.92/s.
func TestCloudTrailAPIBackfillSurvivesSIGKILL(t *testing.T) {
	e := newEnv(t)
	rs := rsyslog.Start(t, rsyslog.Options{Certs: e.cert})
	ct := awstest.NewCloudTrail(t)
	ct.LimitRate(2, time.Second)
	start := time.Now().UTC().Add(-20 * time.Minute).Truncate(time.Hour).Add(-30 * 24 * time.Hour)
	tr := newTrail(ct, start, 30)
	cfg := e.cloudTrailConfig(rs, ct, start, "")

	p := e.start(cfg)
	time.Sleep(25 * time.Second)
	if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	p.wait(10 * time.Second)
	killedAt := time.Now()
	cp := readCheckpoint(t, e)
	before := len(tr.received(t, rs.Messages()))
	if before == 0 || before >= len(tr.want) {
		t.Fatalf("%d of %d events delivered before the kill: the kill did not land mid-backfill", before, len(tr.want))
	}
	firstCalls := len(ct.Calls())

	p2 := e.start(cfg)
	eventually(t, 4*time.Minute, "every expected event at rsyslog", func() bool {
		got := tr.received(t, rs.Messages())
		for id := range tr.want {
			if got[id] == 0 {
				return false
			}
		}
		return true
	})
	// Let the cycle that caught up end with its lines, then stop.
	eventually(t, 30*time.Second, "the caught-up cycle", func() bool {
		return strings.Contains(p2.log(), "Data collection completed. Elapsed time: ")
	})
	terminate(t, p2)

	got := tr.received(t, rs.Messages())
	dups, dupSlots := 0, map[int]int{}
	for id, n := range got {
		at, ok := tr.want[id]
		if !ok {
			t.Errorf("%s arrived %d times: it should have been dropped or filtered", id, n)
			continue
		}
		if n < 2 {
			continue
		}
		dups += n - 1
		for _, s := range tr.slotsOf(at) {
			dupSlots[s]++
		}
		// Only what the checkpoint had not passed at the kill is read
		// again; an event exactly on the checkpoint is in its saved edge.
		if !at.After(cp.End) {
			t.Errorf("%s (at %v) arrived %d times though the checkpoint saved at the kill (%v) had passed it", id, at, n, cp.End)
		}
	}
	t.Logf("%d expected events, %d arrived before the kill, %d duplicates, from slots %v; checkpoint at the kill: slot %d",
		len(tr.want), before, dups, dupSlots, int(cp.End.Sub(start)/(24*time.Hour)))
	if dups > 400 {
		t.Errorf("%d duplicates, want at most one slot's worth (400)", dups)
	}

	// The second process resumed at its checkpoint: its first request does
	// not start at start_time, and no slot before the checkpoint is asked
	// for again.
	calls := ct.Calls()
	var resumedAt time.Time
	for _, c := range calls[firstCalls:] {
		if c.At.Before(killedAt) {
			continue
		}
		in := c.Input.(*awstest.LookupEventsRequest)
		if resumedAt.IsZero() {
			resumedAt = *in.StartTime
		}
		if in.StartTime.Before(resumedAt) {
			t.Errorf("after the restart a request starts at %v, before the resume point %v", in.StartTime, resumedAt)
			break
		}
	}
	if !resumedAt.After(start) || !resumedAt.Equal(cp.End) {
		t.Errorf("the restarted walk starts at %v, want the checkpoint saved at the kill, %v (start_time %v)", resumedAt, cp.End, start)
	}
	t.Logf("restarted at slot %d of 30", int(resumedAt.Sub(start)/(24*time.Hour)))
	checkRate(t, ct)
	if !strings.Contains(p2.log(), "messages (total/dropped/other_region/duplicated/generated): ") {
		t.Errorf("no Received line in the log")
	}
}

// An output outage in the middle of a backfill: while rsyslog is down the
// collector keeps pulling, but the checkpoint stays before every event that
// was not delivered; after a SIGKILL during the outage the saved checkpoint
// is checked against what rsyslog holds, and a restart with the receiver
// back delivers every event. 6 days × 400 events, about 25 s of requests.
func TestCloudTrailAPICheckpointHoldsDuringOutage(t *testing.T) {
	e := newEnv(t)
	rs := rsyslog.Start(t, rsyslog.Options{Certs: e.cert})
	ct := awstest.NewCloudTrail(t)
	ct.LimitRate(2, time.Second)
	start := time.Now().UTC().Add(-20 * time.Minute).Truncate(time.Hour).Add(-6 * 24 * time.Hour)
	tr := newTrail(ct, start, 6)
	cfg := e.cloudTrailConfig(rs, ct, start, "")

	p := e.start(cfg)
	// Two slots at rsyslog, and time for their writes to settle: the
	// checkpoint has moved before the outage starts.
	eventually(t, time.Minute, "two slots delivered", func() bool { return len(tr.received(t, rs.Messages())) >= 2*226 })
	time.Sleep(time.Second)
	rs.Stop()
	outage := time.Now()
	// Pulling goes on during the outage: wait for two more slots' requests.
	eventually(t, time.Minute, "slots pulled during the outage", func() bool {
		n := 0
		for _, c := range ct.Calls() {
			if c.At.After(outage) {
				n++
			}
		}
		return n >= 14
	})
	if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	p.wait(10 * time.Second)

	cp := readCheckpoint(t, e)
	sp, err := spool.Open(filepath.Join(e.dir, "state", "spool", "devo"), 0)
	if err != nil {
		t.Fatal(err)
	}
	spooled := sp.Len()
	sp.Close()
	got := tr.received(t, rs.Messages())
	var behind []string
	var pulledPast bool
	for id, at := range tr.want {
		if !at.After(cp.End) && got[id] == 0 {
			behind = append(behind, id)
		}
	}
	for _, c := range ct.Calls() {
		if in := c.Input.(*awstest.LookupEventsRequest); in.StartTime.After(cp.End) {
			pulledPast = true
		}
	}
	sort.Strings(behind)
	t.Logf("checkpoint at slot %.2f after the kill; %d events at rsyslog, %d spooled, %d before the checkpoint missing", cp.End.Sub(start).Hours()/24, len(got), spooled, len(behind))
	if int64(len(behind)) > spooled {
		t.Errorf("the checkpoint %v passes %d undelivered events (%d spooled), e.g. %v", cp.End, len(behind), spooled, behind[:min(5, len(behind))])
	}
	if !pulledPast {
		t.Errorf("nothing was pulled past the checkpoint: the outage did not hold it back")
	}

	rs.Start()
	metricsAddr := freeAddr(t)
	callsAtRestart := len(ct.Calls())
	p2 := e.start(e.cloudTrailConfig(rs, ct, start, "  metrics_listen: "+metricsAddr))
	eventually(t, 3*time.Minute, "every expected event at rsyslog after the outage", func() bool {
		got := tr.received(t, rs.Messages())
		for id := range tr.want {
			if got[id] == 0 {
				return false
			}
		}
		return true
	})
	// /metrics counts the second process's LookupEvents requests and the
	// slots its checkpoint passed.
	eventually(t, 30*time.Second, "the walk committed in /metrics", func() bool {
		return strings.Contains(httpGet(t, "http://"+metricsAddr+"/metrics", 200), `devo_collector_pull_windows_pending{input="aws",region="us-east-1",service="audit-events-all",stream="trail"} 0`)
	})
	metrics := httpGet(t, "http://"+metricsAddr+"/metrics", 200)
	seen := len(ct.Calls()) - callsAtRestart
	calls := 0 // every outcome
	for _, line := range strings.Split(metrics, "\n") {
		if rest, ok := strings.CutPrefix(line, `devo_collector_aws_api_calls_total{api="cloudtrail",input="aws",operation="LookupEvents",outcome=`); ok {
			if _, labels, ok := strings.Cut(rest, `,region="us-east-1",service="audit-events-all"} `); ok {
				n := 0
				fmt.Sscan(labels, &n)
				calls += n
			}
		}
	}
	// A new cycle may be on the wire between the scrape and the count.
	if calls <= 0 || calls > seen || calls < seen-3 {
		t.Errorf("devo_collector_aws_api_calls_total for LookupEvents = %d; the fake saw %d requests from this process", calls, seen)
	}
	if !strings.Contains(metrics, `devo_collector_pull_windows_committed_total{input="aws",region="us-east-1",service="audit-events-all",stream="trail"} `) {
		t.Errorf("/metrics lacks the committed windows counter")
	}
	terminate(t, p2)
	checkRate(t, ct)
}
