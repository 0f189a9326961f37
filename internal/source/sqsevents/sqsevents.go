// Package sqsevents is the source of the two EventBridge services that read an
// SQS queue fed by an EventBridge rule (aws-formats.md §5, §6):
//
//   - service-events-all: one Devo event per message, the envelope as
//     received plus @devo_pulling_id, tagged cloud.aws.cloudwatch.events or,
//     with auto_event_type, by the envelope's source (aws.ec2 → ec2);
//   - sqs-cloudwatch-consumer: Security Hub findings events split into one
//     Devo event per finding, each a copy of the envelope whose
//     detail.findings holds that one finding, tagged
//     cloud.aws.securityhub.findings.
//
// Receiving, visibility, deletes, poison and FIFO ordering are the shared
// SQS engine's (internal/sqsengine); this package only turns one message
// into events and keeps the product's pull-cycle lines.
package sqsevents

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/devo-aws-collector/devo-aws-collector/internal/config"
	"github.com/devo-aws-collector/devo-aws-collector/internal/format/eventbridge"
	"github.com/devo-aws-collector/devo-aws-collector/internal/format/jsonpay"
	"github.com/devo-aws-collector/devo-aws-collector/internal/pipeline"
	"github.com/devo-aws-collector/devo-aws-collector/internal/sqsengine"
	"github.com/devo-aws-collector/devo-aws-collector/internal/stats"
	"github.com/devo-aws-collector/devo-aws-collector/internal/tag"
)

// Options is what the app gives New for one (input, service, region) unit.
type Options struct {
	// Service is the service's effective configuration; its Kind must be
	// config.EventBridge or config.SecurityHub.
	Service *config.Service
	// Region is the region pulled: the queue's region and {region_id}.
	Region string
	// InputName names the input in New's errors (the logger already
	// carries it).
	InputName string
	// SQS is the client for Region.
	SQS sqsengine.Client
	// AccountID returns the effective session's account ({account_id}); it
	// is called once per Run, before the first receive.
	AccountID func(ctx context.Context) (string, error)
	// Environment is inputs.aws.environment ({environment}, may be empty).
	Environment string
	// Log is the unit's logger (already scoped with input, service and
	// region by the app); nil discards.
	Log *slog.Logger
	// Stats are the unit's counters; nil counts nothing.
	Stats *stats.Unit
	// Workers is how many messages are turned into events at once [10].
	Workers int
}

// cycleInterval is how often the pull-cycle lines are logged: the product
// pulls every 60 seconds and logs one pair of lines per pull.
const cycleInterval = 60 * time.Second

// source is one unit's EventBridge or Security Hub consumer. It implements
// pipeline.Source and sqsengine.Handler.
type source struct {
	o      Options
	svc    *config.Service
	kind   config.ServiceKind
	log    *slog.Logger
	tmpl   *tag.Template
	derive *tag.Deriver
	engine *sqsengine.Engine

	// interval is how often a cycle ends (cycleInterval; tests shorten it).
	interval time.Duration
	now      func() time.Time

	// tags is set by Run once the account is known.
	tags atomic.Pointer[tag.Cache]
	// cycle is the pull cycle in progress: its ID is the @devo_pulling_id
	// of every event made while it runs.
	cycle atomic.Pointer[stats.Cycle]
	// receivesAtStart is the engine's receive count when the cycle in
	// progress started (the engine counts since it was made).
	receivesAtStart atomic.Int64

	// dropped remembers the message ids already counted as unreadable, so a
	// message received again is counted once.
	droppedMu sync.Mutex
	dropped   map[string]struct{}
}

// New returns the source of an EventBridge (service-events-all) or Security
// Hub (sqs-cloudwatch-consumer) service. It checks its options and never
// touches the network.
func New(o Options) (pipeline.Source, error) {
	return newSource(o, nil)
}

// newSource is New with a hook that may adjust the engine's settings
// (tests shorten waits and backoffs with it).
func newSource(o Options, tune func(*sqsengine.Config)) (*source, error) {
	var errs []error
	if o.Service == nil {
		return nil, errors.New("sqsevents: nil service")
	}
	svc := o.Service
	if svc.Kind != config.EventBridge && svc.Kind != config.SecurityHub {
		errs = append(errs, fmt.Errorf("service %q is a %s service, not eventbridge or securityhub", svc.Name, svc.Kind))
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
	tmpl, err := tag.Compile(svc.TagTemplate)
	if err != nil {
		errs = append(errs, fmt.Errorf("service %q: %w", svc.Name, err))
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("sqsevents: input %q: %w", o.InputName, errors.Join(errs...))
	}
	log := o.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &source{
		o:        o,
		svc:      svc,
		kind:     svc.Kind,
		log:      log,
		tmpl:     tmpl,
		derive:   svc.Deriver(),
		interval: cycleInterval,
		now:      time.Now,
		dropped:  map[string]struct{}{},
	}
	// The engine reads 0 as "default" (20 s); the config's 0 means no long
	// poll, which the engine spells as a negative wait.
	wait := svc.SQSWaitTime
	if wait == 0 {
		wait = -1
	}
	cfg := sqsengine.Config{
		Service:           svc.Name,
		Region:            o.Region,
		Queue:             svc.QueueName,
		MaxMessages:       svc.SQSMaxMessages,
		WaitTime:          wait,
		VisibilityTimeout: svc.SQSVisibilityTimeout,
		Workers:           o.Workers,
		MaxReceiveCount:   svc.MaxReceiveCount,
		Log:               log,
	}
	if tune != nil {
		tune(&cfg)
	}
	eng, err := sqsengine.New(o.SQS, s, cfg)
	if err != nil {
		return nil, fmt.Errorf("sqsevents: %w", err)
	}
	s.engine = eng
	return s, nil
}

// Run resolves the account, then consumes the queue until ctx ends. It logs
// the product's pull-cycle lines every minute: "Starting a new pulling
// from …" when a cycle starts, "Received N response(s), …" when it ends.
func (s *source) Run(ctx context.Context, out pipeline.Emitter) error {
	account, err := s.o.AccountID(ctx)
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return fmt.Errorf("resolve account id: %w", err)
	}
	s.tags.Store(tag.NewCache(s.tmpl, tag.Values{
		AccountID:   account,
		RegionID:    s.o.Region,
		Environment: s.o.Environment,
		ServiceName: s.svc.Name,
	}))

	stats.LogStartingCollection(s.log, s.interval)
	s.startCycle()

	cyclesDone := make(chan struct{})
	stopCycles := make(chan struct{})
	go func() {
		defer close(cyclesDone)
		s.cycles(stopCycles)
	}()
	err = s.engine.Run(ctx, out)
	close(stopCycles)
	<-cyclesDone
	return err
}

// cycles ends a cycle and starts the next every interval; when stop closes
// it ends the cycle in progress without starting another.
func (s *source) cycles(stop <-chan struct{}) {
	t := time.NewTicker(s.interval)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			s.endCycle()
			s.startCycle()
		case <-stop:
			s.endCycle()
			return
		}
	}
}

// startCycle begins a pull cycle: a new @devo_pulling_id, and the engine's
// receive count as the base for this cycle's responses.
func (s *source) startCycle() {
	c := stats.NewCycle(s.log, s.o.Stats, s.now())
	s.receivesAtStart.Store(s.engine.Counters().Receives.Load())
	s.cycle.Store(c)
	c.LogStarting(s.svc.QueueName, "queue")
}

// endCycle logs the line that closes the cycle in progress.
func (s *source) endCycle() {
	c := s.cycle.Load()
	c.AddResponses(s.engine.Counters().Receives.Load() - s.receivesAtStart.Load())
	c.LogEventsReceived()
}

// Handle turns one message into events (sqsengine.Handler). A body that is
// not an EventBridge envelope is counted once and returned as poison: it
// stays in the queue until max_receive_count (or the queue's dead-letter
// queue) takes it, and never blocks the messages behind it for longer.
func (s *source) Handle(ctx context.Context, m sqsengine.Message, b *pipeline.Batch, out pipeline.Emitter) error {
	c := s.cycle.Load()
	c.AddReceived(1)
	body := []byte(m.Body)
	env, err := eventbridge.Parse(body)
	if err != nil {
		s.countDropped(c, m.ID)
		return sqsengine.Poison(fmt.Errorf("message %s: %w", m.ID, err))
	}
	when := eventTime(env, m)
	tags := s.tags.Load()

	if s.kind == config.SecurityHub {
		parts := []eventbridge.Part{{Payload: env.Raw}}
		if eventbridge.IsFindings(env.DetailType) {
			if parts, err = eventbridge.Split(env); err != nil {
				s.countDropped(c, m.ID)
				return sqsengine.Poison(fmt.Errorf("message %s: %w", m.ID, err))
			}
		}
		et := s.svc.DefaultEventType
		t := tags.Tag(et)
		for _, p := range parts {
			payload, err := jsonpay.Append(nil, p.Payload, c.ID)
			if err != nil {
				s.countDropped(c, m.ID)
				return sqsengine.Poison(fmt.Errorf("message %s: %w", m.ID, err))
			}
			if err := out.Emit(ctx, cleanEvent(b, t, when, payload, m)); err != nil {
				return fmt.Errorf("message %s: emit: %w", m.ID, err)
			}
			c.AddGenerated(1)
		}
		c.EventType(et)
		return nil
	}

	et := s.svc.DefaultEventType
	if s.svc.AutoEventType {
		et = s.derive.EventType(envelopeField(env, s.derive.Field))
	}
	payload, err := jsonpay.Append(nil, body, c.ID)
	if err != nil {
		s.countDropped(c, m.ID)
		return sqsengine.Poison(fmt.Errorf("message %s: %w", m.ID, err))
	}
	if err := out.Emit(ctx, cleanEvent(b, tags.Tag(et), when, payload, m)); err != nil {
		return fmt.Errorf("message %s: emit: %w", m.ID, err)
	}
	c.AddGenerated(1)
	c.EventType(et)
	return nil
}

// countDropped counts an unreadable message once per message id, however
// often it is received. The engine logs it, once per message id too.
func (s *source) countDropped(c *stats.Cycle, id string) {
	s.droppedMu.Lock()
	_, seen := s.dropped[id]
	if !seen {
		// Ids come from data: bound the memory. Forgetting only means a
		// message seen before may be counted again.
		if len(s.dropped) >= 100_000 {
			clear(s.dropped)
		}
		s.dropped[id] = struct{}{}
	}
	s.droppedMu.Unlock()
	if !seen {
		c.AddDropped(1)
	}
}

// envelopeField returns the top-level envelope member a derivation reads
// (tags.md §4.1 uses "source").
func envelopeField(env eventbridge.Envelope, name string) string {
	switch name {
	case "source":
		return env.Source
	case "detail-type":
		return env.DetailType
	case "account":
		return env.Account
	case "region":
		return env.Region
	case "id":
		return env.ID
	case "version":
		return env.Version
	case "time":
		return env.Time
	}
	return ""
}

// eventTime is the envelope's time, or when SQS accepted the message if
// that does not parse, or now.
func eventTime(env eventbridge.Envelope, m sqsengine.Message) time.Time {
	if t, err := time.Parse(time.RFC3339, env.Time); err == nil {
		return t
	}
	if !m.SentTime.IsZero() {
		return m.SentTime
	}
	return time.Now()
}

// cleanEvent is an event of m whose payload came from jsonpay: compact
// JSON, valid UTF-8, no LF, so outputs may skip their checks. Events of a
// FIFO message ask for write-ahead: the group's next message waits for
// this one's fate, and an output with a journal gives it in milliseconds
// instead of after its settle window.
func cleanEvent(b *pipeline.Batch, tag string, when time.Time, payload []byte, m sqsengine.Message) *pipeline.Event {
	ev := pipeline.NewEvent(b, tag, when, payload)
	ev.Clean = true
	ev.WriteAhead = m.GroupID != ""
	return ev
}
