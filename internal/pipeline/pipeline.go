package pipeline

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"runtime/debug"
	"sync"
	"time"
)

// Emitter takes a source's events towards every output.
type Emitter interface {
	// Emit hands ev to every output, waiting while an output's queue is full
	// or the pipeline's in-flight budget is spent.
	// It registers one pending fate per output in the event's batch before
	// queueing. If ctx ends first it returns ctx.Err(); the copies that could
	// not be queued are settled Failed, so the batch still settles.
	Emit(ctx context.Context, ev *Event) error
}

// Source reads one (input, service, region) unit of work from AWS.
//
// Run runs until ctx ends and returns nil then; any other return is a
// failure and the runner restarts the unit after a backoff. A source never
// sleeps without also watching ctx.Done(). When ctx ends a source stops
// pulling, may wait a bounded grace period for its in-flight batches to
// settle, and returns.
type Source interface {
	Run(ctx context.Context, out Emitter) error
}

// Sink is an output.
//
// Run takes events from in until in is closed and empty, or until ctx ends.
// Every event it takes gets exactly one fate through in.Settle — Delivered
// only when the output holds it safely. Before returning, a sink settles
// everything it still holds (Delivered if it spooled it durably, Failed
// otherwise). Once it has settled an event, a sink never reads it again: the
// source may reuse the payload's memory (see Ref). Run returns an error only
// when the output cannot work at all (for example its client certificate is
// rejected at start-up).
type Sink interface {
	Run(ctx context.Context, in *Queue) error
}

// Output is one named sink with its queue.
type Output struct {
	Name  string
	Sink  Sink
	Queue *Queue
}

// Unit is one isolated (input, service, region) source.
type Unit struct {
	Name   string // "input/service/region", for logs
	Source Source
	// Counters, when set, count the unit's events by final outcome.
	Counters Counters
}

// Options tune the runner. Zero values take the defaults in brackets.
type Options struct {
	RestartMin   time.Duration // first restart backoff [1s]
	RestartMax   time.Duration // backoff cap [60s]
	HealthyAfter time.Duration // a unit that ran this long starts its backoff over [1m]
	DrainTimeout time.Duration // how long outputs may take to drain at shutdown [30s]
	// InFlightBytes bounds the memory held by events from their emission
	// to their last fate, across all units and outputs (see Budget);
	// 0 leaves it unbounded.
	InFlightBytes int64
	// Check, when set, runs beside the outputs and units from the start
	// (an output's start-up probe); an error from it stops the pipeline
	// like a failed output, and Run returns it. Sources do not wait for it:
	// their events wait in the queues, or go out while it runs.
	Check func(ctx context.Context) error
	// UnitState, when set, is told each unit's state changes: "running",
	// "restarting" (with the error) and "stopped".
	UnitState func(unit, state string, err error)
}

// Pipeline wires units to outputs.
type Pipeline struct {
	log     *slog.Logger
	opts    Options
	outputs []*Output
	units   []Unit
	budget  *Budget
}

// New returns a pipeline. Every event of every unit goes to every output.
func New(log *slog.Logger, opts Options, outputs []*Output, units []Unit) *Pipeline {
	if opts.RestartMin <= 0 {
		opts.RestartMin = time.Second
	}
	if opts.RestartMax <= 0 {
		opts.RestartMax = time.Minute
	}
	if opts.HealthyAfter <= 0 {
		opts.HealthyAfter = time.Minute
	}
	if opts.DrainTimeout <= 0 {
		opts.DrainTimeout = 30 * time.Second
	}
	return &Pipeline{log: log, opts: opts, outputs: outputs, units: units, budget: NewBudget(opts.InFlightBytes)}
}

// Budget is the pipeline's in-flight bound, nil when unbounded.
func (p *Pipeline) Budget() *Budget { return p.budget }

// Emit implements Emitter.
func (p *Pipeline) Emit(ctx context.Context, ev *Event) error {
	if ev.batch != nil {
		ev.batch.add(len(p.outputs))
	}
	ev.left.Store(int32(len(p.outputs)))
	if b := p.budget; b != nil && len(p.outputs) > 0 {
		if err := b.acquire(ctx, ev.cost()); err != nil {
			for range p.outputs {
				ev.settle(Failed)
			}
			return err
		}
		ev.held = b
	}
	for i, o := range p.outputs {
		if err := o.Queue.Put(ctx, ev); err != nil {
			for range p.outputs[i:] {
				ev.settle(Failed)
			}
			return err
		}
	}
	return nil
}

// Run starts the outputs, then the units, and runs until stop ends. Then it
// shuts down in order: units stop pulling and return (their in-flight
// batches settle meanwhile) → queues close → outputs drain, flush and
// persist what they could not send → every event left gets a fate. hard
// ending (a second signal) cuts every wait short.
//
// It returns the first fatal output error, if any; an output that fails at
// start-up stops the whole pipeline.
func (p *Pipeline) Run(stop, hard context.Context) error {
	sinkCtx, cancelSinks := context.WithCancel(hard)
	defer cancelSinks()

	var sinkWG sync.WaitGroup
	sinkErr := make(chan error, len(p.outputs)+1)
	for _, o := range p.outputs {
		sinkWG.Add(1)
		go func() {
			defer sinkWG.Done()
			if err := p.runSink(sinkCtx, o); err != nil {
				sinkErr <- fmt.Errorf("output %s: %w", o.Name, err)
			}
		}()
	}

	unitCtx, cancelUnits := context.WithCancel(stop)
	defer cancelUnits()
	var unitWG sync.WaitGroup
	for _, u := range p.units {
		unitWG.Add(1)
		go func() {
			defer unitWG.Done()
			p.runUnit(unitCtx, hard, u)
		}()
	}

	if p.opts.Check != nil {
		go func() {
			// An error after stop (the check cut short) is no failure.
			if err := p.opts.Check(unitCtx); err != nil && unitCtx.Err() == nil {
				sinkErr <- err
			}
		}()
	}

	var fatal error
	select {
	case <-stop.Done():
	case fatal = <-sinkErr:
		p.log.Error("output failed, stopping", "err", fatal)
	}
	cancelUnits()

	p.log.Info("stopping sources", "units", len(p.units))
	if !waitGroup(&unitWG, hard) {
		p.log.Warn("sources did not stop before the hard stop")
	}

	for _, o := range p.outputs {
		o.Queue.Close()
	}
	drain, cancelDrain := context.WithTimeout(hard, p.opts.DrainTimeout)
	defer cancelDrain()
	if !waitGroup(&sinkWG, drain) {
		p.log.Warn("outputs did not drain in time, cancelling", "timeout", p.opts.DrainTimeout)
		cancelSinks()
		sinkWG.Wait()
	}
	for _, o := range p.outputs {
		if n := o.Queue.FailRemaining(); n > 0 {
			p.log.Warn("events left unsent at shutdown", "output", o.Name, "events", n)
		}
	}
	if fatal == nil {
		select {
		case fatal = <-sinkErr:
		default:
		}
	}
	return fatal
}

func (p *Pipeline) runSink(ctx context.Context, o *Output) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("panic: %v\n%s", r, debug.Stack())
		}
	}()
	return o.Sink.Run(ctx, o.Queue)
}

// runUnit runs one unit until ctx ends, restarting it with capped
// exponential backoff and full jitter whenever it fails. A panic in a
// source counts as a failure: after start-up the daemon never crashes on
// data.
func (p *Pipeline) runUnit(ctx, hard context.Context, u Unit) {
	log := p.log.With("unit", u.Name)
	backoff := p.opts.RestartMin
	for {
		p.state(u.Name, "running", nil)
		started := time.Now()
		err := p.runSource(ctx, u)
		if ctx.Err() != nil {
			p.state(u.Name, "stopped", nil)
			return
		}
		if err == nil {
			err = errors.New("source returned before shutdown")
		}
		if time.Since(started) >= p.opts.HealthyAfter {
			backoff = p.opts.RestartMin
		}
		wait := time.Duration(rand.Int64N(int64(backoff))) + backoff/2
		log.Error("unit failed, restarting", "err", err, "backoff", wait.Round(time.Millisecond))
		p.state(u.Name, "restarting", err)
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			p.state(u.Name, "stopped", nil)
			return
		case <-t.C:
		}
		backoff = min(backoff*2, p.opts.RestartMax)
	}
}

func (p *Pipeline) runSource(ctx context.Context, u Unit) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("panic: %v\n%s", r, debug.Stack())
		}
	}()
	if u.Counters.Delivered == nil && u.Counters.Failed == nil {
		return u.Source.Run(ctx, p)
	}
	return u.Source.Run(ctx, unitEmitter{p, &u.Counters})
}

// unitEmitter marks each event with its unit's counters.
type unitEmitter struct {
	p *Pipeline
	c *Counters
}

func (e unitEmitter) Emit(ctx context.Context, ev *Event) error {
	ev.unit = e.c
	return e.p.Emit(ctx, ev)
}

func (p *Pipeline) state(unit, state string, err error) {
	if p.opts.UnitState != nil {
		p.opts.UnitState(unit, state, err)
	}
}

// waitGroup waits for wg or ctx, whichever comes first, and reports whether
// wg finished.
func waitGroup(wg *sync.WaitGroup, ctx context.Context) bool {
	done := make(chan struct{})
	go func() {
		wg.Wait()
		close(done)
	}()
	select {
	case <-done:
		return true
	case <-ctx.Done():
		return false
	}
}
