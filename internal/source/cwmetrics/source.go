// Package cwmetrics is the CloudWatch metrics puller (metrics-all, ec2 and
// custom services with types [metrics]) on the pull engine. Each unit
// (input, service, region) is one stream — the service's namespace set —
// with one checkpoint: the end of the last window of periods whose
// datapoints were all delivered.
//
// A cycle starts once per period, just after a period's data is complete
// plus PublishDelay (for the datapoints CloudWatch publishes late). It
// lists the namespaces' metrics (ListMetrics, paged, cached for
// ListRefresh), asks for every metric × statistic in GetMetricData calls of
// up to 500 queries over the whole window, and emits one event per (metric,
// timestamp) carrying every statistic.
package cwmetrics

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/cloudwatch"
	cwtypes "github.com/aws/aws-sdk-go-v2/service/cloudwatch/types"

	"github.com/devo-aws-collector/devo-aws-collector/internal/config"
	"github.com/devo-aws-collector/devo-aws-collector/internal/lease"
	"github.com/devo-aws-collector/devo-aws-collector/internal/pipeline"
	"github.com/devo-aws-collector/devo-aws-collector/internal/pullengine"
	"github.com/devo-aws-collector/devo-aws-collector/internal/source/apisource"
	"github.com/devo-aws-collector/devo-aws-collector/internal/state"
	"github.com/devo-aws-collector/devo-aws-collector/internal/stats"
	"github.com/devo-aws-collector/devo-aws-collector/internal/tag"
)

// CloudWatch facts (spec/aws-formats.md §11) and this puller's choices.
const (
	// MaxQueries is the most MetricDataQuery entries one GetMetricData
	// call takes.
	MaxQueries = 500
	// MaxPoints is the most datapoints one GetMetricData response holds.
	MaxPoints = 100_800
	// maxWindowPeriods bounds a window so that a full call (500 queries)
	// fits in one response: 500 × 200 ≤ 100,800. Longer catch-ups are cut
	// into several windows, each with its own place in the checkpoint.
	maxWindowPeriods = MaxPoints / MaxQueries // 201
	// PublishDelay is how long after a period ends its window is read.
	// AWS services publish most datapoints within a minute or two of the
	// period; a window read earlier would miss the late ones for good,
	// since a delivered window is never read again.
	PublishDelay = 2 * time.Minute
	// ListRefresh is how long a ListMetrics walk is reused before the
	// namespaces are listed again.
	ListRefresh = 15 * time.Minute
	// recentlyActive is what RecentlyActive=PT3H lists: metrics with data
	// in the last three hours. Windows older than that need the full list
	// (metrics with data in the last two weeks).
	recentlyActive = 3 * time.Hour
	// alignSlack puts the cycle a little after its grid point, so that a
	// timer firing on the dot never finds the period not yet complete.
	alignSlack = 500 * time.Millisecond
	// StreamName is the checkpoint's Sub: the service's namespace set.
	StreamName = "metrics"
	// StartTimeLayout is start_time's format for metrics services.
	StartTimeLayout = "2006-01-02T15:04:05Z"
)

// Retention is how far back CloudWatch keeps datapoints of a period
// (spec/aws-formats.md §11): sub-minute periods 3 hours, 60 s 15 days,
// multiples of 300 s 63 days, multiples of 3600 s 455 days.
func Retention(period time.Duration) time.Duration {
	s := int64(period / time.Second)
	switch {
	case s%3600 == 0:
		return 455 * 24 * time.Hour
	case s%300 == 0:
		return 63 * 24 * time.Hour
	case s%60 == 0:
		return 15 * 24 * time.Hour
	}
	return 3 * time.Hour
}

// Client is the part of the CloudWatch client the source uses.
type Client interface {
	ListMetrics(ctx context.Context, in *cloudwatch.ListMetricsInput, optFns ...func(*cloudwatch.Options)) (*cloudwatch.ListMetricsOutput, error)
	GetMetricData(ctx context.Context, in *cloudwatch.GetMetricDataInput, optFns ...func(*cloudwatch.Options)) (*cloudwatch.GetMetricDataOutput, error)
}

// Options build a Source. Common's Service, AccountID and Store, and
// Client are required. Common.Region is also the events' region; the
// stream leased (Common.Leases) is the service's metrics in that region.
type Options struct {
	apisource.Common
	// Client is the region's CloudWatch client; requests_per_second pacing
	// is the session's.
	Client Client

	Tune func(*pullengine.Config) // tests shorten backoffs with it
}

// Source is one metrics unit. It implements pipeline.Source.
type Source struct {
	o      Options
	svc    *config.Service
	log    *slog.Logger
	now    func() time.Time
	period time.Duration
	delay  time.Duration
	origin time.Time // start_time parsed, zero when absent

	leases lease.Holder

	// Set by the first successful Run; reused by later ones, so the
	// ListMetrics cache outlives a restarted unit.
	engine *pullengine.Engine
	stream *stream
}

// New checks o and returns a Source.
func New(o Options) (*Source, error) {
	var noClient error
	if o.Client == nil {
		noClient = errors.New("cwmetrics: nil Client")
	}
	if err := o.Check("cwmetrics", noClient); err != nil {
		return nil, err
	}
	s := &Source{o: o, leases: o.Leases, svc: o.Service, log: o.Log, now: o.Now, period: o.Service.RequestPeriod, delay: PublishDelay}
	if s.period < time.Second || s.period%time.Second != 0 {
		return nil, fmt.Errorf("cwmetrics: period %v is not a whole number of seconds", s.period)
	}
	if len(s.svc.MetricNamespaces) == 0 || len(s.svc.MetricStatistics) == 0 {
		return nil, errors.New("cwmetrics: no namespaces or no statistics")
	}
	var err error
	if s.origin, err = o.Origin(StartTimeLayout); err != nil {
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

// floor is t cut down to a whole period (periods are aligned on the Unix
// epoch, as CloudWatch aligns datapoints).
func (s *Source) floor(t time.Time) time.Time {
	p := int64(s.period / time.Second)
	sec := t.Unix()
	sec -= ((sec % p) + p) % p
	return time.Unix(sec, 0).UTC()
}

// horizon is the end of the newest window that may be read at now: the
// last period that ended at least the publication delay ago.
func (s *Source) horizon(now time.Time) time.Time { return s.floor(now.Add(-s.delay)) }

func (s *Source) build(ctx context.Context) error {
	acct, err := s.o.AccountID(ctx)
	if err != nil {
		return fmt.Errorf("resolve the account id: %w", err)
	}
	var listCalls, dataCalls *stats.API
	var streamCtrs *stats.Stream
	if r := s.o.Registry; r != nil {
		listCalls = r.API(s.o.InputName, s.svc.Name, s.o.Region, "CloudWatch", "ListMetrics")
		dataCalls = r.API(s.o.InputName, s.svc.Name, s.o.Region, "CloudWatch", "GetMetricData")
		streamCtrs = r.Stream(s.o.InputName, s.svc.Name, s.o.Region, StreamName)
	}
	v := tag.Values{AccountID: acct, RegionID: s.o.Region, Environment: s.o.Environment, ServiceName: s.svc.Name}
	tg := tag.NewCache(tag.MustCompile(s.svc.TagTemplate), v).Tag(s.svc.DefaultEventType)
	quoted := make([]string, len(s.svc.MetricNamespaces))
	for i, ns := range s.svc.MetricNamespaces {
		quoted[i] = "'" + ns + "'"
	}
	st := &stream{
		s: s, client: s.o.Client, tag: tg, refresh: ListRefresh,
		nsRepr:    "[" + strings.Join(quoted, ", ") + "]",
		listOpt:   apiOption(listCalls),
		dataOpt:   apiOption(dataCalls),
		dataCalls: dataCalls,
		tail:      fmt.Sprintf(`,"accountId":%s,"region":%s,"@devo_pulling_id":`, jsonString(acct), jsonString(s.o.Region)),
	}
	c := pullengine.Config{
		Key:    s.key(),
		Store:  s.o.Store,
		Stream: st,
		Origin: s.svc.StartTime,
		// Without start_time the first window is the last complete
		// period (spec/config.md §10).
		Start: func(now time.Time) time.Time {
			if s.origin.IsZero() {
				return s.horizon(now).Add(-s.period)
			}
			return s.floor(s.origin)
		},
		// After a long pause the catch-up starts at the oldest period
		// CloudWatch still holds at this resolution, a little inside it so
		// that the first request is not cut by the time it reaches AWS.
		Floor: func(now time.Time) time.Time {
			return s.floor(now.Add(-Retention(s.period) + max(s.period, 10*time.Minute))).Add(s.period)
		},
		Period:   s.period,
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

// apiOption counts every attempt of one operation in c (nil: no counting).
// Pacing is the session's requests_per_second limiter, on every client.
func apiOption(c *stats.API) func(*cloudwatch.Options) {
	if c == nil {
		return func(*cloudwatch.Options) {}
	}
	mw := pullengine.APIOption(nil, c)
	return func(o *cloudwatch.Options) { o.APIOptions = append(o.APIOptions, mw) }
}

// stream is the service's namespace set for the engine. The engine calls
// its methods from one goroutine.
type stream struct {
	s       *Source
	client  Client
	tag     string
	nsRepr  string // the namespaces as the product prints them: ['AWS/EC2', 'AWS/EC2Spot']
	refresh time.Duration
	tail    string // the events' constant fields after "statistics"

	listOpt, dataOpt func(*cloudwatch.Options)
	dataCalls        *stats.API // may be nil

	// The last complete ListMetrics walks: of the recently active
	// metrics, and of every listed metric (for windows older than 3 h).
	recent, all *listing

	badStatus atomic.Int64
}

type listing struct {
	at      time.Time
	metrics []cwtypes.Metric
}

// Windows cuts [from, horizon) into windows of whole periods, at most
// maxWindowPeriods each.
func (st *stream) Windows(from, now time.Time) []pullengine.Window {
	s := st.s
	end := s.horizon(now)
	from = s.floor(from)
	span := time.Duration(maxWindowPeriods) * s.period
	var out []pullengine.Window
	for from.Before(end) {
		to := from.Add(span)
		if to.After(end) {
			to = end
		}
		out = append(out, pullengine.Window{Start: from, End: to})
		from = to
	}
	return out
}

// CycleOffset puts cycles one publication delay (plus a little slack)
// after each period boundary, when the next period becomes readable.
func (st *stream) CycleOffset(start time.Time) time.Duration {
	s := st.s
	grid := s.floor(start.Add(-s.delay - alignSlack)).Add(s.delay + alignSlack)
	return grid.Sub(start)
}

const rangeLayout = "2006-01-02T15:04:05Z"

func (st *stream) CycleStarted(c *stats.Cycle, from, now time.Time, windows int) {
	c.LogStarting(st.nsRepr, "namespaces")
	if end := st.s.horizon(now); from.Before(end) {
		st.s.log.Info(fmt.Sprintf(`Time range: "%s" > "%s"`, from.UTC().Format(rangeLayout), end.Format(rangeLayout)))
	}
}

func (st *stream) WindowPulled(*stats.Cycle, int) {}

func (st *stream) CycleEnded(c *stats.Cycle) { c.LogMetricsReceived(st.tag) }

// metrics returns the namespaces' metrics for a window starting at start,
// from the cache while it is fresh.
func (st *stream) metrics(ctx context.Context, p *pullengine.Pull, start time.Time) ([]cwtypes.Metric, error) {
	now := st.s.now()
	recent := !start.Before(now.Add(-recentlyActive))
	slot := &st.all
	if recent {
		slot = &st.recent
	}
	if l := *slot; l != nil && now.Sub(l.at) < st.refresh {
		return l.metrics, nil
	}
	var all []cwtypes.Metric
	for _, ns := range st.s.svc.MetricNamespaces {
		in := &cloudwatch.ListMetricsInput{Namespace: aws.String(ns)}
		if recent {
			in.RecentlyActive = cwtypes.RecentlyActivePt3h
		}
		for {
			var out *cloudwatch.ListMetricsOutput
			err := p.Call(ctx, "ListMetrics", func(ctx context.Context) error {
				var err error
				out, err = st.client.ListMetrics(ctx, in, st.listOpt)
				return err
			})
			if err != nil {
				if l := *slot; l != nil && ctx.Err() == nil {
					// The previous listing is still right for every
					// metric that existed then; losing the window for a
					// failed refresh would be worse. Listed again after
					// another interval.
					st.s.log.Warn("metrics listing failed, reusing the previous one", "listed", l.at.UTC().Format(time.RFC3339), "metrics", len(l.metrics), "err", err)
					l.at = now
					return l.metrics, nil
				}
				return nil, err
			}
			all = append(all, out.Metrics...)
			if aws.ToString(out.NextToken) == "" {
				break
			}
			in.NextToken = out.NextToken
		}
	}
	st.s.log.Info("metrics listed", "namespaces", len(st.s.svc.MetricNamespaces), "metrics", len(all), "recently_active", recent)
	*slot = &listing{at: now, metrics: all}
	return all, nil
}

// series is one metric's datapoints in a window: timestamp → the value of
// each statistic (NaN when the statistic returned none).
type series map[int64][]float64

// Pull reads one window: every metric × statistic in calls of up to 500
// queries, each paged by NextToken. A metric's statistics may straddle two
// calls; its events are made once all of them are in.
func (st *stream) Pull(ctx context.Context, p *pullengine.Pull) error {
	ms, err := st.metrics(ctx, p, p.Window.Start)
	if err != nil {
		return err
	}
	stats := st.s.svc.MetricStatistics
	nq := len(ms) * len(stats)
	pending := map[int]series{}
	for lo := 0; lo < nq; lo += MaxQueries {
		hi := min(lo+MaxQueries, nq)
		if err := st.call(ctx, p, ms, lo, hi, pending); err != nil {
			return err
		}
		// Metrics whose last statistic was in this call are complete.
		for mi := lo / len(stats); mi < len(ms) && (mi+1)*len(stats) <= hi; mi++ {
			if err := st.emit(ctx, p, ms[mi], pending[mi]); err != nil {
				return err
			}
			delete(pending, mi)
		}
	}
	return nil
}

// call runs the queries [lo, hi) of the window (query k is metric
// k / len(stats), statistic k % len(stats)) through every page, adding
// their values to pending.
func (st *stream) call(ctx context.Context, p *pullengine.Pull, ms []cwtypes.Metric, lo, hi int, pending map[int]series) error {
	stats := st.s.svc.MetricStatistics
	period := int32(st.s.period / time.Second)
	qs := make([]cwtypes.MetricDataQuery, 0, hi-lo)
	for k := lo; k < hi; k++ {
		m := ms[k/len(stats)]
		qs = append(qs, cwtypes.MetricDataQuery{
			Id: aws.String("q" + strconv.Itoa(k-lo)),
			MetricStat: &cwtypes.MetricStat{
				Metric: &cwtypes.Metric{Namespace: m.Namespace, MetricName: m.MetricName, Dimensions: m.Dimensions},
				Period: aws.Int32(period),
				Stat:   aws.String(stats[k%len(stats)]),
			},
			ReturnData: aws.Bool(true),
		})
	}
	in := &cloudwatch.GetMetricDataInput{
		MetricDataQueries: qs,
		StartTime:         aws.Time(p.Window.Start),
		EndTime:           aws.Time(p.Window.End),
		ScanBy:            cwtypes.ScanByTimestampAscending,
	}
	for {
		var out *cloudwatch.GetMetricDataOutput
		err := p.Call(ctx, "GetMetricData", func(ctx context.Context) error {
			if st.dataCalls != nil {
				st.dataCalls.Queries.Add(int64(len(qs)))
			}
			var err error
			out, err = st.client.GetMetricData(ctx, in, st.dataOpt)
			return err
		})
		if err != nil {
			return err
		}
		for _, r := range out.MetricDataResults {
			idx, err := strconv.Atoi(strings.TrimPrefix(aws.ToString(r.Id), "q"))
			if err != nil || idx < 0 || idx >= len(qs) {
				return fmt.Errorf("GetMetricData: result for unknown query id %q", aws.ToString(r.Id))
			}
			k := lo + idx
			switch r.StatusCode {
			case cwtypes.StatusCodeInternalError:
				// CloudWatch could not answer this query now; the window
				// is read again (the unit restarts from its checkpoint).
				return fmt.Errorf("GetMetricData: query for %s/%s %s: status %s", aws.ToString(ms[k/len(stats)].Namespace), aws.ToString(ms[k/len(stats)].MetricName), stats[k%len(stats)], r.StatusCode)
			case cwtypes.StatusCodeForbidden:
				// Not readable with these credentials; it never will be
				// by reading again, so it is skipped and said.
				if n := st.badStatus.Add(1); n == 1 || n%1000 == 0 {
					st.s.log.Warn("metric query forbidden, skipped", "namespace", aws.ToString(ms[k/len(stats)].Namespace), "metric", aws.ToString(ms[k/len(stats)].MetricName), "count", n)
				}
				continue
			}
			mi, si := k/len(stats), k%len(stats)
			se := pending[mi]
			if se == nil {
				se = series{}
				pending[mi] = se
			}
			for i, ts := range r.Timestamps {
				// Datapoints are stamped with their period's start; one
				// outside [Start, End) belongs to a neighbouring window.
				if i >= len(r.Values) || ts.Before(p.Window.Start) || !ts.Before(p.Window.End) {
					continue
				}
				vals := se[ts.Unix()]
				if vals == nil {
					vals = make([]float64, len(stats))
					for j := range vals {
						vals[j] = math.NaN()
					}
					se[ts.Unix()] = vals
				}
				vals[si] = r.Values[i]
			}
		}
		if aws.ToString(out.NextToken) == "" {
			return nil
		}
		in.NextToken = out.NextToken
	}
}

// emit hands on one event per timestamp of the metric, oldest first.
func (st *stream) emit(ctx context.Context, p *pullengine.Pull, m cwtypes.Metric, se series) error {
	if len(se) == 0 {
		return nil
	}
	stamps := make([]int64, 0, len(se))
	for ts := range se {
		stamps = append(stamps, ts)
	}
	slices.Sort(stamps)
	head := st.head(m)
	now := st.s.now()
	for _, ts := range stamps {
		p.Cycle.AddReceived(1)
		payload := st.payload(head, ts, se[ts], p.Cycle.ID)
		ev := pipeline.NewEvent(p.Batch(), st.tag, now, payload)
		ev.Clean = true // built here: compact JSON, valid UTF-8
		if err := p.Emit(ctx, ev); err != nil {
			return err
		}
	}
	return nil
}

// head is the start of a metric's events, up to "period".
func (st *stream) head(m cwtypes.Metric) []byte {
	b := make([]byte, 0, 256)
	b = append(b, `{"namespace":`...)
	b = append(b, jsonString(aws.ToString(m.Namespace))...)
	b = append(b, `,"metricName":`...)
	b = append(b, jsonString(aws.ToString(m.MetricName))...)
	b = append(b, `,"dimensions":[`...)
	for i, d := range m.Dimensions {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"Name":`...)
		b = append(b, jsonString(aws.ToString(d.Name))...)
		b = append(b, `,"Value":`...)
		b = append(b, jsonString(aws.ToString(d.Value))...)
		b = append(b, '}')
	}
	b = append(b, `],"period":`...)
	b = strconv.AppendInt(b, int64(st.s.period/time.Second), 10)
	return b
}

// payload is one event (spec/aws-formats.md §11): the metric, the
// period, the timestamp, every statistic that has a value, the account,
// the region and the pulling id.
func (st *stream) payload(head []byte, ts int64, vals []float64, pullingID string) []byte {
	b := make([]byte, 0, len(head)+len(st.tail)+160)
	b = append(b, head...)
	b = append(b, `,"timestamp":"`...)
	b = time.Unix(ts, 0).UTC().AppendFormat(b, rangeLayout)
	b = append(b, `","statistics":{`...)
	first := true
	for i, name := range st.s.svc.MetricStatistics {
		if math.IsNaN(vals[i]) {
			continue
		}
		if !first {
			b = append(b, ',')
		}
		first = false
		b = append(b, jsonString(name)...)
		b = append(b, ':')
		b = appendNumber(b, vals[i])
	}
	b = append(b, '}')
	b = append(b, st.tail...)
	b = append(b, jsonString(pullingID)...)
	return append(b, '}')
}

// appendNumber writes v as encoding/json does (shortest form, exponent
// only for very small or large magnitudes); ±Inf, which JSON cannot hold,
// becomes null.
func appendNumber(b []byte, v float64) []byte {
	if math.IsInf(v, 0) || math.IsNaN(v) {
		return append(b, "null"...)
	}
	abs := math.Abs(v)
	fmtc := byte('f')
	if abs != 0 && (abs < 1e-6 || abs >= 1e21) {
		fmtc = 'e'
	}
	b = strconv.AppendFloat(b, v, fmtc, -1, 64)
	if fmtc == 'e' {
		// e-07 → e-7, as encoding/json writes it.
		if n := len(b); n >= 4 && b[n-4] == 'e' && b[n-3] == '-' && b[n-2] == '0' {
			b[n-2] = b[n-1]
			b = b[:n-1]
		}
	}
	return b
}

func jsonString(s string) []byte {
	b, _ := json.Marshal(s) // a string always marshals
	return b
}
