package sqsengine

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"
	"github.com/devo-aws-collector/devo-aws-collector/internal/testutil/pipetest"
)

// lostResponse is what the SDK returns when the connection closes while the
// response body is read: SQS has handed the messages out, the engine never
// sees them.
func lostResponse() error {
	return &smithy.OperationError{ServiceID: "SQS", OperationName: "ReceiveMessage",
		Err: &smithy.DeserializationError{Err: errors.New("failed to decode response body, read tcp 127.0.0.1:50012->127.0.0.1:4566: use of closed network connection")}}
}

// TestFIFOLostReceiveRetriedWithSameAttemptID: the first receive hands out
// messages and its response is lost. The engine retries at once with the
// same ReceiveRequestAttemptId, gets the same messages back, and handles
// them, instead of leaving them hidden for the visibility timeout (300 s
// here) and the group stalled.
func TestFIFOLostReceiveRetriedWithSameAttemptID(t *testing.T) {
	f := newFIFOFake()
	f.send("g5", 5)
	f.lose = func(call int) error {
		if call == 1 {
			return lostResponse()
		}
		return nil
	}
	out, sink := newTestPipeline(t, nil)
	// A long error backoff: only a prompt retry can meet the deadline.
	e := newFIFOEngine(t, f, emitBody, Config{ErrorBackoff: time.Minute})
	stop, _ := runEngine(t, e, out)
	pipetest.WaitFor(t, 10*time.Second, "every message deleted", func() bool { return f.left() == 0 })
	stop()

	calls := f.receiveCalls()
	if len(calls) < 3 {
		t.Fatalf("%d receives, want the lost one, its retry and a new one", len(calls))
	}
	if calls[0].attemptID == "" || calls[0].returned != 5 {
		t.Fatalf("first receive: attempt id %q, %d messages handed out; want an id and 5", calls[0].attemptID, calls[0].returned)
	}
	if calls[1].attemptID != calls[0].attemptID {
		t.Errorf("retry carries attempt id %q, want the lost receive's %q", calls[1].attemptID, calls[0].attemptID)
	}
	if d := calls[1].at.Sub(calls[0].at); d > 2*time.Second {
		t.Errorf("retried after %s, want promptly", d)
	}
	seen := map[string]bool{calls[0].attemptID: true}
	for i, c := range calls[2:] {
		if c.attemptID == "" || seen[c.attemptID] {
			t.Errorf("receive %d carries attempt id %q, want a new one", i+3, c.attemptID)
		}
		seen[c.attemptID] = true
	}
	lastDeliveryOrder(t, sink.Payloads(), map[string][]string{"g5": groupPayloads("g5", 5)})
	for _, p := range groupPayloads("g5", 5) {
		if n := sink.Count(p); n != 1 {
			t.Errorf("%s delivered %d times, want once", p, n)
		}
	}
	if got := e.Counters().Errors.Load(); got != 1 {
		t.Errorf("errors counter %d, want 1", got)
	}
}

// TestFIFOLostReceiveKeepsAttemptIDThroughBackoff: when the retry fails
// too, the engine backs off as usual but keeps the attempt id until a
// receive is answered; only then does it take a new one.
func TestFIFOLostReceiveKeepsAttemptIDThroughBackoff(t *testing.T) {
	f := newFIFOFake()
	f.send("g6", 3)
	f.lose = func(call int) error {
		switch call {
		case 1:
			return lostResponse()
		case 2:
			return &smithy.OperationError{ServiceID: "SQS", OperationName: "ReceiveMessage",
				Err: &smithyhttp.RequestSendError{Err: errors.New("dial tcp 127.0.0.1:4566: connect: connection refused")}}
		case 3:
			return &smithy.GenericAPIError{Code: "ThrottlingException", Message: "Rate exceeded"}
		}
		return nil
	}
	out, sink := newTestPipeline(t, nil)
	e := newFIFOEngine(t, f, emitBody, Config{ErrorBackoff: 200 * time.Millisecond})
	stop, _ := runEngine(t, e, out)
	pipetest.WaitFor(t, 10*time.Second, "every message deleted", func() bool { return f.left() == 0 })
	stop()

	calls := f.receiveCalls()
	if len(calls) < 5 {
		t.Fatalf("%d receives, want at least 5", len(calls))
	}
	for i := 1; i < 4; i++ {
		if calls[i].attemptID != calls[0].attemptID {
			t.Errorf("receive %d carries attempt id %q, want the lost receive's %q", i+1, calls[i].attemptID, calls[0].attemptID)
		}
	}
	if calls[4].attemptID == calls[0].attemptID {
		t.Errorf("the receive after the answered one reuses attempt id %q", calls[4].attemptID)
	}
	// Only the first retry is prompt; after that the usual backoff runs
	// (waits drawn from [100, 200) ms, then [200, 400) ms).
	if d := calls[3].at.Sub(calls[1].at); d < 300*time.Millisecond {
		t.Errorf("second and third retries %s after the first, want the error backoff", d)
	}
	for _, p := range groupPayloads("g6", 3) {
		if n := sink.Count(p); n != 1 {
			t.Errorf("%s delivered %d times, want once", p, n)
		}
	}
}

// TestStandardReceiveHasNoAttemptID: attempt ids are for FIFO queues only,
// and a lost response on a standard queue is followed by the usual
// backoff: nothing can bring those messages back before their visibility
// timeout.
func TestStandardReceiveHasNoAttemptID(t *testing.T) {
	var mu sync.Mutex
	var ids []string
	var at []time.Time
	f := &fakeClient{receiveErr: func(call int) error {
		if call == 1 {
			return lostResponse()
		}
		return nil
	}}
	c := &attemptRecorder{fakeClient: f, record: func(in *sqs.ReceiveMessageInput) {
		mu.Lock()
		ids = append(ids, aws.ToString(in.ReceiveRequestAttemptId))
		at = append(at, time.Now())
		mu.Unlock()
	}}
	f.queue(1, "standard")
	out, sink := newTestPipeline(t, nil)
	e, err := New(c, emitBody, Config{Service: "test", Region: "eu-west-1", Queue: "q", ErrorBackoff: 800 * time.Millisecond,
		DeleteFlush: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	stop, _ := runEngine(t, e, out)
	pipetest.WaitFor(t, 10*time.Second, "delivery", func() bool { return sink.Count("standard") == 1 })
	stop()
	mu.Lock()
	defer mu.Unlock()
	for i, id := range ids {
		if id != "" {
			t.Errorf("standard receive %d carries attempt id %q", i+1, id)
		}
	}
	if d := at[1].Sub(at[0]); d < 400*time.Millisecond {
		t.Errorf("standard queue retried %s after a lost response, want the error backoff (>= 400ms)", d)
	}
}

// attemptRecorder sees every receive input before the fake client does.
type attemptRecorder struct {
	*fakeClient
	record func(*sqs.ReceiveMessageInput)
}

func (a *attemptRecorder) ReceiveMessage(ctx context.Context, in *sqs.ReceiveMessageInput, o ...func(*sqs.Options)) (*sqs.ReceiveMessageOutput, error) {
	a.record(in)
	return a.fakeClient.ReceiveMessage(ctx, in, o...)
}
