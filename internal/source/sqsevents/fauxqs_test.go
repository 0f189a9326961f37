package sqsevents

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sts"

	"github.com/devo-aws-collector/devo-aws-collector/internal/awstest/fauxqs"
	"github.com/devo-aws-collector/devo-aws-collector/internal/config"
	"github.com/devo-aws-collector/devo-aws-collector/internal/pipeline"
	"github.com/devo-aws-collector/devo-aws-collector/internal/sqsengine"
	"github.com/devo-aws-collector/devo-aws-collector/internal/stats"
	"github.com/devo-aws-collector/devo-aws-collector/internal/testutil/pipetest"
)

// fastEngine shortens the engine's waits so the tests run in seconds; the
// logic is the production engine's.
func fastEngine(c *sqsengine.Config) {
	c.WaitTime = time.Second
	c.DeleteFlush = 20 * time.Millisecond
	c.ReturnBackoff = time.Second
	c.ReturnBackoffMax = time.Second
	c.ErrorBackoff = 100 * time.Millisecond
	c.Grace = 2 * time.Second
}

// accountFromSTS asks the emulator's STS who we are, as the app's session
// does (fauxqs answers 000000000000).
func accountFromSTS(s *fauxqs.Server) func(ctx context.Context) (string, error) {
	client := sts.NewFromConfig(s.Config())
	return func(ctx context.Context) (string, error) {
		out, err := client.GetCallerIdentity(ctx, &sts.GetCallerIdentityInput{})
		if err != nil {
			return "", err
		}
		return aws.ToString(out.Account), nil
	}
}

type fixture struct {
	src  *source
	url  string
	logs *logBuffer
	unit *stats.Unit
}

// newFixture makes a queue named name (FIFO when it ends in .fifo) and a
// source of service reading it.
func newFixture(t *testing.T, service, name, extra string, tune func(*sqsengine.Config)) *fixture {
	t.Helper()
	s := emulator(t)
	attrs := map[string]string{}
	if strings.HasSuffix(name, ".fifo") {
		attrs["FifoQueue"] = "true"
		attrs["ContentBasedDeduplication"] = "true"
	}
	// Unique names: FIFO deduplication would swallow a rerun's messages.
	base, suffix := strings.CutSuffix(name, ".fifo")
	name = fmt.Sprintf("%s-%d", base, queueSeq.Add(1))
	if suffix {
		name += ".fifo"
	}
	url := s.MustCreateQueue(t, name, attrs)
	if !strings.Contains(extra, "sqs_visibility_timeout") {
		// Should a receive's response be lost on the way (the known cause,
		// "deserialization failed … use of closed network connection", is
		// fixed by sdkhttp), its messages stay hidden for the visibility
		// timeout, holding their FIFO groups: keep that short so such a
		// run is slower, not a timeout.
		extra += "        sqs_visibility_timeout: 5\n"
	}
	svc := loadService(t, service, "        sqs_queue_name: "+name+"\n"+extra)
	f := &fixture{url: url, logs: &logBuffer{}, unit: &stats.Unit{Input: "aws", Service: service, Region: fauxqs.Region}}
	src, err := newSource(Options{
		Service:   svc,
		Region:    fauxqs.Region,
		InputName: "aws",
		SQS:       s.SQS(),
		AccountID: accountFromSTS(s),
		Log:       f.logs.logger(),
		Stats:     f.unit,
		Workers:   4,
		// Short cycles, so the tests see several pull-cycle lines.
		CycleInterval: 500 * time.Millisecond,
		Tune: func(c *sqsengine.Config) {
			fastEngine(c)
			if tune != nil {
				tune(c)
			}
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	f.src = src
	return f
}

var queueSeq atomic.Int64

var pullingIDRe = regexp.MustCompile(`^\d+\.\d{6}$`)

// logLines returns the decoded JSON log records whose msg starts with prefix.
func logLines(t *testing.T, logs *logBuffer, prefix string) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(logs.String()), "\n") {
		if line == "" {
			continue
		}
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatalf("log line is not JSON: %s", line)
		}
		if msg, _ := rec["msg"].(string); strings.HasPrefix(msg, prefix) {
			out = append(out, rec)
		}
	}
	return out
}

var receivedRe = regexp.MustCompile(`^Received (\d+) response\(s\), received (\d+) message\(s\), generated (\d+) message\(s\), detected_event_types: \[(.*)\], avg_time_per_source_message: \d+\.\d{3} ms$`)

// TestDeliveryFauxqs sends 500 events from 12 sources to FIFO and standard
// queues, with auto_event_type on and off, and checks that each arrives once
// with the right tag and payload, that order holds within each FIFO
// message group, that every message is deleted, and the pull-cycle lines.
func TestDeliveryFauxqs(t *testing.T) {
	const n = 500
	for _, tc := range []struct {
		name string
		fifo bool
		auto bool
	}{
		{"fifo auto", true, true},
		{"fifo fixed", true, false},
		{"standard auto", false, true},
		{"standard fixed", false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			qname := "events-" + strings.ReplaceAll(tc.name, " ", "-")
			var group func(int) string
			if tc.fifo {
				qname += ".fifo"
				// One group per source, as several rules sharing a queue
				// would do; order must hold within each.
				group = func(i int) string { return "devo-collector-" + strconv.Itoa(i%len(sources)) }
			}
			f := newFixture(t, "service-events-all", qname, fmt.Sprintf("        auto_event_type: %v\n", tc.auto), nil)
			bodies := make([]string, n)
			for i := range bodies {
				bodies[i] = envelope(sources[i%len(sources)], i)
			}
			sendBodies(t, emu.SQS(), f.url, bodies, group)

			rec := pipetest.NewRecorder()
			run := pipetest.Run(t, rec, pipeline.Unit{Name: "test", Source: f.src})
			t.Cleanup(func() {
				if t.Failed() {
					c := f.src.Engine().Counters()
					t.Logf("delivered %d, engine received %d deleted %d returned %d poison %d errors %d\nlogs:\n%s", len(rec.Delivered()), c.Received.Load(), c.Deleted.Load(), c.Returned.Load(), c.Poison.Load(), c.Errors.Load(), f.logs.String())
				}
			})
			pipetest.WaitFor(t, 2*time.Minute, "500 events delivered and deleted", func() bool {
				return len(rec.Delivered()) >= n && f.src.Engine().Counters().Deleted.Load() >= n
			})
			pipetest.WaitFor(t, 30*time.Second, "an empty queue", func() bool {
				v, fl := fauxqs.MustQueueCounts(t, emu.SQS(), f.url)
				return v == 0 && fl == 0
			})
			run.Shutdown(t)

			evs := rec.Delivered()
			if len(evs) != n {
				t.Fatalf("%d events delivered, want %d (no message failed, so none may repeat)", len(evs), n)
			}
			seen := make([]bool, n)
			lastInGroup := map[string]int{}
			ids := map[string]bool{}
			for _, ev := range evs {
				d := decode(t, ev.Payload)
				seq := d.Detail.Seq
				if seq < 0 || seq >= n || seen[seq] {
					t.Fatalf("event seq %d unexpected or repeated", seq)
				}
				seen[seq] = true
				src := sources[seq%len(sources)]
				if d.Source != src {
					t.Errorf("seq %d: source %q, want %q", seq, d.Source, src)
				}
				et := "events"
				if tc.auto && strings.HasPrefix(src, "aws.") && !strings.Contains(src, "/") {
					et = strings.TrimPrefix(src, "aws.")
				}
				if want := "cloud.aws.cloudwatch." + et + ".000000000000.us-east-1.1"; ev.Tag != want {
					t.Errorf("seq %d (%s): tag %q, want %q", seq, src, ev.Tag, want)
				}
				if !pullingIDRe.MatchString(d.PullingID) {
					t.Errorf("seq %d: @devo_pulling_id %q", seq, d.PullingID)
				}
				ids[d.PullingID] = true
				// The envelope as sent, plus the pulling id as the last key.
				body := bodies[seq]
				if want := body[:len(body)-1] + `,"@devo_pulling_id":"` + d.PullingID + `"}`; ev.Payload != want {
					t.Errorf("seq %d payload:\n got %s\nwant %s", seq, ev.Payload, want)
				}
				if !ev.Time.Equal(time.Date(2024, 5, 31, 13, 20, 11, 0, time.UTC)) {
					t.Errorf("seq %d: event time %v, want the envelope's", seq, ev.Time)
				}
				if tc.fifo {
					g := group(seq)
					if last, ok := lastInGroup[g]; ok && seq < last {
						t.Errorf("group %s: seq %d delivered after %d", g, seq, last)
					}
					lastInGroup[g] = seq
				}
			}
			if c := f.src.Engine().Counters(); c.Deleted.Load() != n || c.Poison.Load() != 0 || c.Returned.Load() != 0 {
				t.Errorf("engine: deleted %d, poison %d, returned %d; want %d, 0, 0",
					c.Deleted.Load(), c.Poison.Load(), c.Returned.Load(), n)
			}
			if f.unit.Received.Load() != n || f.unit.Generated.Load() != n || f.unit.Dropped.Load() != 0 {
				t.Errorf("unit counters: received %d generated %d dropped %d", f.unit.Received.Load(), f.unit.Generated.Load(), f.unit.Dropped.Load())
			}
			checkCycleLines(t, f, ids, n, n, tc.auto)
		})
	}
}

// checkCycleLines checks the product's pull-cycle lines: each cycle starts
// with "Starting a new pulling from …" carrying the pulling id the events
// of that cycle carry, and ends with "Received …"; the counts add up.
func checkCycleLines(t *testing.T, f *fixture, ids map[string]bool, received, generated int, auto bool) {
	t.Helper()
	starts := logLines(t, f.logs, "Starting a new pulling from ")
	startIDs := map[string]bool{}
	startRe := regexp.MustCompile(`^Starting a new pulling from "` + regexp.QuoteMeta(f.src.svc.QueueName) +
		`" queue at "\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}\+00:00"$`)
	for _, s := range starts {
		if !startRe.MatchString(s["msg"].(string)) {
			t.Errorf("start line %q", s["msg"])
		}
		id, _ := s["pulling_id"].(string)
		startIDs[id] = true
	}
	for id := range ids {
		if !startIDs[id] {
			t.Errorf("events carry @devo_pulling_id %s, which no cycle logged", id)
		}
	}
	ends := logLines(t, f.logs, "Received ")
	if len(ends) != len(starts) || len(ends) == 0 {
		t.Fatalf("%d cycle starts, %d cycle ends", len(starts), len(ends))
	}
	var sumRecv, sumGen int
	types := map[string]bool{}
	for _, e := range ends {
		m := receivedRe.FindStringSubmatch(e["msg"].(string))
		if m == nil {
			t.Fatalf("cycle line %q", e["msg"])
		}
		r, _ := strconv.Atoi(m[2])
		g, _ := strconv.Atoi(m[3])
		sumRecv += r
		sumGen += g
		for _, q := range strings.Split(m[4], ", ") {
			if q != "" {
				types[strings.Trim(q, `"`)] = true
			}
		}
	}
	if sumRecv != received || sumGen != generated {
		t.Errorf("cycle lines: received %d generated %d, want %d and %d", sumRecv, sumGen, received, generated)
	}
	if auto && (!types["ec2"] || !types["events"] || !types["cloudtrail"]) {
		t.Errorf("detected_event_types %v lack derived types", types)
	}
	if !auto && f.src.kind == config.EventBridge && (len(types) != 1 || !types["events"]) {
		t.Errorf("detected_event_types %v, want only events", types)
	}
}

// TestOneGroupOrderFauxqs uses the product's setup, one message group
// "devo-collector" for everything, with several workers: every event comes
// out in the order it was sent.
func TestOneGroupOrderFauxqs(t *testing.T) {
	const n = 40
	f := newFixture(t, "service-events-all", "events-one-group.fifo", "        auto_event_type: true\n", nil)
	bodies := make([]string, n)
	for i := range bodies {
		bodies[i] = envelope(sources[i%len(sources)], i)
	}
	sendBodies(t, emu.SQS(), f.url, bodies, func(int) string { return "devo-collector" })
	rec := pipetest.NewRecorder()
	run := pipetest.Run(t, rec, pipeline.Unit{Name: "test", Source: f.src})
	pipetest.WaitFor(t, 2*time.Minute, "all events delivered and deleted", func() bool {
		return len(rec.Delivered()) >= n && f.src.Engine().Counters().Deleted.Load() >= n
	})
	run.Shutdown(t)
	var order []int
	for _, ev := range rec.Delivered() {
		order = append(order, decode(t, ev.Payload).Detail.Seq)
	}
	if !slices.IsSorted(order) || len(order) != n {
		t.Errorf("delivery order %v, want 0..%d in order", order, n-1)
	}
}

// quiet is a logger for tests that do not read logs.
var quiet = slog.New(slog.DiscardHandler)
