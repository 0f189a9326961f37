package sqsengine

import (
	"testing"
	"time"

	"github.com/devo-aws-collector/devo-aws-collector/internal/awstest/fauxqs"
	"github.com/devo-aws-collector/devo-aws-collector/internal/testutil/pipetest"
	"github.com/devo-aws-collector/devo-aws-collector/internal/testutil/sqsrec"
)

// TestVisibilityFollowsTheQueue: with no VisibilityTimeout set, every
// receive and every renewal asks for the queue's own VisibilityTimeout (3 s
// here), and a message held 7 s (over two timeouts) is still received once.
func TestVisibilityFollowsTheQueue(t *testing.T) {
	c := emu.SQS()
	url := emu.MustCreateQueue(t, "vis-queue", map[string]string{"VisibilityTimeout": "3"})
	sendBodies(t, c, url, []string{"held-7s"}, "")

	out, sink := newTestPipeline(t, nil)
	sink.Delay = 7 * time.Second
	rc := sqsrec.New(c)
	e, err := New(rc, emitBody, Config{Service: "test", Region: fauxqs.Region, Queue: "vis-queue", WaitTime: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	stop, _ := runEngine(t, e, out)
	pipetest.WaitFor(t, time.Minute, "deleted", func() bool { return e.Counters().Deleted.Load() == 1 })
	stop()

	if got := e.Counters().Received.Load(); got != 1 {
		t.Errorf("received %d times while held 7s with the queue's 3s visibility timeout, want 1", got)
	}
	recv := rc.Receives()
	if len(recv) == 0 {
		t.Fatal("no receive recorded")
	}
	for _, r := range recv {
		if r.VisibilityTimeout != 3 {
			t.Fatalf("a receive asked for VisibilityTimeout %d, want the queue's 3", r.VisibilityTimeout)
		}
	}
	renewals := rc.Visibilities()
	if len(renewals) < 2 {
		t.Fatalf("%d visibility renewals during a 7s hold at 3s, want at least 2", len(renewals))
	}
	for _, v := range renewals {
		if v != 3 {
			t.Fatalf("a renewal asked for %d s, want the queue's 3 (all: %v)", v, renewals)
		}
	}
}

// TestVisibilityOverride: Config.VisibilityTimeout (sqs_visibility_timeout)
// wins over the queue's attribute.
func TestVisibilityOverride(t *testing.T) {
	c := emu.SQS()
	url := emu.MustCreateQueue(t, "vis-override", map[string]string{"VisibilityTimeout": "40"})
	sendBodies(t, c, url, []string{"one"}, "")
	out, _ := newTestPipeline(t, nil)
	rc := sqsrec.New(c)
	e, err := New(rc, emitBody, Config{Service: "test", Region: fauxqs.Region, Queue: "vis-override", WaitTime: time.Second,
		VisibilityTimeout: 7 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	stop, _ := runEngine(t, e, out)
	pipetest.WaitFor(t, time.Minute, "deleted", func() bool { return e.Counters().Deleted.Load() == 1 })
	stop()
	for _, r := range rc.Receives() {
		if r.VisibilityTimeout != 7 {
			t.Fatalf("a receive asked for VisibilityTimeout %d, want the configured 7", r.VisibilityTimeout)
		}
	}
}

// TestVisibilityChoice covers the rule itself: the configured value, else
// the queue's, else SQS's default; rounded and clamped to [2 s, 12 h].
func TestVisibilityChoice(t *testing.T) {
	for _, c := range []struct {
		cfg  time.Duration
		q    Queue
		want time.Duration
	}{
		{0, Queue{VisibilityTimeout: 15 * time.Second, HasVisibilityTimeout: true}, 15 * time.Second},
		{5 * time.Second, Queue{VisibilityTimeout: 15 * time.Second, HasVisibilityTimeout: true}, 5 * time.Second},
		{0, Queue{}, 30 * time.Second},
		{0, Queue{VisibilityTimeout: 0, HasVisibilityTimeout: true}, 2 * time.Second},
		{1400 * time.Millisecond, Queue{}, 2 * time.Second},
		{48 * time.Hour, Queue{}, 12 * time.Hour},
	} {
		cfg := Config{VisibilityTimeout: c.cfg}
		if got := cfg.visibility(c.q); got != c.want {
			t.Errorf("visibility(cfg %s, queue %+v) = %s, want %s", c.cfg, c.q, got, c.want)
		}
	}
}
