// Package devo is the network output shared by devo_platform (mutual TLS,
// Devo line), relay (Devo line over TLS or TCP) and syslog, sidecar and
// in_house_relay (RFC 3164 over TCP or TLS); see docs/outputs.md and
// devo-output.md.
//
// A Sender runs Options.Connections workers. Each owns one connection at a
// time and takes events from the same pipeline.Queue only while it can
// send, so an output that is down becomes backpressure. An event is settled
// Delivered when its bytes were written and the connection was still alive
// AckSettle later, or when it was durably spooled; events written to a
// connection that died inside that window are resent on the next one.
package devo

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/devo-aws-collector/devo-aws-collector/internal/pipeline"
	"github.com/devo-aws-collector/devo-aws-collector/internal/wire"
)

// Sender is one network output. It implements pipeline.Sink.
type Sender struct {
	opts Options
	log  *slog.Logger
	tls  *tls.Config
	enc  wire.Encoder

	in      atomic.Pointer[pipeline.Queue]
	pool    pool
	sampler sampler

	// replayMu orders three things: taking from the queue, spooling from it
	// while the output is down, and a spool replay starting or ending. The
	// spool only ever holds events older than anything queued, so while a
	// replay runs nothing is taken from the queue.
	replayMu   sync.Mutex
	replaying  atomic.Bool
	replayDone chan struct{} // closed when the current replay ends (replayMu)
	replays    sync.WaitGroup

	journalNotify chan struct{} // a token: something was journaled
	journaled     atomic.Int64
	journalErrAt  time.Time // last "journal refused" log line (replayMu)

	everHealthy atomic.Bool // some connection passed the start-up probe
	up          atomic.Int32
	downNotify  chan struct{} // a token: up dropped to 0
	connects    atomic.Int64

	sent    atomic.Int64
	spooled atomic.Int64
	statsMu sync.Mutex
	lastAt  time.Time
	lastN   int64

	bg     sync.WaitGroup
	stopBg chan struct{}
	ran    atomic.Bool
}

// New checks the options and loads the TLS files; it touches no network.
// Errors name the file at fault.
func New(opts Options) (*Sender, error) {
	opts.fill()
	if opts.Address == "" {
		return nil, errors.New("output address is empty")
	}
	if opts.Port <= 0 || opts.Port > 65535 {
		return nil, fmt.Errorf("output port %d is out of range 1-65535", opts.Port)
	}
	s := &Sender{
		opts:          opts,
		enc:           wire.NewEncoder(opts.Format, opts.Hostname),
		downNotify:    make(chan struct{}, 1),
		journalNotify: make(chan struct{}, 1),
		stopBg:        make(chan struct{}),
		lastAt:        time.Now(),
	}
	s.log = opts.Logger.With("output", opts.Name, "address", opts.Address, "port", opts.Port)
	s.pool.notify = make(chan struct{}, 1)
	if opts.TLS {
		cfg, err := tlsConfig(&s.opts)
		if err != nil {
			return nil, fmt.Errorf("output %s: %w", opts.Name, err)
		}
		s.tls = cfg
		if !opts.CheckHostname {
			s.log.Warn("server hostname verification is off; only the certificate chain is verified", "check_hostname", false)
		}
	}
	return s, nil
}

// Check opens one connection and holds it through the start-up probe. It
// returns an *AuthError when the server rejects the client certificate (the
// caller treats that as fatal at process start), another error when the
// output cannot be reached, and nil when a connection stayed healthy for
// ProbeTimeout.
func (s *Sender) Check(ctx context.Context) error {
	c, err := s.dial(ctx, false)
	if err != nil {
		return err
	}
	t := time.NewTimer(s.opts.ProbeTimeout)
	defer t.Stop()
	select {
	case <-c.dead.Done():
	case <-t.C:
	}
	if err := ctx.Err(); err != nil {
		c.closeNow(err)
		return err
	}
	if c.deadAt.Load() != 0 {
		c.closeNow(nil)
		return s.probeFailure(ctx, c)
	}
	s.everHealthy.Store(true)
	c.closeNow(errors.New("check done"))
	return nil
}

// item is an event and where its fate goes: the queue, or a spool replay
// chunk.
type item struct {
	ev *pipeline.Event
	rc *replayChunk
}

type replayChunk struct {
	left   atomic.Int64
	failed atomic.Int64
	done   chan struct{}
}

func (s *Sender) settle(it item, f pipeline.Fate) {
	if it.rc != nil {
		if f != pipeline.Delivered {
			it.rc.failed.Add(1)
		}
		if it.rc.left.Add(-1) == 0 {
			close(it.rc.done)
		}
		return
	}
	s.in.Load().Settle(it.ev, f)
}

// Run implements pipeline.Sink. Spooled events are sent first; then the
// workers take from in until it is closed and drained, or ctx ends. With a
// spool, a closed queue while the output is down (or once it goes down)
// ends the run at once instead. What is still unsent at the end is spooled
// (Delivered) or, without a spool or when spooling fails, settled Failed.
// Run returns an *AuthError if the client certificate is rejected before
// any connection ever became healthy.
func (s *Sender) Run(ctx context.Context, in *pipeline.Queue) error {
	if !s.ran.CompareAndSwap(false, true) {
		return errors.New("devo sender: Run called twice")
	}
	s.in.Store(in)
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()

	// The workers count as up from here, so the output does not look down
	// (and a closed queue is not spooled) before any of them tried.
	workers := make([]*worker, s.opts.Connections)
	for i := range workers {
		workers[i] = s.newWorker(i, in)
	}

	var aux sync.WaitGroup
	if s.opts.Spool != nil && s.opts.Spool.Len() > 0 {
		s.replayMu.Lock()
		s.startReplayLocked(runCtx)
		s.replayMu.Unlock()
	}
	if s.opts.Spool != nil {
		aux.Add(1)
		go func() {
			defer aux.Done()
			s.spoolWhileDown(runCtx, in, cancel)
		}()
	}
	if s.opts.Journal != nil {
		aux.Add(1)
		go func() {
			defer aux.Done()
			s.sendJournal(runCtx)
		}()
	}

	var (
		wg    sync.WaitGroup
		errMu sync.Mutex
		fatal error
	)
	for _, w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := w.run(runCtx); err != nil {
				errMu.Lock()
				if fatal == nil {
					fatal = err
				}
				errMu.Unlock()
				cancel()
			}
		}()
	}
	wg.Wait()
	cancel()
	aux.Wait()
	s.replays.Wait()
	close(s.stopBg)
	s.bg.Wait()
	s.finish(in)
	return fatal
}

// finish gives a fate to everything left: held by workers (now in the
// pool) or still queued. Replayed events are already in the spool and only
// end their chunk.
func (s *Sender) finish(in *pipeline.Queue) {
	var evs []*pipeline.Event
	var left []item
	for _, it := range s.pool.takeAll() {
		if it.rc != nil {
			s.settle(it, pipeline.Failed)
			continue
		}
		left = append(left, it)
	}
	queued := in.TryGet(nil, 1<<30)
	if s.opts.Journal != nil {
		var journaled []*pipeline.Event
		s.replayMu.Lock()
		queued, journaled = s.journalLocked(queued)
		s.replayMu.Unlock()
		s.settleJournaled(in, journaled)
	}
	for _, ev := range queued {
		left = append(left, item{ev: ev})
	}
	if len(left) == 0 {
		return
	}
	fate := pipeline.Failed
	if s.opts.Spool != nil {
		for _, it := range left {
			evs = append(evs, it.ev)
		}
		if err := s.opts.Spool.Append(evs); err != nil {
			s.log.Error("spool unsent events at shutdown failed", "events", len(evs), "err", err)
		} else {
			fate = pipeline.Delivered
			s.spooled.Add(int64(len(evs)))
			s.log.Info("spooled unsent events at shutdown", "events", len(evs))
		}
	} else {
		s.log.Warn("events unsent at shutdown and no spool", "events", len(left))
	}
	for _, it := range left {
		s.settle(it, fate)
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

// startReplayLocked starts sending the spool (with replayMu held) unless a
// replay already runs. From now on nothing is taken from the queue until the
// spool is empty: its events are older than anything queued.
func (s *Sender) startReplayLocked(ctx context.Context) {
	if s.replaying.Load() {
		return
	}
	s.replaying.Store(true)
	s.replayDone = make(chan struct{})
	s.replays.Add(1)
	go s.replay(ctx)
}

// replayChan is closed when the current replay ends; it is closed already
// when none runs.
func (s *Sender) replayChan() <-chan struct{} {
	s.replayMu.Lock()
	defer s.replayMu.Unlock()
	if !s.replaying.Load() {
		return closedChan
	}
	return s.replayDone
}

// takeQueue takes up to max events from in, or nothing while a replay runs.
func (s *Sender) takeQueue(in *pipeline.Queue, dst []*pipeline.Event, max int) []*pipeline.Event {
	var journaled []*pipeline.Event
	s.replayMu.Lock()
	if s.replaying.Load() {
		s.replayMu.Unlock()
		return dst[:0]
	}
	dst = in.TryGet(dst, max)
	if s.opts.Journal != nil {
		dst, journaled = s.journalLocked(dst)
	}
	s.replayMu.Unlock()
	s.settleJournaled(in, journaled)
	return dst
}

// journalLocked (replayMu held, so journal order is queue order) appends
// the WriteAhead events of evs to the journal. It returns the others, in
// evs's array, and the journaled ones, which the caller reports with
// settleJournaled once it let go of replayMu (a batch's done callback must
// not run under it). If the journal refuses, every event stays in rest, to
// be sent directly.
func (s *Sender) journalLocked(evs []*pipeline.Event) (rest, journaled []*pipeline.Event) {
	var wa []*pipeline.Event
	for _, ev := range evs {
		if ev.WriteAhead {
			wa = append(wa, ev)
		}
	}
	if len(wa) == 0 {
		return evs, nil
	}
	if err := s.opts.Journal.Append(wa); err != nil {
		if time.Since(s.journalErrAt) >= time.Minute {
			s.journalErrAt = time.Now()
			s.log.Error("write-ahead journal refused events; sending them directly", "events", len(wa), "err", err)
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

// settleJournaled reports journaled events Delivered and wakes the journal's
// sender. Nothing here touches them again.
func (s *Sender) settleJournaled(in *pipeline.Queue, evs []*pipeline.Event) {
	if len(evs) == 0 {
		return
	}
	for _, ev := range evs {
		in.Settle(ev, pipeline.Delivered)
	}
	s.journaled.Add(int64(len(evs)))
	select {
	case s.journalNotify <- struct{}{}:
	default:
	}
}

// sendJournal sends the write-ahead journal, oldest first, and what is
// journaled while it runs, until ctx ends. What is unsent then stays
// journaled for the next run. It runs beside the queue: journaled events need
// no order against it.
func (s *Sender) sendJournal(ctx context.Context) {
	var total atomic.Int64
	for {
		err := s.opts.Journal.Follow(ctx, journalWindow, replayMaxBytes, s.journalNotify, s.sendChunk(ctx, &total))
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			s.log.Error("sending the write-ahead journal failed; retrying", "err", err)
		}
		if !wait(ctx, time.Second) {
			return
		}
	}
}

// sendChunk is the send function of a spool or journal replay: it hands a
// chunk to the workers (through the pool) and returns a wait for its fate.
// delivered counts the events of the chunks that were (waits may run
// concurrently).
func (s *Sender) sendChunk(ctx context.Context, delivered *atomic.Int64) func([]*pipeline.Event) func() error {
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
		s.pool.push(items)
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
func (s *Sender) replay(ctx context.Context) {
	defer s.replays.Done()
	var total atomic.Int64
	var err error
	for {
		n := s.opts.Spool.Len()
		s.log.Info("replaying spooled events", "events", n)
		err = s.opts.Spool.ReplayWindow(ctx, replayWindow, replayMaxBytes, s.sendChunk(ctx, &total))
		s.replayMu.Lock()
		if err == nil && ctx.Err() == nil && s.opts.Spool.Len() > 0 {
			s.replayMu.Unlock()
			continue // spooled while this pass ran
		}
		s.replaying.Store(false)
		close(s.replayDone)
		s.replayMu.Unlock()
		break
	}
	switch {
	case err != nil && ctx.Err() == nil:
		s.log.Error("spool replay failed; the rest stays spooled", "err", err)
	case err == nil:
		s.log.Info("spool replay done", "events", total.Load())
	}
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
func (s *Sender) spoolWhileDown(ctx context.Context, in *pipeline.Queue, stop context.CancelFunc) {
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
		case <-s.downNotify:
		case <-closed:
			closed, shutdown = nil, true
		}
		if shutdown && s.down() {
			s.log.Debug("queue closed with the output down; spooling what is left now")
			stop()
			return
		}
		if !s.down() && !shutdown && !s.replaying.Load() && s.opts.Spool.Len() > 0 {
			// A replay that failed left events behind: send them now.
			s.replayMu.Lock()
			s.startReplayLocked(ctx)
			s.replayMu.Unlock()
		}
		if !s.down() || !s.queueFull(in) {
			fullSince = time.Time{}
			continue
		}
		if fullSince.IsZero() {
			fullSince = time.Now()
		}
		if time.Since(fullSince) < s.opts.SpoolAfter {
			continue
		}
		total := 0
		for s.down() && s.queueAbove(in, 0.5) && ctx.Err() == nil {
			s.replayMu.Lock()
			buf = in.TryGet(buf, 1024)
			if len(buf) == 0 {
				s.replayMu.Unlock()
				break
			}
			var journaled []*pipeline.Event
			if s.opts.Journal != nil {
				// Write-ahead events go to the journal, as always: in the
				// spool they could overtake older journaled ones.
				buf, journaled = s.journalLocked(buf)
			}
			if len(buf) == 0 {
				s.replayMu.Unlock()
				s.settleJournaled(in, journaled)
				continue
			}
			if err := s.opts.Spool.Append(buf); err != nil {
				s.replayMu.Unlock()
				s.settleJournaled(in, journaled)
				s.log.Error("spool events while the output is down failed", "events", len(buf), "err", err)
				items := make([]item, len(buf))
				for i, ev := range buf {
					items[i] = item{ev: ev}
				}
				s.pool.push(items)
				break
			}
			// They go out before anything still queued, once the output
			// is back.
			s.startReplayLocked(ctx)
			s.replayMu.Unlock()
			s.settleJournaled(in, journaled)
			for _, ev := range buf {
				in.Settle(ev, pipeline.Delivered)
			}
			total += len(buf)
		}
		if total > 0 {
			s.spooled.Add(int64(total))
			s.log.Warn("output down with a full queue; events spooled", "events", total)
		}
	}
}

// down reports whether no worker can send now.
func (s *Sender) down() bool { return s.up.Load() == 0 }

// fill is the queue's fill ratio: the larger of events/limit and
// bytes/limit, with the queue's own bounds unless the options set others.
func (s *Sender) fill(in *pipeline.Queue) float64 {
	msgs, bytes := in.Depth()
	maxMsgs, maxBytes := in.Bounds()
	if s.opts.QueueMaxMessages > 0 {
		maxMsgs = s.opts.QueueMaxMessages
	}
	if s.opts.QueueMaxBytes > 0 {
		maxBytes = s.opts.QueueMaxBytes
	}
	return pipeline.FillRatio(msgs, bytes, maxMsgs, maxBytes)
}

// queueFull: at 90 % of either bound (an event may not fit exactly).
func (s *Sender) queueFull(in *pipeline.Queue) bool { return s.queueAbove(in, 0.9) }

func (s *Sender) queueAbove(in *pipeline.Queue, ratio float64) bool { return s.fill(in) >= ratio }

// Stats is a snapshot of the sender for the statistics log line.
type Stats struct {
	Available   int   // connections that can send now
	Connections int   // configured concurrent connections
	QueueSize   int64 // events waiting in the output's queue
	Total       int64 // events delivered over the network since start
	SinceLast   int64 // of which since the previous snapshot
	Spooled     int64 // events delivered to the spool since start
	Journaled   int64 // write-ahead events delivered to the journal since start
	Since, At   time.Time
}

// Stats returns a snapshot and starts a new "since last" window.
func (s *Sender) Stats() Stats {
	s.statsMu.Lock()
	defer s.statsMu.Unlock()
	now := time.Now()
	total := s.sent.Load()
	st := Stats{
		Available:   int(s.up.Load()),
		Connections: s.opts.Connections,
		Total:       total,
		SinceLast:   total - s.lastN,
		Spooled:     s.spooled.Load(),
		Journaled:   s.journaled.Load(),
		Since:       s.lastAt,
		At:          now,
	}
	if in := s.in.Load(); in != nil {
		st.QueueSize, _ = in.Depth()
	}
	s.lastAt, s.lastN = now, total
	return st
}

// pool holds events taken but not sent: resends from dead connections of
// exiting workers, spool replays, and events the spool refused.
type pool struct {
	mu     sync.Mutex
	items  []item
	n      atomic.Int64
	notify chan struct{}
}

func (p *pool) push(items []item) {
	p.mu.Lock()
	p.items = append(p.items, items...)
	p.n.Store(int64(len(p.items)))
	p.mu.Unlock()
	select {
	case p.notify <- struct{}{}:
	default:
	}
}

func (p *pool) take(dst []item, max int) []item {
	if p.n.Load() == 0 {
		return dst
	}
	p.mu.Lock()
	n := min(max, len(p.items))
	dst = append(dst, p.items[:n]...)
	rest := copy(p.items, p.items[n:])
	clear(p.items[rest:])
	p.items = p.items[:rest]
	p.n.Store(int64(rest))
	more := rest > 0
	p.mu.Unlock()
	if more {
		select {
		case p.notify <- struct{}{}:
		default:
		}
	}
	return dst
}

func (p *pool) takeAll() []item {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := p.items
	p.items = nil
	p.n.Store(0)
	return out
}

// sampler keeps the last 1000 queue fill samples for gzip activation
// (devo-output.md §6).
type sampler struct {
	mu   sync.Mutex
	ring [1000]float64
	n    int
	i    int
	sum  float64
}

func (m *sampler) add(v float64) {
	m.mu.Lock()
	if m.n == len(m.ring) {
		m.sum -= m.ring[m.i]
	} else {
		m.n++
	}
	m.ring[m.i] = v
	m.sum += v
	m.i = (m.i + 1) % len(m.ring)
	m.mu.Unlock()
}

func (m *sampler) mean() (float64, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.n == 0 {
		return 0, false
	}
	return m.sum / float64(m.n), true
}

// wantGzip applies the threshold rule of devo-output.md §6.
func (s *Sender) wantGzip() bool {
	t := s.opts.GzipThreshold
	if t < 0 {
		return true
	}
	if t > 1 {
		return false
	}
	m, ok := s.sampler.mean()
	return ok && m >= t
}

// backoff is capped exponential backoff with full jitter; after retries
// attempts it stays at the cap (devo-output.md §15.5).
type backoff struct {
	initial, max time.Duration
	retries      int
	attempt      int
}

func (b *backoff) next() time.Duration {
	b.attempt++
	d := b.max
	if b.attempt <= b.retries {
		d = b.initial
		for i := 1; i < b.attempt && d < b.max; i++ {
			d *= 2
		}
		d = min(d, b.max)
	}
	return time.Duration(rand.Int64N(int64(d))) + 1
}

func (b *backoff) reset() { b.attempt = 0 }

// wait sleeps d unless ctx ends first; it reports whether d passed.
func wait(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
