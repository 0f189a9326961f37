package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"github.com/devo-aws-collector/devo-aws-collector/internal/testutil/rsyslog"
)

// devoGroup is the message group Devo's EventBridge set-up puts every event
// of a region in.
const devoGroup = "devo-collector"

// fifoAttrs are the attributes of the FIFO queues of these tests: a 20 s
// visibility timeout, as the scenario has.
var fifoAttrs = map[string]string{"FifoQueue": "true", "ContentBasedDeduplication": "true", "VisibilityTimeout": "20"}

var (
	benchBinOnce sync.Once
	benchBin     string
	benchBinErr  error
)

// productBin is the collector built as it ships (no -race), for
// benchmarks: the race detector would measure itself. It lives next to
// collectorBin, so TestMain removes it.
func productBin(b *testing.B) string {
	benchBinOnce.Do(func() {
		bin := filepath.Join(filepath.Dir(collectorBin), "devo-aws-collector-norace")
		build := exec.Command("go", "build", "-o", bin, "../../cmd/devo-aws-collector")
		build.Stdout, build.Stderr = os.Stdout, os.Stderr
		if benchBinErr = build.Run(); benchBinErr == nil {
			benchBin = bin
		}
	})
	if benchBinErr != nil {
		b.Fatalf("build collector: %v", benchBinErr)
	}
	return benchBin
}

// fillGroup sends n EventBridge events to the FIFO queue url, all in group,
// in order (batches of ten keep their order within a group).
func (e *env) fillGroup(url, group string, n int) {
	e.t.Helper()
	for i := 0; i < n; i += 10 {
		var entries []types.SendMessageBatchRequestEntry
		for j := i; j < min(i+10, n); j++ {
			entries = append(entries, types.SendMessageBatchRequestEntry{
				Id:             aws.String(fmt.Sprint(j)),
				MessageBody:    aws.String(eventBody(j, group)),
				MessageGroupId: aws.String(group),
			})
		}
		out, err := e.sqs.SendMessageBatch(context.Background(), &sqs.SendMessageBatchInput{QueueUrl: aws.String(url), Entries: entries})
		if err != nil {
			e.t.Fatal(err)
		}
		if len(out.Failed) > 0 {
			e.t.Fatalf("send batch: %d failed: %s", len(out.Failed), aws.ToString(out.Failed[0].Message))
		}
	}
}

// plainDrain is the reference consumer of the issue: 10 workers, each
// receiving up to 10 messages with a 1 s long poll and deleting each one at
// once. It returns how long it took to delete n messages.
func plainDrain(tb testing.TB, c *sqs.Client, url string, n int) time.Duration {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	var done atomic.Int64
	var end atomic.Int64
	start := time.Now()
	var wg sync.WaitGroup
	for range 10 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for done.Load() < int64(n) && ctx.Err() == nil {
				out, err := c.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{QueueUrl: aws.String(url), MaxNumberOfMessages: 10, WaitTimeSeconds: 1})
				if err != nil {
					if ctx.Err() == nil {
						tb.Errorf("plain receive: %v", err)
					}
					return
				}
				for _, m := range out.Messages {
					if _, err := c.DeleteMessage(ctx, &sqs.DeleteMessageInput{QueueUrl: aws.String(url), ReceiptHandle: m.ReceiptHandle}); err != nil {
						tb.Errorf("plain delete: %v", err)
						return
					}
					if done.Add(1) == int64(n) {
						end.Store(int64(time.Since(start)))
					}
				}
			}
		}()
	}
	wg.Wait()
	if done.Load() < int64(n) {
		tb.Fatalf("plain loop deleted %d of %d messages", done.Load(), n)
	}
	return time.Duration(end.Load())
}

// drainRate polls the queue until it is empty and returns its drain rate
// in messages per second, from the first message gone to the last.
func (e *env) drainRate(url string, n int, limit time.Duration) float64 {
	e.t.Helper()
	deadline := time.Now().Add(limit)
	var t0 time.Time
	left0 := 0
	for {
		left := e.pending(url)
		now := time.Now()
		if t0.IsZero() && left < n {
			t0, left0 = now, left
		}
		if left == 0 {
			if now.Equal(t0) {
				e.t.Fatal("queue drained between two polls: no rate")
			}
			return float64(left0) / now.Sub(t0).Seconds()
		}
		if now.After(deadline) {
			e.t.Fatalf("queue not drained after %v: %d of %d messages left", limit, left, n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// firstArrivals returns the sequence numbers of the events at rsyslog in
// the order each first arrived.
func firstArrivals(tb testing.TB, msgs []rsyslog.Message) []int {
	tb.Helper()
	var seqs []int
	seen := map[int]bool{}
	for _, m := range dataMessages(msgs) {
		var ev struct{ Detail struct{ Seq int } }
		if err := json.Unmarshal([]byte(m.Payload()), &ev); err != nil {
			tb.Fatalf("payload %q: %v", m.Payload(), err)
		}
		if !seen[ev.Detail.Seq] {
			seen[ev.Detail.Seq] = true
			seqs = append(seqs, ev.Detail.Seq)
		}
	}
	return seqs
}

// checkGroupOrder checks that events 0..n-1 all arrived and that their
// first arrivals are in order.
func checkGroupOrder(tb testing.TB, msgs []rsyslog.Message, n int) {
	tb.Helper()
	seqs := firstArrivals(tb, msgs)
	if len(seqs) != n {
		tb.Errorf("%d distinct events arrived, want %d", len(seqs), n)
	}
	for i, s := range seqs {
		if s != i {
			tb.Errorf("first arrival #%d is event %d, want %d (group order broken)", i, s, i)
			return
		}
	}
}

// BenchmarkFIFOGroup drains one FIFO message group of 2,000 EventBridge
// events (Devo's set-up: every event in group "devo-collector") twice on
// the same emulator: with the plain SDK loop of plainDrain, and with the
// collector (built without -race) running service-events-all with its
// default settings and the Devo output into rsyslog. It reports both rates
// and their ratio; the target is a ratio of at least 0.25. Run it with
//
//	FAUXQS_DIR=... go test -run '^$' -bench BenchmarkFIFOGroup -benchtime 1x ./internal/e2e/
//
// (each iteration drains 2,000 messages each way; -benchtime Nx averages N).
func BenchmarkFIFOGroup(b *testing.B) {
	const n = 2000
	bin := productBin(b)
	e := newEnv(b)
	var plain, coll float64
	for i := range b.N {
		b.StopTimer()
		pq := e.queue(fmt.Sprintf("bench-plain-%d.fifo", i), fifoAttrs)
		e.fillGroup(pq, devoGroup, n)
		b.StartTimer()
		plain += float64(n) / plainDrain(b, e.sqs, pq, n).Seconds()

		rs := rsyslog.Start(b, rsyslog.Options{Certs: e.cert})
		cq := e.queue(fmt.Sprintf("bench-collector-%d.fifo", i), fifoAttrs)
		b.StopTimer()
		e.fillGroup(cq, devoGroup, n)
		b.StartTimer()
		cfg := e.writeConfig("", e.devoOutput(rs.TLSPort, e.cert.ClientCert, e.cert.ClientKey, ""),
			fmt.Sprintf("      service-events-all: {sqs_queue_name: bench-collector-%d.fifo}\n", i))
		p := e.startBin(bin, cfg)
		coll += e.drainRate(cq, n, 5*time.Minute)
		b.StopTimer()
		eventually(b, time.Minute, "all events at rsyslog", func() bool { return len(firstArrivals(b, rs.Messages())) >= n })
		terminate(b, p)
		checkGroupOrder(b, rs.Messages(), n)
		rs.Stop()
		b.StartTimer()
	}
	plain /= float64(b.N)
	coll /= float64(b.N)
	b.ReportMetric(plain, "plain_msgs/s")
	b.ReportMetric(coll, "collector_msgs/s")
	b.ReportMetric(coll/plain, "ratio")
}
