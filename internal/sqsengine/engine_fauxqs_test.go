package sqsengine

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"github.com/devo-aws-collector/devo-aws-collector/internal/awstest/fauxqs"
	"github.com/devo-aws-collector/devo-aws-collector/internal/pipeline"
	"github.com/devo-aws-collector/devo-aws-collector/internal/testutil/pipetest"
)

// One emulator for the package; each test uses its own queues.
var emu *fauxqs.Server

func TestMain(m *testing.M) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	s, err := fauxqs.StartProcess(ctx)
	cancel()
	if err != nil {
		fmt.Fprintln(os.Stderr, "sqsengine tests: cannot start fauxqs:", err)
		os.Exit(1)
	}
	emu = s
	code := m.Run()
	s.Stop()
	os.Exit(code)
}

var dedupSeq atomic.Int64

func sendBodies(t *testing.T, c *sqs.Client, url string, bodies []string, group string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	for i := 0; i < len(bodies); i += 10 {
		var entries []types.SendMessageBatchRequestEntry
		for j := i; j < min(i+10, len(bodies)); j++ {
			e := types.SendMessageBatchRequestEntry{Id: aws.String(strconv.Itoa(j)), MessageBody: aws.String(bodies[j])}
			if group != "" {
				e.MessageGroupId = aws.String(group)
				// Unique per send: the emulator outlives one run of a test
				// (go test -count=N), and FIFO deduplicates for 5 minutes.
				e.MessageDeduplicationId = aws.String(fmt.Sprintf("%s-%d-%d", group, j, dedupSeq.Add(1)))
			}
			entries = append(entries, e)
		}
		out, err := c.SendMessageBatch(ctx, &sqs.SendMessageBatchInput{QueueUrl: &url, Entries: entries})
		if err != nil {
			t.Fatal(err)
		}
		if len(out.Failed) > 0 {
			t.Fatalf("send failed: %+v", out.Failed)
		}
	}
}

// recordingClient is the real SDK client, watched: it remembers which
// message each receipt handle belongs to and, at every delete, checks with
// onDelete that the message may be deleted.
type recordingClient struct {
	*sqs.Client
	onDelete func(body string)

	mu      sync.Mutex
	bodies  map[string]string // receipt handle → body
	deletes map[string]int    // body → deletes sent
}

func newRecordingClient(c *sqs.Client, onDelete func(body string)) *recordingClient {
	return &recordingClient{Client: c, onDelete: onDelete, bodies: map[string]string{}, deletes: map[string]int{}}
}

func (r *recordingClient) ReceiveMessage(ctx context.Context, in *sqs.ReceiveMessageInput, optFns ...func(*sqs.Options)) (*sqs.ReceiveMessageOutput, error) {
	out, err := r.Client.ReceiveMessage(ctx, in, optFns...)
	if err == nil {
		r.mu.Lock()
		for _, m := range out.Messages {
			r.bodies[aws.ToString(m.ReceiptHandle)] = aws.ToString(m.Body)
		}
		r.mu.Unlock()
	}
	return out, err
}

func (r *recordingClient) DeleteMessageBatch(ctx context.Context, in *sqs.DeleteMessageBatchInput, optFns ...func(*sqs.Options)) (*sqs.DeleteMessageBatchOutput, error) {
	r.mu.Lock()
	for _, e := range in.Entries {
		body := r.bodies[aws.ToString(e.ReceiptHandle)]
		r.deletes[body]++
		if r.onDelete != nil {
			r.onDelete(body)
		}
	}
	r.mu.Unlock()
	return r.Client.DeleteMessageBatch(ctx, in, optFns...)
}

func TestThousandMessagesTenWorkers(t *testing.T) {
	c := emu.SQS()
	url := emu.MustCreateQueue(t, "thousand", nil)
	const n = 1000
	bodies := make([]string, n)
	for i := range bodies {
		bodies[i] = fmt.Sprintf("m%04d-a\nm%04d-b\nm%04d-c", i, i, i)
	}
	sendBodies(t, c, url, bodies, "")

	out, sink := newTestPipeline(t, nil)
	var early []string
	rc := newRecordingClient(c, func(body string) {
		// Deleting before every event of the message was delivered would
		// lose data if the collector stopped now.
		for _, line := range strings.Split(body, "\n") {
			if sink.Count(line) == 0 {
				early = append(early, line)
			}
		}
	})
	log, _ := testLogger(t)
	e, err := New(rc, emitBody, Config{Service: "test", Region: fauxqs.Region, Queue: "thousand",
		Workers: 10, VisibilityTimeout: 60 * time.Second, WaitTime: time.Second, Log: log})
	if err != nil {
		t.Fatal(err)
	}
	stop, _ := runEngine(t, e, out)
	pipetest.WaitFor(t, 3*time.Minute, "1000 deletes", func() bool { return e.Counters().Deleted.Load() == n })
	stop()

	rc.mu.Lock()
	defer rc.mu.Unlock()
	if len(early) > 0 {
		t.Fatalf("%d events were not delivered when their message was deleted, e.g. %q", len(early), early[0])
	}
	for _, b := range bodies {
		if rc.deletes[b] != 1 {
			t.Errorf("message %q deleted %d times, want 1", b[:5], rc.deletes[b])
		}
		for _, line := range strings.Split(b, "\n") {
			if got := sink.Count(line); got != 1 {
				t.Errorf("event %q delivered %d times, want 1", line, got)
			}
		}
	}
	cs := e.Counters()
	if cs.Received.Load() != n || cs.Returned.Load() != 0 || cs.Poison.Load() != 0 || cs.Errors.Load() != 0 {
		t.Errorf("counters received=%d returned=%d poison=%d errors=%d, want %d/0/0/0",
			cs.Received.Load(), cs.Returned.Load(), cs.Poison.Load(), cs.Errors.Load(), n)
	}
	if v, f := fauxqs.MustQueueCounts(t, c, url); v != 0 || f != 0 {
		t.Errorf("queue still holds %d visible and %d in-flight messages", v, f)
	}
}

// TestAcksAreAsynchronous holds every event fate until more messages have
// been handled than there are workers: an engine whose workers waited for
// their message to settle would never get there.
func TestAcksAreAsynchronous(t *testing.T) {
	c := emu.SQS()
	url := emu.MustCreateQueue(t, "async-acks", nil)
	bodies := make([]string, 40)
	for i := range bodies {
		bodies[i] = fmt.Sprintf("async-%02d", i)
	}
	sendBodies(t, c, url, bodies, "")

	gate := make(chan struct{})
	out, _ := newTestPipeline(t, func(ev *pipeline.Event) pipeline.Fate {
		<-gate
		return pipeline.Delivered
	})
	var handled sync.Map
	var count int
	var mu sync.Mutex
	h := HandlerFunc(func(ctx context.Context, m Message, b *pipeline.Batch, out pipeline.Emitter) error {
		handled.Store(m.ID, true)
		mu.Lock()
		count++
		if count == 30 {
			close(gate)
		}
		mu.Unlock()
		return emitBody(ctx, m, b, out)
	})
	e, err := New(c, h, Config{Service: "test", Region: fauxqs.Region, Queue: url, Workers: 2, MaxInFlight: 40,
		WaitTime: time.Second, VisibilityTimeout: 60 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	stop, _ := runEngine(t, e, out)
	pipetest.WaitFor(t, 2*time.Minute, "40 deletes", func() bool { return e.Counters().Deleted.Load() == 40 })
	stop()
}

func TestFailedEventsComeBack(t *testing.T) {
	c := emu.SQS()
	url := emu.MustCreateQueue(t, "comeback", nil)
	sendBodies(t, c, url, []string{"fails-once\nfine", "always-fine"}, "")

	var mu sync.Mutex
	failed := false
	out, sink := newTestPipeline(t, func(ev *pipeline.Event) pipeline.Fate {
		mu.Lock()
		defer mu.Unlock()
		if string(ev.Payload) == "fails-once" && !failed {
			failed = true
			return pipeline.Failed
		}
		return pipeline.Delivered
	})
	var receives sync.Map
	h := HandlerFunc(func(ctx context.Context, m Message, b *pipeline.Batch, out pipeline.Emitter) error {
		receives.Store(m.Body, m.ReceiveCount)
		return emitBody(ctx, m, b, out)
	})
	e, err := New(c, h, Config{Service: "test", Region: fauxqs.Region, Queue: "comeback", WaitTime: time.Second,
		ReturnBackoff: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	stop, _ := runEngine(t, e, out)
	pipetest.WaitFor(t, time.Minute, "both messages deleted", func() bool { return e.Counters().Deleted.Load() == 2 })
	stop()

	if got := sink.Count("fails-once"); got != 1 {
		t.Errorf("failed event delivered %d times, want 1 (on the later receive)", got)
	}
	// The other event of the returned message is delivered twice: at least
	// once delivery, the price of not losing the failed one.
	if got := sink.Count("fine"); got != 2 {
		t.Errorf("sibling event delivered %d times, want 2", got)
	}
	if rc, _ := receives.Load("fails-once\nfine"); rc != 2 {
		t.Errorf("failed message last seen with receive count %v, want 2", rc)
	}
	if got := e.Counters().Returned.Load(); got != 1 {
		t.Errorf("returned = %d, want 1", got)
	}
	if v, f := fauxqs.MustQueueCounts(t, c, url); v != 0 || f != 0 {
		t.Errorf("queue still holds %d visible and %d in-flight messages", v, f)
	}
}

func TestPoisonDeletedAfterMaxReceiveCount(t *testing.T) {
	c := emu.SQS()
	url := emu.MustCreateQueue(t, "poison", nil)
	sendBodies(t, c, url, []string{"not json", "good"}, "")

	out, sink := newTestPipeline(t, nil)
	var calls sync.Map
	h := HandlerFunc(func(ctx context.Context, m Message, b *pipeline.Batch, out pipeline.Emitter) error {
		n, _ := calls.LoadOrStore(m.Body, new(int))
		*n.(*int)++
		if m.Body == "not json" {
			return Poison(fmt.Errorf("parse body: invalid character 'o'"))
		}
		return emitBody(ctx, m, b, out)
	})
	log, logs := testLogger(t)
	e, err := New(c, h, Config{Service: "test", Region: fauxqs.Region, Queue: "poison", WaitTime: time.Second,
		MaxReceiveCount: 3, ReturnBackoff: time.Second, Log: log})
	if err != nil {
		t.Fatal(err)
	}
	stop, _ := runEngine(t, e, out)
	pipetest.WaitFor(t, time.Minute, "poison deleted", func() bool { return e.Counters().Poison.Load() == 1 })
	pipetest.WaitFor(t, time.Minute, "good deleted", func() bool { return e.Counters().Deleted.Load() == 1 })
	stop()

	if n, _ := calls.Load("not json"); *n.(*int) != 3 {
		t.Errorf("poison message handled %d times, want 3 (max_receive_count)", *n.(*int))
	}
	if got := e.Counters().Poison.Load(); got != 1 {
		t.Errorf("poison counter = %d, want 1", got)
	}
	if got := e.Counters().Returned.Load(); got != 2 {
		t.Errorf("returned = %d, want 2", got)
	}
	if sink.Count("good") != 1 {
		t.Errorf("good message's event delivered %d times, want 1", sink.Count("good"))
	}
	text := logs.String()
	var poisonLine string
	for _, l := range strings.Split(text, "\n") {
		if strings.Contains(l, "sqs poison message deleted") {
			poisonLine = l
		}
	}
	if !strings.Contains(poisonLine, "level=ERROR") || !strings.Contains(poisonLine, "message_id=") ||
		!strings.Contains(poisonLine, "invalid character") {
		t.Errorf("poison line %q: want an ERROR naming the message id and reason", poisonLine)
	}
	if got := strings.Count(text, "sqs message cannot be read"); got != 1 {
		t.Errorf("permanent error logged %d times, want once per message id", got)
	}
	if v, f := fauxqs.MustQueueCounts(t, c, url); v != 0 || f != 0 {
		t.Errorf("queue still holds %d visible and %d in-flight messages", v, f)
	}
}

// TestPoisonLeftForDeadLetterQueue: with a RedrivePolicy the engine never
// deletes a failing message; SQS moves it to the dead-letter queue.
func TestPoisonLeftForDeadLetterQueue(t *testing.T) {
	c := emu.SQS()
	dlqURL := emu.MustCreateQueue(t, "redrive-dlq", nil)
	attrs, err := c.GetQueueAttributes(context.Background(), &sqs.GetQueueAttributesInput{
		QueueUrl: &dlqURL, AttributeNames: []types.QueueAttributeName{types.QueueAttributeNameQueueArn}})
	if err != nil {
		t.Fatal(err)
	}
	arn := attrs.Attributes[string(types.QueueAttributeNameQueueArn)]
	url := emu.MustCreateQueue(t, "redrive-src", map[string]string{
		"RedrivePolicy": fmt.Sprintf(`{"deadLetterTargetArn":%q,"maxReceiveCount":2}`, arn),
	})
	sendBodies(t, c, url, []string{"bad"}, "")

	out, _ := newTestPipeline(t, nil)
	h := HandlerFunc(func(ctx context.Context, m Message, b *pipeline.Batch, out pipeline.Emitter) error {
		return Poison(fmt.Errorf("unknown shape"))
	})
	e, err := New(c, h, Config{Service: "test", Region: fauxqs.Region, Queue: "redrive-src", WaitTime: time.Second,
		MaxReceiveCount: 2, ReturnBackoff: time.Second, VisibilityTimeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	stop, _ := runEngine(t, e, out)
	pipetest.WaitFor(t, time.Minute, "message in the dead-letter queue", func() bool {
		v, _ := fauxqs.MustQueueCounts(t, c, dlqURL)
		return v == 1
	})
	stop()
	if got := e.Counters().Poison.Load(); got != 0 {
		t.Errorf("poison deletes = %d, want 0 with a dead-letter queue", got)
	}
}

func TestVisibilityExtendedWhileHeld(t *testing.T) {
	c := emu.SQS()
	url := emu.MustCreateQueue(t, "held", nil)
	sendBodies(t, c, url, []string{"slow"}, "")

	out, sink := newTestPipeline(t, nil)
	sink.Delay = 6 * time.Second
	e, err := New(c, emitBody, Config{Service: "test", Region: fauxqs.Region, Queue: "held", WaitTime: time.Second,
		VisibilityTimeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	stop, _ := runEngine(t, e, out)
	pipetest.WaitFor(t, time.Minute, "deleted", func() bool { return e.Counters().Deleted.Load() == 1 })
	stop()
	if got := e.Counters().Received.Load(); got != 1 {
		t.Errorf("received %d times while held 6s with a 2s visibility timeout, want 1", got)
	}
	if got := sink.Count("slow"); got != 1 {
		t.Errorf("delivered %d times, want 1", got)
	}
}

func TestMissingQueue(t *testing.T) {
	c := emu.SQS()
	_, err := Resolve(context.Background(), c, "service-events-all", "us-east-1", "no-such-queue")
	want := `Queue "no-such-queue" used by service "service-events-all" in "us-east-1" region is not available: reason: AWS.SimpleQueueService.NonExistentQueue: The specified queue does not exist.`
	if err == nil || err.Error() != want {
		t.Fatalf("Resolve error\n got: %v\nwant: %s", err, want)
	}
	qe, ok := err.(*QueueError)
	if !ok || qe.Kind() != "AwsQueueException" || qe.ID() != 0 {
		t.Fatalf("error %T, want *QueueError AwsQueueException/0", err)
	}

	// Run reports the same error, so the runner logs it and retries.
	e, err := New(c, emitBody, Config{Service: "service-events-all", Region: "us-east-1", Queue: "no-such-queue"})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Run(context.Background(), nil); err == nil || err.Error() != want {
		t.Fatalf("Run error %v, want %s", err, want)
	}
}

func TestOutageMakesFewRequests(t *testing.T) {
	fw := newForwarder(t, strings.TrimPrefix(emu.URL, "http://"))
	ct := &countingTransport{next: http.DefaultTransport.(*http.Transport).Clone()}
	c := emu.SQS(func(o *sqs.Options) {
		o.BaseEndpoint = aws.String("http://" + fw.addr)
		o.HTTPClient = &http.Client{Transport: ct}
		o.RetryMaxAttempts = 3 // the SDK default: the engine must not multiply it
	})
	emu.MustCreateQueue(t, "outage", nil)
	out, sink := newTestPipeline(t, nil)
	e, err := New(c, emitBody, Config{Service: "test", Region: fauxqs.Region, Queue: "outage", WaitTime: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	runEngine(t, e, out)
	pipetest.WaitFor(t, 30*time.Second, "first receive", func() bool { return e.Counters().Receives.Load() >= 1 })

	fw.cut()
	before := ct.n.Load()
	time.Sleep(5 * time.Second)
	during := ct.n.Load() - before
	if during > 6 {
		t.Errorf("%d requests during a 5s outage, want a handful (<= 6)", during)
	}
	if during < 1 {
		t.Errorf("no request during the outage: the engine stopped trying")
	}
	t.Logf("%d requests during the 5s outage", during)

	// The engine comes back by itself.
	fw.restore(t)
	sendBodies(t, emu.SQS(), emuQueueURL(t, "outage"), []string{"after-outage"}, "")
	pipetest.WaitFor(t, time.Minute, "delivery after the outage", func() bool { return sink.Count("after-outage") == 1 })
	pipetest.WaitFor(t, 30*time.Second, "delete after the outage", func() bool { return e.Counters().Deleted.Load() == 1 })
}

func emuQueueURL(t *testing.T, name string) string {
	t.Helper()
	out, err := emu.SQS().GetQueueUrl(context.Background(), &sqs.GetQueueUrlInput{QueueName: &name})
	if err != nil {
		t.Fatal(err)
	}
	return aws.ToString(out.QueueUrl)
}

func TestFIFOOrderWithinGroup(t *testing.T) {
	c := emu.SQS()
	// A fresh queue per run: a receive cut short when the previous run
	// stopped may still hold a message of a group in flight on the emulator.
	name := fmt.Sprintf("ordered-%d.fifo", dedupSeq.Add(1))
	url := emu.MustCreateQueue(t, name, map[string]string{"FifoQueue": "true"})
	groups := []string{"g1", "g2", "g3"}
	const per = 15
	for _, g := range groups {
		var bodies []string
		for i := range per {
			bodies = append(bodies, fmt.Sprintf("%s-%02d-a\n%s-%02d-b", g, i, g, i))
		}
		sendBodies(t, c, url, bodies, g)
	}
	out, sink := newTestPipeline(t, nil)
	var mu sync.Mutex
	emitted := map[string][]string{}
	h := HandlerFunc(func(ctx context.Context, m Message, b *pipeline.Batch, out pipeline.Emitter) error {
		if m.GroupID == "" {
			return fmt.Errorf("message %s has no group id", m.ID)
		}
		mu.Lock()
		emitted[m.GroupID] = append(emitted[m.GroupID], m.Body)
		mu.Unlock()
		return emitBody(ctx, m, b, out)
	})
	e, err := New(c, h, Config{Service: "test", Region: fauxqs.Region, Queue: name, WaitTime: time.Second, Workers: 4})
	if err != nil {
		t.Fatal(err)
	}
	stop, _ := runEngine(t, e, out)
	pipetest.WaitFor(t, 2*time.Minute, "all deleted", func() bool { return e.Counters().Deleted.Load() == int64(len(groups)*per) })
	stop()

	delivered := map[string][]string{}
	for _, p := range sink.Payloads() {
		delivered[p[:2]] = append(delivered[p[:2]], p)
	}
	for _, g := range groups {
		var want []string
		for i := range per {
			want = append(want, fmt.Sprintf("%s-%02d-a", g, i), fmt.Sprintf("%s-%02d-b", g, i))
		}
		if got := delivered[g]; strings.Join(got, ",") != strings.Join(want, ",") {
			t.Errorf("group %s delivered out of order:\n got %v\nwant %v", g, got, want)
		}
		if len(emitted[g]) != per {
			t.Errorf("group %s: %d messages handled, want %d", g, len(emitted[g]), per)
		}
	}
}
