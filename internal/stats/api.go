package stats

import (
	"slices"
	"sort"
	"strings"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
)

// API counts the requests one unit sends to one AWS API operation: the
// basis of cost accounting for the API pullers (LookupEvents, GetMetricData
// and FilterLogEvents are billed or quota-limited per call). They are
// exposed as devo_collector_aws_api_calls_total with the unit's labels; once
// a unit counts an operation here, APICall no longer counts it unattributed.
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

// apiOp is an operation some unit counts with its labels (Registry.API).
type apiOp struct{ api, operation string }
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
		r.unitOps[apiOp{APIName(awsService), op}] = true
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

// APIName is the api label of an SDK service id: lower case, spaces as
// underscores ("CloudWatch Logs" -> "cloudwatch_logs").
func APIName(serviceID string) string {
	return strings.ReplaceAll(strings.ToLower(serviceID), " ", "_")
}

var (
	apiLabels    = []string{"input", "service", "region", "api", "operation"}
	streamLabels = []string{"input", "service", "region", "stream"}

	// awsAPICalls is the one AWS call counter: every request sent, SDK
	// retries included, by outcome. The API pullers' requests carry their
	// unit's input, service and region; the others (SQS, S3, STS) leave
	// them empty.
	awsAPICalls = prometheus.NewDesc(namespace+"_aws_api_calls_total",
		"AWS API requests sent (SDK retries included) by unit, API, operation and outcome (ok, throttled, error).",
		append(slices.Clip(apiLabels), "outcome"), nil)
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
	ch <- awsAPICalls
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
	calls := make(map[apiCallKey]int64, len(r.apiCalls))
	for k, c := range r.apiCalls {
		calls[k] = c.Load()
	}
	r.mu.Unlock()
	sort.Slice(apis, func(i, j int) bool {
		a, b := apis[i], apis[j]
		return a.Input+a.Service+a.Region+a.AWSService+a.Operation < b.Input+b.Service+b.Region+b.AWSService+b.Operation
	})
	for _, a := range apis {
		l := []string{a.Input, a.Service, a.Region, APIName(a.AWSService), a.Operation}
		// Load each once: ok is what is left of the calls.
		calls, throttled, errs := a.Calls.Load(), a.Throttled.Load(), a.Errors.Load()
		ch <- prometheus.MustNewConstMetric(awsAPICalls, prometheus.CounterValue, float64(max(calls-throttled-errs, 0)), append(l, CallOK)...)
		ch <- prometheus.MustNewConstMetric(awsAPICalls, prometheus.CounterValue, float64(throttled), append(l, CallThrottled)...)
		ch <- prometheus.MustNewConstMetric(awsAPICalls, prometheus.CounterValue, float64(errs), append(l, CallError)...)
		if n := a.Queries.Load(); n > 0 {
			ch <- prometheus.MustNewConstMetric(apiQueries, prometheus.CounterValue, float64(n), l...)
		}
	}
	for k, n := range calls {
		ch <- prometheus.MustNewConstMetric(awsAPICalls, prometheus.CounterValue, float64(n), "", "", "", k.api, k.operation, k.outcome)
	}
	for _, s := range streams {
		for _, m := range streamCounters {
			ch <- prometheus.MustNewConstMetric(m.desc, m.kind, float64(m.value(s)), s.Input, s.Service, s.Region, s.Stream)
		}
	}
}
