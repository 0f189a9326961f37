package config

import (
	"fmt"
	"regexp"
	"slices"
	"time"
)

// Metrics runs the CloudWatch metrics puller: metrics-all, ec2 and custom
// keys with types [metrics].
const Metrics ServiceKind = "metrics"

const (
	defMetricsAll    = "metrics-all"
	defEC2           = "ec2"
	defCustomMetrics = "custom.metrics"
)

// metricsStartTimeRegex is the start_time format of metrics services:
// exactly YYYY-mm-ddTHH:MM:SSZ (spec config.md §10).
const metricsStartTimeRegex = `^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$`

var metricsKind = &kindSpec{
	kind: Metrics, section: "E",
	services: []string{"metrics-all", "ec2"},
	custom:   true,
	types:    []string{"metrics"},
	parts:    []part{startTimePart, metricsPart},
	definitionFor: func(s *Service) string {
		if s.Custom {
			return defCustomMetrics
		}
		return s.Name
	},
	// metric_namespace_from_config: the namespaces come from the user's
	// metric_namespaces (E12), so the definition carries none.
	definitions: map[string]definition{
		defMetricsAll: {"E", map[string]any{
			"tag_base":                     "cloud.aws.cloudwatch.{event_type}.{account_id}.{region_id}.{format_version}",
			"event_type_default":           "metrics",
			"start_time_regex":             metricsStartTimeRegex,
			"metric_namespace_from_config": true,
		}},
		defEC2: {"E", map[string]any{
			"tag_base":           "cloud.aws.cloudwatch.{event_type}.{account_id}.{region_id}.{format_version}",
			"event_type_default": "metrics",
			"start_time_regex":   metricsStartTimeRegex,
			"metric_namespace":   []any{"AWS/EC2", "AWS/EC2Spot"},
		}},
		defCustomMetrics: {"E", map[string]any{
			"tag_base":                     "cloud.aws.cloudwatch.{event_type}.{account_id}.{region_id}.{format_version}",
			"event_type_default":           "metrics",
			"start_time_regex":             metricsStartTimeRegex,
			"metric_namespace_from_config": true,
		}},
	},
}

// MetricsSettings are the settings of a CloudWatch metrics service. Its
// period is Service.RequestPeriod, checked against the allowed CloudWatch
// periods (E14).
type MetricsSettings struct {
	MetricNamespaces []string // metric_namespaces; ec2 defaults to AWS/EC2 and AWS/EC2Spot
	MetricStatistics []string // extension metric_statistics, default Average, Sum, Minimum, Maximum, SampleCount
}

var metricStatistics = []string{"Average", "Sum", "Minimum", "Maximum", "SampleCount"}
var percentile = regexp.MustCompile(`^p\d{1,2}(\.\d+)?$`)

// metricsPart reads the namespaces (E12, E13), the statistics and the
// period, which is also the CloudWatch period (E14).
var metricsPart = part{
	keys: keys("metric_namespaces", "metric_statistics", "request_period_in_seconds"),
	decode: func(b *block) {
		def := b.def
		s := MetricsSettings{MetricNamespaces: def.namespaces}
		nv, ok := b.get("metric_namespaces")
		switch {
		case !ok || nv.kind == kList && len(nv.list) == 0:
			if len(def.namespaces) == 0 {
				b.fail("E12", "metric_namespaces").withHint("list the CloudWatch namespaces to read, e.g. metric_namespaces: [AWS/EC2, AWS/Lambda]")
			}
		default:
			list, ok := stringList(nv, false)
			if !ok {
				b.fail("E13", "metric_namespaces").withHint("it must be a list of namespaces, e.g. [AWS/EC2, AWS/Lambda] (found " + describe(nv) + ")")
			} else {
				s.MetricNamespaces = list
			}
		}
		s.MetricStatistics = slices.Clone(metricStatistics)
		if sv, ok := b.get("metric_statistics"); ok {
			list, ok := stringList(sv, false)
			if ok && len(list) > 0 {
				for _, st := range list {
					if !slices.Contains(metricStatistics, st) && !percentile.MatchString(st) {
						ok = false
					}
				}
			}
			if !ok || len(list) == 0 {
				b.expect("metric_statistics", fmt.Sprintf("a list of statistics from %s or percentiles such as p99", quoteList(metricStatistics)))
			} else {
				s.MetricStatistics = list
			}
		}
		b.s.MetricsSettings = s
		b.s.RequestPeriod = 60 * time.Second
		if rv, ok := b.get("request_period_in_seconds"); ok {
			if rv.kind != kInt || !validMetricPeriod(rv.i) {
				b.fail("E14", "request_period_in_seconds")
			} else {
				b.s.RequestPeriod = seconds(int(rv.i))
			}
		}
	},
}

func validMetricPeriod(n int64) bool {
	return n == 1 || n == 5 || n == 10 || n == 30 || n > 0 && n%60 == 0
}
