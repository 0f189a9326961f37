package sqsengine

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"github.com/devo-aws-collector/devo-aws-collector/internal/pipeline"
	"github.com/devo-aws-collector/devo-aws-collector/internal/testutil/pipetest"
)

// fakeClient is an SQS client in memory: receives hand out the messages the
// test queued, deletes and visibility changes are recorded.
type fakeClient struct {
	Client // nil: calling anything not implemented panics

	redrive    string
	receiveErr func(call int) error

	mu        sync.Mutex
	pending   []types.Message
	receives  int
	deletes   [][]string // receipt handles per DeleteMessageBatch call
	changes   []types.ChangeMessageVisibilityBatchRequestEntry
	vanishing map[string]bool // handles whose renewals fail as invalid
}

func (f *fakeClient) queue(rc int, body string) string {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := len(f.pending) + len(f.deletes) + f.receives
	h := fmt.Sprintf("rh-%s-%d", body, n)
	f.pending = append(f.pending, types.Message{
		MessageId:     aws.String("id-" + body),
		Body:          aws.String(body),
		ReceiptHandle: aws.String(h),
		Attributes:    map[string]string{"ApproximateReceiveCount": strconv.Itoa(rc)},
	})
	return h
}

func (f *fakeClient) GetQueueUrl(ctx context.Context, in *sqs.GetQueueUrlInput, _ ...func(*sqs.Options)) (*sqs.GetQueueUrlOutput, error) {
	return &sqs.GetQueueUrlOutput{QueueUrl: aws.String("https://sqs.test/000000000000/" + aws.ToString(in.QueueName))}, nil
}

func (f *fakeClient) GetQueueAttributes(context.Context, *sqs.GetQueueAttributesInput, ...func(*sqs.Options)) (*sqs.GetQueueAttributesOutput, error) {
	a := map[string]string{"VisibilityTimeout": "30"}
	if f.redrive != "" {
		a["RedrivePolicy"] = f.redrive
	}
	return &sqs.GetQueueAttributesOutput{Attributes: a}, nil
}

func (f *fakeClient) ReceiveMessage(ctx context.Context, in *sqs.ReceiveMessageInput, _ ...func(*sqs.Options)) (*sqs.ReceiveMessageOutput, error) {
	f.mu.Lock()
	f.receives++
	call := f.receives
	if f.receiveErr != nil {
		if err := f.receiveErr(call); err != nil {
			f.mu.Unlock()
			return nil, err
		}
	}
	n := min(int(in.MaxNumberOfMessages), len(f.pending))
	msgs := append([]types.Message(nil), f.pending[:n]...)
	f.pending = f.pending[n:]
	f.mu.Unlock()
	if len(msgs) == 0 {
		// A short long poll.
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
	return &sqs.ReceiveMessageOutput{Messages: msgs}, nil
}

func (f *fakeClient) DeleteMessageBatch(_ context.Context, in *sqs.DeleteMessageBatchInput, _ ...func(*sqs.Options)) (*sqs.DeleteMessageBatchOutput, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var hs []string
	out := &sqs.DeleteMessageBatchOutput{}
	for _, e := range in.Entries {
		hs = append(hs, aws.ToString(e.ReceiptHandle))
		out.Successful = append(out.Successful, types.DeleteMessageBatchResultEntry{Id: e.Id})
	}
	f.deletes = append(f.deletes, hs)
	return out, nil
}

func (f *fakeClient) ChangeMessageVisibilityBatch(_ context.Context, in *sqs.ChangeMessageVisibilityBatchInput, _ ...func(*sqs.Options)) (*sqs.ChangeMessageVisibilityBatchOutput, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := &sqs.ChangeMessageVisibilityBatchOutput{}
	for _, e := range in.Entries {
		if f.vanishing[aws.ToString(e.ReceiptHandle)] {
			out.Failed = append(out.Failed, types.BatchResultErrorEntry{Id: e.Id, Code: aws.String("ReceiptHandleIsInvalid"), SenderFault: true})
			continue
		}
		f.changes = append(f.changes, e)
		out.Successful = append(out.Successful, types.ChangeMessageVisibilityBatchResultEntry{Id: e.Id})
	}
	return out, nil
}

func (f *fakeClient) deleted() map[string]int {
	f.mu.Lock()
	defer f.mu.Unlock()
	m := map[string]int{}
	for _, call := range f.deletes {
		for _, h := range call {
			m[h]++
		}
	}
	return m
}

func (f *fakeClient) visibilityChanges() []types.ChangeMessageVisibilityBatchRequestEntry {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]types.ChangeMessageVisibilityBatchRequestEntry(nil), f.changes...)
}

var failAll = HandlerFunc(func(context.Context, Message, *pipeline.Batch, pipeline.Emitter) error {
	return errors.New("object unreadable")
})

func newFakeEngine(t *testing.T, f *fakeClient, h Handler, cfg Config) *Engine {
	t.Helper()
	cfg.Service, cfg.Region, cfg.Queue = "test", "eu-west-1", "q"
	cfg.DeleteFlush = 20 * time.Millisecond
	if cfg.Log == nil {
		cfg.Log, _ = testLogger(t)
	}
	e, err := New(f, h, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func TestFateReturnedWithGrowingBackoff(t *testing.T) {
	f := &fakeClient{}
	h1 := f.queue(1, "first")
	h3 := f.queue(3, "third")
	out, _ := newTestPipeline(t, nil)
	e := newFakeEngine(t, f, failAll, Config{})
	stop, _ := runEngine(t, e, out)
	pipetest.WaitFor(t, 10*time.Second, "two returns", func() bool { return e.Counters().Returned.Load() == 2 })
	stop()

	vis := map[string]int32{}
	for _, c := range f.visibilityChanges() {
		vis[aws.ToString(c.ReceiptHandle)] = c.VisibilityTimeout
	}
	// Default ReturnBackoff 10s, doubling per receive, ±20 % jitter.
	if v := vis[h1]; v < 8 || v > 12 {
		t.Errorf("first failure hidden for %ds, want 8–12", v)
	}
	if v := vis[h3]; v < 32 || v > 48 {
		t.Errorf("third failure hidden for %ds, want 32–48", v)
	}
	if d := f.deleted(); len(d) != 0 {
		t.Errorf("failed messages deleted: %v", d)
	}
}

func TestFatePoisonDeletedAtMaxReceiveCount(t *testing.T) {
	f := &fakeClient{}
	h := f.queue(5, "poison")
	out, _ := newTestPipeline(t, nil)
	log, logs := testLogger(t)
	e := newFakeEngine(t, f, failAll, Config{Log: log})
	stop, _ := runEngine(t, e, out)
	pipetest.WaitFor(t, 10*time.Second, "poison delete", func() bool { return e.Counters().Poison.Load() == 1 })
	stop()
	if d := f.deleted(); d[h] != 1 {
		t.Errorf("poison deletes %v, want %s once", d, h)
	}
	if n := len(f.visibilityChanges()); n != 0 {
		t.Errorf("%d visibility changes for a poison message, want 0", n)
	}
	if e.Counters().Deleted.Load() != 0 {
		t.Errorf("poison counted as a normal delete")
	}
	if !containsAll(logs.String(), "level=ERROR", "sqs poison message deleted", "message_id=id-poison", `reason="object unreadable"`) {
		t.Errorf("no ERROR line naming the message and reason:\n%s", logs.String())
	}
}

func TestFateDeadLetterQueueLeftAlone(t *testing.T) {
	f := &fakeClient{redrive: `{"deadLetterTargetArn":"arn:aws:sqs:eu-west-1:000000000000:dlq","maxReceiveCount":"5"}`}
	f.queue(5, "dlq-bound")
	out, _ := newTestPipeline(t, nil)
	e := newFakeEngine(t, f, failAll, Config{})
	stop, _ := runEngine(t, e, out)
	pipetest.WaitFor(t, 10*time.Second, "message left", func() bool { return e.Counters().Returned.Load() == 1 })
	stop()
	if d := f.deleted(); len(d) != 0 {
		t.Errorf("deleted %v although the queue has a dead-letter queue", d)
	}
	if n := len(f.visibilityChanges()); n != 0 {
		t.Errorf("%d visibility changes, want none: SQS moves the message", n)
	}
	if e.Counters().Poison.Load() != 0 {
		t.Errorf("poison counter moved")
	}
}

func TestFateDeletesBatchedByTen(t *testing.T) {
	f := &fakeClient{}
	var handles []string
	for i := range 25 {
		handles = append(handles, f.queue(1, fmt.Sprintf("ok%02d", i)))
	}
	out, _ := newTestPipeline(t, nil)
	e := newFakeEngine(t, f, emitBody, Config{})
	stop, _ := runEngine(t, e, out)
	pipetest.WaitFor(t, 10*time.Second, "25 deletes", func() bool { return e.Counters().Deleted.Load() == 25 })
	stop()
	d := f.deleted()
	for _, h := range handles {
		if d[h] != 1 {
			t.Errorf("%s deleted %d times, want 1", h, d[h])
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.deletes) > 6 {
		t.Errorf("%d delete calls for 25 messages: deletes are not batched", len(f.deletes))
	}
	for _, call := range f.deletes {
		if len(call) > 10 {
			t.Errorf("delete batch of %d entries, SQS allows 10", len(call))
		}
	}
}

func TestFateHandlerPanicReturnsMessage(t *testing.T) {
	f := &fakeClient{}
	f.queue(1, "boom")
	out, _ := newTestPipeline(t, nil)
	h := HandlerFunc(func(context.Context, Message, *pipeline.Batch, pipeline.Emitter) error { panic("bad parser") })
	e := newFakeEngine(t, f, h, Config{})
	stop, _ := runEngine(t, e, out)
	pipetest.WaitFor(t, 10*time.Second, "return", func() bool { return e.Counters().Returned.Load() == 1 })
	stop()
	if len(f.deleted()) != 0 {
		t.Errorf("message deleted after a handler panic")
	}
}

func TestReceiveErrorsBackOff(t *testing.T) {
	f := &fakeClient{receiveErr: func(int) error { return errors.New("dial tcp: connection refused") }}
	out, _ := newTestPipeline(t, nil)
	e := newFakeEngine(t, f, emitBody, Config{ErrorBackoff: 500 * time.Millisecond})
	stop, _ := runEngine(t, e, out)
	time.Sleep(3 * time.Second)
	stop()
	f.mu.Lock()
	n := f.receives
	f.mu.Unlock()
	// Waits of 0.25–0.5, 0.5–1, 1–2 s…: at most 5 calls in 3 s.
	if n < 2 || n > 5 {
		t.Errorf("%d receives in 3s of errors, want 2–5", n)
	}
	if got := e.Counters().Errors.Load(); got != int64(n) {
		t.Errorf("errors counter %d, want %d", got, n)
	}
}

func TestQueueDeletedWhileRunning(t *testing.T) {
	f := &fakeClient{receiveErr: func(call int) error {
		if call > 1 {
			return &types.QueueDoesNotExist{Message: aws.String("The specified queue does not exist.")}
		}
		return nil
	}}
	e := newFakeEngine(t, f, emitBody, Config{})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err := e.Run(ctx, nil)
	var qe *QueueError
	if !errors.As(err, &qe) || qe.Code != "QueueDoesNotExist" || qe.Region != "eu-west-1" {
		t.Fatalf("Run = %v, want a QueueError for the vanished queue", err)
	}
}

// TestShutdownLeavesUnsettledMessages: a message whose events never settle
// is not deleted; Run returns after the grace period; a settle arriving
// after Run returned is harmless.
func TestShutdownLeavesUnsettledMessages(t *testing.T) {
	f := &fakeClient{}
	f.queue(1, "stuck")
	gate := make(chan struct{})
	out, sink := newTestPipeline(t, func(*pipeline.Event) pipeline.Fate {
		<-gate
		return pipeline.Delivered
	})
	e := newFakeEngine(t, f, emitBody, Config{Grace: 300 * time.Millisecond})
	ctx, cancel := context.WithCancel(context.Background())
	res := make(chan error, 1)
	go func() { res <- e.Run(ctx, out) }()
	pipetest.WaitFor(t, 10*time.Second, "receive", func() bool { return e.Counters().Received.Load() == 1 })
	cancel()
	start := time.Now()
	select {
	case err := <-res:
		if err != nil {
			t.Fatalf("Run = %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("Run did not return after its grace period")
	}
	if d := time.Since(start); d < 250*time.Millisecond {
		t.Errorf("Run returned after %s, before the grace period", d)
	}
	close(gate)
	pipetest.WaitFor(t, 10*time.Second, "late delivery", func() bool { return sink.Count("stuck") == 1 })
	time.Sleep(100 * time.Millisecond)
	if d := f.deleted(); len(d) != 0 {
		t.Errorf("message deleted at or after shutdown: %v", d)
	}
}

func TestRenewalStopsOnInvalidHandle(t *testing.T) {
	f := &fakeClient{}
	h := f.queue(1, "renewed")
	f.vanishing = map[string]bool{h: true}
	gate := make(chan struct{})
	out, _ := newTestPipeline(t, func(*pipeline.Event) pipeline.Fate {
		<-gate
		return pipeline.Delivered
	})
	log, logs := testLogger(t)
	e := newFakeEngine(t, f, emitBody, Config{VisibilityTimeout: 2 * time.Second, Log: log})
	stop, _ := runEngine(t, e, out)
	pipetest.WaitFor(t, 10*time.Second, "visibility lost", func() bool { return containsAll(logs.String(), "sqs message visibility lost") })
	time.Sleep(2 * time.Second)
	close(gate)
	stop()
	if got := strings.Count(logs.String(), "sqs message visibility lost"); got != 1 {
		t.Errorf("renewal tried %d times after ReceiptHandleIsInvalid, want it to stop after 1", got)
	}
}

func TestReturnVisibility(t *testing.T) {
	for _, tc := range []struct {
		base, ceiling time.Duration
		rc            int
		lo, hi        time.Duration
	}{
		{10 * time.Second, 15 * time.Minute, 1, 8 * time.Second, 12 * time.Second},
		{10 * time.Second, 15 * time.Minute, 2, 16 * time.Second, 24 * time.Second},
		{10 * time.Second, 15 * time.Minute, 0, 8 * time.Second, 12 * time.Second},
		{10 * time.Second, time.Minute, 30, 48 * time.Second, 72 * time.Second},
		{time.Millisecond, time.Millisecond, 1, time.Second, time.Second}, // never a hot loop
	} {
		for range 50 {
			if got := returnVisibility(tc.base, tc.ceiling, tc.rc); got < tc.lo || got > tc.hi || got%time.Second != 0 {
				t.Fatalf("returnVisibility(%s, %s, %d) = %s, want whole seconds in [%s, %s]", tc.base, tc.ceiling, tc.rc, got, tc.lo, tc.hi)
			}
		}
	}
}

func TestRedriveMaxReceives(t *testing.T) {
	for in, want := range map[string]int{
		`{"deadLetterTargetArn":"arn:aws:sqs:us-east-1:1:dlq","maxReceiveCount":4}`:   4,
		`{"deadLetterTargetArn":"arn:aws:sqs:us-east-1:1:dlq","maxReceiveCount":"7"}`: 7,
		`{"deadLetterTargetArn":"arn"}`:                                               0,
		`not json`:                                                                    0,
	} {
		if got := redriveMaxReceives(in); got != want {
			t.Errorf("redriveMaxReceives(%s) = %d, want %d", in, got, want)
		}
	}
}

func TestResolveURLUsedDirectly(t *testing.T) {
	f := &fakeClient{}
	q, err := Resolve(context.Background(), f, "svc", "eu-west-1", "https://sqs.eu-west-1.amazonaws.com/123456789012/events.fifo")
	if err != nil {
		t.Fatal(err)
	}
	if q.Name != "events.fifo" || !q.FIFO || q.URL != "https://sqs.eu-west-1.amazonaws.com/123456789012/events.fifo" {
		t.Errorf("Resolve = %+v", q)
	}
}

func containsAll(s string, subs ...string) bool {
	for _, sub := range subs {
		if !strings.Contains(s, sub) {
			return false
		}
	}
	return true
}

// TestRunAgainAfterStop is the lifecycle test: the runner may call Run
// again after it returned; each run works and leaves no goroutine behind.
func TestRunAgainAfterStop(t *testing.T) {
	f := &fakeClient{}
	out, _ := newTestPipeline(t, nil)
	e := newFakeEngine(t, f, emitBody, Config{Workers: 3})
	base := runtime.NumGoroutine()
	for round := 1; round <= 3; round++ {
		f.queue(1, fmt.Sprintf("round%d", round))
		ctx, cancel := context.WithCancel(context.Background())
		res := make(chan error, 1)
		go func() { res <- e.Run(ctx, out) }()
		pipetest.WaitFor(t, 10*time.Second, "delete", func() bool { return e.Counters().Deleted.Load() == int64(round) })
		cancel()
		if err := <-res; err != nil {
			t.Fatalf("round %d: Run = %v", round, err)
		}
	}
	pipetest.WaitFor(t, 5*time.Second, "goroutines to end", func() bool { return runtime.NumGoroutine() <= base })
}
