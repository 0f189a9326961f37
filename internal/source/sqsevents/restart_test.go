package sqsevents

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"testing"
	"time"

	"github.com/devo-aws-collector/devo-aws-collector/internal/awstest/fauxqs"
	"github.com/devo-aws-collector/devo-aws-collector/internal/pipeline"
	"github.com/devo-aws-collector/devo-aws-collector/internal/testutil/pipetest"
)

// TestRestartLosesNothingFauxqs stops the pipeline while messages are in
// flight at an output that has not settled them, then runs the same source
// again behind a new pipeline: every event arrives at least once, nothing
// was deleted before it was delivered, and the undelivered messages came
// back to the queue.
func TestRestartLosesNothingFauxqs(t *testing.T) {
	for _, fifo := range []bool{false, true} {
		t.Run(fmt.Sprintf("fifo=%v", fifo), func(t *testing.T) {
			const n, first = 60, 20
			name := "events-restart"
			var group func(int) string
			if fifo {
				name += ".fifo"
				group = func(i int) string { return fmt.Sprintf("g%d", i%6) }
			}
			// A short visibility timeout, so the messages left in flight at
			// shutdown come back within seconds.
			f := newFixture(t, "service-events-all", name, "        sqs_visibility_timeout: 2\n", nil)
			bodies := make([]string, n)
			for i := range bodies {
				bodies[i] = envelope(sources[i%len(sources)], i)
			}
			sendBodies(t, emu.SQS(), f.url, bodies, group)

			// First run: the output delivers the first 20 events and holds
			// every later one unsettled, like a connection whose settle
			// window never closes.
			rec1 := pipetest.NewRecorder()
			taken := 0
			rec1.Hold = func(*pipeline.Event) bool { taken++; return taken > first }
			run1 := pipetest.Run(t, rec1, pipeline.Unit{Name: "test", Source: f.src})
			pipetest.WaitFor(t, time.Minute, "20 events delivered and more held", func() bool {
				return len(rec1.Delivered()) == first && rec1.HeldCount() > 0 &&
					f.src.Engine().Counters().Deleted.Load() == first
			})
			held := rec1.HeldCount()
			run1.Shutdown(t)

			deleted := f.src.Engine().Counters().Deleted.Load()
			if deleted != first {
				t.Fatalf("first run deleted %d messages, but only %d events were delivered", deleted, first)
			}
			// The held messages were not deleted: the queue still holds
			// exactly the undelivered ones, and their visibility ends within
			// the timeout (nobody renews it any more), so they come back.
			left := inspect(t, f.src.svc.QueueName)
			delivered1 := map[int]bool{}
			for _, ev := range rec1.Delivered() {
				delivered1[decode(t, ev.Payload).Detail.Seq] = true
			}
			if len(left.bodies) != n-first {
				t.Fatalf("queue holds %d messages after the first run, want %d", len(left.bodies), n-first)
			}
			for _, b := range left.bodies {
				if seq := decode(t, b).Detail.Seq; delivered1[seq] {
					t.Errorf("seq %d was delivered but is still in the queue", seq)
				}
			}
			if limit := time.Now().Add(3 * time.Second); left.lastDeadline.After(limit) {
				t.Errorf("in-flight messages stay hidden until %v, past the 2 s visibility timeout", left.lastDeadline)
			}

			// Second run, same source, an output that delivers everything.
			rec2 := pipetest.NewRecorder()
			run2 := pipetest.Run(t, rec2, pipeline.Unit{Name: "test", Source: f.src})
			pipetest.WaitFor(t, time.Minute, "every message deleted", func() bool {
				return f.src.Engine().Counters().Deleted.Load() >= n
			})
			run2.Shutdown(t)

			got := map[int]int{}
			for _, ev := range rec1.Delivered() {
				got[decode(t, ev.Payload).Detail.Seq]++
			}
			firstRun := len(got)
			for _, ev := range rec2.Delivered() {
				seq := decode(t, ev.Payload).Detail.Seq
				if got[seq] > 0 {
					t.Errorf("seq %d, delivered and deleted in the first run, came back", seq)
				}
				got[seq]++
			}
			for i := range n {
				if got[i] == 0 {
					t.Errorf("seq %d lost", i)
				}
			}
			if firstRun != first || len(rec2.Delivered()) != n-first {
				t.Errorf("first run delivered %d, second %d; want %d and %d (held %d at shutdown)",
					firstRun, len(rec2.Delivered()), first, n-first, held)
			}
			if v, fl := fauxqs.MustQueueCounts(t, emu.SQS(), f.url); v != 0 || fl != 0 {
				t.Errorf("queue holds %d visible, %d in flight", v, fl)
			}
			if fifo {
				// Order within each group holds across the restart, per run.
				for _, rec := range []*pipetest.Recorder{rec1, rec2} {
					last := map[string]int{}
					for _, ev := range rec.Delivered() {
						seq := decode(t, ev.Payload).Detail.Seq
						g := group(seq)
						if l, ok := last[g]; ok && seq < l {
							t.Errorf("group %s: seq %d after %d", g, seq, l)
						}
						last[g] = seq
					}
				}
			}
		})
	}
}

// queueContents is what fauxqs holds for a queue, read without receiving.
type queueContents struct {
	bodies       []string  // ready and in-flight messages
	lastDeadline time.Time // the latest visibility deadline of the in-flight ones
}

// inspect reads a queue through the emulator's non-destructive inspection
// endpoint (a receive would change receive counts and visibility).
func inspect(t *testing.T, queue string) queueContents {
	t.Helper()
	resp, err := http.Get(emu.URL + "/_fauxqs/queues/" + url.PathEscape(queue))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var doc struct {
		Messages struct {
			Ready    []struct{ Body string } `json:"ready"`
			Delayed  []struct{ Body string } `json:"delayed"`
			Inflight []struct {
				Message            struct{ Body string } `json:"message"`
				VisibilityDeadline int64                 `json:"visibilityDeadline"`
			} `json:"inflight"`
		} `json:"messages"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&doc); err != nil {
		t.Fatalf("inspect %s: %v", queue, err)
	}
	var c queueContents
	for _, m := range doc.Messages.Ready {
		c.bodies = append(c.bodies, m.Body)
	}
	for _, m := range doc.Messages.Delayed {
		c.bodies = append(c.bodies, m.Body)
	}
	for _, m := range doc.Messages.Inflight {
		c.bodies = append(c.bodies, m.Message.Body)
		if d := time.UnixMilli(m.VisibilityDeadline); d.After(c.lastDeadline) {
			c.lastDeadline = d
		}
	}
	return c
}
