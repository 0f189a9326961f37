package sqsengine

import (
	"context"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
)

// maxCallAttempts is how often a delete or return batch is tried before its
// messages are left to reappear (a duplicate, never a loss).
const maxCallAttempts = 5

// maxConcurrentCalls bounds the delete/return calls running at once.
const maxConcurrentCalls = 4

// acker carries out the fate of every settled message: deletes batched up
// to ten and flushed on a short timer, returns batched the same way, poison
// deleted with an ERROR line. It gives the message's slot back when the
// fate has been carried out (or given up on).
type acker struct {
	e     *Engine
	q     Queue
	slots *slots
	ext   *extender
	// order is set for FIFO queues: fates take effect in receive order
	// within a message group (order.go).
	order *groupOrder
	// vis is the run's visibility timeout (Config.visibility).
	vis time.Duration
	// unsettled, when set, counts the messages received whose fate has
	// not reached the acker yet (run.unsettled): at 0 no delete can join
	// the ones held.
	unsettled *atomic.Int64
	// queued, when set, holds the received messages of a standard queue
	// that wait for a worker (run.shared).
	queued chan Message

	stopCh   chan struct{}
	stopOnce sync.Once

	deletes []op
	returns []op
	sem     chan struct{}
	calls   sync.WaitGroup
}

// op is one message's fate waiting for its batch call.
type op struct {
	m      Message
	poison bool
	why    string
	vis    time.Duration // for returns
}

func newAcker(e *Engine, q Queue, s *slots, x *extender, order *groupOrder) *acker {
	return &acker{e: e, q: q, slots: s, ext: x, order: order, stopCh: make(chan struct{}), sem: make(chan struct{}, maxConcurrentCalls)}
}

// flushWhenIdle reports whether the fates held go out now, instead of after
// DeleteFlush: when no other fate is waiting in the channel and holding them
// would only delay them. So it is on FIFO queues: SQS holds a message group
// back until its messages are deleted, so every millisecond a delete waits
// for company is a millisecond the group stands still. On a standard queue
// it is so when no message is left that could join the batch (every message
// received has settled: the end of a burst), or when every in-flight slot is
// taken and no message waits for a worker (the workers are about to run
// dry, and the receive waits for the slots these deletes give back). While
// messages still wait for a worker, a full set of slots costs nothing, and
// the deletes keep batching so that each receive asks for a full ten. Batches
// still form under load: while
// maxConcurrentCalls calls are running, spawn blocks and the fates that
// arrive meanwhile pile up.
func (a *acker) flushWhenIdle(fates <-chan settled) bool {
	if len(fates) > 0 {
		return false
	}
	if a.q.FIFO {
		return true
	}
	if a.unsettled != nil && a.unsettled.Load() == 0 {
		return true
	}
	return a.slots.full() && a.queued != nil && len(a.queued) == 0
}

// stop makes run flush what it holds, without retries, and return.
func (a *acker) stop() { a.stopOnce.Do(func() { close(a.stopCh) }) }

func (a *acker) stopping() bool {
	select {
	case <-a.stopCh:
		return true
	default:
		return false
	}
}

func (a *acker) run(ctx context.Context, fates <-chan settled) {
	flush := time.NewTimer(time.Hour)
	flush.Stop()
	armed := false
	for {
		select {
		case s := <-fates:
			a.take(s)
			if len(a.deletes) >= 10 || len(a.returns) >= 10 {
				a.flush(ctx, false)
			}
			if a.flushWhenIdle(fates) {
				a.flush(ctx, true)
			}
			if !armed && len(a.deletes)+len(a.returns) > 0 {
				flush.Reset(a.e.cfg.DeleteFlush)
				armed = true
			}
		case <-flush.C:
			armed = false
			a.flush(ctx, true)
		case <-a.stopCh:
			flush.Stop()
			// Fates that arrived before the stop are still carried out:
			// those messages are delivered and must not come back.
			for {
				select {
				case s := <-fates:
					a.take(s)
					continue
				default:
				}
				break
			}
			a.flush(ctx, true)
			a.calls.Wait()
			return
		}
	}
}

// take handles a settled message: at once on a standard queue; on a FIFO
// queue when every earlier message of its group has had its fate.
func (a *acker) take(s settled) {
	if s.release {
		a.returns = append(a.returns, op{m: s.m, why: s.why, vis: 0})
		return
	}
	if a.order == nil || s.m.GroupID == "" {
		a.decide(s, nil)
		return
	}
	a.order.settle(s, a.decide)
}

// decide turns a settled message into an op. behind is non-nil when an
// earlier message of its FIFO group stays in the queue: a delivered message
// then goes back too, hidden as long as that one (*behind), so that SQS
// hands the group out again in order. decide reports whether the message
// stays in the queue to be received again, and for how long it is hidden.
func (a *acker) decide(s settled, behind *time.Duration) (stays bool, vis time.Duration) {
	cfg := a.e.cfg
	m := s.m
	if m.GroupID != "" && a.ext != nil {
		// A FIFO message is renewed until its turn comes (order.go).
		a.ext.remove(m.ReceiptHandle)
	}
	if s.ok && behind != nil {
		a.returns = append(a.returns, op{m: m, vis: *behind,
			why: "an earlier message of its FIFO group is back in the queue"})
		return true, *behind
	}
	if s.ok {
		a.deletes = append(a.deletes, op{m: m})
		return false, 0
	}
	if IsPoison(s.err) {
		a.e.logPoisonOnce(m, s.err)
	}
	if max(m.ReceiveCount, 1) < cfg.MaxReceiveCount {
		vis := returnVisibility(cfg.ReturnBackoff, cfg.ReturnBackoffMax, m.ReceiveCount)
		a.returns = append(a.returns, op{m: m, why: s.why, vis: vis})
		return true, vis
	}
	if a.q.DeadLetter {
		// SQS moves it to the dead-letter queue once its receive count
		// passes the redrive policy's; deleting it here would defeat that.
		a.e.counters.Returned.Add(1)
		a.e.log.Warn("sqs message keeps failing, left for the dead-letter queue",
			"message_id", m.ID, "receive_count", m.ReceiveCount, "reason", s.why)
		a.slots.release(1)
		if a.q.DeadLetterMaxReceives > 0 && m.ReceiveCount >= a.q.DeadLetterMaxReceives {
			// SQS moves it at the next receive: it has left its group.
			return false, 0
		}
		// It will be received again (the redrive policy allows more
		// receives than max_receive_count), hidden until then for the
		// rest of its visibility timeout.
		return true, a.vis
	}
	a.deletes = append(a.deletes, op{m: m, poison: true, why: s.why})
	return false, 0
}

// flush sends full batches, and the partial ones too when all is set.
func (a *acker) flush(ctx context.Context, all bool) {
	for len(a.deletes) >= 10 || (all && len(a.deletes) > 0) {
		n := min(len(a.deletes), 10)
		batch := append([]op(nil), a.deletes[:n]...)
		a.deletes = a.deletes[n:]
		a.spawn(ctx, batch, a.deleteBatch)
	}
	for len(a.returns) >= 10 || (all && len(a.returns) > 0) {
		n := min(len(a.returns), 10)
		batch := append([]op(nil), a.returns[:n]...)
		a.returns = a.returns[n:]
		a.spawn(ctx, batch, a.returnBatch)
	}
}

// spawn runs call for ops on its own goroutine, retrying the ops it could
// not settle with backoff, and gives back their slots at the end.
func (a *acker) spawn(ctx context.Context, ops []op, call func(context.Context, []op) []op) {
	a.sem <- struct{}{}
	a.calls.Add(1)
	go func() {
		defer a.calls.Done()
		defer func() { <-a.sem }()
		bo := newBackoff(a.e.cfg.ErrorBackoff, a.e.cfg.ErrorBackoffMax)
		left := ops
		for attempt := 1; ; attempt++ {
			left = call(ctx, left)
			if len(left) == 0 {
				break
			}
			if attempt >= maxCallAttempts || a.stopping() || ctx.Err() != nil {
				for _, o := range left {
					a.e.log.Warn("sqs message fate not carried out, it will be received again",
						"message_id", o.m.ID, "attempts", attempt)
				}
				break
			}
			select {
			case <-time.After(bo.next()):
			case <-a.stopCh:
			case <-ctx.Done():
			}
		}
		a.slots.release(len(ops))
	}()
}

// deleteBatch deletes up to ten messages and returns those to try again.
func (a *acker) deleteBatch(ctx context.Context, ops []op) []op {
	entries := make([]types.DeleteMessageBatchRequestEntry, len(ops))
	for i, o := range ops {
		entries[i] = types.DeleteMessageBatchRequestEntry{Id: ptr(strconv.Itoa(i)), ReceiptHandle: ptr(o.m.ReceiptHandle)}
	}
	callCtx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	out, err := a.e.client.DeleteMessageBatch(callCtx, &sqs.DeleteMessageBatchInput{QueueUrl: &a.q.URL, Entries: entries})
	if err != nil {
		a.e.counters.Errors.Add(1)
		a.e.log.Warn("sqs delete failed", "err", err, "messages", len(ops))
		return ops
	}
	for _, ok := range out.Successful {
		o, found := pick(ops, ok.Id)
		if !found {
			continue
		}
		if o.poison {
			a.e.counters.Poison.Add(1)
			a.e.log.Error("sqs poison message deleted", "message_id", o.m.ID,
				"receive_count", o.m.ReceiveCount, "reason", o.why)
		} else {
			a.e.counters.Deleted.Add(1)
		}
	}
	var retry []op
	for _, f := range out.Failed {
		o, found := pick(ops, f.Id)
		if !found {
			continue
		}
		a.e.counters.Errors.Add(1)
		if f.SenderFault {
			// The receipt handle is no longer valid: the message became
			// visible again and will be delivered again.
			a.e.log.Warn("sqs delete rejected, the message will be received again",
				"message_id", o.m.ID, "code", deref(f.Code), "reason", deref(f.Message))
			continue
		}
		retry = append(retry, o)
	}
	return retry
}

// returnBatch makes up to ten failed messages visible again after their
// backoff, and returns those to try again.
func (a *acker) returnBatch(ctx context.Context, ops []op) []op {
	entries := make([]types.ChangeMessageVisibilityBatchRequestEntry, len(ops))
	for i, o := range ops {
		entries[i] = types.ChangeMessageVisibilityBatchRequestEntry{
			Id:                ptr(strconv.Itoa(i)),
			ReceiptHandle:     ptr(o.m.ReceiptHandle),
			VisibilityTimeout: int32(o.vis / time.Second),
		}
	}
	callCtx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	out, err := a.e.client.ChangeMessageVisibilityBatch(callCtx, &sqs.ChangeMessageVisibilityBatchInput{QueueUrl: &a.q.URL, Entries: entries})
	if err != nil {
		a.e.counters.Errors.Add(1)
		a.e.log.Warn("sqs return to queue failed", "err", err, "messages", len(ops))
		return ops
	}
	for _, ok := range out.Successful {
		if o, found := pick(ops, ok.Id); found {
			a.e.counters.Returned.Add(1)
			a.e.log.Debug("sqs message returned to the queue", "message_id", o.m.ID,
				"receive_count", o.m.ReceiveCount, "visible_in", o.vis, "reason", o.why)
		}
	}
	var retry []op
	for _, f := range out.Failed {
		o, found := pick(ops, f.Id)
		if !found {
			continue
		}
		a.e.counters.Errors.Add(1)
		if f.SenderFault {
			// Already visible again (its visibility lapsed): it will be
			// received again, which is what a return asks for.
			a.e.log.Warn("sqs return rejected, the message is already visible", "message_id", o.m.ID,
				"code", deref(f.Code), "reason", deref(f.Message))
			continue
		}
		retry = append(retry, o)
	}
	return retry
}

func pick(ops []op, id *string) (op, bool) {
	i, err := strconv.Atoi(deref(id))
	if err != nil || i < 0 || i >= len(ops) {
		return op{}, false
	}
	return ops[i], true
}

// logPoisonOnce logs a permanent handler error once per message id.
func (e *Engine) logPoisonOnce(m Message, err error) {
	e.poisonMu.Lock()
	_, seen := e.loggedPoison[m.ID]
	if !seen {
		if len(e.loggedPoison) >= 100_000 {
			clear(e.loggedPoison)
		}
		e.loggedPoison[m.ID] = struct{}{}
	}
	e.poisonMu.Unlock()
	if !seen {
		e.log.Error("sqs message cannot be read, returned to the queue until its receive limit",
			"message_id", m.ID, "receive_count", m.ReceiveCount, "err", err)
	}
}
