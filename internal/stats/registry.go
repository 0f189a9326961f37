// Package stats is the collector's view of itself: per-unit and per-output
// counters, component health, the /metrics and /healthz listener, and the
// product's periodic operator log lines (pull cycles, sender statistics,
// memory).
//
// Counters are plain atomics owned by whoever increments them; a Registry
// only reads them when Prometheus scrapes, so counting costs one atomic add.
package stats

import (
	"sort"
	"sync"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

const namespace = "devo_collector"

// Unit counts the events of one (input, service, region) unit. Sources
// increment Received, Generated, Dropped and Duplicated (Cycle does it for
// them); the pipeline increments Delivered and Failed as fates come back.
type Unit struct {
	// Input, Service and Region are the unit's labels. They are set by
	// Registry.Unit and must not be changed.
	Input, Service, Region string

	Received   atomic.Int64 // source records read from AWS (SQS messages, API records)
	Generated  atomic.Int64 // events handed to the pipeline
	Dropped    atomic.Int64 // records filtered out or unparseable
	Duplicated atomic.Int64 // records skipped as already sent
	Delivered  atomic.Int64 // events every output acknowledged
	Failed     atomic.Int64 // events some output could not deliver

	// Restarts counts the unit's restarts after an error.
	Restarts atomic.Int64
	// The SQS queue's backlog as last measured (SetQueue); not exported
	// until the first measure, so a unit without a queue has no gauge.
	queueMeasured           atomic.Bool
	queueVisible, queueHeld atomic.Int64
}

// SetQueue records the unit's SQS queue backlog: messages waiting
// (visible, plus delayed) and messages received but not yet deleted (in
// flight).
func (u *Unit) SetQueue(visible, inFlight int64) {
	u.queueVisible.Store(visible)
	u.queueHeld.Store(inFlight)
	u.queueMeasured.Store(true)
}

// Output counts the events of one output and reads its queue depth.
type Output struct {
	// Name is the output's config key. Set by Registry.Output; read-only.
	Name string

	Delivered atomic.Int64 // events written and settled
	Failed    atomic.Int64 // events reported failed

	// CapacityMessages and CapacityBytes are the queue's bounds, for the
	// fill ratio; zero means not exported.
	CapacityMessages, CapacityBytes atomic.Int64

	depth atomic.Pointer[func() (msgs, bytes int64)]
	spool atomic.Pointer[func() (events, bytes int64)]
}

// SetSpool gives the function read at scrape time for the spool gauges
// (events and bytes kept on disk because the output could not send them).
// An output without a spool has no spool gauges.
func (o *Output) SetSpool(f func() (events, bytes int64)) {
	if f != nil {
		o.spool.Store(&f)
	}
}

// Depth returns the output's queue depth, or zeros when no depth function
// was given.
func (o *Output) Depth() (msgs, bytes int64) {
	if f := o.depth.Load(); f != nil && *f != nil {
		return (*f)()
	}
	return 0, 0
}

type unitKey struct{ input, service, region string }

// Registry creates the counters and exposes them, with the health states and
// the Go and process collectors, on its own prometheus.Registry; nothing is
// registered globally, so several Registries (tests) never collide.
type Registry struct {
	mu       sync.Mutex
	units    map[unitKey]*Unit
	outputs  map[string]*Output
	apiCalls map[apiCallKey]*atomic.Int64
	health   *Health
	prom     *prometheus.Registry
	apis     map[apiKey]*API       // see api.go
	unitOps  map[apiOp]bool        // operations counted per unit in apis
	streams  map[streamKey]*Stream // see api.go
}

type apiCallKey struct{ api, operation, outcome string }

// API call outcomes, the values of the outcome label.
const (
	CallOK        = "ok"
	CallThrottled = "throttled" // AWS refused the call for its rate
	CallError     = "error"
)

// APICall counts one AWS API request of api ("sqs", "s3", "sts", …; see
// APIName) with its outcome (CallOK, CallThrottled, CallError), in
// devo_collector_aws_api_calls_total without a unit. An operation a unit
// counts itself (Registry.API: the API pullers, with the unit's labels) is
// not counted again here.
func (r *Registry) APICall(api, operation, outcome string) {
	k := apiCallKey{api, operation, outcome}
	r.mu.Lock()
	if r.unitOps[apiOp{api, operation}] {
		r.mu.Unlock()
		return
	}
	c, ok := r.apiCalls[k]
	if !ok {
		c = new(atomic.Int64)
		r.apiCalls[k] = c
	}
	r.mu.Unlock()
	c.Add(1)
}

// NewRegistry returns an empty Registry.
func NewRegistry() *Registry {
	r := &Registry{
		units:    make(map[unitKey]*Unit),
		outputs:  make(map[string]*Output),
		apiCalls: make(map[apiCallKey]*atomic.Int64),
		health:   NewHealth(),
		prom:     prometheus.NewRegistry(),
		apis:     make(map[apiKey]*API),
		unitOps:  make(map[apiOp]bool),
		streams:  make(map[streamKey]*Stream),
	}
	r.prom.MustRegister(
		(*collector)(r),
		(*pullCollector)(r),
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	return r
}

// Unit returns the counters of a unit, creating them on first use. Calling
// it again with the same labels (a restarted unit) returns the same Unit, so
// counters never go backwards.
func (r *Registry) Unit(input, service, region string) *Unit {
	r.mu.Lock()
	defer r.mu.Unlock()
	k := unitKey{input, service, region}
	u, ok := r.units[k]
	if !ok {
		u = &Unit{Input: input, Service: service, Region: region}
		r.units[k] = u
	}
	return u
}

// Output returns the counters of an output, creating them on first use.
// depth, which may be nil, is called at scrape time for the queue gauges; a
// later call with a non-nil depth replaces it (a restarted output with a new
// queue).
func (r *Registry) Output(name string, depth func() (msgs, bytes int64)) *Output {
	r.mu.Lock()
	defer r.mu.Unlock()
	o, ok := r.outputs[name]
	if !ok {
		o = &Output{Name: name}
		r.outputs[name] = o
	}
	if depth != nil || !ok {
		o.depth.Store(&depth)
	}
	return o
}

// Health returns the registry's component health.
func (r *Registry) Health() *Health { return r.health }

// Gatherer returns the private Prometheus registry, for the HTTP handler and
// for tests.
func (r *Registry) Gatherer() prometheus.Gatherer { return r.prom }

func (r *Registry) snapshot() ([]*Unit, []*Output) {
	r.mu.Lock()
	defer r.mu.Unlock()
	us := make([]*Unit, 0, len(r.units))
	for _, u := range r.units {
		us = append(us, u)
	}
	outs := make([]*Output, 0, len(r.outputs))
	for _, o := range r.outputs {
		outs = append(outs, o)
	}
	sort.Slice(us, func(i, j int) bool {
		a, b := us[i], us[j]
		if a.Input != b.Input {
			return a.Input < b.Input
		}
		if a.Service != b.Service {
			return a.Service < b.Service
		}
		return a.Region < b.Region
	})
	sort.Slice(outs, func(i, j int) bool { return outs[i].Name < outs[j].Name })
	return us, outs
}

var (
	unitLabels   = []string{"input", "service", "region"}
	outputLabels = []string{"output"}

	unitCounters = []struct {
		desc *prometheus.Desc
		get  func(*Unit) int64
	}{
		{eventsDesc("received", "Source records read from AWS."), func(u *Unit) int64 { return u.Received.Load() }},
		{eventsDesc("generated", "Events handed to the pipeline."), func(u *Unit) int64 { return u.Generated.Load() }},
		{eventsDesc("dropped", "Source records filtered out or unparseable."), func(u *Unit) int64 { return u.Dropped.Load() }},
		{eventsDesc("duplicated", "Source records skipped as already sent."), func(u *Unit) int64 { return u.Duplicated.Load() }},
		{eventsDesc("delivered", "Events acknowledged by every output."), func(u *Unit) int64 { return u.Delivered.Load() }},
		{eventsDesc("failed", "Events that some output could not deliver."), func(u *Unit) int64 { return u.Failed.Load() }},
	}

	outputDelivered = prometheus.NewDesc(namespace+"_output_events_delivered_total",
		"Events written to the output and settled.", outputLabels, nil)
	outputFailed = prometheus.NewDesc(namespace+"_output_events_failed_total",
		"Events the output reported as failed.", outputLabels, nil)
	queueMessages = prometheus.NewDesc(namespace+"_output_queue_messages",
		"Events waiting in the output's queue.", outputLabels, nil)
	queueBytes = prometheus.NewDesc(namespace+"_output_queue_bytes",
		"Payload bytes waiting in the output's queue.", outputLabels, nil)
	healthState = prometheus.NewDesc(namespace+"_health_state",
		"1 for the component's current state, 0 for the others.", []string{"component", "state"}, nil)
	healthOverall = prometheus.NewDesc(namespace+"_health_overall",
		"1 for the collector's overall (worst) state, 0 for the others.", []string{"state"}, nil)
	unitRestarts = prometheus.NewDesc(namespace+"_unit_restarts_total",
		"Restarts of the unit after an error.", unitLabels, nil)
	sqsVisible = prometheus.NewDesc(namespace+"_sqs_messages_visible",
		"Messages waiting in the unit's SQS queue (visible and delayed), as last measured.", unitLabels, nil)
	sqsInFlight = prometheus.NewDesc(namespace+"_sqs_messages_in_flight",
		"Messages of the unit's SQS queue received and not yet deleted, as last measured.", unitLabels, nil)
	queueCapMessages = prometheus.NewDesc(namespace+"_output_queue_capacity_messages",
		"The bound of the output's queue, in events (globals.queue_max_size_in_messages).", outputLabels, nil)
	queueCapBytes = prometheus.NewDesc(namespace+"_output_queue_capacity_bytes",
		"The bound of the output's queue, in bytes (globals.queue_max_size_in_mb).", outputLabels, nil)
	spoolEvents = prometheus.NewDesc(namespace+"_output_spool_events",
		"Events kept in the output's on-disk spool, waiting to be sent.", outputLabels, nil)
	spoolBytes = prometheus.NewDesc(namespace+"_output_spool_bytes",
		"Payload bytes kept in the output's on-disk spool.", outputLabels, nil)
)

func eventsDesc(what, help string) *prometheus.Desc {
	return prometheus.NewDesc(namespace+"_events_"+what+"_total", help, unitLabels, nil)
}

// collector reads the Registry's atomics at scrape time.
type collector Registry

func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, m := range unitCounters {
		ch <- m.desc
	}
	for _, d := range []*prometheus.Desc{outputDelivered, outputFailed, queueMessages, queueBytes, healthState, healthOverall,
		unitRestarts, sqsVisible, sqsInFlight, queueCapMessages, queueCapBytes, spoolEvents, spoolBytes} {
		ch <- d
	}
}

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	r := (*Registry)(c)
	units, outputs := r.snapshot()
	for _, u := range units {
		for _, m := range unitCounters {
			ch <- prometheus.MustNewConstMetric(m.desc, prometheus.CounterValue, float64(m.get(u)), u.Input, u.Service, u.Region)
		}
		ch <- prometheus.MustNewConstMetric(unitRestarts, prometheus.CounterValue, float64(u.Restarts.Load()), u.Input, u.Service, u.Region)
		if u.queueMeasured.Load() {
			ch <- prometheus.MustNewConstMetric(sqsVisible, prometheus.GaugeValue, float64(u.queueVisible.Load()), u.Input, u.Service, u.Region)
			ch <- prometheus.MustNewConstMetric(sqsInFlight, prometheus.GaugeValue, float64(u.queueHeld.Load()), u.Input, u.Service, u.Region)
		}
	}
	for _, o := range outputs {
		ch <- prometheus.MustNewConstMetric(outputDelivered, prometheus.CounterValue, float64(o.Delivered.Load()), o.Name)
		ch <- prometheus.MustNewConstMetric(outputFailed, prometheus.CounterValue, float64(o.Failed.Load()), o.Name)
		msgs, bytes := o.Depth()
		ch <- prometheus.MustNewConstMetric(queueMessages, prometheus.GaugeValue, float64(msgs), o.Name)
		ch <- prometheus.MustNewConstMetric(queueBytes, prometheus.GaugeValue, float64(bytes), o.Name)
		if n := o.CapacityMessages.Load(); n > 0 {
			ch <- prometheus.MustNewConstMetric(queueCapMessages, prometheus.GaugeValue, float64(n), o.Name)
		}
		if n := o.CapacityBytes.Load(); n > 0 {
			ch <- prometheus.MustNewConstMetric(queueCapBytes, prometheus.GaugeValue, float64(n), o.Name)
		}
		if f := o.spool.Load(); f != nil {
			events, bytes := (*f)()
			ch <- prometheus.MustNewConstMetric(spoolEvents, prometheus.GaugeValue, float64(events), o.Name)
			ch <- prometheus.MustNewConstMetric(spoolBytes, prometheus.GaugeValue, float64(bytes), o.Name)
		}
	}
	rep := r.health.Report()
	for name, comp := range rep.Components {
		for _, s := range states {
			ch <- prometheus.MustNewConstMetric(healthState, prometheus.GaugeValue, boolFloat(comp.State == s), name, s.String())
		}
	}
	for _, s := range states {
		ch <- prometheus.MustNewConstMetric(healthOverall, prometheus.GaugeValue, boolFloat(rep.Status == s), s.String())
	}
}

func boolFloat(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
