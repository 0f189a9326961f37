package devo

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/devo-aws-collector/devo-aws-collector/internal/ctxtime"
	"github.com/devo-aws-collector/devo-aws-collector/internal/pipeline"
)

// durable is the disk side of one output: the spool (events the output
// could not send) and the write-ahead journal (events that ask for it,
// those of FIFO SQS messages). The connection workers see it only through
// take, replaying/replayChan and the lane (and pool) it feeds.
//
// Its contract:
//
//   - Order. The spool only ever holds events older than anything queued,
//     so while a spool replay runs take returns nothing; the workers send
//     the replay's chunks (from the pool) first. The journal holds the
//     WriteAhead events in the order they left the queue and is sent in
//     that order; it runs beside the queue (journaled events need no order
//     against the others).
//   - Fate. An event appended to the spool or the journal is settled
//     Delivered once the append (fsync'd) returned. A chunk is removed from
//     the spool or the journal only once every event of it was delivered
//     over the network; what is not stays stored for the next run.
//   - Outage. While no connection works and the queue has stayed full for
//     SpoolAfter, events move from the queue to the spool (WriteAhead ones
//     to the journal), so sources keep moving; once the output is up again
//     a replay sends them. With the queue closed and the output down, stop
//     ends the run at once so that finish spools what is left.
//   - Refusal. A journal that refuses an append (full, disk error) leaves
//     the events to be sent like any other, logged once a minute; a spool
//     that refuses hands them to the workers.
//
// One mutex, mu, orders the three things that must not interleave: taking
// from the queue, spooling from it, and a replay starting or ending.
type durable struct {
	spool      Spool   // nil: no spool
	journal    Journal // nil: no journal
	spoolAfter time.Duration
	log        *slog.Logger

	pool       *pool                         // events the spool refused
	lane       *pool                         // replay and journal chunks, sent in order
	down       func() bool                   // no connection can send now
	fill       func(*pipeline.Queue) float64 // the queue's fill ratio
	downNotify <-chan struct{}               // a token: the output went down

	mu         sync.Mutex
	replayOn   atomic.Bool
	replayDone chan struct{} // closed when the current replay ends (mu)
	replays    sync.WaitGroup
	aux        sync.WaitGroup

	journalNotify chan struct{} // a token: something was journaled
	journalErrAt  time.Time     // last "journal refused" log line (mu)

	journaled atomic.Int64
	spooled   atomic.Int64

	// refused, when set, reports that the output's certificate was
	// rejected before it ever worked (Sender.refused): nothing is spooled.
	refused func() bool
}

func newDurable(opts *Options, log *slog.Logger, p, lane *pool, down func() bool, fill func(*pipeline.Queue) float64, downNotify <-chan struct{}) *durable {
	return &durable{
		spool:         opts.Spool,
		journal:       opts.Journal,
		spoolAfter:    opts.SpoolAfter,
		log:           log,
		pool:          p,
		lane:          lane,
		down:          down,
		fill:          fill,
		downNotify:    downNotify,
		journalNotify: make(chan struct{}, 1),
	}
}

// start replays what an earlier run spooled, and runs the journal follower
// and the spooling while down until ctx ends. stop ends the run (see
// spoolWhileDown). wait waits for all of it.
func (d *durable) start(ctx context.Context, in *pipeline.Queue, stop context.CancelFunc) {
	if d.spool != nil && d.spool.Len() > 0 {
		d.mu.Lock()
		d.startReplayLocked(ctx)
		d.mu.Unlock()
	}
	if d.spool != nil {
		d.aux.Add(1)
		go func() {
			defer d.aux.Done()
			d.spoolWhileDown(ctx, in, stop)
		}()
	}
	if d.journal != nil {
		d.aux.Add(1)
		go func() {
			defer d.aux.Done()
			d.followJournal(ctx)
		}()
	}
}

// wait returns once everything start started has returned (its context
// ended).
func (d *durable) wait() {
	d.aux.Wait()
	d.replays.Wait()
}

// replaying reports whether a spool replay runs: nothing is taken from the
// queue meanwhile.
func (d *durable) replaying() bool { return d.replayOn.Load() }

// replayChunk is one chunk of a spool replay or of the journal, handed to
// the workers through the pool: its wait ends when every event has a fate.
type replayChunk struct {
	left   atomic.Int64
	failed atomic.Int64
	done   chan struct{}
}

func (rc *replayChunk) settle(f pipeline.Fate) {
	if f != pipeline.Delivered {
		rc.failed.Add(1)
	}
	if rc.left.Add(-1) == 0 {
		close(rc.done)
	}
}

// A replay keeps up to replayWindow spool chunks (of at most 1,000 events
// or 4 MiB each) in flight, and reads no new one past replayMaxBytes:
// each chunk waits ack_settle after its last write, so one chunk at a time
// would replay about a chunk per second.
//
// The journal is followed with a far larger window of chunks: it is sent as
// events trickle in, often one FIFO message (one event) per chunk, and
// every chunk waits ack_settle, so a window of 32 would cap one group at 32
// events per ack_settle. replayMaxBytes still bounds its memory.
const (
	replayWindow   = 32
	journalWindow  = 4096
	replayMaxBytes = 64 << 20
)

// closedChan is returned for "no replay runs": it never blocks.
var closedChan = func() chan struct{} { c := make(chan struct{}); close(c); return c }()

// startReplayLocked starts sending the spool (with mu held) unless a replay
// already runs. From now on nothing is taken from the queue until the
// spool is empty: its events are older than anything queued.
func (d *durable) startReplayLocked(ctx context.Context) {
	if d.replayOn.Load() {
		return
	}
	d.replayOn.Store(true)
	d.replayDone = make(chan struct{})
	d.replays.Add(1)
	go d.replay(ctx)
}

// replayChan is closed when the current replay ends; it is closed already
// when none runs.
func (d *durable) replayChan() <-chan struct{} {
	d.mu.Lock()
	defer d.mu.Unlock()
	if !d.replayOn.Load() {
		return closedChan
	}
	return d.replayDone
}

// take takes up to max events from in for the workers, or nothing while a
// replay runs. WriteAhead events go to the journal instead (and are settled
// Delivered); the rest is returned, in dst's array.
func (d *durable) take(in *pipeline.Queue, dst []*pipeline.Event, max int) []*pipeline.Event {
	var journaled []*pipeline.Event
	d.mu.Lock()
	if d.replayOn.Load() {
		d.mu.Unlock()
		return dst[:0]
	}
	dst = in.TryGet(dst, max)
	if d.journal != nil {
		dst, journaled = d.journalLocked(dst)
	}
	d.mu.Unlock()
	d.settleJournaled(in, journaled)
	return dst
}

// journalRest journals the WriteAhead events of evs (taken from in at the
// end of a run) and returns the others.
func (d *durable) journalRest(in *pipeline.Queue, evs []*pipeline.Event) []*pipeline.Event {
	if d.journal == nil {
		return evs
	}
	d.mu.Lock()
	rest, journaled := d.journalLocked(evs)
	d.mu.Unlock()
	d.settleJournaled(in, journaled)
	return rest
}

// journalLocked (mu held, so journal order is queue order) appends the
// WriteAhead events of evs to the journal. It returns the others, in evs's
// array, and the journaled ones, which the caller reports with
// settleJournaled once it let go of mu (a batch's done callback must not
// run under it). If the journal refuses, every event stays in rest, to be
// sent directly.
func (d *durable) journalLocked(evs []*pipeline.Event) (rest, journaled []*pipeline.Event) {
	var wa []*pipeline.Event
	for _, ev := range evs {
		if ev.WriteAhead {
			wa = append(wa, ev)
		}
	}
	if len(wa) == 0 {
		return evs, nil
	}
	if err := d.journal.Append(wa); err != nil {
		if time.Since(d.journalErrAt) >= time.Minute {
			d.journalErrAt = time.Now()
			d.log.Error("write-ahead journal refused events; sending them directly", "events", len(wa), "err", err)
		}
		return evs, nil
	}
	rest = evs[:0]
	for _, ev := range evs {
		if !ev.WriteAhead {
			rest = append(rest, ev)
		}
	}
	clear(evs[len(rest):])
	return rest, wa
}

// settleJournaled reports journaled events Delivered and wakes the journal
// follower. Nothing here touches them again.
func (d *durable) settleJournaled(in *pipeline.Queue, evs []*pipeline.Event) {
	if len(evs) == 0 {
		return
	}
	for _, ev := range evs {
		in.Settle(ev, pipeline.Delivered)
	}
	d.journaled.Add(int64(len(evs)))
	select {
	case d.journalNotify <- struct{}{}:
	default:
	}
}

// followJournal sends the write-ahead journal, oldest first, and what is
// journaled while it runs, until ctx ends. What is unsent then stays
// journaled for the next run.
func (d *durable) followJournal(ctx context.Context) {
	var total atomic.Int64
	for {
		err := d.journal.Follow(ctx, journalWindow, replayMaxBytes, d.journalNotify, d.sendChunk(ctx, &total))
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			d.log.Error("sending the write-ahead journal failed; retrying", "err", err)
		}
		if !ctxtime.Sleep(ctx, time.Second) {
			return
		}
	}
}

// sendChunk is the send function of a spool or journal replay: it hands a
// chunk to the workers (through the lane, which one connection at a time
// takes from, so chunks arrive in order) and returns a wait for its fate.
// delivered counts the events of the chunks that were (waits may run
// concurrently).
func (d *durable) sendChunk(ctx context.Context, delivered *atomic.Int64) func([]*pipeline.Event) func() error {
	return func(evs []*pipeline.Event) func() error {
		if len(evs) == 0 {
			return func() error { return nil }
		}
		rc := &replayChunk{done: make(chan struct{})}
		rc.left.Store(int64(len(evs)))
		items := make([]item, len(evs))
		for i, ev := range evs {
			items[i] = item{ev: ev, rc: rc}
		}
		d.lane.push(items)
		n := int64(len(evs))
		return func() error {
			select {
			case <-rc.done:
				if f := rc.failed.Load(); f > 0 {
					return fmt.Errorf("%d replayed events not delivered", f)
				}
				delivered.Add(n)
				return nil
			case <-ctx.Done():
				return ctx.Err()
			}
		}
	}
}

// replay sends the spool's events before anything from the queue: at start,
// and during the run once events were spooled while the output was down. A
// chunk is removed from the spool only when every event of it was
// delivered. Events spooled meanwhile are sent by another pass; the replay
// ends when the spool is empty, or on an error (the rest stays spooled; a
// later replay starts once the output is up).
func (d *durable) replay(ctx context.Context) {
	defer d.replays.Done()
	var total atomic.Int64
	var err error
	for {
		n := d.spool.Len()
		d.log.Info("replaying spooled events", "events", n)
		err = d.spool.ReplayWindow(ctx, replayWindow, replayMaxBytes, d.sendChunk(ctx, &total))
		d.mu.Lock()
		if err == nil && ctx.Err() == nil && d.spool.Len() > 0 {
			d.mu.Unlock()
			continue // spooled while this pass ran
		}
		d.replayOn.Store(false)
		close(d.replayDone)
		d.mu.Unlock()
		break
	}
	switch {
	case err != nil && ctx.Err() == nil:
		d.log.Error("spool replay failed; the rest stays spooled", "err", err)
	case err == nil:
		d.log.Info("spool replay done", "events", total.Load())
	}
}

// spoolRest appends the events left at the end of a run to the spool. It
// reports whether they are stored (and so Delivered).
func (d *durable) spoolRest(evs []*pipeline.Event) bool {
	if d.spool == nil {
		d.log.Warn("events unsent at shutdown and no spool", "events", len(evs))
		return false
	}
	if d.refused != nil && d.refused() {
		d.log.Warn("events unsent: client certificate rejected, not spooling them", "events", len(evs))
		return false
	}
	if err := d.spool.Append(evs); err != nil {
		d.log.Error("spool unsent events at shutdown failed", "events", len(evs), "err", err)
		return false
	}
	d.spooled.Add(int64(len(evs)))
	d.log.Info("spooled unsent events at shutdown", "events", len(evs))
	return true
}

// spoolWhileDown moves events to the spool while no connection works
// (down), so nothing waits on a receiver that is away. Spooled events are
// Delivered.
//
//   - During the run: from the queue once it has stayed full for
//     SpoolAfter, so the sources keep moving during a long outage.
//   - Once the queue is closed (shutdown): everything at once. It calls
//     stop, which ends the workers; they hand what they hold (pending,
//     buffered, written but unsettled) to the pool, and Run's finish spools
//     that with what is still queued. While the output is up the workers
//     drain normally; this acts only if it is down then or goes down later.
//
// The workers settle only what they sent before stop, finish only what they
// gave back or left queued, so each event gets one fate.
func (d *durable) spoolWhileDown(ctx context.Context, in *pipeline.Queue, stop context.CancelFunc) {
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	closed := in.Closed()
	shutdown := false
	var fullSince time.Time
	var buf []*pipeline.Event
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		case <-d.downNotify:
		case <-closed:
			closed, shutdown = nil, true
		}
		if shutdown && d.down() {
			d.log.Debug("queue closed with the output down; spooling what is left now")
			stop()
			return
		}
		if !d.down() && !shutdown && !d.replayOn.Load() && d.spool.Len() > 0 {
			// A replay that failed left events behind: send them now.
			d.mu.Lock()
			d.startReplayLocked(ctx)
			d.mu.Unlock()
		}
		if !d.down() || d.fill(in) < 0.9 { // 90 %: an event may not fit exactly
			fullSince = time.Time{}
			continue
		}
		if fullSince.IsZero() {
			fullSince = time.Now()
		}
		if time.Since(fullSince) < d.spoolAfter {
			continue
		}
		total := 0
		for d.down() && d.fill(in) >= 0.5 && ctx.Err() == nil && (d.refused == nil || !d.refused()) {
			d.mu.Lock()
			buf = in.TryGet(buf, 1024)
			if len(buf) == 0 {
				d.mu.Unlock()
				break
			}
			var journaled []*pipeline.Event
			if d.journal != nil {
				// Write-ahead events go to the journal, as always: in the
				// spool they could overtake older journaled ones.
				buf, journaled = d.journalLocked(buf)
			}
			if len(buf) == 0 {
				d.mu.Unlock()
				d.settleJournaled(in, journaled)
				continue
			}
			if err := d.spool.Append(buf); err != nil {
				d.mu.Unlock()
				d.settleJournaled(in, journaled)
				d.log.Error("spool events while the output is down failed", "events", len(buf), "err", err)
				items := make([]item, len(buf))
				for i, ev := range buf {
					items[i] = item{ev: ev}
				}
				d.pool.push(items)
				break
			}
			// They go out before anything still queued, once the output
			// is back.
			d.startReplayLocked(ctx)
			d.mu.Unlock()
			d.settleJournaled(in, journaled)
			for _, ev := range buf {
				in.Settle(ev, pipeline.Delivered)
			}
			total += len(buf)
		}
		if total > 0 {
			d.spooled.Add(int64(total))
			d.log.Warn("output down with a full queue; events spooled", "events", total)
		}
	}
}
