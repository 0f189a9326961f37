package stats

import (
	"context"
	"regexp"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestSenderLinesGolden(t *testing.T) {
	since := time.Date(2022, 6, 28, 10, 39, 22, 511671000, time.UTC)
	senders, totals := NewSenderReport(Standard, SenderSnapshot{}, SenderSnapshot{Senders: 1, Sent: 44, Busy: 7 * time.Millisecond}, since).Lines()
	if want := "Number of available senders: 1, sender manager internal queue size: 0"; senders != want {
		t.Errorf("got  %s\nwant %s", senders, want)
	}
	if want := `Standard - Total number of messages sent: 44, messages sent since "2022-06-28 10:39:22.511671+00:00": 44 (elapsed 0.007 seconds)`; totals != want {
		t.Errorf("got  %s\nwant %s", totals, want)
	}

	// A later window: total since start, count and busy time since the
	// previous report, the window start printed in UTC.
	prev := SenderSnapshot{Senders: 2, Sent: 23, Busy: 12 * time.Millisecond}
	cur := SenderSnapshot{Senders: 2, QueueSize: 17, Sent: 44, Busy: 19 * time.Millisecond}
	local := since.In(time.FixedZone("CEST", 2*3600))
	senders, totals = NewSenderReport(Standard, prev, cur, local).Lines()
	if want := "Number of available senders: 2, sender manager internal queue size: 17"; senders != want {
		t.Errorf("got  %s\nwant %s", senders, want)
	}
	if want := `Standard - Total number of messages sent: 44, messages sent since "2022-06-28 10:39:22.511671+00:00": 21 (elapsed 0.007 seconds)`; totals != want {
		t.Errorf("got  %s\nwant %s", totals, want)
	}

	_, totals = NewSenderReport(Internal, SenderSnapshot{}, SenderSnapshot{Senders: 1, Sent: 1, Busy: 19 * time.Millisecond},
		time.Date(2022, 6, 28, 10, 39, 22, 516313000, time.UTC)).Lines()
	if want := `Internal - Total number of messages sent: 1, messages sent since "2022-06-28 10:39:22.516313+00:00": 1 (elapsed 0.019 seconds)`; totals != want {
		t.Errorf("got  %s\nwant %s", totals, want)
	}
}

func TestLogSenderStats(t *testing.T) {
	var buf logBuffer
	var sent atomic.Int64
	snapshot := func() SenderSnapshot {
		return SenderSnapshot{Senders: 1, Sent: sent.Load(), Busy: time.Duration(sent.Load()) * time.Millisecond}
	}
	// A fake clock that advances one second per reading, so each window's
	// start is predictable.
	var mu sync.Mutex
	clock := time.Date(2022, 6, 28, 10, 39, 22, 0, time.UTC)
	now := func() time.Time {
		mu.Lock()
		defer mu.Unlock()
		clock = clock.Add(time.Second)
		return clock
	}
	sent.Store(5)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		logSenderStats(ctx, buf.logger(), 20*time.Millisecond, Standard, snapshot, now)
	}()
	waitFor(t, func() bool { return len(buf.records(t)) >= 2 })
	sent.Store(12)
	waitFor(t, func() bool {
		for _, m := range buf.messages(t) {
			if totalsLine.FindStringSubmatch(m) != nil && totalsLine.FindStringSubmatch(m)[1] == "12" {
				return true
			}
		}
		return false
	})
	cancel()
	<-done

	msgs := buf.messages(t)
	if msgs[0] != "Number of available senders: 1, sender manager internal queue size: 0" {
		t.Errorf("first line %q", msgs[0])
	}
	if want := `Standard - Total number of messages sent: 5, messages sent since "2022-06-28 10:39:23.000000+00:00": 5 (elapsed 0.005 seconds)`; msgs[1] != want {
		t.Errorf("got  %s\nwant %s", msgs[1], want)
	}
	// Windows follow each other: each starts where the previous ended (one
	// fake-clock second later), and their counts add up to the total.
	var sum int
	lastSince := ""
	for i, m := range msgs {
		if i%2 == 0 {
			if m != "Number of available senders: 1, sender manager internal queue size: 0" {
				t.Fatalf("line %d: %q", i, m)
			}
			continue
		}
		g := totalsLine.FindStringSubmatch(m)
		if g == nil {
			t.Fatalf("line %d: %q", i, m)
		}
		if g[2] <= lastSince {
			t.Errorf("line %d: window start %s not after %s", i, g[2], lastSince)
		}
		lastSince = g[2]
		n, _ := strconv.Atoi(g[3])
		sum += n
	}
	if sum != 12 {
		t.Errorf("window counts add up to %d, want 12 (lines %q)", sum, msgs)
	}
	for _, r := range buf.records(t) {
		if r["sender_group"] != "standard_senders" {
			t.Fatalf("record without sender_group: %v", r)
		}
	}
}

var totalsLine = regexp.MustCompile(`^Standard - Total number of messages sent: (\d+), messages sent since "([^"]+)": (\d+) \(elapsed \d+\.\d{3} seconds\)$`)

// waitFor polls cond for up to five seconds.
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 5s")
		}
		time.Sleep(5 * time.Millisecond)
	}
}
