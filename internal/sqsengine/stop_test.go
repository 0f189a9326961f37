package sqsengine

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/devo-aws-collector/devo-aws-collector/internal/awstest/fauxqs"
	"github.com/devo-aws-collector/devo-aws-collector/internal/pipeline"
	"github.com/devo-aws-collector/devo-aws-collector/internal/testutil/pipetest"
	"github.com/devo-aws-collector/devo-aws-collector/internal/testutil/sqsrec"
)

// TestStopDuringLongPollLeavesNothingHidden: a FIFO queue whose visibility
// timeout is 60 s, an engine long-polling it (5 s) when it is stopped, and
// messages of one group sent during the stop. The poll in progress is
// awaited, the message it took is released at once, and the engine run
// again gets the whole group within seconds, not after 60 s.
func TestStopDuringLongPollLeavesNothingHidden(t *testing.T) {
	c := emu.SQS()
	name := fmt.Sprintf("stop-poll-%d.fifo", dedupSeq.Add(1))
	url := emu.MustCreateQueue(t, name, map[string]string{"FifoQueue": "true", "VisibilityTimeout": "60"})

	out, sink := newTestPipeline(t, nil)
	rc := sqsrec.New(c)
	e, err := New(rc, emitBody, Config{Service: "test", Region: fauxqs.Region, Queue: name, WaitTime: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.Run(ctx, out) }()
	// Let the engine resolve the queue and start its first long poll.
	time.Sleep(time.Second)
	stoppedAt := time.Now()
	cancel()
	sendBodies(t, c, url, []string{"g-1", "g-2", "g-3"}, "g")
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
	case <-time.After(40 * time.Second):
		t.Fatal("Run did not return after the stop")
	}
	// The poll in progress was awaited (it was not cut short) and took the
	// group's first message, which was released.
	recv := rc.Receives()
	last := recv[len(recv)-1]
	if last.Err != nil || last.Messages != 1 || !last.End.After(stoppedAt) || !last.Start.Before(stoppedAt) {
		t.Fatalf("last receive: %+v; want the poll in progress at the stop (%s) to run to its end and return the group's first message",
			last, stoppedAt)
	}
	if e.Counters().Received.Load() != 1 || e.Counters().Deleted.Load() != 0 {
		t.Fatalf("stopped run received %d and deleted %d, want 1 received during the stop and nothing deleted",
			e.Counters().Received.Load(), e.Counters().Deleted.Load())
	}
	if n := sink.Count("g-1"); n != 0 {
		t.Fatalf("a message received during the stop was handled (%d events)", n)
	}

	start := time.Now()
	stop, _ := runEngine(t, e, out)
	pipetest.WaitFor(t, 20*time.Second, "the group after the restart", func() bool {
		return sink.Count("g-1") == 1 && sink.Count("g-2") == 1 && sink.Count("g-3") == 1
	})
	t.Logf("group delivered %s after the restart", time.Since(start).Round(time.Millisecond))
	stop()
	if got := sink.Payloads(); fmt.Sprint(got) != "[g-1 g-2 g-3]" {
		t.Errorf("delivered %v, want [g-1 g-2 g-3]", got)
	}
}

// TestStopReleasesMessagesNotStarted: one worker busy with a message when
// the engine stops; the messages received with it and not started are
// released at once, so an engine run again handles them within seconds
// although the queue's visibility timeout is 60 s.
func TestStopReleasesMessagesNotStarted(t *testing.T) {
	c := emu.SQS()
	name := fmt.Sprintf("stop-queued-%d", dedupSeq.Add(1))
	url := emu.MustCreateQueue(t, name, map[string]string{"VisibilityTimeout": "60"})
	bodies := []string{"q-0", "q-1", "q-2", "q-3", "q-4"}
	sendBodies(t, c, url, bodies, "")

	out, sink := newTestPipeline(t, nil)
	started := make(chan struct{})
	release := make(chan struct{})
	var once sync.Once
	var mu sync.Mutex
	handled := map[string]int{}
	h := HandlerFunc(func(ctx context.Context, m Message, b *pipeline.Batch, out pipeline.Emitter) error {
		mu.Lock()
		handled[m.Body]++
		mu.Unlock()
		first := false
		once.Do(func() { first = true })
		if first {
			close(started)
			<-release
		}
		return emitBody(ctx, m, b, out)
	})
	rc := sqsrec.New(c)
	log, _ := testLogger(t)
	e, err := New(rc, h, Config{Service: "test", Region: fauxqs.Region, Queue: name, WaitTime: time.Second, Workers: 1, Log: log})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.Run(ctx, out) }()
	pipetest.WaitFor(t, 20*time.Second, "the first message started", func() bool {
		select {
		case <-started:
			return true
		default:
			return false
		}
	})
	pipetest.WaitFor(t, 20*time.Second, "every message received", func() bool { return e.Counters().Received.Load() == 5 })
	cancel()
	close(release)
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
	case <-time.After(40 * time.Second):
		t.Fatal("Run did not return after the stop")
	}
	mu.Lock()
	firstRun := len(handled)
	mu.Unlock()
	if firstRun != 1 {
		t.Fatalf("%d messages handled before the stop, want only the one in progress", firstRun)
	}
	zeros := 0
	t.Logf("visibility changes: %v", rc.Visibilities())
	for _, v := range rc.Visibilities() {
		if v == 0 {
			zeros++
		}
	}
	if zeros != 4 {
		t.Errorf("%d messages released with visibility 0, want the 4 not started", zeros)
	}

	stop, _ := runEngine(t, e, out)
	pipetest.WaitFor(t, 20*time.Second, "every message after the restart", func() bool {
		for _, b := range bodies {
			if sink.Count(b) != 1 {
				return false
			}
		}
		return true
	})
	stop()
}
