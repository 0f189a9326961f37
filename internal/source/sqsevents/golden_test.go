package sqsevents

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/devo-aws-collector/devo-aws-collector/internal/config"
	"github.com/devo-aws-collector/devo-aws-collector/internal/pipeline"
	"github.com/devo-aws-collector/devo-aws-collector/internal/sqsengine"
	"github.com/devo-aws-collector/devo-aws-collector/internal/tag"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden from the current output")

// captureEmitter records what a handler emits.
type captureEmitter struct {
	mu  sync.Mutex
	evs []*pipeline.Event
}

func (c *captureEmitter) Emit(_ context.Context, ev *pipeline.Event) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.evs = append(c.evs, ev)
	return nil
}

// goldenStart is the cycle start of the golden files: its @devo_pulling_id
// is "1717161641.123456".
var goldenStart = time.Date(2024, 5, 31, 13, 20, 41, 123456000, time.UTC)

// goldenSource returns a source ready to handle messages without a queue:
// account 123456789012, region eu-west-1, one cycle started at goldenStart.
// The file name's prefix picks the service: events_ (service-events-all),
// eventsauto_ (the same with auto_event_type: true), findings_
// (sqs-cloudwatch-consumer).
func goldenSource(t *testing.T, name string) *source {
	t.Helper()
	service, extra := "service-events-all", ""
	switch {
	case strings.HasPrefix(name, "eventsauto_"):
		extra = "        auto_event_type: true\n"
	case strings.HasPrefix(name, "events_"):
	case strings.HasPrefix(name, "findings_"):
		service = "sqs-cloudwatch-consumer"
	default:
		t.Fatalf("%s: name must start with events_, eventsauto_ or findings_", name)
	}
	svc := loadService(t, service, "        sqs_queue_name: golden.fifo\n"+extra)
	src, err := newSource(Options{
		Service:   svc,
		Region:    "eu-west-1",
		InputName: "aws",
		SQS:       noSQS{},
		AccountID: func(context.Context) (string, error) { return "123456789012", nil },
		Log:       quiet,
	})
	if err != nil {
		t.Fatal(err)
	}
	src.Start(tag.Values{AccountID: "123456789012", RegionID: "eu-west-1", ServiceName: svc.Name}, goldenStart)
	return src
}

// noSQS is a client the golden test never calls: Handle does not touch SQS.
type noSQS struct{ sqsengine.Client }

// handleGolden runs one body through Handle and renders what came out.
func handleGolden(t *testing.T, src *source, body []byte) []byte {
	t.Helper()
	out := &captureEmitter{}
	done := make(chan pipeline.Result, 1)
	b := pipeline.NewBatch(func(r pipeline.Result) { done <- r })
	m := sqsengine.Message{ID: "m-1", Body: string(body), ReceiveCount: 1, GroupID: "devo-collector"}
	err := src.Handle(context.Background(), m, b, out)
	b.Close()
	var buf bytes.Buffer
	if err != nil {
		fmt.Fprintf(&buf, "poison=%v error: %v\n", sqsengine.IsPoison(err), err)
	}
	for i, ev := range out.evs {
		fmt.Fprintf(&buf, "event %d\ntag: %s\ntime: %s\npayload: %s\n", i, ev.Tag, ev.Time.UTC().Format(time.RFC3339Nano), ev.Payload)
	}
	return buf.Bytes()
}

// TestGolden: envelope → exact payloads and tags, for both services.
func TestGolden(t *testing.T) {
	ins, err := filepath.Glob("testdata/*.in")
	if err != nil || len(ins) == 0 {
		t.Fatalf("no golden inputs: %v", err)
	}
	for _, in := range ins {
		name := strings.TrimSuffix(filepath.Base(in), ".in")
		t.Run(name, func(t *testing.T) {
			body, err := os.ReadFile(in)
			if err != nil {
				t.Fatal(err)
			}
			got := handleGolden(t, goldenSource(t, name), body)
			want := strings.TrimSuffix(in, ".in") + ".golden"
			if *update {
				if err := os.WriteFile(want, got, 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			exp, err := os.ReadFile(want)
			if err != nil {
				t.Fatalf("%v (run with -update to create it)", err)
			}
			if !bytes.Equal(got, exp) {
				t.Errorf("%s differs:\n--- got\n%s--- want\n%s", want, got, exp)
			}
		})
	}
}

// TestSplitCounts checks the golden findings split independently of the
// golden files: n findings give n events, each holding one of them, in order.
func TestSplitCounts(t *testing.T) {
	for name, want := range map[string]int{
		"findings_three_findings":  3,
		"findings_two_findings":    2,
		"findings_v2_ocsf":         1,
		"findings_insight_results": 1,
	} {
		body, err := os.ReadFile("testdata/" + name + ".in")
		if err != nil {
			t.Fatal(err)
		}
		src := goldenSource(t, name)
		out := &captureEmitter{}
		b := pipeline.NewBatch(nil)
		if err := src.Handle(context.Background(), sqsengine.Message{ID: "m", Body: string(body)}, b, out); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if len(out.evs) != want {
			t.Fatalf("%s: %d events, want %d", name, len(out.evs), want)
		}
		orig := decode(t, string(body))
		for i, ev := range out.evs {
			d := decode(t, string(ev.Payload))
			if ev.Tag != "cloud.aws.securityhub.findings.123456789012.eu-west-1.1" {
				t.Errorf("%s event %d: tag %s", name, i, ev.Tag)
			}
			if len(orig.Detail.Findings) == 0 {
				if d.Detail.Findings != nil {
					t.Errorf("%s: findings appeared", name)
				}
				continue
			}
			if len(d.Detail.Findings) != 1 || !jsonEqual(d.Detail.Findings[0], orig.Detail.Findings[i]) {
				t.Errorf("%s event %d: findings %s, want only finding %d", name, i, d.Detail.Findings, i)
			}
		}
	}
}

// TestBadBodiesArePoison: bodies that are not EventBridge envelopes emit
// nothing and come back as poison; each message id is counted once however
// often it is received.
func TestBadBodiesArePoison(t *testing.T) {
	src := goldenSource(t, "events_bad")
	for _, body := range []string{"", "not json", `"a string"`, `[1,2]`, `{"version":"0"}`, `{"version":"0",`} {
		for range 3 {
			out := &captureEmitter{}
			err := src.Handle(context.Background(), sqsengine.Message{ID: "id " + body, Body: body}, pipeline.NewBatch(nil), out)
			if !sqsengine.IsPoison(err) {
				t.Errorf("body %q: error %v, want poison", body, err)
			}
			if !strings.Contains(fmt.Sprint(err), "id "+body) {
				t.Errorf("body %q: error %q does not name the message", body, err)
			}
			if len(out.evs) != 0 {
				t.Errorf("body %q: %d events emitted", body, len(out.evs))
			}
		}
	}
	if n := src.Cycle().Counts(); n.Dropped != 6 || n.Received != 18 || n.Generated != 0 {
		t.Errorf("cycle counts %+v, want 6 dropped of 18 received", n)
	}
}

// TestNewRejects: New reports every missing option at once.
func TestNewRejects(t *testing.T) {
	svc := loadService(t, "service-events-all", "        sqs_queue_name: q.fifo\n")
	_, err := New(Options{Service: svc, InputName: "aws"})
	for _, want := range []string{"nil sqs client", "nil account id function", "empty region"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v lacks %q", err, want)
		}
	}
	other := *svc
	other.Kind = config.GuardDuty
	_, err = New(Options{Service: &other, Region: "us-east-1", SQS: noSQS{}, AccountID: func(context.Context) (string, error) { return "", nil }})
	if err == nil || !strings.Contains(err.Error(), "not eventbridge or securityhub") {
		t.Errorf("guardduty service accepted: %v", err)
	}
	if _, err = New(Options{Service: nil}); err == nil {
		t.Error("nil service accepted")
	}
}

// jsonEqual compares two JSON texts by value.
func jsonEqual(a, b []byte) bool {
	var x, y any
	if json.Unmarshal(a, &x) != nil || json.Unmarshal(b, &y) != nil {
		return false
	}
	return reflect.DeepEqual(x, y)
}

// TestFIFOEventsAskForWriteAhead: every event of a FIFO message (one with a
// message group) asks outputs for write-ahead, for both services; events of
// a standard queue's message do not.
func TestFIFOEventsAskForWriteAhead(t *testing.T) {
	for _, name := range []string{"events_ec2_state_change", "findings_three_findings"} {
		body, err := os.ReadFile(filepath.Join("testdata", name+".in"))
		if err != nil {
			t.Fatal(err)
		}
		for _, group := range []string{"devo-collector", ""} {
			src := goldenSource(t, name)
			out := &captureEmitter{}
			b := pipeline.NewBatch(nil)
			m := sqsengine.Message{ID: "m-1", Body: string(body), ReceiveCount: 1, GroupID: group}
			if err := src.Handle(context.Background(), m, b, out); err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			if len(out.evs) == 0 {
				t.Fatalf("%s: no events", name)
			}
			for i, ev := range out.evs {
				if ev.WriteAhead != (group != "") {
					t.Fatalf("%s, group %q: event %d WriteAhead = %v", name, group, i, ev.WriteAhead)
				}
			}
		}
	}
}
