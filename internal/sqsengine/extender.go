package sqsengine

import (
	"context"
	"strconv"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"github.com/devo-aws-collector/devo-aws-collector/internal/ctxtime"
)

// extender keeps every message in flight invisible: when half of its
// visibility timeout has passed since it was received or last renewed, it is
// renewed to the full timeout, ten per ChangeMessageVisibilityBatch call. A
// slow output therefore never causes a redelivery. Renewal of a message stops
// when its fate is decided, or when SQS says its receipt handle is no longer
// valid (it was deleted, or it reappeared and was received again).
type extender struct {
	e   *Engine
	q   Queue
	vis time.Duration // renewed to this; renewal comes due at half of it

	mu   sync.Mutex
	msgs map[string]*tracked // by receipt handle
}

type tracked struct {
	id      string
	renewAt time.Time
}

func newExtender(e *Engine, q Queue, vis time.Duration) *extender {
	return &extender{e: e, q: q, vis: vis, msgs: map[string]*tracked{}}
}

func (x *extender) add(m Message, received time.Time) {
	x.mu.Lock()
	x.msgs[m.ReceiptHandle] = &tracked{id: m.ID, renewAt: received.Add(x.vis / 2)}
	x.mu.Unlock()
}

func (x *extender) remove(handle string) {
	x.mu.Lock()
	delete(x.msgs, handle)
	x.mu.Unlock()
}

func (x *extender) run(ctx context.Context) {
	ctxtime.Every(ctx, max(x.vis/8, 250*time.Millisecond), func() { x.renewDue(ctx) })
}

// renewDue renews every message whose renewal time has come.
func (x *extender) renewDue(ctx context.Context) {
	now := time.Now()
	x.mu.Lock()
	var due []string
	for h, tr := range x.msgs {
		if !now.Before(tr.renewAt) {
			due = append(due, h)
		}
	}
	x.mu.Unlock()
	for len(due) > 0 && ctx.Err() == nil {
		n := min(len(due), 10)
		x.renew(ctx, due[:n])
		due = due[n:]
	}
}

func (x *extender) renew(ctx context.Context, handles []string) {
	vis := x.vis
	entries := make([]types.ChangeMessageVisibilityBatchRequestEntry, len(handles))
	for i, h := range handles {
		entries[i] = types.ChangeMessageVisibilityBatchRequestEntry{
			Id:                ptr(strconv.Itoa(i)),
			ReceiptHandle:     ptr(h),
			VisibilityTimeout: int32(vis / time.Second),
		}
	}
	callCtx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	sent := time.Now()
	out, err := x.e.client.ChangeMessageVisibilityBatch(callCtx, &sqs.ChangeMessageVisibilityBatchInput{
		QueueUrl: &x.q.URL,
		Entries:  entries,
	})
	if err != nil {
		if ctx.Err() == nil {
			x.e.counters.Errors.Add(1)
			x.e.log.Warn("sqs visibility renewal failed, retrying", "err", err, "messages", len(handles))
		}
		return
	}
	x.mu.Lock()
	defer x.mu.Unlock()
	for _, ok := range out.Successful {
		if i, err := strconv.Atoi(deref(ok.Id)); err == nil && i < len(handles) {
			if tr := x.msgs[handles[i]]; tr != nil {
				tr.renewAt = sent.Add(vis / 2)
			}
		}
	}
	for _, f := range out.Failed {
		i, err := strconv.Atoi(deref(f.Id))
		if err != nil || i >= len(handles) {
			continue
		}
		x.e.counters.Errors.Add(1)
		tr := x.msgs[handles[i]]
		if tr == nil {
			continue
		}
		if f.SenderFault {
			// ReceiptHandleIsInvalid / MessageNotInflight: the handle is
			// dead and will never renew again.
			delete(x.msgs, handles[i])
			x.e.log.Warn("sqs message visibility lost, it may be delivered again",
				"message_id", tr.id, "code", deref(f.Code), "reason", deref(f.Message))
			continue
		}
		x.e.log.Warn("sqs visibility renewal failed, retrying", "message_id", tr.id, "code", deref(f.Code), "reason", deref(f.Message))
	}
}

// callTimeout bounds one delete or visibility call, so an unreachable
// endpoint cannot hold a message's fate forever.
const callTimeout = 30 * time.Second

func ptr[T any](v T) *T { return &v }
