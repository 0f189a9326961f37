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
// SQS engine's (internal/sqsengine), and the configuration, tags and
// pull-cycle lines the shared skeleton's (internal/source/sqssource); this
// package only turns one message into events.
package sqsevents

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/devo-aws-collector/devo-aws-collector/internal/config"
	"github.com/devo-aws-collector/devo-aws-collector/internal/format/eventbridge"
	"github.com/devo-aws-collector/devo-aws-collector/internal/format/jsonpay"
	"github.com/devo-aws-collector/devo-aws-collector/internal/pipeline"
	"github.com/devo-aws-collector/devo-aws-collector/internal/source/sqssource"
	"github.com/devo-aws-collector/devo-aws-collector/internal/sqsengine"
	"github.com/devo-aws-collector/devo-aws-collector/internal/stats"
	"github.com/devo-aws-collector/devo-aws-collector/internal/tag"
)

// Options is what the app gives New for one (input, service, region) unit
// (see sqssource.Options); the service's Kind must be config.EventBridge or
// config.SecurityHub.
type Options = sqssource.Options

// source is one unit's EventBridge or Security Hub consumer: the shared SQS
// skeleton with this package's handler.
type source struct {
	*sqssource.Unit
	svc    *config.Service
	kind   config.ServiceKind
	derive *tag.Deriver

	// dropped remembers the message ids already counted as unreadable, so a
	// message received again is counted once.
	droppedMu sync.Mutex
	dropped   map[string]struct{}
}

// New returns the source of an EventBridge (service-events-all) or Security
// Hub (sqs-cloudwatch-consumer) service. It checks its options and never
// touches the network.
func New(o Options) (pipeline.Source, error) {
	return newSource(o)
}

func newSource(o Options) (*source, error) {
	if o.Service == nil {
		return nil, errors.New("sqsevents: nil service")
	}
	svc := o.Service
	var errs []error
	if svc.Kind != config.EventBridge && svc.Kind != config.SecurityHub {
		errs = append(errs, fmt.Errorf("service %q is a %s service, not eventbridge or securityhub", svc.Name, svc.Kind))
	}
	if _, err := tag.Compile(svc.TagTemplate); err != nil {
		errs = append(errs, fmt.Errorf("service %q: %w", svc.Name, err))
	}
	s := &source{svc: svc, kind: svc.Kind, derive: svc.Deriver(), dropped: map[string]struct{}{}}
	u, err := sqssource.New(o, sqssource.EventLines, s)
	if err != nil {
		errs = append(errs, err)
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("sqsevents: input %q: %w", o.InputName, errors.Join(errs...))
	}
	s.Unit = u
	return s, nil
}

// Handle turns one message into events (sqsengine.Handler). A body that is
// not an EventBridge envelope is counted once and returned as poison: it
// stays in the queue until max_receive_count (or the queue's dead-letter
// queue) takes it, and never blocks the messages behind it for longer.
func (s *source) Handle(ctx context.Context, m sqsengine.Message, b *pipeline.Batch, out pipeline.Emitter) error {
	c := s.Cycle()
	c.AddReceived(1)
	body := []byte(m.Body)
	env, err := eventbridge.Parse(body)
	if err != nil {
		s.countDropped(c, m.ID)
		return sqsengine.Poison(fmt.Errorf("message %s: %w", m.ID, err))
	}
	when := eventTime(env, m)
	tags := s.Tags(s.svc.TagTemplate)

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
