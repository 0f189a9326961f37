// Package cloudtrailapi is the audit-events-all service with types
// [audits_api]: CloudTrail management events read through LookupEvents, on
// the pull engine. Each unit (input, service, region) is one stream — the
// region's trail — with one checkpoint: the end of the last time slot whose
// events were all delivered, plus the IDs of the events in its last minute.
package cloudtrailapi

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/cloudtrail"
	cttypes "github.com/aws/aws-sdk-go-v2/service/cloudtrail/types"

	"github.com/devo-aws-collector/devo-aws-collector/internal/config"
	ctformat "github.com/devo-aws-collector/devo-aws-collector/internal/format/cloudtrail"
	"github.com/devo-aws-collector/devo-aws-collector/internal/format/jsonpay"
	"github.com/devo-aws-collector/devo-aws-collector/internal/lease"
	"github.com/devo-aws-collector/devo-aws-collector/internal/pipeline"
	"github.com/devo-aws-collector/devo-aws-collector/internal/pullengine"
	"github.com/devo-aws-collector/devo-aws-collector/internal/source/apisource"
	"github.com/devo-aws-collector/devo-aws-collector/internal/state"
	"github.com/devo-aws-collector/devo-aws-collector/internal/stats"
	"github.com/devo-aws-collector/devo-aws-collector/internal/tag"
)

// CloudTrail's LookupEvents facts (spec/aws-formats.md §4).
const (
	// PageSize is the most events one LookupEvents page returns.
	PageSize = 50
	// History is how far back LookupEvents reaches.
	History = 90 * 24 * time.Hour
	// Quota is LookupEvents' limit per account and region: 2 requests in
	// any second (pullengine.Limiter keeps it as the server counts it).
	Quota = 2
	// DefaultStartAge is how far back the first run reads when start_time
	// is absent (spec/config.md §10).
	DefaultStartAge = 24 * time.Hour
	// progressSlots is how often "Number of processed time slots so far"
	// is logged, as the product does.
	progressSlots = 100
	// StreamName is the checkpoint's Sub: the region's trail.
	StreamName = "trail"
	// historyMargin keeps the start a little inside the 90 days, so that
	// the oldest slot is not cut by the time the request reaches AWS.
	historyMargin = 10 * time.Minute
)

// Client is the part of the CloudTrail client the source uses.
type Client interface {
	LookupEvents(ctx context.Context, in *cloudtrail.LookupEventsInput, optFns ...func(*cloudtrail.Options)) (*cloudtrail.LookupEventsOutput, error)
}

// Options build a Source. Common's Service, AccountID and Store, and
// NewClient are required. The stream leased (Common.Leases) is the
// region's trail.
type Options struct {
	apisource.Common
	// NewClient returns the region's CloudTrail client with apiOption added
	// to its APIOptions: the shared LookupEvents limiter and call counters.
	NewClient func(apiOption func(*cloudtrail.Options)) Client

	Tune func(*pullengine.Config) // tests shorten backoffs with it
	// QuotaPeriod overrides the second of the LookupEvents quota (tests
	// shorten it); zero means one second.
	QuotaPeriod time.Duration
}

// Source is one audits_api unit. It implements pipeline.Source.
type Source struct {
	o   Options
	svc *config.Service
	log *slog.Logger
	now func() time.Time

	origin time.Time // start_time parsed, zero when absent

	leases lease.Holder

	// Set by the first successful Run; reused by later ones.
	engine *pullengine.Engine
	stream *stream
}

// New checks o and returns a Source.
func New(o Options) (*Source, error) {
	var noClient error
	if o.NewClient == nil {
		noClient = errors.New("cloudtrailapi: nil NewClient")
	}
	if err := o.Check("cloudtrailapi", noClient); err != nil {
		return nil, err
	}
	s := &Source{o: o, leases: o.Leases, svc: o.Service, log: o.Log, now: o.Now}
	var err error
	if s.origin, err = o.Origin(time.RFC3339Nano); err != nil {
		return nil, err
	}
	if err := o.CheckTag(); err != nil {
		return nil, err
	}
	return s, nil
}

// Run pulls until ctx ends, while this collector holds the stream's lease:
// a lost lease stops the pulling, a regained one resumes it from the
// checkpoint.
func (s *Source) Run(ctx context.Context, out pipeline.Emitter) error {
	if s.engine == nil {
		if err := s.build(ctx); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
	}
	return s.engine.RunLeased(ctx, s.leases, out)
}

// key is the stream's checkpoint key, which names its lease.
func (s *Source) key() state.Key {
	return state.Key{Input: s.o.InputName, Service: s.svc.Name, Region: s.o.Region, Sub: StreamName}
}

// build resolves the account and makes the stream and its engine.
func (s *Source) build(ctx context.Context) error {
	acct, err := s.o.AccountID(ctx)
	if err != nil {
		return fmt.Errorf("resolve the account id: %w", err)
	}
	per := s.o.QuotaPeriod
	if per <= 0 {
		per = time.Second
	}
	var calls *stats.API
	var streamCtrs *stats.Stream
	if s.o.Registry != nil {
		calls = s.o.Registry.API(s.o.InputName, s.svc.Name, s.o.Region, "CloudTrail", "LookupEvents")
		streamCtrs = s.o.Registry.Stream(s.o.InputName, s.svc.Name, s.o.Region, StreamName)
	}
	lim := pullengine.SharedLimiter(acct, s.o.Region, "cloudtrail.LookupEvents", Quota, per)
	client := s.o.NewClient(withAPIOption(lim, calls))

	v := tag.Values{AccountID: acct, RegionID: s.o.Region, Environment: s.o.Environment, ServiceName: s.svc.Name}
	tmpl := tag.MustCompile(s.svc.TagTemplate)
	used := v
	used.EventType = "{" + tag.EventType + "}"
	if !s.svc.AutoEventType {
		used.EventType = s.svc.DefaultEventType
	}
	st := &stream{
		s: s, client: client, tags: tag.NewCache(tmpl, v), templateUsed: tmpl.Expand(used),
	}
	if s.svc.AutoEventType {
		st.deriver = s.svc.Deriver()
	}
	for _, n := range s.svc.DropEventNames {
		if st.drop == nil {
			st.drop = map[string]bool{}
		}
		st.drop[n] = true
	}
	c := pullengine.Config{
		Key:    s.key(),
		Store:  s.o.Store,
		Stream: st,
		Origin: s.svc.StartTime,
		Start: func(now time.Time) time.Time {
			if s.origin.IsZero() {
				return now.Add(-DefaultStartAge).Truncate(time.Second)
			}
			return s.origin
		},
		Floor:    func(now time.Time) time.Time { return now.Add(-History + historyMargin).Truncate(time.Second) },
		Period:   s.svc.RequestPeriod,
		Log:      s.log,
		Unit:     s.o.Stats,
		Counters: streamCtrs,
		Now:      s.now,
	}
	if s.o.Tune != nil {
		s.o.Tune(&c)
	}
	eng, err := pullengine.New(c)
	if err != nil {
		return err
	}
	s.engine, s.stream = eng, st
	return nil
}

// withAPIOption adapts pullengine.APIOption to a cloudtrail.Options function.
func withAPIOption(lim *pullengine.Limiter, c *stats.API) func(*cloudtrail.Options) {
	mw := pullengine.APIOption(lim, c)
	return func(o *cloudtrail.Options) { o.APIOptions = append(o.APIOptions, mw) }
}

// stream is the region's trail for the engine.
type stream struct {
	s            *Source
	client       Client
	tags         *tag.Cache
	deriver      *tag.Deriver // nil unless auto_event_type
	templateUsed string
	drop         map[string]bool

	badRecords atomic.Int64
}

// Windows cuts [from, now − gap_until_now_in_minutes] into slots of
// time_slot_in_hours; the last one may be shorter.
func (st *stream) Windows(from, now time.Time) []pullengine.Window {
	svc := st.s.svc
	end := now.Add(-svc.GapUntilNow).Truncate(time.Second)
	slot := svc.TimeSlot
	if slot <= 0 {
		slot = time.Hour
	}
	var out []pullengine.Window
	for from.Before(end) {
		to := from.Add(slot)
		if to.After(end) {
			to = end
		}
		out = append(out, pullengine.Window{Start: from, End: to})
		from = to
	}
	return out
}

// isoMicros is Python's isoformat() of an aware UTC time, as the product
// prints start_date and end_date.
const isoMicros = "2006-01-02T15:04:05.000000-07:00"

func (st *stream) CycleStarted(c *stats.Cycle, from, now time.Time, windows int) {
	svc := st.s.svc
	log := st.s.log
	c.LogStarting(sourcesRepr(svc.Sources), "source")
	log.Info(fmt.Sprintf(`Using %d minutes as "gap until now", start_date: "%s", end_date: "%s", time_slot_in_hours: "%d"`,
		int(svc.GapUntilNow/time.Minute), from.UTC().Format(isoMicros), now.Add(-svc.GapUntilNow).UTC().Format(isoMicros), int(svc.TimeSlot/time.Hour)))
	log.Info(fmt.Sprintf("Total number of time slots to be processed: %d", windows))
}

// sourcesRepr prints the event sources as the product's start line does,
// a Python list: ['all_sources'] when every source is read.
func sourcesRepr(sources []string) string {
	if len(sources) == 0 {
		sources = []string{"all_sources"}
	}
	quoted := make([]string, len(sources))
	for i, src := range sources {
		quoted[i] = "'" + src + "'"
	}
	return "[" + strings.Join(quoted, ", ") + "]"
}

func (st *stream) WindowPulled(c *stats.Cycle, n int) {
	if n%progressSlots == 0 {
		st.s.log.Info(fmt.Sprintf("Number of processed time slots so far: %d", n))
	}
}

func (st *stream) CycleEnded(c *stats.Cycle) { c.LogAuditReceived(st.templateUsed) }

// Pull reads one slot: one LookupEvents walk per listed source, or one
// unfiltered walk for all_sources, 50 events a page, newest first.
func (st *stream) Pull(ctx context.Context, p *pullengine.Pull) error {
	sources := st.s.svc.Sources
	if len(sources) == 0 {
		sources = []string{""}
	}
	for _, src := range sources {
		var token *string
		for {
			in := &cloudtrail.LookupEventsInput{
				StartTime:  aws.Time(p.Window.Start),
				EndTime:    aws.Time(p.Window.End),
				MaxResults: aws.Int32(PageSize),
				NextToken:  token,
			}
			if src != "" {
				in.LookupAttributes = []cttypes.LookupAttribute{{AttributeKey: cttypes.LookupAttributeKeyEventSource, AttributeValue: aws.String(src)}}
			}
			var page *cloudtrail.LookupEventsOutput
			err := p.Call(ctx, "LookupEvents", func(ctx context.Context) error {
				var err error
				page, err = st.client.LookupEvents(ctx, in)
				return err
			})
			if err != nil {
				return err
			}
			now := st.s.now()
			for i := range page.Events {
				if err := st.record(ctx, p, &page.Events[i], now); err != nil {
					return err
				}
			}
			if token = page.NextToken; aws.ToString(token) == "" {
				break
			}
		}
	}
	return nil
}

// record counts one LookupEvents result and emits it unless it is dropped
// (drop_event_names), of another region, or a duplicate.
func (st *stream) record(ctx context.Context, p *pullengine.Pull, ev *cttypes.Event, now time.Time) error {
	p.Cycle.AddReceived(1)
	raw := []byte(aws.ToString(ev.CloudTrailEvent))
	f, err := ctformat.Pick(raw)
	if err != nil {
		// Not a record we can forward as JSON: counted as dropped, and
		// said once in a while rather than per record.
		p.Cycle.AddDropped(1)
		if n := st.badRecords.Add(1); n == 1 || n%1000 == 0 {
			st.s.log.Warn("CloudTrailEvent is not a JSON record, dropped", "event_id", aws.ToString(ev.EventId), "count", n, "err", err)
		}
		return nil
	}
	if st.drop[string(f.EventName)] {
		p.Cycle.AddDropped(1)
		return nil
	}
	if len(f.AWSRegion) > 0 && string(f.AWSRegion) != st.s.o.Region {
		p.Cycle.AddOtherRegion(1)
		return nil
	}
	id := aws.ToString(ev.EventId)
	if id == "" {
		id = string(f.EventID)
	}
	t := aws.ToTime(ev.EventTime)
	if id != "" && p.Seen(id, t) {
		return nil
	}
	payload, err := jsonpay.Append(make([]byte, 0, len(raw)+40), raw, p.Cycle.ID)
	if err != nil {
		p.Cycle.AddDropped(1)
		return nil
	}
	var tg string
	if st.deriver != nil {
		et := st.deriver.EventType(string(f.EventSource))
		p.Cycle.EventType(et)
		tg = st.tags.Tag(et)
	} else {
		tg = st.tags.Tag(st.s.svc.DefaultEventType)
	}
	e := pipeline.NewEvent(p.Batch(), tg, now, payload)
	e.Clean = true // jsonpay output: compact, valid UTF-8
	return p.Emit(ctx, e)
}
