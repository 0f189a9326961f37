package awstest

import (
	"cmp"
	"fmt"
	"math"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/fxamacker/cbor/v2"
)

// CloudWatch is a fake CloudWatch metrics endpoint speaking Smithy RPC v2
// CBOR, the protocol the Go SDK's cloudwatch client uses by default. It
// serves ListMetrics, GetMetricData and GetMetricStatistics over metrics
// loaded with AddMetrics; point a cloudwatch.Client at URL.
type CloudWatch struct {
	fake
	metrics []Metric
	// pagePoints, when > 0, caps the datapoints of a GetMetricData page
	// below AWS's 100,800, so that tests see NextToken paging.
	pagePoints int
}

// LimitPagePoints makes GetMetricData pages hold at most n datapoints
// (n <= 0: AWS's 100,800), as AWS may return fewer than asked for.
func (cw *CloudWatch) LimitPagePoints(n int) {
	cw.mu.Lock()
	defer cw.mu.Unlock()
	cw.pagePoints = n
}

// Metric is one metric with its raw samples. Statistics are computed from
// the samples that fall in each period.
type Metric struct {
	Namespace  string
	MetricName string
	Dimensions []Dimension
	Samples    []Sample
}

// Dimension is a metric dimension.
type Dimension struct {
	Name  string `cbor:"Name"`
	Value string `cbor:"Value"`
}

// Sample is one raw value, as PutMetricData records it.
type Sample struct {
	Time  time.Time
	Value float64
	// Published is when CloudWatch makes the sample visible (by the fake's
	// clock): AWS services often publish a period's data a minute or more
	// after it ends. Zero means at Time.
	Published time.Time
}

// visible reports whether s can be read at now.
func (s Sample) visible(now time.Time) bool {
	return s.Published.IsZero() || !s.Published.After(now)
}

// CloudWatch limits, as documented.
const (
	listMetricsPage      = 500
	metricDataMaxQueries = 500
	metricDataMaxPoints  = 100_800
	metricStatsMaxPoints = 1_440
	metricListedFor      = 14 * 24 * time.Hour
	recentlyActiveWindow = 3 * time.Hour
)

const cloudWatchPathPrefix = "/service/GraniteServiceVersion20100801/operation/"

// NewCloudWatch starts a CloudWatch fake; the test's cleanup stops it.
func NewCloudWatch(t testing.TB) *CloudWatch {
	t.Helper()
	cw := &CloudWatch{}
	cw.start(t, newCBORProtocol(), http.HandlerFunc(cw.handle))
	return cw
}

// AddMetrics adds metrics; a metric with the same identity (namespace,
// name, dimensions) gets the new samples appended.
func (cw *CloudWatch) AddMetrics(ms ...Metric) {
	cw.mu.Lock()
	defer cw.mu.Unlock()
	for _, m := range ms {
		i := slices.IndexFunc(cw.metrics, func(old Metric) bool { return sameMetric(old, m.Namespace, m.MetricName, m.Dimensions) })
		if i >= 0 {
			cw.metrics[i].Samples = append(cw.metrics[i].Samples, m.Samples...)
			continue
		}
		m.Dimensions = slices.Clone(m.Dimensions)
		m.Samples = slices.Clone(m.Samples)
		cw.metrics = append(cw.metrics, m)
	}
}

// sameMetric compares identities; dimension order does not matter.
func sameMetric(m Metric, ns, name string, dims []Dimension) bool {
	if m.Namespace != ns || m.MetricName != name || len(m.Dimensions) != len(dims) {
		return false
	}
	for _, d := range dims {
		if !slices.Contains(m.Dimensions, d) {
			return false
		}
	}
	return true
}

// ListMetricsRequest is a decoded ListMetrics request.
type ListMetricsRequest struct {
	Namespace      string            `cbor:"Namespace,omitempty"`
	MetricName     string            `cbor:"MetricName,omitempty"`
	Dimensions     []DimensionFilter `cbor:"Dimensions,omitempty"`
	NextToken      string            `cbor:"NextToken,omitempty"`
	RecentlyActive string            `cbor:"RecentlyActive,omitempty"`
}

// DimensionFilter matches a dimension by name, and by value when set.
type DimensionFilter struct {
	Name  string  `cbor:"Name"`
	Value *string `cbor:"Value,omitempty"`
}

// GetMetricDataRequest is a decoded GetMetricData request.
type GetMetricDataRequest struct {
	MetricDataQueries []MetricDataQuery `cbor:"MetricDataQueries"`
	StartTime         time.Time         `cbor:"StartTime"`
	EndTime           time.Time         `cbor:"EndTime"`
	NextToken         string            `cbor:"NextToken,omitempty"`
	ScanBy            string            `cbor:"ScanBy,omitempty"`
	MaxDatapoints     *int32            `cbor:"MaxDatapoints,omitempty"`
}

// MetricDataQuery is one query of GetMetricData.
type MetricDataQuery struct {
	ID         string      `cbor:"Id"`
	MetricStat *MetricStat `cbor:"MetricStat,omitempty"`
	Expression string      `cbor:"Expression,omitempty"`
	Label      string      `cbor:"Label,omitempty"`
	ReturnData *bool       `cbor:"ReturnData,omitempty"`
	Period     *int32      `cbor:"Period,omitempty"`
}

// MetricStat names a metric, a period and a statistic.
type MetricStat struct {
	Metric MetricName `cbor:"Metric"`
	Period int32      `cbor:"Period"`
	Stat   string     `cbor:"Stat"`
	Unit   string     `cbor:"Unit,omitempty"`
}

// MetricName identifies a metric on the wire.
type MetricName struct {
	Namespace  string      `cbor:"Namespace,omitempty"`
	MetricName string      `cbor:"MetricName,omitempty"`
	Dimensions []Dimension `cbor:"Dimensions,omitempty"`
}

// GetMetricStatisticsRequest is a decoded GetMetricStatistics request.
type GetMetricStatisticsRequest struct {
	Namespace          string      `cbor:"Namespace"`
	MetricName         string      `cbor:"MetricName"`
	Dimensions         []Dimension `cbor:"Dimensions,omitempty"`
	StartTime          time.Time   `cbor:"StartTime"`
	EndTime            time.Time   `cbor:"EndTime"`
	Period             int32       `cbor:"Period"`
	Statistics         []string    `cbor:"Statistics,omitempty"`
	ExtendedStatistics []string    `cbor:"ExtendedStatistics,omitempty"`
	Unit               string      `cbor:"Unit,omitempty"`
}

func (cw *CloudWatch) handle(w http.ResponseWriter, r *http.Request) {
	op, ok := strings.CutPrefix(r.URL.Path, cloudWatchPathPrefix)
	if !ok || r.Method != http.MethodPost || r.Header.Get("Smithy-Protocol") != "rpc-v2-cbor" {
		cw.serve(w, r, op, nil, func() (any, *apiError) {
			return nil, newAPIError(http.StatusNotFound, "UnknownOperationException", "the fake serves only rpc-v2-cbor POSTs under %s", cloudWatchPathPrefix)
		})
		return
	}
	switch op {
	case "ListMetrics":
		in := &ListMetricsRequest{}
		cw.serve(w, r, op, in, func() (any, *apiError) { return cw.listMetrics(in) })
	case "GetMetricData":
		in := &GetMetricDataRequest{}
		cw.serve(w, r, op, in, func() (any, *apiError) { return cw.getMetricData(in) })
	case "GetMetricStatistics":
		in := &GetMetricStatisticsRequest{}
		cw.serve(w, r, op, in, func() (any, *apiError) { return cw.getMetricStatistics(in) })
	default:
		cw.serve(w, r, op, nil, func() (any, *apiError) {
			return nil, newAPIError(http.StatusBadRequest, "UnknownOperationException", "operation %q is not implemented by the fake", op)
		})
	}
}

func invalidValue(format string, args ...any) *apiError {
	return newAPIError(http.StatusBadRequest, "InvalidParameterValueException", format, args...)
}

func (cw *CloudWatch) listMetrics(in *ListMetricsRequest) (any, *apiError) {
	since := cw.now().Add(-metricListedFor)
	switch in.RecentlyActive {
	case "":
	case "PT3H":
		since = cw.now().Add(-recentlyActiveWindow)
	default:
		return nil, invalidValue("RecentlyActive must be PT3H")
	}
	key := *in
	key.NextToken = ""
	list := func() []MetricName {
		var out []MetricName
		for _, m := range cw.metrics {
			active := slices.ContainsFunc(m.Samples, func(s Sample) bool { return !s.Time.Before(since) && s.visible(cw.now()) })
			if !active || (in.Namespace != "" && m.Namespace != in.Namespace) || (in.MetricName != "" && m.MetricName != in.MetricName) {
				continue
			}
			if !matchDimensions(m.Dimensions, in.Dimensions) {
				continue
			}
			out = append(out, MetricName{Namespace: m.Namespace, MetricName: m.MetricName, Dimensions: m.Dimensions})
		}
		return out
	}
	page, next, ok := paginate(&cw.fake, "ListMetrics", requestKey(key), in.NextToken, list, upTo[MetricName](listMetricsPage), 0)
	if !ok {
		return nil, newAPIError(http.StatusBadRequest, "InvalidNextToken", "The service cannot complete the request.")
	}
	return struct {
		Metrics   []MetricName `cbor:"Metrics"`
		NextToken string       `cbor:"NextToken,omitempty"`
	}{append([]MetricName{}, page...), next}, nil
}

func matchDimensions(dims []Dimension, filters []DimensionFilter) bool {
	for _, f := range filters {
		if !slices.ContainsFunc(dims, func(d Dimension) bool { return d.Name == f.Name && (f.Value == nil || d.Value == *f.Value) }) {
			return false
		}
	}
	return true
}

var metricIDPattern = regexp.MustCompile(`^[a-z][a-zA-Z0-9_]*$`)

// validPeriod reports whether CloudWatch accepts p seconds as a period.
func validPeriod(p int32) bool {
	switch p {
	case 1, 5, 10, 20, 30:
		return true
	}
	return p > 0 && p%60 == 0
}

// bucket is one period's statistics.
type bucket struct {
	start                      time.Time
	count, sum, minVal, maxVal float64
}

func (b bucket) stat(name string) (float64, bool) {
	switch name {
	case "SampleCount":
		return b.count, true
	case "Sum":
		return b.sum, true
	case "Average":
		return b.sum / b.count, true
	case "Minimum":
		return b.minVal, true
	case "Maximum":
		return b.maxVal, true
	}
	return 0, false
}

var statistics = []string{"SampleCount", "Average", "Sum", "Minimum", "Maximum"}

// buckets aggregates the samples of the metric in [start, end) that are
// published by now, by period,
// periods aligned on the epoch, in ascending time. A missing metric has
// no buckets.
func (cw *CloudWatch) buckets(ns, name string, dims []Dimension, period int32, start, end time.Time) []bucket {
	i := slices.IndexFunc(cw.metrics, func(m Metric) bool { return sameMetric(m, ns, name, dims) })
	if i < 0 {
		return nil
	}
	byStart := map[int64]*bucket{}
	now := cw.now()
	for _, s := range cw.metrics[i].Samples {
		if s.Time.Before(start) || !s.Time.Before(end) || !s.visible(now) {
			continue
		}
		sec := s.Time.Unix()
		sec -= sec % int64(period)
		b := byStart[sec]
		if b == nil {
			b = &bucket{start: time.Unix(sec, 0).UTC(), minVal: math.Inf(1), maxVal: math.Inf(-1)}
			byStart[sec] = b
		}
		b.count++
		b.sum += s.Value
		b.minVal = min(b.minVal, s.Value)
		b.maxVal = max(b.maxVal, s.Value)
	}
	out := make([]bucket, 0, len(byStart))
	for _, b := range byStart {
		out = append(out, *b)
	}
	slices.SortFunc(out, func(a, b bucket) int { return a.start.Compare(b.start) })
	return out
}

// metricPoint is one value of one query, in the order pages deliver them.
// A query with no values is represented by one marker, which takes no room.
type metricPoint struct {
	query  int
	ts     time.Time
	value  float64
	last   bool
	marker bool
}

type metricDataResult struct {
	ID         string      `cbor:"Id"`
	Label      string      `cbor:"Label"`
	Timestamps []time.Time `cbor:"Timestamps"`
	Values     []float64   `cbor:"Values"`
	StatusCode string      `cbor:"StatusCode"`
}

func (cw *CloudWatch) getMetricData(in *GetMetricDataRequest) (any, *apiError) {
	qs := in.MetricDataQueries
	if len(qs) == 0 || len(qs) > metricDataMaxQueries {
		return nil, invalidValue("The collection MetricDataQueries must hold between 1 and %d items.", metricDataMaxQueries)
	}
	if !in.StartTime.Before(in.EndTime) {
		return nil, invalidValue("The parameter StartTime must be less than the parameter EndTime.")
	}
	scanDesc := true
	switch in.ScanBy {
	case "", "TimestampDescending":
	case "TimestampAscending":
		scanDesc = false
	default:
		return nil, invalidValue("ScanBy must be TimestampAscending or TimestampDescending")
	}
	if !intIn(in.MaxDatapoints, 1, math.MaxInt32) {
		return nil, invalidValue("MaxDatapoints must be positive")
	}
	budget := min(orDefault(in.MaxDatapoints, metricDataMaxPoints), metricDataMaxPoints)
	if cw.pagePoints > 0 {
		budget = min(budget, cw.pagePoints)
	}
	seen := map[string]bool{}
	for _, q := range qs {
		switch {
		case !metricIDPattern.MatchString(q.ID):
			return nil, invalidValue("The value %s for parameter MetricDataQueries.member.Id is invalid: it must start with a lower-case letter and hold only letters, digits and underscores.", q.ID)
		case seen[q.ID]:
			return nil, invalidValue("The values for parameter MetricDataQueries.member.Id must be unique; %s is repeated.", q.ID)
		case q.Expression != "":
			return nil, invalidValue("query %s: metric math expressions are not supported by the fake", q.ID)
		case q.MetricStat == nil:
			return nil, newAPIError(http.StatusBadRequest, "MissingRequiredParameterException", "query %s needs MetricStat or Expression", q.ID)
		case !validPeriod(q.MetricStat.Period):
			return nil, invalidValue("query %s: the period must be 1, 5, 10, 20, 30, 60 or a multiple of 60", q.ID)
		case !slices.Contains(statistics, q.MetricStat.Stat):
			return nil, invalidValue("query %s: statistic %q is not supported by the fake", q.ID, q.MetricStat.Stat)
		}
		seen[q.ID] = true
	}

	key := *in
	key.NextToken = ""
	list := func() []metricPoint {
		var out []metricPoint
		for qi, q := range qs {
			if q.ReturnData != nil && !*q.ReturnData {
				continue
			}
			m := q.MetricStat.Metric
			bs := cw.buckets(m.Namespace, m.MetricName, m.Dimensions, q.MetricStat.Period, in.StartTime, in.EndTime)
			if scanDesc {
				slices.Reverse(bs)
			}
			if len(bs) == 0 {
				out = append(out, metricPoint{query: qi, marker: true, last: true})
			}
			for i, b := range bs {
				v, _ := b.stat(q.MetricStat.Stat)
				out = append(out, metricPoint{query: qi, ts: b.start, value: v, last: i == len(bs)-1})
			}
		}
		return out
	}
	take := func(rest []metricPoint) int {
		n, points := 0, 0
		for ; n < len(rest); n++ {
			if !rest[n].marker {
				if points == budget {
					break
				}
				points++
			}
		}
		return n
	}
	page, next, ok := paginate(&cw.fake, "GetMetricData", requestKey(key), in.NextToken, list, take, 0)
	if !ok {
		return nil, newAPIError(http.StatusBadRequest, "InvalidNextToken", "The service cannot complete the request.")
	}

	// Every returned query appears on every page. Queries wholly before
	// this page are complete; those after it have data still to come.
	first := len(qs)
	if len(page) > 0 {
		first = page[0].query
	}
	results := []metricDataResult{}
	byQuery := map[int]int{} // query index → results index
	for qi, q := range qs {
		if q.ReturnData != nil && !*q.ReturnData {
			continue
		}
		status := "Complete"
		if next != "" && qi >= first {
			status = "PartialData"
		}
		results = append(results, metricDataResult{
			ID: q.ID, Label: cmp.Or(q.Label, q.MetricStat.Metric.MetricName),
			Timestamps: []time.Time{}, Values: []float64{}, StatusCode: status,
		})
		byQuery[qi] = len(results) - 1
	}
	for _, p := range page {
		r := &results[byQuery[p.query]]
		if p.last {
			r.StatusCode = "Complete"
		}
		if !p.marker {
			r.Timestamps = append(r.Timestamps, p.ts)
			r.Values = append(r.Values, p.value)
		}
	}
	return struct {
		MetricDataResults []metricDataResult `cbor:"MetricDataResults"`
		NextToken         string             `cbor:"NextToken,omitempty"`
	}{results, next}, nil
}

type datapoint struct {
	Timestamp   time.Time `cbor:"Timestamp"`
	SampleCount *float64  `cbor:"SampleCount,omitempty"`
	Average     *float64  `cbor:"Average,omitempty"`
	Sum         *float64  `cbor:"Sum,omitempty"`
	Minimum     *float64  `cbor:"Minimum,omitempty"`
	Maximum     *float64  `cbor:"Maximum,omitempty"`
}

func (cw *CloudWatch) getMetricStatistics(in *GetMetricStatisticsRequest) (any, *apiError) {
	switch {
	case len(in.ExtendedStatistics) > 0:
		return nil, invalidValue("ExtendedStatistics are not supported by the fake")
	case len(in.Statistics) == 0 || len(in.Statistics) > len(statistics):
		return nil, newAPIError(http.StatusBadRequest, "MissingRequiredParameterException", "Statistics must hold between 1 and %d items", len(statistics))
	case !validPeriod(in.Period):
		return nil, invalidValue("The period must be 1, 5, 10, 20, 30, 60 or a multiple of 60")
	case !in.StartTime.Before(in.EndTime):
		return nil, invalidValue("The parameter StartTime must be less than the parameter EndTime.")
	}
	for _, s := range in.Statistics {
		if !slices.Contains(statistics, s) {
			return nil, invalidValue("The value %s for parameter Statistics is not a valid statistic", s)
		}
	}
	periods := int64(math.Ceil(in.EndTime.Sub(in.StartTime).Seconds() / float64(in.Period)))
	if periods > metricStatsMaxPoints {
		return nil, newAPIError(http.StatusBadRequest, "InvalidParameterCombinationException",
			"You have requested up to %d datapoints, which exceeds the limit of %d.", periods, metricStatsMaxPoints)
	}
	dps := []datapoint{}
	for _, b := range cw.buckets(in.Namespace, in.MetricName, in.Dimensions, in.Period, in.StartTime, in.EndTime) {
		dp := datapoint{Timestamp: b.start}
		for _, s := range in.Statistics {
			v, _ := b.stat(s)
			switch s {
			case "SampleCount":
				dp.SampleCount = &v
			case "Average":
				dp.Average = &v
			case "Sum":
				dp.Sum = &v
			case "Minimum":
				dp.Minimum = &v
			case "Maximum":
				dp.Maximum = &v
			}
		}
		dps = append(dps, dp)
	}
	return struct {
		Label      string      `cbor:"Label"`
		Datapoints []datapoint `cbor:"Datapoints"`
	}{in.MetricName, dps}, nil
}

// cborProtocol is Smithy RPC v2 CBOR as CloudWatch speaks it. CloudWatch
// is query-compatible: a modelled error also carries its AWS query code in
// X-Amzn-Query-Error, which the SDK reports as the error code.
type cborProtocol struct {
	enc cbor.EncMode
}

// cloudWatchQueryCodes are the query-protocol codes of CloudWatch's
// modelled errors the fake returns.
var cloudWatchQueryCodes = map[string]string{
	"InvalidNextToken":                     "InvalidNextToken",
	"InvalidParameterValueException":       "InvalidParameterValue",
	"InvalidParameterCombinationException": "InvalidParameterCombination",
	"MissingRequiredParameterException":    "MissingParameter",
}

func newCBORProtocol() cborProtocol {
	// Timestamps are epoch seconds under tag 1, as the SDK reads them.
	enc, err := cbor.EncOptions{Time: cbor.TimeUnixDynamic, TimeTag: cbor.EncTagRequired}.EncMode()
	if err != nil {
		panic(err) // static options
	}
	return cborProtocol{enc: enc}
}

func (cborProtocol) decode(body []byte, v any) error { return cbor.Unmarshal(body, v) }

func (p cborProtocol) writeOutput(w http.ResponseWriter, v any) {
	p.write(w, http.StatusOK, v)
}

func (p cborProtocol) writeError(w http.ResponseWriter, e *apiError) {
	typ := e.code
	if q, ok := cloudWatchQueryCodes[e.code]; ok {
		typ = "com.amazonaws.cloudwatch#" + e.code
		w.Header().Set("X-Amzn-Query-Error", q+";Sender")
	}
	p.write(w, e.status, map[string]string{"__type": typ, "message": e.message})
}

func (p cborProtocol) write(w http.ResponseWriter, status int, v any) {
	b, err := p.enc.Marshal(v)
	if err != nil {
		http.Error(w, fmt.Sprintf("encode cbor: %v", err), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Smithy-Protocol", "rpc-v2-cbor")
	w.Header().Set("Content-Type", "application/cbor")
	w.Header().Set("X-Amzn-Requestid", requestID())
	w.WriteHeader(status)
	_, _ = w.Write(b)
}
