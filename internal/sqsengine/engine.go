package sqsengine

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"

	"github.com/devo-aws-collector/devo-aws-collector/internal/ctxtime"
	"github.com/devo-aws-collector/devo-aws-collector/internal/pipeline"
)

// Config tunes one engine. Zero values take the defaults in brackets; the
// SQS keys of config.md §9 map onto MaxMessages, WaitTime/NoLongPoll and
// VisibilityTimeout, and max_receive_count onto MaxReceiveCount.
type Config struct {
	// Service and Region name the unit in logs and in the B27 error.
	Service string
	Region  string
	// Queue is sqs_queue_name: a name, or a URL starting with https://.
	Queue string

	MaxMessages int // per receive, 1–10 [10]
	// WaitTime is the long-poll wait, up to 20 s [20s]. Zero means the
	// default: to receive without waiting, set NoLongPoll.
	WaitTime time.Duration
	// NoLongPoll makes every receive return at once (WaitTimeSeconds 0),
	// whatever WaitTime says. A receive that finds the queue empty is then
	// followed by IdlePause, so an empty queue is not polled in a hot loop.
	NoLongPoll bool
	// IdlePause is the wait after an empty receive without long polling [1s].
	IdlePause time.Duration
	// VisibilityTimeout is asked for at every receive and renewed to while
	// a message is in flight. Zero means the queue's own VisibilityTimeout
	// attribute (read when the queue is resolved), so that a message held
	// by a process that died reappears when the queue's owner expects it.
	// Either way it is at least 2 s and at most 12 h.
	VisibilityTimeout time.Duration

	Workers     int // handlers running at once [10]
	MaxInFlight int // messages received and not yet given a fate [10 × Workers]

	// MaxReceiveCount: a message that fails when its receive count has
	// reached this is deleted as poison (unless the queue has a
	// dead-letter queue) [5].
	MaxReceiveCount int

	ReturnBackoff    time.Duration // visibility of a message returned after its first failure [10s]
	ReturnBackoffMax time.Duration // cap of that backoff as the receive count grows [15m]
	ErrorBackoff     time.Duration // first wait after a failed SQS call [1s]
	ErrorBackoffMax  time.Duration // cap of that wait [60s]

	// DeleteFlush is how long a settled message may wait for its delete to
	// be batched with others [200ms].
	DeleteFlush time.Duration
	// Grace is how long in-flight messages may take to settle once the
	// context ends [30s].
	Grace time.Duration

	// CycleInterval is how often OnCycle runs [60s].
	CycleInterval time.Duration
	// FirstCycle: a cycle that begins a run, or follows a cycle in which no
	// message arrived, ends FirstCycle after its first messages arrive
	// (when that is before CycleInterval), so the first traffic shows in
	// the log within seconds, not at the end of a minute [5s].
	FirstCycle time.Duration
	// OnCycle, when set, is called every CycleInterval (and once when Run
	// returns) with what happened in that cycle, so a service can log its
	// pull-cycle line. It runs on its own goroutine and must not block.
	OnCycle func(Cycle)

	Log *slog.Logger
}

func (c *Config) defaults() {
	if c.MaxMessages <= 0 || c.MaxMessages > 10 {
		c.MaxMessages = 10
	}
	if c.WaitTime <= 0 {
		c.WaitTime = 20 * time.Second
	}
	c.WaitTime = min(c.WaitTime, 20*time.Second)
	if c.NoLongPoll {
		c.WaitTime = 0
	}
	if c.IdlePause <= 0 {
		c.IdlePause = time.Second
	}
	if c.VisibilityTimeout < 0 {
		c.VisibilityTimeout = 0
	}
	if c.Workers <= 0 {
		c.Workers = 10
	}
	if c.MaxInFlight <= 0 {
		c.MaxInFlight = 10 * c.Workers
	}
	if c.MaxReceiveCount <= 0 {
		c.MaxReceiveCount = 5
	}
	if c.ReturnBackoff <= 0 {
		c.ReturnBackoff = 10 * time.Second
	}
	if c.ReturnBackoffMax <= 0 {
		c.ReturnBackoffMax = 15 * time.Minute
	}
	if c.ErrorBackoff <= 0 {
		c.ErrorBackoff = time.Second
	}
	if c.ErrorBackoffMax <= 0 {
		c.ErrorBackoffMax = time.Minute
	}
	if c.DeleteFlush <= 0 {
		c.DeleteFlush = 200 * time.Millisecond
	}
	if c.Grace <= 0 {
		c.Grace = 30 * time.Second
	}
	if c.CycleInterval <= 0 {
		c.CycleInterval = time.Minute
	}
	if c.FirstCycle <= 0 {
		c.FirstCycle = 5 * time.Second
	}
	if c.Log == nil {
		c.Log = slog.New(slog.DiscardHandler)
	}
}

// defaultQueueVisibility is SQS's own default, used when a queue did not
// report its VisibilityTimeout attribute.
const defaultQueueVisibility = 30 * time.Second

// visibility is the timeout the engine asks for and renews to on queue q:
// Config.VisibilityTimeout when set, else the queue's attribute. SQS counts
// it in whole seconds, up to 12 h; below 2 s the renewal at half the
// timeout could not keep up, so it is raised to 2 s.
func (c *Config) visibility(q Queue) time.Duration {
	v := c.VisibilityTimeout
	if v <= 0 {
		v = q.VisibilityTimeout
		if !q.HasVisibilityTimeout {
			v = defaultQueueVisibility
		}
	}
	return min(max(v.Round(time.Second), 2*time.Second), 12*time.Hour)
}

// longPoll is the long-poll wait on a queue whose messages the engine hides
// for vis: the configured wait, but shorter than the least visibility a held
// message can have left, in whole seconds (at least 1 s). A receive that a
// crashed or killed collector left open goes on at SQS (and in emulators)
// until its wait ends; were it still open when the messages that process
// held reappear, it would take them and hide them — on a FIFO queue, stall
// their group — for a second visibility timeout. The extender renews a
// message at half the timeout, checking every eighth of it, so a held
// message always has at least 3/8 of vis left.
func longPoll(wait, vis time.Duration) time.Duration {
	if wait <= 0 {
		return 0
	}
	return max(min(wait, (vis*3/8-time.Second).Truncate(time.Second)), time.Second)
}

// Counters are the engine's running totals since it was made. Read them
// with Load at any time.
type Counters struct {
	Receives atomic.Int64 // ReceiveMessage calls answered
	Received atomic.Int64 // messages received
	Deleted  atomic.Int64 // messages deleted after all their events were delivered
	Returned atomic.Int64 // messages returned to the queue (or left for its dead-letter queue)
	Poison   atomic.Int64 // messages deleted as poison
	Errors   atomic.Int64 // failed SQS calls and failed entries of batch calls
	// Handled counts the messages given to the handler, and HandleNanos
	// the time the handler took with them (nanoseconds, summed).
	Handled     atomic.Int64
	HandleNanos atomic.Int64
}

// Cycle is what happened between two OnCycle calls.
type Cycle struct {
	Start    time.Time
	Elapsed  time.Duration
	Receives int64
	Received int64
	Deleted  int64
	Returned int64
	Poison   int64
	Errors   int64
	// Handled messages went through the handler in the cycle, taking
	// HandleTime in total (reading, parsing and handing their events to
	// the outputs; not the wait for a worker, nor delivery).
	Handled    int64
	HandleTime time.Duration
	// InFlight is the number of messages received and not yet given a
	// fate at the end of the cycle.
	InFlight int
	// Last is set on the call made when Run returns: no cycle follows.
	Last bool
}

// Engine consumes one queue in one region. It implements pipeline.Source:
// Run may be called again after it returns (the runner restarts units).
type Engine struct {
	cfg     Config
	client  Client
	handler Handler
	log     *slog.Logger

	counters Counters

	// loggedPoison remembers message ids whose permanent error was logged,
	// so a message failing on every receive is logged once.
	poisonMu     sync.Mutex
	loggedPoison map[string]struct{}
}

// New returns an engine for one queue. It does not touch the network.
func New(client Client, handler Handler, cfg Config) (*Engine, error) {
	if client == nil {
		return nil, errors.New("sqsengine: nil client")
	}
	if handler == nil {
		return nil, errors.New("sqsengine: nil handler")
	}
	if cfg.Queue == "" {
		return nil, errors.New("sqsengine: empty queue name")
	}
	cfg.defaults()
	return &Engine{
		cfg:          cfg,
		client:       client,
		handler:      handler,
		log:          cfg.Log.With("queue", cfg.Queue),
		loggedPoison: map[string]struct{}{},
	}, nil
}

// Counters returns the engine's running totals.
func (e *Engine) Counters() *Counters { return &e.counters }

// Run resolves the queue, then receives and hands messages to the handler
// until ctx ends. Then it stops receiving, lets in-flight messages settle
// for the grace period, flushes the deletes of those that did, and returns
// nil. Messages that have not settled are left alone: they reappear after
// their visibility timeout. Run returns an error (a *QueueError) when the
// queue cannot be resolved or disappears.
func (e *Engine) Run(ctx context.Context, out pipeline.Emitter) error {
	q, err := Resolve(ctx, e.client, e.cfg.Service, e.cfg.Region, e.cfg.Queue)
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return err
	}
	r := newRun(e, q, out)
	return r.run(ctx)
}

// run is the state of one Run call.
type run struct {
	e   *Engine
	q   Queue
	out pipeline.Emitter
	log *slog.Logger

	// vis is the visibility timeout asked for at receive and renewed to
	// (Config.visibility).
	vis time.Duration
	// wait is the long-poll wait of every receive: WaitTime, but shorter
	// than what is left of a held message's visibility (see longPoll).
	wait time.Duration

	slots *slots
	// shared takes messages of standard queues; lanes[i] takes the FIFO
	// messages whose group hashes to worker i, so a group is handled in
	// order by one worker.
	shared chan Message
	lanes  []chan Message
	fates  chan settled
	ext    *extender
	acker  *acker
	// order is set on FIFO queues: fates take effect in receive order
	// within a message group.
	order *groupOrder

	// workCtx is what handlers run under: it outlives the Run context by
	// the grace period.
	workCtx    context.Context
	cancelWork context.CancelFunc
	// stopCtx is Run's context: once it ends, messages not yet started
	// are released instead of handled.
	stopCtx context.Context
	// graceCtx ends Grace after Run's context does. The receive in
	// progress at the stop is awaited until then, and so are the messages
	// in flight.
	graceCtx context.Context
	// released counts the messages released at the stop (visibility 0).
	released atomic.Int64
	// unsettled counts the messages received whose fate has not been sent
	// to the acker yet: it goes up before a receive's messages are
	// dispatched and down just before each fate is sent, so the acker sees
	// 0 once the last fate it holds had no successor in sight.
	unsettled atomic.Int64
	// receiveDone is closed when the receive loop has returned: no poll
	// is in progress any more.
	receiveDone chan struct{}
	// arrived is signalled (never blocking) when a receive returns
	// messages, so a cycle may end FirstCycle later.
	arrived chan struct{}
}

// settled is a message whose batch has settled, or (release) one that is
// given back to the queue at once because the engine is stopping.
type settled struct {
	m   Message
	ok  bool
	why string // the failure, when !ok
	err error  // the handler's error, if any
	// release: the message was never handed to the handler (received or
	// queued when the engine stopped). It is made visible again at once
	// (visibility 0), outside the FIFO order bookkeeping: nothing of it
	// reached an output, and SQS still holds its group back while an
	// earlier message of the group is in flight.
	release bool
}

func newRun(e *Engine, q Queue, out pipeline.Emitter) *run {
	cfg := e.cfg
	r := &run{
		e:      e,
		q:      q,
		out:    out,
		log:    e.log,
		slots:  newSlots(cfg.MaxInFlight),
		shared: make(chan Message, cfg.MaxInFlight),
		// Every message holds a slot until its fate is carried out, so no
		// channel sized MaxInFlight can ever be full.
		fates:       make(chan settled, cfg.MaxInFlight),
		receiveDone: make(chan struct{}),
		arrived:     make(chan struct{}, 1),
	}
	r.lanes = make([]chan Message, cfg.Workers)
	for i := range r.lanes {
		r.lanes[i] = make(chan Message, cfg.MaxInFlight)
	}
	r.vis = cfg.visibility(q)
	r.wait = longPoll(cfg.WaitTime, r.vis)
	r.ext = newExtender(e, q, r.vis)
	if q.FIFO {
		r.order = newGroupOrder()
	}
	r.acker = newAcker(e, q, r.slots, r.ext, r.order)
	r.acker.vis = r.vis
	r.acker.unsettled = &r.unsettled
	r.acker.queued = r.shared
	return r
}

func (r *run) run(ctx context.Context) error {
	cfg := r.e.cfg
	r.stopCtx = ctx
	r.workCtx, r.cancelWork = context.WithCancel(context.WithoutCancel(ctx))
	defer r.cancelWork()
	graceCtx, endGrace := context.WithCancel(context.WithoutCancel(ctx))
	defer endGrace()
	r.graceCtx = graceCtx
	graceTimer := make(chan *time.Timer, 1)
	stopWatch := context.AfterFunc(ctx, func() { graceTimer <- time.AfterFunc(cfg.Grace, endGrace) })
	defer func() {
		if !stopWatch() {
			// ctx ended: the grace timer exists (or is about to).
			if t := <-graceTimer; t != nil {
				t.Stop()
			}
		}
	}()

	// SQS calls that carry out fates and renew visibility go on during the
	// grace period, so they run under their own context.
	bg, stopBG := context.WithCancel(context.WithoutCancel(ctx))
	defer stopBG()

	var bgWG sync.WaitGroup
	bgWG.Add(2)
	ackerDone := make(chan struct{})
	go func() {
		defer bgWG.Done()
		defer close(ackerDone)
		r.acker.run(bg, r.fates)
	}()
	go func() {
		defer bgWG.Done()
		r.ext.run(bg)
	}()
	cycleStop := make(chan struct{})
	cycleDone := make(chan struct{})
	go func() {
		defer close(cycleDone)
		r.cycles(cycleStop)
	}()

	var workers sync.WaitGroup
	for i := range cfg.Workers {
		workers.Add(1)
		go func() {
			defer workers.Done()
			r.worker(r.lanes[i])
		}()
	}

	r.log.Info("sqs consumer started", "url", r.q.URL, "fifo", r.q.FIFO, "dead_letter_queue", r.q.DeadLetter,
		"workers", cfg.Workers, "max_in_flight", cfg.MaxInFlight, "visibility_timeout", r.vis, "wait_time", r.wait, "queue_visibility_timeout", r.q.VisibilityTimeout)
	fatal := r.receive(ctx)
	close(r.receiveDone)
	if ctx.Err() == nil {
		// The queue is gone (fatal): the grace period starts now.
		t := time.AfterFunc(cfg.Grace, endGrace)
		defer t.Stop()
	}

	// Shutdown: no more receives. Queued messages that no worker started
	// are released at once; started ones may settle until the grace period
	// ends.
	close(r.shared)
	for _, l := range r.lanes {
		close(l)
	}
	if n := r.slots.used(); n > 0 {
		r.log.Info("sqs consumer stopping, waiting for messages in flight", "messages", n, "grace", cfg.Grace)
	}
	settledAll := r.slots.waitEmpty(graceCtx)
	r.cancelWork()
	workers.Wait()
	if !settledAll {
		r.log.Warn("messages still in flight at shutdown, left to reappear after their visibility timeout",
			"messages", r.slots.used(), "visibility_timeout", r.vis)
	}
	// The acker flushes what it holds (deletes of delivered messages)
	// before it returns; the extender stops renewing at once.
	r.acker.stop()
	<-ackerDone
	if r.order != nil {
		if n := r.order.held(); n > 0 {
			r.log.Warn("settled FIFO messages left behind an unsettled earlier message of their group, they will be received again",
				"messages", n)
		}
	}
	if n := r.released.Load(); n > 0 {
		r.log.Info("sqs messages not started at shutdown released to the queue", "messages", n)
	}
	stopBG()
	bgWG.Wait()
	close(cycleStop)
	<-cycleDone
	return fatal
}

// receive long-polls until ctx ends or the queue disappears.
//
// On a FIFO queue every receive carries a new ReceiveRequestAttemptId. When
// a receive fails in a way that may have lost SQS's answer on the wire (the
// request could not be sent, or its response could not be read), SQS may
// have handed out messages the engine never saw; they would stay hidden for
// the visibility timeout and hold their groups back. So the receive is
// retried at once with the same attempt id and size: SQS then returns the
// same messages and receipt handles. Should that fail too, the usual
// backoff runs, and the attempt id is kept until a receive is answered.
// A standard queue has no such id: its lost messages reappear after their
// visibility timeout.
func (r *run) receive(ctx context.Context) error {
	cfg := r.e.cfg
	c := &r.e.counters
	bo := newBackoff(cfg.ErrorBackoff, cfg.ErrorBackoffMax)
	attrs := []types.MessageSystemAttributeName{
		types.MessageSystemAttributeNameApproximateReceiveCount,
		types.MessageSystemAttributeNameMessageGroupId,
		types.MessageSystemAttributeNameSentTimestamp,
	}
	// retry is a FIFO receive whose answer may have been lost; it holds
	// its slots until it is answered or its attempt id is too old to help.
	var retry *lostReceive
	defer func() {
		if retry != nil {
			r.slots.release(retry.n)
		}
	}()
	for ctx.Err() == nil {
		if retry != nil && time.Since(retry.since) >= min(attemptIDLifetime, r.vis) {
			// SQS no longer honours the id, or the messages are visible
			// again and a new receive gets them.
			r.slots.release(retry.n)
			retry = nil
		}
		var n int
		var attemptID string
		if retry != nil {
			n, attemptID = retry.n, retry.id
		} else {
			var err error
			if n, err = r.slots.acquireUpTo(ctx, cfg.MaxMessages); err != nil {
				return nil
			}
			if r.q.FIFO {
				attemptID = rand.Text()
			}
		}
		in := &sqs.ReceiveMessageInput{
			QueueUrl:                    &r.q.URL,
			MaxNumberOfMessages:         int32(n),
			WaitTimeSeconds:             int32(r.wait / time.Second),
			VisibilityTimeout:           int32(r.vis / time.Second),
			MessageSystemAttributeNames: attrs,
			MessageAttributeNames:       []string{"All"},
		}
		if attemptID != "" {
			in.ReceiveRequestAttemptId = &attemptID
		}
		// The long poll is not cut short by the stop: SQS may already have
		// handed out messages to a poll the engine abandons, and those would
		// stay hidden for the visibility timeout (holding a FIFO group back
		// that long). It is awaited, at most until the grace period ends,
		// and what it returns is released at once.
		asked := time.Now()
		out, err := r.e.client.ReceiveMessage(r.graceCtx, in, noRetry)
		if err != nil {
			if ctx.Err() != nil {
				if retry == nil {
					r.slots.release(n)
				}
				return nil
			}
			c.Errors.Add(1)
			if queueGone(err) {
				if retry == nil {
					r.slots.release(n)
				}
				return queueError(r.e.cfg.Queue, r.e.cfg.Service, r.e.cfg.Region, err)
			}
			if retry == nil {
				if attemptID != "" && answerMayBeLost(err) {
					retry = &lostReceive{id: attemptID, n: n, since: time.Now()}
					r.log.Warn("sqs receive answer lost, retrying at once with the same attempt id",
						"err", err, "receive_request_attempt_id", attemptID)
					continue
				}
				r.slots.release(n)
			}
			wait := bo.next()
			if retry != nil {
				r.log.Warn("sqs receive failed, backing off, then retrying with the same attempt id", "err", err,
					"backoff", wait.Round(time.Millisecond), "receive_request_attempt_id", attemptID)
			} else {
				r.log.Warn("sqs receive failed, backing off", "err", err, "backoff", wait.Round(time.Millisecond))
			}
			if !ctxtime.Sleep(ctx, wait) {
				return nil
			}
			continue
		}
		retry = nil
		bo.reset()
		c.Receives.Add(1)
		got := time.Now()
		r.slots.release(n - len(out.Messages))
		// One line per receive, never per message: with --debug an
		// operator sees each poll, what it brought and how long it waited.
		r.log.Debug("sqs receive answered", "messages", len(out.Messages), "asked_for", n,
			"took", got.Sub(asked).Round(time.Millisecond), "in_flight", r.slots.used())
		if len(out.Messages) > 0 {
			select {
			case r.arrived <- struct{}{}:
			default:
			}
		}
		r.unsettled.Add(int64(len(out.Messages)))
		if ctx.Err() != nil {
			// Answered after the stop: nothing of it was started.
			for _, sm := range out.Messages {
				c.Received.Add(1)
				r.releaseMessage(newMessage(sm))
			}
			return nil
		}
		msgs := make([]Message, len(out.Messages))
		for i, sm := range out.Messages {
			m := newMessage(sm)
			msgs[i] = m
			c.Received.Add(1)
			// Renewal starts now, not when a worker takes the message:
			// a message waiting for a busy worker is in flight too.
			r.ext.add(m, got)
			// The whole receive is in its groups' order before any of it
			// can settle.
			if r.ordered(m) {
				r.order.add(m)
			}
		}
		for _, m := range msgs {
			r.dispatch(m)
		}
		if len(msgs) == 0 && r.wait == 0 && !ctxtime.Sleep(ctx, cfg.IdlePause) {
			return nil
		}
	}
	return nil
}

// attemptIDLifetime is how long SQS deduplicates receives by their
// ReceiveRequestAttemptId.
const attemptIDLifetime = 5 * time.Minute

// lostReceive is a FIFO receive whose answer may have been lost.
type lostReceive struct {
	id    string
	n     int // slots it holds, and the MaxNumberOfMessages it asked for
	since time.Time
}

// answerMayBeLost reports whether a failed receive may have been carried
// out by SQS without its answer reaching the engine: the request could not
// be sent (or its answer not awaited), or the answer could not be read,
// such as "deserialization failed … use of closed network connection". An
// error SQS answered with (throttling, access denied) handed nothing out.
func answerMayBeLost(err error) bool {
	var de *smithy.DeserializationError
	var se *smithyhttp.RequestSendError
	return errors.As(err, &de) || errors.As(err, &se)
}

// noRetry turns the SDK's own retries off for receives: the engine backs
// off itself, and SDK retries would multiply the requests of an outage.
func noRetry(o *sqs.Options) { o.RetryMaxAttempts = 1 }

func (r *run) dispatch(m Message) {
	if m.GroupID == "" {
		r.shared <- m
		return
	}
	h := fnv.New32a()
	h.Write([]byte(m.GroupID))
	r.lanes[h.Sum32()%uint32(len(r.lanes))] <- m
}

// ordered reports whether m's fate must wait for the earlier messages of
// its FIFO group.
func (r *run) ordered(m Message) bool { return r.order != nil && m.GroupID != "" }

func (r *run) worker(lane chan Message) {
	shared := r.shared
	for lane != nil || shared != nil {
		select {
		case m, ok := <-lane:
			if !ok {
				lane = nil
				continue
			}
			r.handle(m)
		case m, ok := <-shared:
			if !ok {
				shared = nil
				continue
			}
			r.handle(m)
		}
	}
}

// handle runs the handler for one message. Its fate is decided when the
// batch settles, not here: the worker moves on at once.
func (r *run) handle(m Message) {
	if r.stopCtx.Err() != nil {
		// Stopping: a message no handler has started goes back to the
		// queue at once, for the next process to take. Once the poll in
		// progress has returned: released earlier, the poll would only
		// take it again. It stays renewed meanwhile.
		<-r.receiveDone
		r.ext.remove(m.ReceiptHandle)
		r.releaseMessage(m)
		return
	}
	var herr error
	b := pipeline.NewBatch(func(res pipeline.Result) {
		s := settled{m: m, ok: res.OK() && herr == nil, err: herr}
		switch {
		case herr != nil:
			s.why = herr.Error()
		case !res.OK():
			s.why = fmt.Sprintf("%d of %d event deliveries failed", res.Failed, res.Failed+res.Delivered)
		}
		if !r.ordered(m) {
			// A FIFO message is renewed until its fate is decided, which
			// may wait for an earlier message of its group.
			r.ext.remove(m.ReceiptHandle)
		}
		// Never blocks: one entry per slot, and the channel has a place
		// for every slot. After Run has returned nobody reads it, and the
		// message reappears after its visibility timeout.
		r.unsettled.Add(-1)
		r.fates <- s
	})
	began := time.Now()
	herr = r.callHandler(m, b)
	c := &r.e.counters
	c.HandleNanos.Add(int64(time.Since(began)))
	c.Handled.Add(1)
	b.Close()
}

// releaseMessage gives m back to the queue at once (visibility 0) through
// the acker, which also gives its slot back.
func (r *run) releaseMessage(m Message) {
	r.released.Add(1)
	r.unsettled.Add(-1)
	// Never blocks: m holds a slot (see handle).
	r.fates <- settled{m: m, release: true, why: "not started when the consumer stopped"}
}

func (r *run) callHandler(m Message, b *pipeline.Batch) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("handler panic: %v\n%s", p, debug.Stack())
		}
	}()
	return r.e.handler.Handle(r.workCtx, m, b, r.out)
}

// cycles calls OnCycle every CycleInterval, and once more when stop is
// closed. A cycle that starts the run or follows one without messages ends
// FirstCycle after its first messages arrive, so they show at once.
func (r *run) cycles(stop <-chan struct{}) {
	cfg := r.e.cfg
	c := &r.e.counters
	load := func() [8]int64 {
		return [8]int64{c.Receives.Load(), c.Received.Load(), c.Deleted.Load(), c.Returned.Load(),
			c.Poison.Load(), c.Errors.Load(), c.Handled.Load(), c.HandleNanos.Load()}
	}
	interval := time.NewTimer(cfg.CycleInterval)
	defer interval.Stop()
	var early *time.Timer
	var earlyC <-chan time.Time
	stopEarly := func() {
		if early != nil {
			early.Stop()
			early, earlyC = nil, nil
		}
	}
	defer stopEarly()
	// eager: this cycle ends soon after its first messages.
	eager := true
	start := time.Now()
	// The first totals are those at the start of this run.
	last := load()
	report := func(final bool) {
		now := time.Now()
		cur := load()
		if cfg.OnCycle != nil {
			cfg.OnCycle(Cycle{
				Start: start, Elapsed: now.Sub(start),
				Receives: cur[0] - last[0], Received: cur[1] - last[1], Deleted: cur[2] - last[2],
				Returned: cur[3] - last[3], Poison: cur[4] - last[4], Errors: cur[5] - last[5],
				Handled: cur[6] - last[6], HandleTime: time.Duration(cur[7] - last[7]),
				InFlight: r.slots.used(), Last: final,
			})
		}
		eager = cur[1] == last[1]
		last, start = cur, now
		stopEarly()
		interval.Reset(cfg.CycleInterval)
	}
	for {
		select {
		case <-r.arrived:
			if eager && early == nil && cfg.FirstCycle < cfg.CycleInterval-time.Since(start) {
				early = time.NewTimer(cfg.FirstCycle)
				earlyC = early.C
			}
		case <-earlyC:
			report(false)
		case <-interval.C:
			report(false)
		case <-stop:
			report(true)
			return
		}
	}
}
