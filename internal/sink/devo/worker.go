package devo

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/klauspost/compress/gzip"

	"github.com/devo-aws-collector/devo-aws-collector/internal/ctxtime"
	"github.com/devo-aws-collector/devo-aws-collector/internal/pipeline"
)

// flight is one write to the current connection and its events, waiting to
// settle. One record per write rather than per event: a write carries
// hundreds of short events, and every byte held per unsettled event counts
// against the in-flight budget. Times are unix nanoseconds.
type flight struct {
	its     []item
	written int64 // when the write returned
	end     int64 // the socket offset just past the write's last byte
	acked   int64 // when the receiver's acknowledgement of end was seen; 0 until then
}

// ackPollEvery is how often a worker with nothing else to do looks for the
// receiver's acknowledgement of its writes: a sixteenth of ack_settle,
// between 1 and 20 ms, so seeing it late adds little to the settle time.
func ackPollEvery(settle time.Duration) time.Duration {
	return min(20*time.Millisecond, max(time.Millisecond, settle/16))
}

// maxSpareItems bounds the item slices a worker keeps for its next writes.
const maxSpareItems = 64

// worker owns one connection at a time and moves events from the pool and
// the queue onto it.
type worker struct {
	s    *Sender
	in   *pipeline.Queue
	log  *slog.Logger
	id   int
	wake chan struct{} // s.wakes[id]

	// laneHeld counts the lane items (replay and journal chunks) this
	// worker holds unsettled; while it is above 0 the worker owns the lane.
	laneHeld int

	c        *conn
	pending  []item // taken, not yet encoded
	buf      []byte // encoded lines: the write buffer, or the next gzip member
	bufItems []item // the events in buf
	bufSince time.Time
	inflight []flight // written, not yet settled, in write order
	head     int
	ackNext  int      // the first flight at or after head whose acknowledgement was not seen
	polled   int64    // when the acknowledgement was last read
	spare    [][]item // emptied item slices of settled writes, for bufItems
	evs      []*pipeline.Event

	zbuf bytes.Buffer
	zw   *gzip.Writer

	connectBO, sendBO backoff
	delay             time.Duration // wait before the next dial
	up                bool
	closed            bool // the queue is closed
}

func (s *Sender) newWorker(id int, in *pipeline.Queue) *worker {
	w := &worker{
		s:         s,
		in:        in,
		log:       s.log.With("connection", id),
		id:        id,
		wake:      s.wakes[id],
		buf:       make([]byte, 0, s.opts.BufferSize+4096),
		connectBO: backoff{initial: s.opts.ConnectBackoffInitial, max: s.opts.ConnectBackoffMax, retries: s.opts.ConnectRetries},
		sendBO:    backoff{initial: s.opts.SendBackoffInitial, max: s.opts.SendBackoffMax, retries: s.opts.SendRetries},
	}
	w.setUp(true)
	return w
}

func (w *worker) setUp(v bool) {
	if w.up == v {
		return
	}
	w.up = v
	if v {
		w.s.up.Add(1)
	} else if w.s.up.Add(-1) == 0 {
		select {
		case w.s.downNotify <- struct{}{}:
		default:
		}
	}
}

// run sends until the queue is closed and drained (nil) or ctx ends (nil),
// or returns the *AuthError that makes the output unusable at start-up.
func (w *worker) run(ctx context.Context) (err error) {
	defer func() { w.exit(ctx) }()
	for {
		if ctx.Err() != nil {
			return nil
		}
		now := time.Now()
		if w.c != nil {
			if w.c.deadAt.Load() != 0 {
				if err := w.lost(ctx); err != nil {
					return err
				}
				continue
			}
			w.settleDue(now)
			if w.c.gzip && len(w.bufItems) > 0 && now.Sub(w.bufSince) >= w.s.opts.GzipFlushInterval {
				w.flush()
				continue
			}
		}
		if len(w.pending) == 0 {
			w.pending = w.s.pool.take(w.pending, w.s.opts.BatchSize)
		}
		if len(w.pending) == 0 {
			w.pending = w.takeLane(w.pending)
		}
		if len(w.pending) == 0 && !w.s.dur.replaying() && !w.closed {
			w.take(false, ctx)
		}
		if len(w.pending) == 0 {
			if w.c != nil && len(w.bufItems) > 0 && (!w.c.gzip || w.closed) {
				w.flush() // idle: nothing more to add to this write
				continue
			}
			if w.closed && !w.s.dur.replaying() && w.s.pool.n.Load() == 0 && w.s.lane.n.Load() == 0 && (w.c == nil || w.settled()) {
				return nil
			}
			w.wait(ctx)
			continue
		}
		if err := w.connect(ctx, now); err != nil {
			return err
		}
		if w.c != nil {
			w.encode()
		}
	}
}

// take moves a batch from the queue into pending; with block it waits
// until something arrives, a deadline of the connection passes, the
// connection dies or ctx ends.
func (w *worker) take(block bool, ctx context.Context) {
	if block {
		wctx := ctx
		if w.c != nil {
			wctx = w.c.dead
		}
		if d, ok := w.nextDeadline(); ok {
			var cancel context.CancelFunc
			wctx, cancel = context.WithDeadline(wctx, d)
			defer cancel()
		}
		// The pools get work without the queue: resends, and chunks of the
		// spool and the write-ahead journal.
		if err := w.in.Wait(wctx, w.wake); err != nil {
			if errors.Is(err, pipeline.ErrClosed) {
				w.closed = true
			}
			return
		}
	}
	w.evs = w.s.dur.take(w.in, w.evs, w.s.opts.BatchSize)
	if len(w.evs) == 0 {
		return
	}
	w.s.sampler.add(w.s.fill(w.in))
	for i, ev := range w.evs {
		w.pending = append(w.pending, item{ev: ev})
		w.evs[i] = nil
	}
}

// takeLane appends up to a batch of lane items (replay and journal chunks)
// to dst if the lane is free or already this worker's.
func (w *worker) takeLane(dst []item) []item {
	if w.s.lane.n.Load() == 0 {
		return dst
	}
	me := int32(w.id + 1)
	if !w.s.laneOwner.CompareAndSwap(0, me) && w.s.laneOwner.Load() != me {
		return dst
	}
	n := len(dst)
	dst = w.s.lane.take(dst, w.s.opts.BatchSize)
	w.laneHeld += len(dst) - n
	w.releaseLane()
	return dst
}

// releaseLane lets go of the lane once this worker holds none of its items,
// and wakes the others if it has more.
func (w *worker) releaseLane() {
	if w.laneHeld > 0 || !w.s.laneOwner.CompareAndSwap(int32(w.id+1), 0) {
		return
	}
	if w.s.lane.n.Load() > 0 {
		w.s.wakeAll()
	}
}

// giveBackLane puts the lane items of items back in front of the lane, in
// order, releases the lane, and returns the other items.
func (w *worker) giveBackLane(items []item) []item {
	var lane []item
	rest := items[:0:0]
	for _, it := range items {
		if it.rc != nil {
			lane = append(lane, it)
		} else {
			rest = append(rest, it)
		}
	}
	w.s.lane.pushFront(lane)
	w.laneHeld -= len(lane)
	w.releaseLane()
	return rest
}

// nextDeadline is the earliest time the worker must act without new
// events: a settle deadline, the end of the probe, the gzip timer.
func (w *worker) nextDeadline() (time.Time, bool) {
	c := w.c
	if c == nil {
		return time.Time{}, false
	}
	var d time.Time
	set := func(t time.Time) {
		if d.IsZero() || t.Before(d) {
			d = t
		}
	}
	if w.head < len(w.inflight) {
		if f := w.inflight[w.head]; f.acked != 0 {
			set(time.Unix(0, w.settleAt(f)))
		}
	}
	if c.sock != nil && w.ackNext < len(w.inflight) {
		set(time.Unix(0, w.polled).Add(ackPollEvery(w.s.opts.AckSettle)))
	}
	if !c.healthy {
		set(c.start.Add(c.probe))
	}
	if c.gzip && len(w.bufItems) > 0 {
		set(w.bufSince.Add(w.s.opts.GzipFlushInterval))
	}
	return d, !d.IsZero()
}

// wait blocks until there is something to do.
func (w *worker) wait(ctx context.Context) {
	if !w.s.dur.replaying() && !w.closed {
		w.take(true, ctx)
		return
	}
	var dead <-chan struct{}
	if w.c != nil {
		dead = w.c.dead.Done()
	}
	var replayDone <-chan struct{}
	if w.s.dur.replaying() {
		replayDone = w.s.dur.replayChan()
	}
	var timer <-chan time.Time
	if d, ok := w.nextDeadline(); ok {
		t := time.NewTimer(time.Until(d))
		defer t.Stop()
		timer = t.C
	}
	select {
	case <-ctx.Done():
	case <-dead:
	case <-timer:
	case <-w.wake:
	case <-replayDone:
	}
}

// connect makes sure a usable connection in the wanted mode exists,
// retiring one that is idle, too old or in the other mode (devo-output.md
// §7, §15.7). It returns only fatal errors; when ctx ends w.c stays nil.
func (w *worker) connect(ctx context.Context, now time.Time) error {
	gz := w.s.wantGzip()
	if c := w.c; c != nil {
		reason := ""
		switch {
		case c.gzip != gz:
			reason = "compression mode switch"
		case now.Sub(c.lastWrite) > w.s.opts.InactivityTimeout:
			reason = "inactivity timeout"
		case now.Sub(c.start) > w.s.opts.MaxConnectionAge:
			reason = "maximum connection age"
		}
		if reason == "" {
			return nil
		}
		w.log.Debug("reconnecting", "reason", reason)
		if err := w.retire(ctx); err != nil {
			return err
		}
		if w.c != nil || ctx.Err() != nil {
			return nil
		}
	}
	for {
		if w.delay > 0 {
			if !ctxtime.Sleep(ctx, w.delay) {
				return nil
			}
			w.delay = 0
		}
		c, err := w.s.dial(ctx, gz)
		if err == nil {
			if w.zw == nil && gz {
				w.zw, _ = gzip.NewWriterLevel(&w.zbuf, w.s.opts.GzipLevel)
			}
			w.c = c
			w.s.connects.Add(1)
			w.log.Debug("connected", "gzip", gz)
			return nil
		}
		if ctx.Err() != nil {
			return nil
		}
		w.setUp(false)
		// Another connection may carry the lane on while this one waits.
		w.pending = w.giveBackLane(w.pending)
		var ae *AuthError
		if errors.As(err, &ae) {
			if !w.s.everHealthy.Load() {
				return err
			}
			w.delay = w.s.opts.ConnectBackoffMax
			w.log.Error("client certificate rejected; retrying", "err", err, "retry_in", w.delay)
			continue
		}
		w.delay = w.connectBO.next()
		w.log.Warn("connect failed; retrying", "err", err, "retry_in", w.delay.Round(time.Millisecond))
	}
}

// encode appends pending events to the buffer, writing whenever it fills.
func (w *worker) encode() {
	limit := w.s.opts.BufferSize
	if w.c.gzip {
		limit = w.s.opts.GzipBuffer
	}
	now := time.Now()
	for i := 0; i < len(w.pending); i++ {
		it := w.pending[i]
		if len(w.bufItems) == 0 {
			w.bufSince = now
		}
		if it.ev.Clean {
			w.buf = w.s.enc.AppendTrusted(w.buf, now, it.ev.Tag, it.ev.Payload)
		} else {
			w.buf = w.s.enc.Append(w.buf, now, it.ev.Tag, it.ev.Payload)
		}
		w.bufItems = append(w.bufItems, it)
		if len(w.buf) > limit || (!w.c.gzip && len(w.buf) == limit) {
			n := copy(w.pending, w.pending[i+1:])
			clear(w.pending[n:])
			w.pending = w.pending[:n]
			w.flush()
			return
		}
	}
	clear(w.pending)
	w.pending = w.pending[:0]
}

// flush writes the buffer (as one gzip member in gzip mode). On success
// its events wait for their settle deadline; on failure the connection is
// marked dead and lost() puts them back for a resend.
func (w *worker) flush() bool {
	c := w.c
	if len(w.bufItems) == 0 {
		return true
	}
	data := w.buf
	if c.gzip {
		w.zbuf.Reset()
		w.zw.Reset(&w.zbuf)
		_, _ = w.zw.Write(w.buf) // a bytes.Buffer does not fail
		_ = w.zw.Close()
		data = w.zbuf.Bytes()
	}
	_ = c.nc.SetWriteDeadline(time.Now().Add(w.s.opts.SendingTimeout))
	if c.gather {
		c.sock.hold()
	}
	_, err := c.nc.Write(data)
	if c.gather {
		if rerr := c.sock.release(); err == nil {
			err = rerr
		}
	}
	if err != nil {
		c.die(err)
		return false
	}
	now := time.Now()
	w.log.DebugContext(logLocal, "batch written", "events", len(w.bufItems), "bytes", len(data), "gzip", c.gzip) // one line per write, never per event; local: delivered, it would cause the next write
	c.lastWrite = now
	f := flight{its: w.bufItems, written: now.UnixNano()}
	if c.sock != nil {
		f.end = c.sock.written.Load()
	} else {
		f.acked = f.written // no acknowledgement to wait for: time alone
	}
	w.inflight = append(w.inflight, f)
	if c.sock == nil {
		w.ackNext = len(w.inflight)
	}
	w.bufItems = nil
	if n := len(w.spare); n > 0 {
		w.bufItems, w.spare = w.spare[n-1], w.spare[:n-1]
	}
	w.buf = w.buf[:0]
	return true
}

// settleAt is when an acknowledged write settles if the connection is
// still alive then: AckSettle after its acknowledgement was seen, and not
// before the connection passed its start-up probe.
func (w *worker) settleAt(f flight) int64 {
	c := w.c
	return max(f.acked+int64(w.s.opts.AckSettle), c.start.Add(c.probe).UnixNano())
}

// errNotAcked ends a connection whose receiver has acknowledged nothing
// more for the sending timeout while bytes wait (a silent partition, or a
// receiver that stopped reading); its unsettled writes are then resent.
var errNotAcked = errors.New("the receiver acknowledged none of the bytes waiting for sending_timeout")

// observeAcks reads how far the receiver's TCP has acknowledged the
// connection's bytes and stamps the writes it covers. When bytes wait and
// the acknowledgement has not moved for SendingTimeout (counted from the
// oldest waiting write at the earliest), the connection ends. A receiver
// that reads slowly keeps moving it, however deep the socket buffer.
func (w *worker) observeAcks(t int64) {
	c := w.c
	if w.ackNext >= len(w.inflight) || c.sock == nil || c.deadAt.Load() != 0 {
		return
	}
	acked, err := c.sock.acked()
	if err != nil {
		return // the socket is closing; the reader reports why
	}
	w.polled = t
	if acked > c.ackSeen {
		c.ackSeen, c.ackMoved = acked, t
	}
	for w.ackNext < len(w.inflight) && w.inflight[w.ackNext].end <= acked {
		w.inflight[w.ackNext].acked = t
		w.ackNext++
	}
	if w.ackNext < len(w.inflight) && t-max(c.ackMoved, w.inflight[w.ackNext].written) > int64(w.s.opts.SendingTimeout) {
		c.die(errNotAcked)
	}
}

// settleDue reports Delivered for every write that the receiver's TCP
// acknowledged and that the connection then outlived by AckSettle
// (devo-output.md §15.4), and marks the connection healthy after its probe.
func (w *worker) settleDue(now time.Time) {
	c := w.c
	t := now.UnixNano()
	if !c.healthy && now.Sub(c.start) >= c.probe && c.aliveAt(t) {
		c.healthy = true
		w.s.everHealthy.Store(true)
		w.setUp(true)
		w.connectBO.reset()
	}
	w.observeAcks(t)
	n := 0
	for w.head < len(w.inflight) {
		f := w.inflight[w.head]
		if f.acked == 0 {
			break
		}
		if at := w.settleAt(f); at > t || !c.aliveAt(at) {
			break
		}
		for _, it := range f.its {
			w.s.settle(it, pipeline.Delivered)
			if it.rc != nil {
				w.laneHeld--
			}
		}
		n += len(f.its)
		w.recycle(f.its)
		w.inflight[w.head] = flight{}
		w.head++
	}
	if n > 0 {
		w.releaseLane()
		w.s.sent.Add(int64(n))
		c.settled = true
		w.sendBO.reset()
	}
	w.ackNext = max(w.ackNext, w.head)
	if w.settled() {
		w.inflight = w.inflight[:0]
		w.head, w.ackNext = 0, 0
	} else if w.head > 64 && w.head > len(w.inflight)/2 {
		// Under a steady load the slice is never empty: without this it
		// would grow by every write ever made on the connection.
		rest := copy(w.inflight, w.inflight[w.head:])
		clear(w.inflight[rest:])
		w.ackNext -= w.head
		w.inflight, w.head = w.inflight[:rest], 0
	}
}

// recycle keeps an emptied item slice of a settled write for a later one.
func (w *worker) recycle(its []item) {
	clear(its)
	if len(w.spare) < maxSpareItems {
		w.spare = append(w.spare, its[:0])
	}
}

// unsettled returns the items of every write not settled yet, in order.
func (w *worker) unsettled(dst []item) []item {
	for _, f := range w.inflight[w.head:] {
		dst = append(dst, f.its...)
	}
	return dst
}

// settled reports whether every write has settled.
func (w *worker) settled() bool { return w.head == len(w.inflight) }

// lost handles a dead connection: writes it outlived by AckSettle are
// delivered, the rest go back in front of pending for a resend. It returns
// an *AuthError when the certificate was rejected before any connection
// of this output was ever healthy.
func (w *worker) lost(ctx context.Context) error {
	c := w.c
	cause := c.cause()
	c.closeNow(cause)
	deadAt := c.deadAt.Load()
	w.settleDue(time.Unix(0, deadAt))
	w.c = nil
	resend := w.unsettled(make([]item, 0, len(w.bufItems)+len(w.pending)))
	resend = append(resend, w.bufItems...)
	resend = append(resend, w.pending...)
	n := len(resend) - len(w.pending)
	// Lane items go back to the lane: another connection may carry on
	// with them, in order, while this one waits to reconnect.
	w.pending = w.giveBackLane(resend)
	clear(w.inflight)
	w.inflight, w.head, w.ackNext = w.inflight[:0], 0, 0
	clear(w.bufItems)
	w.bufItems, w.buf = w.bufItems[:0], w.buf[:0]

	if !c.healthy {
		w.setUp(false)
		err := w.s.probeFailure(ctx, c)
		var ae *AuthError
		if errors.As(err, &ae) {
			if !w.s.everHealthy.Load() {
				return err
			}
			w.delay = w.s.opts.ConnectBackoffMax
			w.log.Error("client certificate rejected; retrying", "err", err, "retry_in", w.delay)
			return nil
		}
		w.delay = w.sendBO.next()
		w.log.Warn("connection failed during the start-up probe; resending", "err", cause, "events", n, "retry_in", w.delay.Round(time.Millisecond))
		return nil
	}
	if !c.settled {
		w.delay = w.sendBO.next()
	}
	if n > 0 {
		w.log.Warn("connection lost; resending unsettled events", "err", cause, "events", n, "retry_in", w.delay.Round(time.Millisecond))
	} else {
		w.log.Debug("connection closed by the server", "err", cause)
	}
	return nil
}

// retire ends a healthy connection on purpose: flush, let every write
// settle, then close gracefully in the background.
func (w *worker) retire(ctx context.Context) error {
	if !w.flush() {
		return w.lost(ctx)
	}
	for {
		c := w.c
		if ctx.Err() != nil {
			return nil
		}
		if c.deadAt.Load() != 0 {
			return w.lost(ctx)
		}
		w.settleDue(time.Now())
		if w.settled() && c.healthy {
			break
		}
		d, _ := w.nextDeadline()
		t := time.NewTimer(time.Until(d))
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-c.dead.Done():
		case <-t.C:
		}
		t.Stop()
	}
	w.s.closeGracefully(w.c)
	w.c = nil
	return nil
}

// exit hands everything still held to the pool for the next worker or for
// Run's final spool, and closes the connection. It marks the worker down
// last: once the queue is closed, the output going down stops every worker
// (spoolWhileDown), and that must not turn the graceful close of a worker
// that finished its work into an abrupt one.
func (w *worker) exit(ctx context.Context) {
	defer w.setUp(false)
	if c := w.c; c != nil {
		w.c = nil
		if c.deadAt.Load() == 0 {
			w.c = c
			w.settleDue(time.Now())
			w.c = nil
		}
		if ctx.Err() == nil && c.deadAt.Load() == 0 && w.settled() && len(w.bufItems) == 0 {
			w.s.closeGracefully(c)
		} else {
			c.closeNow(errors.New("output stopping"))
		}
	}
	held := w.unsettled(nil)
	held = append(held, w.bufItems...)
	held = append(held, w.pending...)
	w.inflight, w.bufItems, w.pending = nil, nil, nil
	w.head, w.ackNext = 0, 0
	if held = w.giveBackLane(held); len(held) > 0 {
		w.s.pool.push(held)
	}
}
