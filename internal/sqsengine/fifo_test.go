package sqsengine

import (
	"context"
	"fmt"
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

// fifoFake is a FIFO queue in memory that behaves like real SQS where the
// engine's ordering depends on it (and unlike fauxqs): one receive hands out
// several messages of one group, in order; a group is held back while any of
// its messages is in flight; a returned message is hidden for the
// visibility it was given and then received again, with its receive count
// up; a receive that repeats a ReceiveRequestAttemptId gets the same
// messages and receipt handles again. With dlqMax set it has a redrive
// policy: a message received dlqMax times is moved to the dead-letter queue
// instead of being received again.
type fifoFake struct {
	Client // nil: calling anything not implemented panics

	dlqMax int
	// lose, when set, is asked after each receive has handed out its
	// messages whether the response is lost on the way: a non-nil error is
	// returned instead of the messages, which stay in flight.
	lose func(call int) error

	mu       sync.Mutex
	msgs     []*fifoMsg
	handles  int
	calls    []receiveCall
	attempts map[string][]types.Message // attempt id → messages handed out
	deleted  []string                   // bodies, in the order deleted
	dlq      []string                   // bodies moved to the dead-letter queue
	// maxPerGroup is the most messages of one group one receive returned.
	maxPerGroup int
}

type fifoMsg struct {
	body, group string
	handle      string // current receipt handle; "" until received
	rc          int
	visibleAt   time.Time
	gone        bool // deleted or moved to the dead-letter queue
}

type receiveCall struct {
	attemptID string
	at        time.Time
	returned  int
}

func newFIFOFake() *fifoFake {
	return &fifoFake{attempts: map[string][]types.Message{}}
}

// send queues n messages of group named "<group>-00" … with two lines each
// ("<body>-a", "<body>-b").
func (f *fifoFake) send(group string, n int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for i := range n {
		f.msgs = append(f.msgs, &fifoMsg{body: fmt.Sprintf("%s-%02d", group, i), group: group})
	}
}

func (f *fifoFake) GetQueueUrl(ctx context.Context, in *sqs.GetQueueUrlInput, _ ...func(*sqs.Options)) (*sqs.GetQueueUrlOutput, error) {
	return &sqs.GetQueueUrlOutput{QueueUrl: aws.String("https://sqs.test/000000000000/" + aws.ToString(in.QueueName))}, nil
}

func (f *fifoFake) GetQueueAttributes(context.Context, *sqs.GetQueueAttributesInput, ...func(*sqs.Options)) (*sqs.GetQueueAttributesOutput, error) {
	a := map[string]string{"VisibilityTimeout": "30", "FifoQueue": "true"}
	if f.dlqMax > 0 {
		a["RedrivePolicy"] = fmt.Sprintf(`{"deadLetterTargetArn":"arn:aws:sqs:eu-west-1:000000000000:dlq.fifo","maxReceiveCount":%d}`, f.dlqMax)
	}
	return &sqs.GetQueueAttributesOutput{Attributes: a}, nil
}

func (f *fifoFake) ReceiveMessage(ctx context.Context, in *sqs.ReceiveMessageInput, _ ...func(*sqs.Options)) (*sqs.ReceiveMessageOutput, error) {
	f.mu.Lock()
	now := time.Now()
	vis := time.Duration(in.VisibilityTimeout) * time.Second
	id := aws.ToString(in.ReceiveRequestAttemptId)
	var out []types.Message
	if prev, ok := f.attempts[id]; ok && id != "" {
		// The same attempt again: the same messages and handles, their
		// visibility reset.
		for _, pm := range prev {
			for _, m := range f.msgs {
				if !m.gone && m.handle == aws.ToString(pm.ReceiptHandle) {
					m.visibleAt = now.Add(vis)
				}
			}
		}
		out = prev
	} else {
		locked := map[string]bool{}
		for _, m := range f.msgs {
			if !m.gone && m.handle != "" && now.Before(m.visibleAt) {
				locked[m.group] = true
			}
		}
		perGroup := map[string]int{}
		for _, m := range f.msgs {
			if len(out) >= int(in.MaxNumberOfMessages) {
				break
			}
			if m.gone || locked[m.group] {
				continue
			}
			if f.dlqMax > 0 && m.rc >= f.dlqMax {
				m.gone = true
				f.dlq = append(f.dlq, m.body)
				continue
			}
			m.rc++
			f.handles++
			m.handle = fmt.Sprintf("rh-%s-%d", m.body, f.handles)
			m.visibleAt = now.Add(vis)
			perGroup[m.group]++
			f.maxPerGroup = max(f.maxPerGroup, perGroup[m.group])
			out = append(out, types.Message{
				MessageId:     aws.String("id-" + m.body),
				Body:          aws.String(m.body + "-a\n" + m.body + "-b"),
				ReceiptHandle: aws.String(m.handle),
				Attributes: map[string]string{
					"ApproximateReceiveCount": strconv.Itoa(m.rc),
					"MessageGroupId":          m.group,
				},
			})
		}
		if id != "" && len(out) > 0 {
			f.attempts[id] = out
		}
	}
	f.calls = append(f.calls, receiveCall{attemptID: id, at: now, returned: len(out)})
	call := len(f.calls)
	lose := f.lose
	f.mu.Unlock()
	if lose != nil {
		if err := lose(call); err != nil {
			return nil, err
		}
	}
	if len(out) == 0 {
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
	return &sqs.ReceiveMessageOutput{Messages: out}, nil
}

// find returns the message a receipt handle belongs to, if it is still the
// current handle of a message in the queue.
func (f *fifoFake) find(h string) *fifoMsg {
	for _, m := range f.msgs {
		if !m.gone && m.handle == h {
			return m
		}
	}
	return nil
}

func (f *fifoFake) DeleteMessageBatch(_ context.Context, in *sqs.DeleteMessageBatchInput, _ ...func(*sqs.Options)) (*sqs.DeleteMessageBatchOutput, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := &sqs.DeleteMessageBatchOutput{}
	for _, e := range in.Entries {
		m := f.find(aws.ToString(e.ReceiptHandle))
		if m == nil {
			out.Failed = append(out.Failed, types.BatchResultErrorEntry{Id: e.Id, Code: aws.String("ReceiptHandleIsInvalid"), SenderFault: true})
			continue
		}
		m.gone = true
		f.deleted = append(f.deleted, m.body)
		out.Successful = append(out.Successful, types.DeleteMessageBatchResultEntry{Id: e.Id})
	}
	return out, nil
}

func (f *fifoFake) ChangeMessageVisibilityBatch(_ context.Context, in *sqs.ChangeMessageVisibilityBatchInput, _ ...func(*sqs.Options)) (*sqs.ChangeMessageVisibilityBatchOutput, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := &sqs.ChangeMessageVisibilityBatchOutput{}
	for _, e := range in.Entries {
		m := f.find(aws.ToString(e.ReceiptHandle))
		if m == nil {
			out.Failed = append(out.Failed, types.BatchResultErrorEntry{Id: e.Id, Code: aws.String("ReceiptHandleIsInvalid"), SenderFault: true})
			continue
		}
		m.visibleAt = time.Now().Add(time.Duration(e.VisibilityTimeout) * time.Second)
		out.Successful = append(out.Successful, types.ChangeMessageVisibilityBatchResultEntry{Id: e.Id})
	}
	return out, nil
}

// left is the number of messages still in the queue.
func (f *fifoFake) left() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for _, m := range f.msgs {
		if !m.gone {
			n++
		}
	}
	return n
}

func (f *fifoFake) receiveCalls() []receiveCall {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]receiveCall(nil), f.calls...)
}

func newFIFOEngine(t *testing.T, f *fifoFake, h Handler, cfg Config) *Engine {
	t.Helper()
	cfg.Service, cfg.Region, cfg.Queue = "test", "eu-west-1", "q.fifo"
	cfg.DeleteFlush = 20 * time.Millisecond
	if cfg.ReturnBackoff == 0 {
		cfg.ReturnBackoff = time.Millisecond // hidden 1 s, the floor
	}
	if cfg.Log == nil {
		cfg.Log, _ = testLogger(t)
	}
	e, err := New(f, h, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// failFirst returns a sink decision that fails the first delivery of each
// payload in fail, and delivers everything else.
func failFirst(fail ...string) func(ev *pipeline.Event) pipeline.Fate {
	var mu sync.Mutex
	failed := map[string]bool{}
	want := map[string]bool{}
	for _, p := range fail {
		want[p] = true
	}
	return func(ev *pipeline.Event) pipeline.Fate {
		mu.Lock()
		defer mu.Unlock()
		p := string(ev.Payload)
		if want[p] && !failed[p] {
			failed[p] = true
			return pipeline.Failed
		}
		return pipeline.Delivered
	}
}

// lastDeliveryOrder checks, for each group, that the last delivery of every
// payload comes after the last delivery of every payload before it: what an
// output ends up with is the group in order, whatever duplicates came
// before. want lists each group's payloads in order.
func lastDeliveryOrder(t *testing.T, delivered []string, want map[string][]string) {
	t.Helper()
	last := map[string]int{}
	for i, p := range delivered {
		last[p] = i
	}
	for g, ps := range want {
		prev := -1
		for _, p := range ps {
			i, ok := last[p]
			if !ok {
				t.Errorf("group %s: %s never delivered", g, p)
				continue
			}
			if i < prev {
				var seq []string
				for _, d := range delivered {
					if strings.HasPrefix(d, g+"-") {
						seq = append(seq, d)
					}
				}
				t.Errorf("group %s: the last delivery of %s comes before that of an earlier message; deliveries:\n%s", g, p, strings.Join(seq, " "))
				break
			}
			prev = i
		}
	}
}

func groupPayloads(group string, n int) []string {
	var ps []string
	for i := range n {
		ps = append(ps, fmt.Sprintf("%s-%02d-a", group, i), fmt.Sprintf("%s-%02d-b", group, i))
	}
	return ps
}

// TestFIFOFatesInOrderWithinGroup: a receive hands out many messages of a
// group; one of them fails at the output while later ones are delivered.
// The later ones must not be deleted before it: they go back with it, and
// what the output ends up with is each group in order.
func TestFIFOFatesInOrderWithinGroup(t *testing.T) {
	f := newFIFOFake()
	f.send("g1", 10)
	f.send("g2", 10)
	out, sink := newTestPipeline(t, failFirst("g1-03-b", "g2-06-a"))
	e := newFIFOEngine(t, f, emitBody, Config{Workers: 4})
	stop, _ := runEngine(t, e, out)
	pipetest.WaitFor(t, 30*time.Second, "every message deleted", func() bool { return f.left() == 0 })
	stop()

	f.mu.Lock()
	perGroup, deleted := f.maxPerGroup, append([]string(nil), f.deleted...)
	f.mu.Unlock()
	if perGroup < 2 {
		t.Fatalf("the fake never returned two messages of a group in one receive (max %d): the test does not reach the case", perGroup)
	}
	lastDeliveryOrder(t, sink.Payloads(), map[string][]string{"g1": groupPayloads("g1", 10), "g2": groupPayloads("g2", 10)})
	seen := map[string]int{}
	for _, b := range deleted {
		seen[b]++
	}
	for _, g := range []string{"g1", "g2"} {
		for i := range 10 {
			if b := fmt.Sprintf("%s-%02d", g, i); seen[b] != 1 {
				t.Errorf("%s deleted %d times, want once", b, seen[b])
			}
		}
	}
	if e.Counters().Poison.Load() != 0 {
		t.Errorf("poison counter moved")
	}
}

// TestFIFOPoisonDoesNotBlockGroup: a message that always fails, with
// delivered messages behind it, takes its group back to the queue until its
// receive limit; then it is deleted as poison and the group moves on.
func TestFIFOPoisonDoesNotBlockGroup(t *testing.T) {
	f := newFIFOFake()
	f.send("g3", 6)
	out, sink := newTestPipeline(t, func(ev *pipeline.Event) pipeline.Fate {
		if strings.HasPrefix(string(ev.Payload), "g3-01-") {
			return pipeline.Failed
		}
		return pipeline.Delivered
	})
	log, logs := testLogger(t)
	e := newFIFOEngine(t, f, emitBody, Config{MaxReceiveCount: 3, Log: log})
	stop, _ := runEngine(t, e, out)
	pipetest.WaitFor(t, 30*time.Second, "every message deleted", func() bool { return f.left() == 0 })
	stop()

	if got := e.Counters().Poison.Load(); got != 1 {
		t.Errorf("poison counter %d, want 1", got)
	}
	if !containsAll(logs.String(), "sqs poison message deleted", "message_id=id-g3-01", "receive_count=3") {
		t.Errorf("no poison line for g3-01 at its third receive:\n%s", logs.String())
	}
	want := groupPayloads("g3", 6)
	want = append(want[:2], want[4:]...) // g3-01 is never delivered
	lastDeliveryOrder(t, sink.Payloads(), map[string][]string{"g3": want})
	// The messages behind the poison one went back with it twice.
	if n := strings.Count(strings.Join(sink.Payloads(), " "), "g3-05-b"); n != 3 {
		t.Errorf("g3-05 delivered %d times, want 3 (twice returned behind g3-01, then deleted)", n)
	}
}

// TestFIFOLeftForDeadLetterQueueHoldsGroup: a failing message left for the
// dead-letter queue (max_receive_count 2) still comes back while its
// redrive policy allows more receives (3), so the delivered messages behind
// it go back with it. Once SQS will move it at its next receive, they are
// deleted: it has left the group, and only it reaches the dead-letter
// queue.
func TestFIFOLeftForDeadLetterQueueHoldsGroup(t *testing.T) {
	f := newFIFOFake()
	f.dlqMax = 3
	f.send("g4", 4)
	out, sink := newTestPipeline(t, func(ev *pipeline.Event) pipeline.Fate {
		if strings.HasPrefix(string(ev.Payload), "g4-00-") {
			return pipeline.Failed
		}
		return pipeline.Delivered
	})
	e := newFIFOEngine(t, f, emitBody, Config{MaxReceiveCount: 2, VisibilityTimeout: 2 * time.Second})
	stop, _ := runEngine(t, e, out)
	pipetest.WaitFor(t, 30*time.Second, "every message gone", func() bool { return f.left() == 0 })
	stop()

	f.mu.Lock()
	dlq := append([]string(nil), f.dlq...)
	f.mu.Unlock()
	if strings.Join(dlq, ",") != "g4-00" {
		t.Fatalf("dead-letter queue holds %v, want g4-00 alone", dlq)
	}
	want := groupPayloads("g4", 4)[2:]
	lastDeliveryOrder(t, sink.Payloads(), map[string][]string{"g4": want})
	// Received with g4-00 at its receives 1, 2 and 3; deleted after the
	// third, when g4-00 was bound for the dead-letter queue.
	for _, p := range want {
		if n := sink.Count(p); n != 3 {
			t.Errorf("%s delivered %d times, want 3", p, n)
		}
	}
	if e.Counters().Deleted.Load() != 3 || e.Counters().Poison.Load() != 0 {
		t.Errorf("deleted %d, poison %d; want 3 deleted, no poison", e.Counters().Deleted.Load(), e.Counters().Poison.Load())
	}
}

// TestGroupOrderWaitsForEarlier drives the ordering directly: a message
// that settles before an earlier one of its group waits for it, messages of
// other groups do not, and once one stays in the queue the rest follow.
func TestGroupOrderWaitsForEarlier(t *testing.T) {
	o := newGroupOrder()
	msg := func(g, h string) Message { return Message{GroupID: g, ReceiptHandle: h} }
	for _, m := range []Message{msg("a", "a1"), msg("b", "b1"), msg("a", "a2"), msg("a", "a3"), msg("a", "a4")} {
		o.add(m)
	}
	var got []string
	decide := func(s settled, behind *time.Duration) (bool, time.Duration) {
		switch {
		case behind != nil:
			got = append(got, s.m.ReceiptHandle+":behind="+behind.String())
			return true, *behind
		case s.ok:
			got = append(got, s.m.ReceiptHandle+":delete")
			return false, 0
		default:
			got = append(got, s.m.ReceiptHandle+":return")
			return true, 7 * time.Second
		}
	}
	step := func(h string, ok bool, want string) {
		t.Helper()
		got = nil
		o.settle(settled{m: msg(h[:1], h), ok: ok}, decide)
		if strings.Join(got, " ") != want {
			t.Errorf("after %s settled: decided %q, want %q", h, strings.Join(got, " "), want)
		}
	}
	step("a3", true, "")          // waits for a1 and a2
	step("b1", true, "b1:delete") // another group: no wait
	step("a1", true, "a1:delete") // a2 still unsettled: a3 waits
	step("a2", false, "a2:return a3:behind=7s")
	step("a4", true, "a4:behind=7s") // still behind a2
	if n := len(o.groups); n != 0 {
		t.Errorf("%d groups still tracked with nothing in flight", n)
	}
	// With nothing in flight, the group starts afresh.
	o.add(msg("a", "a5"))
	step("a5", true, "a5:delete")
}
