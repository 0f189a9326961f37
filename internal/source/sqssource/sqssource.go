// Package sqssource is the skeleton every SQS-fed service shares
// (service-events-all, sqs-cloudwatch-consumer, audit-events-all with
// audits_s3, non-cloudwatch-logs, cisco-umbrella): the mapping of the
// service's configuration onto the SQS engine, the account and tag caches
// resolved once, and the product's pull-cycle lines. A service supplies only
// its message handler (an sqsengine.Handler), which reads the cycle in
// progress (Unit.Cycle) and its tags (Unit.Tags).
package sqssource

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/devo-aws-collector/devo-aws-collector/internal/config"
	"github.com/devo-aws-collector/devo-aws-collector/internal/pipeline"
	"github.com/devo-aws-collector/devo-aws-collector/internal/sqsengine"
	"github.com/devo-aws-collector/devo-aws-collector/internal/stats"
	"github.com/devo-aws-collector/devo-aws-collector/internal/tag"
)

// Options is what the app gives a service for one (input, service, region)
// unit. Service, Region, SQS and AccountID are required.
type Options struct {
	// Service is the service's effective configuration.
	Service *config.Service
	// Region is the queue's region and the tags' {region_id}.
	Region string
	// InputName names the input in errors (the logger already carries it).
	InputName string
	// SQS is the client for Region.
	SQS sqsengine.Client
	// AccountID returns the effective session's account ({account_id}). It
	// is called at the first Run, until it succeeds.
	AccountID func(ctx context.Context) (string, error)
	// Environment is inputs.aws.environment ({environment}, may be empty).
	Environment string
	// Log is the unit's logger, already scoped with input, service and
	// region by the app; nil discards.
	Log *slog.Logger
	// Stats are the unit's counters; nil counts nothing.
	Stats *stats.Unit
	// Workers is how many messages are handled at once [10].
	Workers int
	// MaxInFlight bounds the messages received and not yet settled
	// [10 × Workers].
	MaxInFlight int
	// CycleInterval is how often the pull-cycle lines are logged, and the
	// lifetime of one @devo_pulling_id [60s]: the product pulls every 60
	// seconds and logs one set of lines per pull.
	CycleInterval time.Duration
	// Tune, when set, may adjust the engine's configuration after the
	// service's settings were applied (tests shorten waits with it).
	Tune func(*sqsengine.Config)
}

// Lines is the product's wording of a service's pull-cycle lines.
type Lines int

const (
	// EventLines: `Starting a new pulling from "<queue>" queue at "<time>"`
	// when a cycle starts, `Received N response(s), received N message(s),
	// generated N message(s), detected_event_types: […], …` when it ends
	// (service-events-all, sqs-cloudwatch-consumer).
	EventLines Lines = iota + 1
	// S3Lines: the same `Starting a new pulling from "<queue>" queue at
	// "<time>"` when a cycle starts, and `Received N response(s), messages
	// (fromSQS/generated): N/N, discarded files: N, …` when it ends (the
	// S3+SQS services).
	S3Lines
)

// EngineConfig maps a service's SQS keys (config.md §9) onto the engine:
// sqs_max_messages, sqs_wait_time_seconds (0 = no long poll, spelled
// NoLongPoll), sqs_visibility_timeout (absent = the queue's own) and
// max_receive_count.
func EngineConfig(svc *config.Service, region string) sqsengine.Config {
	return sqsengine.Config{
		Service:           svc.Name,
		Region:            region,
		Queue:             svc.QueueName,
		MaxMessages:       svc.SQSMaxMessages,
		WaitTime:          svc.SQSWaitTime,
		NoLongPoll:        svc.SQSWaitTime <= 0,
		VisibilityTimeout: svc.SQSVisibilityTimeout,
		MaxReceiveCount:   svc.MaxReceiveCount,
	}
}

// Unit is one SQS service unit: the engine reading the queue with the
// service's handler, the tag values, and the pull cycles. It implements
// pipeline.Source; Run may be called again after it returns.
type Unit struct {
	o      Options
	lines  Lines
	log    *slog.Logger
	engine *sqsengine.Engine

	// values are the tag values, set once the account is known.
	values atomic.Pointer[tag.Values]
	tagsMu sync.Mutex
	tags   map[string]*tag.Cache // by template text

	// cycle is the pull cycle in progress: its ID is the @devo_pulling_id
	// of every event made while it runs.
	cycle atomic.Pointer[stats.Cycle]
	// ended is set when the engine reported the last cycle of a run.
	ended atomic.Bool
}

// New checks the options every SQS service needs and builds the unit
// around h. It never touches the network. A service calls it from its own
// constructor, passing itself (or its handler) as h.
func New(o Options, lines Lines, h sqsengine.Handler) (*Unit, error) {
	if o.Service == nil {
		return nil, errors.New("nil service")
	}
	svc := o.Service
	var errs []error
	if !svc.Kind.SQS() {
		errs = append(errs, fmt.Errorf("service %q is a %s service, not an SQS one", svc.Name, svc.Kind))
	}
	if o.SQS == nil {
		errs = append(errs, errors.New("nil sqs client"))
	}
	if o.AccountID == nil {
		errs = append(errs, errors.New("nil account id function"))
	}
	if o.Region == "" {
		errs = append(errs, errors.New("empty region"))
	}
	if svc.QueueName == "" {
		errs = append(errs, fmt.Errorf("service %q has no sqs_queue_name", svc.Name))
	}
	if h == nil {
		errs = append(errs, errors.New("nil handler"))
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	if o.CycleInterval <= 0 {
		o.CycleInterval = time.Minute
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	u := &Unit{o: o, lines: lines, log: o.Log, tags: map[string]*tag.Cache{}}
	cfg := EngineConfig(svc, o.Region)
	cfg.Workers, cfg.MaxInFlight = o.Workers, o.MaxInFlight
	cfg.Log = o.Log
	if o.Tune != nil {
		o.Tune(&cfg)
	}
	cfg.CycleInterval = o.CycleInterval
	cfg.OnCycle = u.onCycle
	eng, err := sqsengine.New(o.SQS, h, cfg)
	if err != nil {
		return nil, err
	}
	u.engine = eng
	u.cycle.Store(stats.NewCycle(u.log, o.Stats, time.Now()))
	return u, nil
}

// Engine returns the SQS engine, whose counters say what became of the
// messages (deleted, returned, poison).
func (u *Unit) Engine() *sqsengine.Engine { return u.engine }

// Log is the unit's logger.
func (u *Unit) Log() *slog.Logger { return u.log }

// Cycle is the pull cycle in progress. A handler counts into it and takes
// its ID as the @devo_pulling_id.
func (u *Unit) Cycle() *stats.Cycle { return u.cycle.Load() }

// Tags returns the tag cache of template (already checked with
// tag.Compile by the service's constructor), made on first use with the
// unit's values. It is nil before the account is known (Run, or Start).
func (u *Unit) Tags(template string) *tag.Cache {
	v := u.values.Load()
	if v == nil {
		return nil
	}
	u.tagsMu.Lock()
	defer u.tagsMu.Unlock()
	c, ok := u.tags[template]
	if !ok {
		c = tag.NewCache(tag.MustCompile(template), *v)
		u.tags[template] = c
	}
	return c
}

// Start sets the tag values and begins a pull cycle at start, as Run does
// once the account is known; it logs nothing. The handler may then be
// called without Run (golden-file tests fix the @devo_pulling_id this way).
func (u *Unit) Start(values tag.Values, start time.Time) {
	u.values.Store(&values)
	u.cycle.Store(stats.NewCycle(u.log, u.o.Stats, start))
}

// Run resolves the account (at the first Run), then consumes the queue
// until ctx ends, logging the pull-cycle lines.
func (u *Unit) Run(ctx context.Context, out pipeline.Emitter) error {
	if u.values.Load() == nil {
		acct, err := u.o.AccountID(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("resolve the account id for tags: %w", err)
		}
		u.values.Store(&tag.Values{AccountID: acct, RegionID: u.o.Region, Environment: u.o.Environment,
			ServiceName: u.o.Service.Name})
	}
	stats.LogStartingCollection(u.log, u.o.CycleInterval)
	u.ended.Store(false)
	u.startCycle()
	err := u.engine.Run(ctx, out)
	if !u.ended.Load() {
		// The engine never ran its cycles (the queue could not be
		// resolved): the cycle still ends with its line.
		u.onCycle(sqsengine.Cycle{Last: true})
	}
	return err
}

// startCycle begins a pull cycle with a new @devo_pulling_id.
func (u *Unit) startCycle() {
	c := stats.NewCycle(u.log, u.o.Stats, time.Now())
	u.cycle.Store(c)
	c.LogStarting(u.o.Service.QueueName, "queue")
}

// onCycle ends the cycle in progress with its line, and starts the next
// unless the run is ending. Its avg_time_per_source_message is the mean
// time the handler spent on a message, not the cycle's time per receive:
// an idle queue's long polls would read as a multi-second delay.
func (u *Unit) onCycle(ec sqsengine.Cycle) {
	c := u.cycle.Load()
	c.AddResponses(ec.Receives)
	c.SetHandled(ec.Handled, ec.HandleTime)
	switch u.lines {
	case EventLines:
		c.LogEventsReceived()
	case S3Lines:
		c.LogS3Received()
	}
	if ec.Last {
		u.ended.Store(true)
		return
	}
	u.startCycle()
}
