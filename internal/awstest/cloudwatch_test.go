package awstest

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/cloudwatch"
	"github.com/aws/aws-sdk-go-v2/service/cloudwatch/types"
)

var cwNow = time.Date(2024, 5, 31, 14, 49, 36, 0, time.UTC)

func newCloudWatchClient(cw *CloudWatch, akid string) *cloudwatch.Client {
	return cloudwatch.NewFromConfig(testConfig(akid), func(o *cloudwatch.Options) {
		o.BaseEndpoint = aws.String(cw.URL)
	})
}

// cpuMetric has a sample every 10 s for the 10 minutes before 14:48,
// valued by the sample's second within its minute (0, 10, … 50).
func cpuMetric(instance string) Metric {
	m := Metric{Namespace: "AWS/EC2", MetricName: "CPUUtilization", Dimensions: []Dimension{{Name: "InstanceId", Value: instance}}}
	start := time.Date(2024, 5, 31, 14, 38, 0, 0, time.UTC)
	for i := range 60 {
		ts := start.Add(time.Duration(i) * 10 * time.Second)
		m.Samples = append(m.Samples, Sample{Time: ts, Value: float64(ts.Second())})
	}
	return m
}

func TestCloudWatchListMetrics(t *testing.T) {
	cw := NewCloudWatch(t)
	cw.SetClock(func() time.Time { return cwNow })
	for i := range 1200 {
		cw.AddMetrics(Metric{
			Namespace: "Custom/App", MetricName: "Requests",
			Dimensions: []Dimension{{Name: "Shard", Value: fmt.Sprint(i)}, {Name: "Env", Value: []string{"prod", "dev"}[i%2]}},
			Samples:    []Sample{{Time: cwNow.Add(-time.Duration(i) * time.Hour / 100), Value: 1}},
		})
	}
	cw.AddMetrics(cpuMetric("i-1"))
	cw.AddMetrics(Metric{Namespace: "AWS/EC2", MetricName: "Stale", Samples: []Sample{{Time: cwNow.Add(-15 * 24 * time.Hour)}}})
	c := newCloudWatchClient(cw, testAccessKey)
	ctx := testContext(t)

	list := func(in *cloudwatch.ListMetricsInput) ([]types.Metric, int) {
		p := cloudwatch.NewListMetricsPaginator(c, in)
		var all []types.Metric
		pages := 0
		for p.HasMorePages() {
			out, err := p.NextPage(ctx)
			if err != nil {
				t.Fatal(err)
			}
			pages++
			all = append(all, out.Metrics...)
		}
		return all, pages
	}
	ms, pages := list(&cloudwatch.ListMetricsInput{Namespace: aws.String("Custom/App")})
	if len(ms) != 1200 || pages != 3 {
		t.Fatalf("%d metrics in %d pages, want 1200 in 3", len(ms), pages)
	}
	if m := ms[7]; aws.ToString(m.MetricName) != "Requests" || len(m.Dimensions) != 2 || aws.ToString(m.Dimensions[0].Value) != "7" {
		t.Fatalf("metric 7 = %+v", m)
	}
	ms, _ = list(&cloudwatch.ListMetricsInput{Namespace: aws.String("Custom/App"), Dimensions: []types.DimensionFilter{{Name: aws.String("Env"), Value: aws.String("dev")}}})
	if len(ms) != 600 {
		t.Fatalf("Env=dev: %d metrics", len(ms))
	}
	// Samples every 36 s back from now: 300 fall within the last 3 hours.
	ms, _ = list(&cloudwatch.ListMetricsInput{Namespace: aws.String("Custom/App"), RecentlyActive: types.RecentlyActivePt3h})
	if len(ms) != 301 {
		t.Fatalf("RecentlyActive: %d metrics, want 301", len(ms))
	}
	ms, _ = list(&cloudwatch.ListMetricsInput{Namespace: aws.String("AWS/EC2")})
	if len(ms) != 1 || aws.ToString(ms[0].MetricName) != "CPUUtilization" {
		t.Fatalf("AWS/EC2 lists %+v, want only the active metric", ms)
	}
	if in := cw.Calls()[1].Input.(*ListMetricsRequest); in.Namespace != "Custom/App" || in.NextToken == "" {
		t.Fatalf("second call input = %+v", in)
	}
}

func statQuery(id, instance, stat string) types.MetricDataQuery {
	return types.MetricDataQuery{
		Id: aws.String(id),
		MetricStat: &types.MetricStat{
			Metric: &types.Metric{Namespace: aws.String("AWS/EC2"), MetricName: aws.String("CPUUtilization"),
				Dimensions: []types.Dimension{{Name: aws.String("InstanceId"), Value: aws.String(instance)}}},
			Period: aws.Int32(60),
			Stat:   aws.String(stat),
		},
	}
}

func TestCloudWatchGetMetricData(t *testing.T) {
	cw := NewCloudWatch(t)
	cw.AddMetrics(cpuMetric("i-1"), cpuMetric("i-2"))
	c := newCloudWatchClient(cw, testAccessKey)
	ctx := testContext(t)
	start, end := time.Date(2024, 5, 31, 14, 40, 0, 0, time.UTC), time.Date(2024, 5, 31, 14, 48, 0, 0, time.UTC)

	// Eight minutes × three queries with data = 24 points, five per page.
	p := cloudwatch.NewGetMetricDataPaginator(c, &cloudwatch.GetMetricDataInput{
		StartTime: aws.Time(start), EndTime: aws.Time(end), ScanBy: types.ScanByTimestampAscending,
		MaxDatapoints: aws.Int32(5),
		MetricDataQueries: []types.MetricDataQuery{
			statQuery("avg1", "i-1", "Average"), statQuery("max1", "i-1", "Maximum"),
			statQuery("n2", "i-2", "SampleCount"), statQuery("none", "i-9", "Sum"),
		},
	})
	values := map[string][]float64{}
	stamps := map[string][]time.Time{}
	pages := 0
	for p.HasMorePages() {
		out, err := p.NextPage(ctx)
		if err != nil {
			t.Fatalf("page %d: %v", pages+1, err)
		}
		pages++
		if len(out.MetricDataResults) != 4 {
			t.Fatalf("page %d has %d results", pages, len(out.MetricDataResults))
		}
		for _, r := range out.MetricDataResults {
			id := aws.ToString(r.Id)
			values[id] = append(values[id], r.Values...)
			stamps[id] = append(stamps[id], r.Timestamps...)
			if out.NextToken == nil && r.StatusCode != types.StatusCodeComplete {
				t.Fatalf("last page: %s is %s", id, r.StatusCode)
			}
		}
		if pages == 1 && out.MetricDataResults[1].StatusCode != types.StatusCodePartialData {
			t.Fatalf("first page: max1 is %s, want PartialData", out.MetricDataResults[1].StatusCode)
		}
	}
	if pages != 5 {
		t.Fatalf("%d pages, want 5", pages)
	}
	for _, id := range []string{"avg1", "max1", "n2"} {
		if len(values[id]) != 8 || !stamps[id][0].Equal(start) || !stamps[id][7].Equal(end.Add(-time.Minute)) {
			t.Fatalf("%s: %v at %v", id, values[id], stamps[id])
		}
	}
	if values["avg1"][0] != 25 || values["max1"][0] != 50 || values["n2"][0] != 6 || len(values["none"]) != 0 {
		t.Fatalf("values = %v", values)
	}

	in := cw.Calls()[0].Input.(*GetMetricDataRequest)
	if !in.StartTime.Equal(start) || !in.EndTime.Equal(end) || in.MetricDataQueries[2].MetricStat.Stat != "SampleCount" {
		t.Fatalf("decoded input = %+v", in)
	}

	// Default ScanBy is newest first.
	out, err := c.GetMetricData(ctx, &cloudwatch.GetMetricDataInput{
		StartTime: aws.Time(start), EndTime: aws.Time(end), MetricDataQueries: []types.MetricDataQuery{statQuery("s", "i-1", "Sum")},
	})
	if err != nil {
		t.Fatal(err)
	}
	if r := out.MetricDataResults[0]; len(r.Timestamps) != 8 || !r.Timestamps[0].Equal(end.Add(-time.Minute)) || r.Values[0] != 150 {
		t.Fatalf("descending: %+v", r)
	}
}

func TestCloudWatchErrors(t *testing.T) {
	cw := NewCloudWatch(t)
	cw.AddMetrics(cpuMetric("i-1"))
	c := newCloudWatchClient(cw, testAccessKey)
	ctx := testContext(t)
	start, end := time.Date(2024, 5, 31, 14, 40, 0, 0, time.UTC), time.Date(2024, 5, 31, 14, 48, 0, 0, time.UTC)

	qs := make([]types.MetricDataQuery, 501)
	for i := range qs {
		qs[i] = statQuery(fmt.Sprintf("q%d", i), "i-1", "Sum")
	}
	_, err := c.GetMetricData(ctx, &cloudwatch.GetMetricDataInput{StartTime: &start, EndTime: &end, MetricDataQueries: qs})
	var badValue *types.InvalidParameterValueException
	if !errors.As(err, &badValue) || badValue.ErrorCode() != "InvalidParameterValue" {
		t.Fatalf("501 queries: %v", err)
	}
	_, err = c.GetMetricData(ctx, &cloudwatch.GetMetricDataInput{StartTime: &start, EndTime: &end,
		MetricDataQueries: []types.MetricDataQuery{statQuery("Bad-Id", "i-1", "Sum")}})
	if !errors.As(err, &badValue) {
		t.Fatalf("bad id: %v", err)
	}
	_, err = c.GetMetricData(ctx, &cloudwatch.GetMetricDataInput{StartTime: &start, EndTime: &end, NextToken: aws.String("forged"),
		MetricDataQueries: []types.MetricDataQuery{statQuery("s", "i-1", "Sum")}})
	var badToken *types.InvalidNextToken
	if !errors.As(err, &badToken) {
		t.Fatalf("forged token: %v", err)
	}

	_, err = c.GetMetricStatistics(ctx, &cloudwatch.GetMetricStatisticsInput{
		Namespace: aws.String("AWS/EC2"), MetricName: aws.String("CPUUtilization"), Period: aws.Int32(60),
		StartTime: aws.Time(end.Add(-25 * time.Hour)), EndTime: &end, Statistics: []types.Statistic{types.StatisticSum},
	})
	var badCombo *types.InvalidParameterCombinationException
	if !errors.As(err, &badCombo) {
		t.Fatalf("1500 points: %v", err)
	}
}

func TestCloudWatchGetMetricStatistics(t *testing.T) {
	cw := NewCloudWatch(t)
	cw.AddMetrics(cpuMetric("i-1"))
	c := newCloudWatchClient(cw, testAccessKey)
	out, err := c.GetMetricStatistics(testContext(t), &cloudwatch.GetMetricStatisticsInput{
		Namespace: aws.String("AWS/EC2"), MetricName: aws.String("CPUUtilization"), Period: aws.Int32(300),
		Dimensions: []types.Dimension{{Name: aws.String("InstanceId"), Value: aws.String("i-1")}},
		StartTime:  aws.Time(time.Date(2024, 5, 31, 14, 35, 0, 0, time.UTC)), EndTime: aws.Time(time.Date(2024, 5, 31, 14, 50, 0, 0, time.UTC)),
		Statistics: []types.Statistic{types.StatisticMinimum, types.StatisticSampleCount},
	})
	if err != nil {
		t.Fatal(err)
	}
	// Samples start at 14:38, so the 14:35 period holds 12 and 14:40 holds 30.
	if len(out.Datapoints) != 3 || aws.ToFloat64(out.Datapoints[0].SampleCount) != 12 {
		t.Fatalf("datapoints = %+v", out.Datapoints)
	}
	dp := out.Datapoints[1]
	if !dp.Timestamp.Equal(time.Date(2024, 5, 31, 14, 40, 0, 0, time.UTC)) || aws.ToFloat64(dp.SampleCount) != 30 || aws.ToFloat64(dp.Minimum) != 0 || dp.Maximum != nil {
		t.Fatalf("datapoint = %+v", dp)
	}
}

func TestCloudWatchThrottling(t *testing.T) {
	cw := NewCloudWatch(t)
	cw.AddMetrics(cpuMetric("i-1"))
	c := newCloudWatchClient(cw, testAccessKey)
	ctx := testContext(t)
	in := &cloudwatch.GetMetricDataInput{
		StartTime: aws.Time(time.Date(2024, 5, 31, 14, 40, 0, 0, time.UTC)), EndTime: aws.Time(time.Date(2024, 5, 31, 14, 48, 0, 0, time.UTC)),
		MetricDataQueries: []types.MetricDataQuery{statQuery("s", "i-1", "Sum")},
	}

	cw.ThrottleNext(2)
	out, err := c.GetMetricData(ctx, in)
	if err != nil || len(out.MetricDataResults[0].Values) != 8 || cw.Count("GetMetricData") < 3 || cw.Throttled() != 2 {
		t.Fatalf("after two throttles: %v, %d calls", err, cw.Count("GetMetricData"))
	}

	cw.ThrottleNext(2 * testMaxAttempts)
	_, err = c.GetMetricData(ctx, in)
	wantAPIError(t, err, "ThrottlingException")
	if cw.Throttled() != 2+testMaxAttempts {
		t.Fatalf("%d throttled, want %d", cw.Throttled(), 2+testMaxAttempts)
	}
}

// A sample published late is absent from GetMetricData until its
// publication time, then counted in its own period.
func TestCloudWatchLatePublication(t *testing.T) {
	cw := NewCloudWatch(t)
	clock := time.Date(2024, 5, 31, 14, 41, 0, 0, time.UTC)
	cw.SetClock(func() time.Time { return clock })
	at := time.Date(2024, 5, 31, 14, 40, 10, 0, time.UTC)
	cw.AddMetrics(Metric{Namespace: "AWS/EC2", MetricName: "CPUUtilization", Dimensions: []Dimension{{Name: "InstanceId", Value: "i-1"}},
		Samples: []Sample{{Time: at, Value: 3}, {Time: at.Add(5 * time.Second), Value: 5, Published: at.Add(2 * time.Minute)}}})
	c := newCloudWatchClient(cw, testAccessKey)
	get := func() []float64 {
		out, err := c.GetMetricData(testContext(t), &cloudwatch.GetMetricDataInput{
			StartTime: aws.Time(at.Truncate(time.Minute)), EndTime: aws.Time(at.Truncate(time.Minute).Add(time.Minute)),
			MetricDataQueries: []types.MetricDataQuery{statQuery("s", "i-1", "Sum")},
		})
		if err != nil {
			t.Fatal(err)
		}
		return out.MetricDataResults[0].Values
	}
	if v := get(); len(v) != 1 || v[0] != 3 {
		t.Fatalf("before publication: %v, want [3]", v)
	}
	clock = at.Add(2 * time.Minute)
	if v := get(); len(v) != 1 || v[0] != 8 {
		t.Fatalf("after publication: %v, want [8]", v)
	}
}
