package sqsevents

import (
	"encoding/json"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/devo-aws-collector/devo-aws-collector/internal/awstest/fauxqs"
	"github.com/devo-aws-collector/devo-aws-collector/internal/pipeline"
	"github.com/devo-aws-collector/devo-aws-collector/internal/testutil/pipetest"
)

// TestSecurityHubFauxqs: over a real FIFO queue, a findings event with three
// findings gives three events, the V2 event one, insight results (no
// findings array) one whole event; every message is deleted.
func TestSecurityHubFauxqs(t *testing.T) {
	f := newFixture(t, "sqs-cloudwatch-consumer", "securityhub.fifo", "", nil)
	var bodies []string
	wantFindings := map[string]int{}
	for _, name := range []string{"findings_three_findings", "findings_v2_ocsf", "findings_insight_results", "findings_two_findings"} {
		b, err := os.ReadFile("testdata/" + name + ".in")
		if err != nil {
			t.Fatal(err)
		}
		bodies = append(bodies, string(b))
		var env struct {
			ID     string `json:"id"`
			Detail struct {
				Findings []json.RawMessage `json:"findings"`
			} `json:"detail"`
		}
		if err := json.Unmarshal(b, &env); err != nil {
			t.Fatal(err)
		}
		wantFindings[env.ID] = max(len(env.Detail.Findings), 1)
	}
	sendBodies(t, emu.SQS(), f.url, bodies, func(int) string { return "devo-collector" })
	rec := pipetest.NewRecorder()
	run := pipetest.Run(t, rec, pipeline.Unit{Name: "test", Source: f.src})
	pipetest.WaitFor(t, time.Minute, "all messages deleted", func() bool {
		return f.src.Engine().Counters().Deleted.Load() >= int64(len(bodies))
	})
	run.Shutdown(t)

	evs := rec.Delivered()
	if len(evs) != 3+1+1+2 {
		t.Fatalf("%d events, want 7", len(evs))
	}
	perID := map[string]int{}
	for _, ev := range evs {
		if ev.Tag != "cloud.aws.securityhub.findings.000000000000.us-east-1.1" {
			t.Errorf("tag %s", ev.Tag)
		}
		var env struct {
			ID     string `json:"id"`
			Detail struct {
				Findings []json.RawMessage `json:"findings"`
			} `json:"detail"`
			PullingID string `json:"@devo_pulling_id"`
		}
		if err := json.Unmarshal([]byte(ev.Payload), &env); err != nil {
			t.Fatal(err)
		}
		if env.Detail.Findings != nil && len(env.Detail.Findings) != 1 {
			t.Errorf("event of %s holds %d findings", env.ID, len(env.Detail.Findings))
		}
		if !pullingIDRe.MatchString(env.PullingID) {
			t.Errorf("pulling id %q", env.PullingID)
		}
		perID[env.ID]++
	}
	for id, n := range wantFindings {
		if perID[id] != n {
			t.Errorf("envelope %s gave %d events, want %d", id, perID[id], n)
		}
	}
	if v, fl := fauxqs.MustQueueCounts(t, emu.SQS(), f.url); v != 0 || fl != 0 {
		t.Errorf("queue holds %d visible, %d in flight", v, fl)
	}
	if f.unit.Received.Load() != 4 || f.unit.Generated.Load() != 7 {
		t.Errorf("unit: received %d generated %d, want 4 and 7", f.unit.Received.Load(), f.unit.Generated.Load())
	}
}

// TestBadBodiesFauxqs: on a standard queue, unreadable bodies are counted
// once each, logged once per message id, returned until max_receive_count
// and then deleted as poison, while the good messages flow.
func TestBadBodiesFauxqs(t *testing.T) {
	f := newFixture(t, "service-events-all", "events-bad", "        max_receive_count: 2\n", nil)
	bad := []string{"not json at all", `"Instance i-0a1b2c3d4e5f60718 is now stopped"`, `{"version":"0","id":"x"}`}
	var bodies []string
	for i := range 20 {
		bodies = append(bodies, envelope(sources[i%len(sources)], i))
		if i%7 == 3 {
			bodies = append(bodies, bad[i/7])
		}
	}
	sendBodies(t, emu.SQS(), f.url, bodies, nil)
	rec := pipetest.NewRecorder()
	run := pipetest.Run(t, rec, pipeline.Unit{Name: "test", Source: f.src})
	pipetest.WaitFor(t, time.Minute, "good messages deleted and bad ones deleted as poison", func() bool {
		c := f.src.Engine().Counters()
		return c.Deleted.Load() >= 20 && c.Poison.Load() >= 3
	})
	pipetest.WaitFor(t, 30*time.Second, "an empty queue", func() bool {
		v, fl := fauxqs.MustQueueCounts(t, emu.SQS(), f.url)
		return v == 0 && fl == 0
	})
	run.Shutdown(t)

	if n := len(rec.Delivered()); n != 20 {
		t.Errorf("%d events delivered, want 20", n)
	}
	if d := f.unit.Dropped.Load(); d != 3 {
		t.Errorf("dropped %d, want 3 (once per message, not per receive)", d)
	}
	if r := f.unit.Received.Load(); r != 20+3*2 {
		t.Errorf("received %d, want 26 (each bad body twice)", r)
	}
	checkPoisonLogs(t, f, 3)
}

// checkPoisonLogs: each unreadable message is logged once as unreadable
// and once as deleted as poison.
func checkPoisonLogs(t *testing.T, f *fixture, n int) {
	t.Helper()
	cannot := logLines(t, f.logs, "sqs message cannot be read")
	ids := map[string]bool{}
	for _, l := range cannot {
		id, _ := l["message_id"].(string)
		if ids[id] {
			t.Errorf("message %s logged as unreadable twice", id)
		}
		ids[id] = true
		if e, _ := l["err"].(string); !strings.Contains(e, id) || !strings.Contains(e, "EventBridge envelope") && !strings.Contains(e, "not JSON") {
			t.Errorf("unreadable line does not say what and where: %v", l)
		}
	}
	if len(ids) != n {
		t.Errorf("%d messages logged as unreadable, want %d", len(ids), n)
	}
	if p := logLines(t, f.logs, "sqs poison message deleted"); len(p) != n {
		t.Errorf("%d poison deletions logged, want %d", len(p), n)
	}
}

// TestBadBodyFIFOFauxqs: a bad body at the head of a FIFO message group
// holds that group only until max_receive_count; then the group's later
// messages flow, in order, and other groups are never held.
func TestBadBodyFIFOFauxqs(t *testing.T) {
	f := newFixture(t, "service-events-all", "events-bad.fifo", "        max_receive_count: 2\n", nil)
	bodies := []string{
		envelope("aws.ec2", 0), "not json", envelope("aws.ec2", 2), envelope("aws.ec2", 3),
		envelope("aws.s3", 4), envelope("aws.s3", 5), envelope("aws.s3", 6),
	}
	groups := []string{"devo-collector", "devo-collector", "devo-collector", "devo-collector", "other", "other", "other"}
	sendBodies(t, emu.SQS(), f.url, bodies, func(i int) string { return groups[i] })
	rec := pipetest.NewRecorder()
	run := pipetest.Run(t, rec, pipeline.Unit{Name: "test", Source: f.src})
	pipetest.WaitFor(t, time.Minute, "six good messages deleted and one poison", func() bool {
		c := f.src.Engine().Counters()
		return c.Deleted.Load() >= 6 && c.Poison.Load() >= 1
	})
	run.Shutdown(t)

	var main, other []int
	for _, ev := range rec.Delivered() {
		d := decode(t, ev.Payload)
		if d.Source == "aws.ec2" {
			main = append(main, d.Detail.Seq)
		} else {
			other = append(other, d.Detail.Seq)
		}
	}
	if !slices.Equal(main, []int{0, 2, 3}) || !slices.Equal(other, []int{4, 5, 6}) {
		t.Errorf("delivered devo-collector %v, other %v; want [0 2 3] and [4 5 6]", main, other)
	}
	if v, fl := fauxqs.MustQueueCounts(t, emu.SQS(), f.url); v != 0 || fl != 0 {
		t.Errorf("queue holds %d visible, %d in flight", v, fl)
	}
	if d := f.unit.Dropped.Load(); d != 1 {
		t.Errorf("dropped %d, want 1", d)
	}
	checkPoisonLogs(t, f, 1)
}
