package stats

import (
	"sort"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
)

// API counts the requests one unit sends to one AWS API operation: the
// basis of cost accounting for the API pullers (LookupEvents, GetMetricData
// and FilterLogEvents are billed or quota-limited per call).
type API struct {
	// Labels, set by Registry.API; read-only.
	Input, Service, Region, AWSService, Operation string

	Calls     atomic.Int64 // attempts sent, SDK retries included
	Throttled atomic.Int64 // attempts answered with a throttling error
	Errors    atomic.Int64 // other failed attempts
	// Queries counts the metric queries the requests carried, what
	// CloudWatch bills GetMetricData by (per 1,000 metrics requested);
	// exposed once non-zero.
	Queries atomic.Int64
}

// Stream holds the pull engine's numbers for one checkpointed stream (a
// region's trail, a log group, a detector).
type Stream struct {
	// Labels, set by Registry.Stream; read-only.
	Input, Service, Region, Stream string

	WindowsPlanned   atomic.Int64 // windows planned, re-pulls not included
	WindowsCommitted atomic.Int64 // windows whose events were all delivered and that the checkpoint passed
	WindowsFailed    atomic.Int64 // window pulls that failed or had an undelivered event (each is pulled again)
	WindowsPending   atomic.Int64 // windows pulled or being pulled and not committed yet
	Checkpoint       atomic.Int64 // the saved checkpoint, Unix seconds (0 before the first save)
}

type apiKey struct{ input, service, region, awsService, op string }
type streamKey struct{ input, service, region, stream string }

// API returns the call counters of one unit and operation, creating them on
// first use; awsService is the SDK's service id ("CloudTrail").
func (r *Registry) API(input, service, region, awsService, op string) *API {
	r.mu.Lock()
	defer r.mu.Unlock()
	k := apiKey{input, service, region, awsService, op}
	a, ok := r.apis[k]
	if !ok {
		a = &API{Input: input, Service: service, Region: region, AWSService: awsService, Operation: op}
		r.apis[k] = a
	}
	return a
}

// Stream returns the engine counters of one stream, creating them on first
// use.
func (r *Registry) Stream(input, service, region, stream string) *Stream {
	r.mu.Lock()
	defer r.mu.Unlock()
	k := streamKey{input, service, region, stream}
	s, ok := r.streams[k]
	if !ok {
		s = &Stream{Input: input, Service: service, Region: region, Stream: stream}
		r.streams[k] = s
	}
	return s
}

var (
	apiLabels    = []string{"input", "service", "region", "aws_service", "operation"}
	streamLabels = []string{"input", "service", "region", "stream"}

	apiCalls = prometheus.NewDesc(namespace+"_api_calls_total",
		"AWS API requests sent (SDK retries included), per operation.", apiLabels, nil)
	apiThrottled = prometheus.NewDesc(namespace+"_api_throttled_total",
		"AWS API requests answered with a throttling error.", apiLabels, nil)
	apiErrors = prometheus.NewDesc(namespace+"_api_errors_total",
		"AWS API requests that failed for another reason.", apiLabels, nil)
	apiQueries = prometheus.NewDesc(namespace+"_api_metric_queries_total",
		"CloudWatch metric queries carried by the requests (GetMetricData is billed per metric queried).", apiLabels, nil)

	streamCounters = []struct {
		desc  *prometheus.Desc
		kind  prometheus.ValueType
		value func(*Stream) int64
	}{
		{prometheus.NewDesc(namespace+"_pull_windows_planned_total", "Time windows planned by the pull engine.", streamLabels, nil),
			prometheus.CounterValue, func(s *Stream) int64 { return s.WindowsPlanned.Load() }},
		{prometheus.NewDesc(namespace+"_pull_windows_committed_total", "Time windows fully delivered and passed by the checkpoint.", streamLabels, nil),
			prometheus.CounterValue, func(s *Stream) int64 { return s.WindowsCommitted.Load() }},
		{prometheus.NewDesc(namespace+"_pull_windows_failed_total", "Window pulls that failed or had an undelivered event; each is pulled again.", streamLabels, nil),
			prometheus.CounterValue, func(s *Stream) int64 { return s.WindowsFailed.Load() }},
		{prometheus.NewDesc(namespace+"_pull_windows_pending", "Windows pulled and not yet passed by the checkpoint.", streamLabels, nil),
			prometheus.GaugeValue, func(s *Stream) int64 { return s.WindowsPending.Load() }},
		{prometheus.NewDesc(namespace+"_pull_checkpoint_seconds", "The stream's saved checkpoint as Unix seconds.", streamLabels, nil),
			prometheus.GaugeValue, func(s *Stream) int64 { return s.Checkpoint.Load() }},
	}
)

// pullCollector exposes API and Stream counters.
type pullCollector Registry

func (c *pullCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- apiCalls
	ch <- apiThrottled
	ch <- apiErrors
	ch <- apiQueries
	for _, m := range streamCounters {
		ch <- m.desc
	}
}

func (c *pullCollector) Collect(ch chan<- prometheus.Metric) {
	r := (*Registry)(c)
	r.mu.Lock()
	apis := make([]*API, 0, len(r.apis))
	for _, a := range r.apis {
		apis = append(apis, a)
	}
	streams := make([]*Stream, 0, len(r.streams))
	for _, s := range r.streams {
		streams = append(streams, s)
	}
	r.mu.Unlock()
	sort.Slice(apis, func(i, j int) bool {
		a, b := apis[i], apis[j]
		return a.Input+a.Service+a.Region+a.AWSService+a.Operation < b.Input+b.Service+b.Region+b.AWSService+b.Operation
	})
	for _, a := range apis {
		l := []string{a.Input, a.Service, a.Region, a.AWSService, a.Operation}
		ch <- prometheus.MustNewConstMetric(apiCalls, prometheus.CounterValue, float64(a.Calls.Load()), l...)
		ch <- prometheus.MustNewConstMetric(apiThrottled, prometheus.CounterValue, float64(a.Throttled.Load()), l...)
		ch <- prometheus.MustNewConstMetric(apiErrors, prometheus.CounterValue, float64(a.Errors.Load()), l...)
		if n := a.Queries.Load(); n > 0 {
			ch <- prometheus.MustNewConstMetric(apiQueries, prometheus.CounterValue, float64(n), l...)
		}
	}
	for _, s := range streams {
		for _, m := range streamCounters {
			ch <- prometheus.MustNewConstMetric(m.desc, m.kind, float64(m.value(s)), s.Input, s.Service, s.Region, s.Stream)
		}
	}
}
