// Package pullengine is the loop shared by the API pullers (CloudTrail
// LookupEvents today; GuardDuty, CloudWatch Logs and metrics next): it
// walks time windows from a saved checkpoint, runs each window's requests
// under a rate limiter with backoff on throttling, hands every window's
// events to the pipeline as one Batch, and advances the checkpoint only over
// the contiguous prefix of windows whose events were all delivered.
//
// A source describes a stream (what has its own checkpoint: a region's
// trail, a log group, a detector) with the Stream interface; the engine owns
// the cycle, the product's cycle lines, the ordered finalizer, edge
// de-duplication, progress lines and the checkpoint in state.Store.
package pullengine

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"sync/atomic"
	"time"

	"github.com/devo-aws-collector/devo-aws-collector/internal/ctxtime"
	"github.com/devo-aws-collector/devo-aws-collector/internal/lease"
	"github.com/devo-aws-collector/devo-aws-collector/internal/pipeline"
	"github.com/devo-aws-collector/devo-aws-collector/internal/state"
	"github.com/devo-aws-collector/devo-aws-collector/internal/stats"
)

// Window is one span a stream pulls as a unit: [Start, End], both ends
// inclusive, as LookupEvents and FilterLogEvents treat their bounds.
type Window struct {
	// Seq is the window's position in pull order within one Run; the
	// engine sets it.
	Seq        uint64
	Start, End time.Time
}

// Stream is one checkpointed stream of a source.
type Stream interface {
	// Windows splits the time after from into the windows to pull, oldest
	// first, given the current time; none when there is nothing to pull yet.
	Windows(from, now time.Time) []Window
	// Pull reads one window, handing each record to p (Seen for
	// de-duplication, Emit for the pipeline) and running each request
	// through p.Call. An error fails the window, which is pulled again.
	Pull(ctx context.Context, p *Pull) error
	// CycleStarted is called at the start of every cycle with the
	// checkpoint it starts from and the number of windows it will pull
	// (new ones and failed ones pulled again), for the source's own lines.
	CycleStarted(c *stats.Cycle, from, now time.Time, windows int)
	// WindowPulled is called after the nth window pull of the cycle.
	WindowPulled(c *stats.Cycle, n int)
	// CycleEnded is called when every window of the cycle was pulled
	// (their batches may still be in flight), before the wait.
	CycleEnded(c *stats.Cycle)
}

// Aligner is implemented by a Stream whose cycles follow a fixed grid (the
// CloudWatch metrics puller wakes once per period, just after a period's
// data is complete) rather than a period after the previous cycle began.
type Aligner interface {
	// CycleOffset is how far the cycle that started at start lies from
	// its grid point, negative when it started after it. The engine logs
	// it ("Applied an offset to wait, retrieval_offset: …") and adds it to
	// the wait, so that the next cycle starts a period after the grid point.
	CycleOffset(start time.Time) time.Duration
}

// Defaults of Config.
const (
	DefaultPeriod        = 60 * time.Second
	DefaultEdgeSpan      = time.Minute
	DefaultMaxPending    = 32
	DefaultProgressEvery = 30 * time.Second
	DefaultCallAttempts  = 6
	DefaultGrace         = 5 * time.Second
)

// Config describes one stream's engine. Key, Store, Stream and Start are
// required.
type Config struct {
	// Key is where the checkpoint lives. Input, Service and Region name
	// the unit; Sub names the stream within it.
	Key   state.Key
	Store state.Store
	// Stream is the source's side.
	Stream Stream
	// Origin is the configured start as written (start_time, "" when
	// absent); see Checkpoint.Origin.
	Origin string
	// Start is where the walk begins when there is no checkpoint.
	Start func(now time.Time) time.Time
	// Floor, when set, is the oldest instant that can still be read (a
	// history limit such as CloudTrail's 90 days). A start or a checkpoint
	// before it is moved up to it, with a WARN.
	Floor func(now time.Time) time.Time
	// Period is the cycle length, request_period_in_seconds [60s].
	Period time.Duration
	// EdgeSpan is how far before a window's end the IDs of its events are
	// kept for the next window's de-duplication [1m].
	EdgeSpan time.Duration
	// MaxPending bounds the windows pulled and not yet passed by the
	// checkpoint; pulling waits beyond it [32].
	MaxPending int
	// ProgressEvery is the period of the progress line during long
	// backfills [30s].
	ProgressEvery time.Duration
	// CallAttempts bounds the attempts of one request through Pull.Call,
	// on top of the SDK's own retries [6].
	CallAttempts int
	// RetryBase and RetryMax bound the backoff between attempts of a
	// request and between pulls of a failed window [1s, 60s].
	RetryBase, RetryMax time.Duration
	// Grace is how long a Run that ends waits for the windows in flight
	// to settle, so that their checkpoint is saved before it returns [5s].
	Grace time.Duration

	Log       *slog.Logger  // the unit's logger; nil discards
	Unit      *stats.Unit   // may be nil
	Counters  *stats.Stream // may be nil
	Now       func() time.Time
	OnCommit  func(Mark) // called after each checkpoint save; tests use it
	StreamTag string     // names the stream in log lines ("" for the unit's only stream)
}

// Engine runs one stream. It implements pipeline.Source.
type Engine struct {
	c    Config
	log  *slog.Logger
	runs chan struct{} // a one-slot lock: one Run at a time

	// epoch numbers Runs; a finalizer of an older Run no longer saves, so
	// a late settlement cannot move the checkpoint behind a newer Run.
	epoch chan uint64
	// notHeldSaid is set once a checkpoint write of the current Run was
	// refused for a lost lease, so that the loss is said once, not per
	// commit.
	notHeldSaid atomic.Bool
	ctrs        *stats.Stream
	unitSt      *stats.Unit
}

// New checks c, fills its defaults and returns an Engine.
func New(c Config) (*Engine, error) {
	var errs []error
	if c.Store == nil {
		errs = append(errs, errors.New("pullengine: nil Store"))
	}
	if c.Stream == nil {
		errs = append(errs, errors.New("pullengine: nil Stream"))
	}
	if c.Start == nil {
		errs = append(errs, errors.New("pullengine: nil Start"))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	if c.Period <= 0 {
		c.Period = DefaultPeriod
	}
	if c.EdgeSpan <= 0 {
		c.EdgeSpan = DefaultEdgeSpan
	}
	if c.MaxPending <= 0 {
		c.MaxPending = DefaultMaxPending
	}
	if c.ProgressEvery <= 0 {
		c.ProgressEvery = DefaultProgressEvery
	}
	if c.CallAttempts <= 0 {
		c.CallAttempts = DefaultCallAttempts
	}
	if c.RetryBase <= 0 {
		c.RetryBase = time.Second
	}
	if c.RetryMax <= 0 {
		c.RetryMax = time.Minute
	}
	if c.Grace <= 0 {
		c.Grace = DefaultGrace
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	log := c.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if c.StreamTag != "" {
		log = log.With("stream", c.StreamTag)
	}
	ctrs := c.Counters
	if ctrs == nil {
		ctrs = &stats.Stream{}
	}
	e := &Engine{c: c, log: log, runs: make(chan struct{}, 1), epoch: make(chan uint64, 1), ctrs: ctrs, unitSt: c.Unit}
	e.epoch <- 0
	return e, nil
}

// run is the state of one Run.
type run struct {
	e     *Engine
	out   pipeline.Emitter
	fin   *finalizer
	cycle *stats.Cycle

	// last is the newest window added; new windows start at its end.
	last *slot

	// The current cycle's progress, read by the progress goroutine.
	planned, pulledN atomic.Int64
	cycleStart       atomic.Int64 // Unix nanoseconds
	startGenerated   atomic.Int64
}

// Run pulls until ctx ends; see pipeline.Source. On the way out it waits a
// short grace period for the windows in flight to settle; windows that
// settle later still move the checkpoint until the next Run starts.
func (e *Engine) Run(ctx context.Context, out pipeline.Emitter) error {
	select {
	case e.runs <- struct{}{}:
	case <-ctx.Done():
		return nil
	}
	defer func() { <-e.runs }()
	epoch := <-e.epoch + 1
	e.notHeldSaid.Store(false)
	e.epoch <- epoch

	now := e.c.Now()
	base, err := e.resume(now)
	if err != nil {
		return err
	}
	r := &run{e: e, out: out}
	r.fin = newFinalizer(base, func(m Mark, passed int) {
		e.ctrs.WindowsCommitted.Add(int64(passed))
		e.commit(epoch, m)
	})
	e.ctrs.WindowsPending.Store(0)

	stats.LogStartingCollection(e.log, e.c.Period)
	progressCtx, stopProgress := context.WithCancel(ctx)
	defer stopProgress()
	go r.progress(progressCtx)

	err = r.loop(ctx)
	stopProgress()
	r.drain(e.c.Grace)
	if ctx.Err() != nil {
		return nil
	}
	return err
}

// resume returns the mark to start from: the saved checkpoint, or the
// configured start.
func (e *Engine) resume(now time.Time) (Mark, error) {
	cp, ok, err := LoadCheckpoint(e.c.Store, e.c.Key)
	if err != nil {
		return Mark{}, err
	}
	if ok && cp.Origin != e.c.Origin {
		e.log.Info("start_time changed, checkpoint discarded", "checkpoint", cp.End, "was", cp.Origin, "now", e.c.Origin)
		if err := e.c.Store.Delete(e.c.Key); err != nil {
			return Mark{}, err
		}
		ok = false
	}
	m := Mark{End: e.c.Start(now)}
	if ok {
		m = Mark{End: cp.End, Edge: cp.Edge}
		e.log.Info("resuming from checkpoint", "checkpoint", cp.End.UTC().Format(time.RFC3339), "saved", cp.Saved.UTC().Format(time.RFC3339))
	}
	if e.c.Floor != nil {
		if floor := e.c.Floor(now); m.End.Before(floor) {
			e.log.Warn("start is older than the API's history, starting at the oldest available instant", "start", m.End.UTC().Format(time.RFC3339), "oldest", floor.UTC().Format(time.RFC3339))
			m = Mark{End: floor}
		}
	}
	if m.End.After(now) {
		m = Mark{End: now}
	}
	if !ok {
		e.ctrs.Checkpoint.Store(0)
	} else {
		e.ctrs.Checkpoint.Store(cp.End.Unix())
	}
	return m, nil
}

// Retire ends the last Run's hold on the checkpoint: its windows that
// settle afterwards no longer save it. A source calls it when a Run ended
// because the stream's lease was lost: the new owner carries on from the
// checkpoint, and a late settlement of this Run could only move it back
// (the shared store refuses it while the lease is elsewhere, but not once
// this collector holds the lease again and before its next Run starts).
func (e *Engine) Retire() {
	cur := <-e.epoch
	e.epoch <- cur + 1
}

// RunLeased runs the stream while this collector holds its lease in h,
// named by the checkpoint key: a lost lease stops Run and retires it (the
// checkpoint is the new owner's), a regained one runs it again from the
// checkpoint. It returns as h.Run does: nil once ctx ends, or Run's error
// while the lease is held.
func (e *Engine) RunLeased(ctx context.Context, h lease.Holder, out pipeline.Emitter) error {
	return h.Run(ctx, e.c.Key, func(lctx context.Context) error {
		err := e.Run(lctx, out)
		if ctx.Err() == nil && lctx.Err() != nil {
			e.Retire() // the lease was lost: the checkpoint is the new owner's
		}
		return err
	})
}

// commit saves m if epoch is still the current Run's.
func (e *Engine) commit(epoch uint64, m Mark) {
	cur := <-e.epoch
	defer func() { e.epoch <- cur }()
	if cur != epoch {
		return
	}
	cp := Checkpoint{Origin: e.c.Origin, End: m.End, Edge: m.Edge, Saved: e.c.Now()}
	if err := saveCheckpoint(e.c.Store, e.c.Key, cp); err != nil {
		if errors.Is(err, lease.ErrNotHeld) {
			// Another collector holds the stream now and carries on from
			// the last checkpoint this one saved; what this Run delivered
			// since is delivered again by it (duplicates, never a gap).
			if !e.notHeldSaid.Swap(true) {
				e.log.Info("lease lost, checkpoint left to the new owner", "key", e.c.Key.String())
			}
			return
		}
		// The next commit tries again; until then a restart re-reads a
		// little more, which duplicates, never loses.
		e.log.Error("checkpoint not saved", "key", e.c.Key.String(), "err", err)
		return
	}
	e.ctrs.Checkpoint.Store(m.End.Unix())
	if e.c.OnCommit != nil {
		e.c.OnCommit(m)
	}
}

func (r *run) loop(ctx context.Context) error {
	e := r.e
	for {
		start := e.c.Now()
		r.cycle = stats.NewCycle(e.log, e.unitSt, start)
		retry := r.fin.takeFailed()
		from := r.frontier()
		wins := e.c.Stream.Windows(from, start)
		var seq uint64
		if last := r.lastSeq(); last > 0 {
			seq = last
		}
		for i := range wins {
			seq++
			wins[i].Seq = seq
		}
		e.ctrs.WindowsPlanned.Add(int64(len(wins)))
		r.planned.Store(int64(len(wins) + len(retry)))
		r.pulledN.Store(0)
		r.cycleStart.Store(start.UnixNano())
		r.startGenerated.Store(r.generated())
		e.c.Stream.CycleStarted(r.cycle, from, start, len(wins)+len(retry))

		for _, s := range retry {
			if err := r.pullSlot(ctx, s); err != nil {
				return err
			}
		}
		for _, w := range wins {
			// Failed windows go first: the checkpoint cannot pass them.
			for _, s := range r.fin.takeFailed() {
				r.planned.Add(1)
				if err := r.pullSlot(ctx, s); err != nil {
					return err
				}
			}
			if err := r.waitRoom(ctx); err != nil {
				return err
			}
			s := r.fin.add(w)
			e.ctrs.WindowsPending.Store(int64(r.fin.pending()))
			r.last = s
			if err := r.pullSlot(ctx, s); err != nil {
				return err
			}
		}
		e.c.Stream.CycleEnded(r.cycle)
		var wait time.Duration
		if a, ok := e.c.Stream.(Aligner); ok {
			wait = r.cycle.LogCompletedWithOffset(e.c.Period, a.CycleOffset(start))
		} else {
			wait = r.cycle.LogCompleted(e.c.Period)
		}
		if err := r.idle(ctx, wait); err != nil {
			return nil
		}
	}
}

// idle waits d between cycles; a window that fails meanwhile (its batch
// settled with an undelivered event) is pulled again at once rather than a
// period later.
func (r *run) idle(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(max(d, 0))
	defer t.Stop()
	for {
		// A failure signalled while the loop was busy was consumed there.
		for _, s := range r.fin.takeFailed() {
			if err := r.pullSlot(ctx, s); err != nil {
				return err
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
			return nil
		case <-r.fin.changed:
		}
	}
}

// frontier is where new windows start: the end of the last window added,
// or the checkpoint.
func (r *run) frontier() time.Time {
	if r.last != nil {
		return r.last.w.End
	}
	return r.fin.mark().End
}

func (r *run) lastSeq() uint64 {
	if r.last != nil {
		return r.last.w.Seq
	}
	return 0
}

func (r *run) generated() int64 {
	if r.e.unitSt == nil {
		return 0
	}
	return r.e.unitSt.Generated.Load()
}

// waitRoom waits until fewer than MaxPending windows are unsettled,
// pulling failed windows again meanwhile: they are what holds the rest.
func (r *run) waitRoom(ctx context.Context) error {
	for r.fin.pending() >= r.e.c.MaxPending {
		for _, s := range r.fin.takeFailed() {
			r.planned.Add(1)
			if err := r.pullSlot(ctx, s); err != nil {
				return err
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-r.fin.changed:
		case <-time.After(100 * time.Millisecond):
		}
	}
	return nil
}

// pullSlot pulls s (after a backoff when it failed before) with a batch of
// its own, whose settlement tells the finalizer. It returns ctx's error
// when ctx ends, and the pull's error when it is not worth repeating (see
// below); a window that fails otherwise is pulled again later.
func (r *run) pullSlot(ctx context.Context, s *slot) error {
	e := r.e
	if s.tries > 0 {
		wait := backoff(e.c.RetryBase, e.c.RetryMax, s.tries)
		e.log.Info("pulling a failed window again", "start", s.w.Start.UTC().Format(time.RFC3339), "end", s.w.End.UTC().Format(time.RFC3339), "attempt", s.tries+1, "after", wait.Round(time.Millisecond))
		if !ctxtime.Sleep(ctx, wait) {
			// Leave it failed for the next Run.
			r.fin.settle(s, false)
			return ctx.Err()
		}
	}
	var pullErr error
	b := pipeline.NewBatch(func(res pipeline.Result) {
		ok := res.OK() && pullErr == nil
		if !ok {
			e.ctrs.WindowsFailed.Add(1)
		}
		r.fin.settle(s, ok)
		e.ctrs.WindowsPending.Store(int64(r.fin.pending()))
	})
	prev := r.fin.edgeBefore(s)
	p := &Pull{Window: s.w, Cycle: r.cycle, run: r, b: b, seen: make(map[IDHash]bool, len(prev))}
	for _, h := range prev {
		p.seen[h] = true
	}
	pullErr = e.c.Stream.Pull(ctx, p)
	r.fin.pulled(s, p.keptEdge())
	fatal := false
	if pullErr != nil {
		b.Fail()
		if ctx.Err() == nil {
			// A throttling or transient error that outlasted Pull.Call's
			// attempts fails the window alone: it is pulled again later.
			// Anything else (access denied, a bad parameter) would fail
			// every window the same way: the unit stops, so that the
			// runner reports it degraded and restarts it with backoff.
			fatal = !retryable(pullErr)
			if !fatal {
				e.log.Warn("window pull failed, it will be pulled again", "start", s.w.Start.UTC().Format(time.RFC3339), "end", s.w.End.UTC().Format(time.RFC3339), "err", pullErr)
			}
		}
	}
	b.Close()
	e.c.Stream.WindowPulled(r.cycle, int(r.pulledN.Add(1)))
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if fatal {
		return fmt.Errorf("pull %s – %s: %w", s.w.Start.UTC().Format(time.RFC3339), s.w.End.UTC().Format(time.RFC3339), pullErr)
	}
	return nil
}

// drain waits up to grace for the windows in flight to settle.
func (r *run) drain(grace time.Duration) {
	deadline := time.After(grace)
	for r.fin.unsettled() > 0 {
		select {
		case <-deadline:
			return
		case <-r.fin.changed:
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// progress logs, every ProgressEvery while a cycle has windows left, how
// far the walk is.
func (r *run) progress(ctx context.Context) {
	ctxtime.Every(ctx, r.e.c.ProgressEvery, r.logProgress)
}

func (r *run) logProgress() {
	e := r.e
	total, done := r.planned.Load(), r.pulledN.Load()
	if done >= total {
		return // the cycle is caught up: nothing worth a line
	}
	elapsed := e.c.Now().Sub(time.Unix(0, r.cycleStart.Load()))
	rate := 0.0
	if s := elapsed.Seconds(); s > 0 {
		rate = float64(r.generated()-r.startGenerated.Load()) / s
	}
	eta := "unknown"
	if done > 0 {
		eta = (time.Duration(float64(elapsed) / float64(done) * float64(total-done))).Round(time.Second).String()
	}
	mark := r.fin.mark()
	e.log.Info("pull progress", "windows_done", done, "windows_total", total,
		"events_per_second", fmt.Sprintf("%.1f", rate), "eta", eta,
		"checkpoint", mark.End.UTC().Format(time.RFC3339), "windows_pending", r.fin.pending())
}

// backoff is the wait before attempt n+1 (n ≥ 1): base·2^(n−1) capped at
// max, with ±25 % jitter so that streams do not retry in step.
func backoff(base, max time.Duration, n int) time.Duration {
	d := base
	for i := 1; i < n && d < max; i++ {
		d *= 2
	}
	d = min(d, max)
	j := time.Duration(rand.Int64N(int64(d)/2+1)) - d/4
	return d + j
}

// Pull is one attempt at one window, handed to Stream.Pull.
type Pull struct {
	// Window is the window to read.
	Window Window
	// Cycle counts the cycle's responses and records; the source adds
	// received/dropped/other-region counts, Emit counts generated and Seen
	// counts duplicated.
	Cycle *stats.Cycle

	run  *run
	b    *pipeline.Batch
	seen map[IDHash]bool // id → inherited from the previous window and not yet seen here
	edge []IDHash
}

// Seen reports whether the record id, of time t, was already handed on:
// earlier in this window, or by the previous window at the edge the two
// share. A record seen before is counted as duplicated. Otherwise it is
// remembered, and kept for the next window when t is within EdgeSpan of this
// window's end.
//
// A record inherited from the previous window and seen again here is kept
// for the next window too when it is within EdgeSpan of this window's end:
// a source whose reads overlap the previous window by more than one window
// (CloudWatch Logs re-reads a few minutes before each window) would
// otherwise hand it on again two windows later.
//
// IDs are remembered by their HashID, never as strings: id is not retained.
func (p *Pull) Seen(id string, t time.Time) bool {
	h := HashID(id)
	edge := !t.Before(p.Window.End.Add(-p.run.e.c.EdgeSpan))
	if inherited, ok := p.seen[h]; ok {
		if inherited {
			p.seen[h] = false
			if edge {
				p.edge = append(p.edge, h)
			}
		}
		p.Cycle.AddDuplicated(1)
		return true
	}
	p.seen[h] = false
	if edge {
		p.edge = append(p.edge, h)
	}
	return false
}

// keptEdge is the pull's edge as the finalizer keeps it until the window is
// passed: without the slack of append's growth (up to a quarter on large
// slices), which a busy CloudWatch Logs group would otherwise keep in each of
// up to MaxPending windows.
func (p *Pull) keptEdge() []IDHash {
	if cap(p.edge)-len(p.edge) > len(p.edge)/16 {
		return slices.Clone(p.edge)
	}
	return p.edge
}

// Batch is the window's batch, for pipeline.NewEvent.
func (p *Pull) Batch() *pipeline.Batch { return p.b }

// Emit hands ev (made with p.Batch()) to the pipeline and counts it as
// generated. It waits while an output's queue is full.
func (p *Pull) Emit(ctx context.Context, ev *pipeline.Event) error {
	p.Cycle.AddGenerated(1)
	return p.run.out.Emit(ctx, ev)
}

// Call runs one request, counting it as a response once it succeeds, and
// repeats it after a backoff while it fails with a throttling or transient
// error, up to Config.CallAttempts attempts. The rate limiter itself is on
// the client (APIOption), so SDK retries wait too.
func (p *Pull) Call(ctx context.Context, what string, fn func(ctx context.Context) error) error {
	e := p.run.e
	for attempt := 1; ; attempt++ {
		err := fn(ctx)
		if err == nil {
			p.Cycle.AddResponses(1)
			return nil
		}
		if !retryable(err) || attempt >= e.c.CallAttempts || ctx.Err() != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
		wait := backoff(e.c.RetryBase, e.c.RetryMax, attempt)
		e.log.Warn("request failed, retrying", "request", what, "attempt", attempt, "after", wait.Round(time.Millisecond), "throttled", IsThrottle(err), "err", err)
		if !ctxtime.Sleep(ctx, wait) {
			return fmt.Errorf("%s: %w", what, ctx.Err())
		}
	}
}
