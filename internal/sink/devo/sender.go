// Package devo is the network output shared by devo_platform (mutual TLS,
// Devo line), relay (Devo line over TLS or TCP) and syslog, sidecar and
// in_house_relay (RFC 3164 over TCP or TLS); see docs/outputs.md and
// devo-output.md.
//
// A Sender runs Options.Connections workers. Each owns one connection at a
// time and takes events from the same pipeline.Queue only while it can
// send, so an output that is down becomes backpressure. An event is settled
// Delivered when its bytes were written and the connection was still alive
// AckSettle later, or when it was durably spooled or journaled (durable.go);
// events written to a connection that died inside that window are resent on
// the next one.
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
	"github.com/devo-aws-collector/devo-aws-collector/internal/selflog"
	"github.com/devo-aws-collector/devo-aws-collector/internal/wire"
)

// logLocal is the context of the sender's per-write log lines: they stay
// in the local log and are never delivered through the outputs, where each
// would cause another write (see selflog.Local).
var logLocal = selflog.Local

// Sender is one network output. It implements pipeline.Sink.
type Sender struct {
	opts Options
	log  *slog.Logger
	tls  *tls.Config
	enc  wire.Encoder

	in atomic.Pointer[pipeline.Queue]
	// pool holds events taken but not sent that need no order: resends of
	// exiting workers, events the spool refused. lane holds the chunks of
	// the spool replay and of the journal: one connection at a time takes
	// from it (laneOwner, a worker id + 1; 0 when free) and keeps it until
	// every lane event it took has settled or been handed back, so they
	// reach the receiver in order even over several connections.
	pool      pool
	lane      pool
	laneOwner atomic.Int32
	// wakes has one channel per worker: a token means "look at the pools".
	wakes   []chan struct{}
	sampler sampler

	// dur is the disk side: spool replay, the write-ahead journal,
	// spooling while down (durable.go).
	dur *durable

	everHealthy atomic.Bool // some connection passed the start-up probe
	rejected    atomic.Bool // some connection's client certificate was rejected
	up          atomic.Int32
	downNotify  chan struct{} // a token: up dropped to 0
	connects    atomic.Int64

	sent    atomic.Int64
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
		opts:       opts,
		enc:        wire.NewEncoder(opts.Format, opts.Hostname),
		downNotify: make(chan struct{}, 1),
		stopBg:     make(chan struct{}),
		lastAt:     time.Now(),
	}
	s.log = opts.Logger.With("output", opts.Name, "address", opts.Address, "port", opts.Port)
	s.wakes = make([]chan struct{}, s.opts.Connections)
	for i := range s.wakes {
		s.wakes[i] = make(chan struct{}, 1)
	}
	s.pool.wake, s.lane.wake = s.wakeAll, s.wakeAll
	s.dur = newDurable(&s.opts, s.log, &s.pool, &s.lane, s.down, s.fill, s.downNotify)
	s.dur.refused = s.refused
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
// its probe (probeLength: at most ProbeTimeout).
func (s *Sender) Check(ctx context.Context) error {
	c, err := s.dial(ctx, false)
	if err != nil {
		return err
	}
	t := time.NewTimer(c.probe)
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

// refused reports that the receiver rejected the client certificate and no
// connection was ever healthy: the output cannot work with this
// configuration. Its events are then not spooled (a spool would count them
// Delivered, and their sources would let go of data that never left): they
// are settled Failed, so the sources read them again on the next start.
func (s *Sender) refused() bool { return s.rejected.Load() && !s.everHealthy.Load() }

// item is an event and where its fate goes: the queue, or a spool replay
// chunk.
type item struct {
	ev *pipeline.Event
	rc *replayChunk
}

func (s *Sender) settle(it item, f pipeline.Fate) {
	if it.rc != nil {
		it.rc.settle(f)
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

	s.dur.start(runCtx, in, cancel)

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
	s.dur.wait()
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
	for _, it := range append(s.pool.takeAll(), s.lane.takeAll()...) {
		if it.rc != nil {
			s.settle(it, pipeline.Failed)
			continue
		}
		left = append(left, it)
	}
	for _, ev := range s.dur.journalRest(in, in.TryGet(nil, 1<<30)) {
		left = append(left, item{ev: ev})
	}
	if len(left) == 0 {
		return
	}
	for _, it := range left {
		evs = append(evs, it.ev)
	}
	fate := pipeline.Failed
	if s.dur.spoolRest(evs) {
		fate = pipeline.Delivered
	}
	for _, it := range left {
		s.settle(it, fate)
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
		Spooled:     s.dur.spooled.Load(),
		Journaled:   s.dur.journaled.Load(),
		Since:       s.lastAt,
		At:          now,
	}
	if in := s.in.Load(); in != nil {
		st.QueueSize, _ = in.Depth()
	}
	s.lastAt, s.lastN = now, total
	return st
}

// wakeAll tells every worker to look at the pools.
func (s *Sender) wakeAll() {
	for _, c := range s.wakes {
		select {
		case c <- struct{}{}:
		default:
		}
	}
}

// pool holds items taken but not sent, in order (see Sender.pool and
// Sender.lane).
type pool struct {
	mu    sync.Mutex
	items []item
	n     atomic.Int64
	wake  func()
}

func (p *pool) push(items []item) {
	p.mu.Lock()
	p.items = append(p.items, items...)
	p.n.Store(int64(len(p.items)))
	p.mu.Unlock()
	p.wake()
}

// pushFront puts items back before everything the pool holds: they were
// taken from it earlier.
func (p *pool) pushFront(items []item) {
	if len(items) == 0 {
		return
	}
	p.mu.Lock()
	p.items = append(items[:len(items):len(items)], p.items...)
	p.n.Store(int64(len(p.items)))
	p.mu.Unlock()
	p.wake()
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
		p.wake()
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
