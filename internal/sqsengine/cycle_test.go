package sqsengine

import (
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/devo-aws-collector/devo-aws-collector/internal/awstest/fauxqs"
)

// A run's first messages: the cycle in which they arrive ends FirstCycle
// after them, not at the end of the interval, and counts the handler's
// time per message; the cycle after a busy one is not cut short by new
// messages; every receive has its DEBUG line.
func TestCycleEndsSoonAfterFirstMessages(t *testing.T) {
	c := emu.SQS()
	url := emu.MustCreateQueue(t, "first-cycle", nil)
	log, logs := testLogger(t)
	cycles := make(chan Cycle, 16)
	out, _ := newTestPipeline(t, nil)
	e, err := New(c, emitBody, Config{Service: "test", Region: fauxqs.Region, Queue: url,
		WaitTime: time.Second, CycleInterval: 30 * time.Second, FirstCycle: 300 * time.Millisecond,
		OnCycle: func(cy Cycle) { cycles <- cy }, Log: log})
	if err != nil {
		t.Fatal(err)
	}
	stop, _ := runEngine(t, e, out)

	// A few empty long polls first.
	for deadline := time.Now().Add(10 * time.Second); e.Counters().Receives.Load() < 2; time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("fewer than two receives in 10 s")
		}
	}
	sendBodies(t, c, url, []string{"a", "b", "c"}, "")
	var busy Cycle
	select {
	case busy = <-cycles:
	case <-time.After(15 * time.Second):
		t.Fatal("no cycle within 15 s of the first messages (the interval is 30 s)")
	}
	if busy.Received != 3 || busy.Handled != 3 || busy.HandleTime <= 0 || busy.Receives < 3 || busy.Last {
		t.Errorf("busy cycle = %+v, want 3 received and handled with their time, after the empty receives", busy)
	}
	// The next cycle follows a busy one: new messages do not end it early.
	sendBodies(t, c, url, []string{"d"}, "")
	select {
	case next := <-cycles:
		t.Fatalf("the cycle after a busy one ended early: %+v", next)
	case <-time.After(2 * time.Second):
	}
	stop()
	last := <-cycles
	if !last.Last || last.Received != 1 {
		t.Errorf("last cycle = %+v, want the final one with message d", last)
	}
	got := 0
	for _, m := range regexp.MustCompile(`msg="sqs receive answered" queue=\S+ messages=(\d+) `).FindAllStringSubmatch(logs.String(), -1) {
		n, _ := strconv.Atoi(m[1])
		got += n
	}
	if got != 4 {
		t.Errorf("DEBUG receive lines account for %d messages, want 4:\n%s", got, logs.String())
	}
}
