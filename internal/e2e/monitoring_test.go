package e2e

import (
	"bytes"
	"encoding/json"
	"net/http"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"gopkg.in/yaml.v3"

	"github.com/devo-aws-collector/devo-aws-collector/internal/testutil/rsyslog"
	"github.com/devo-aws-collector/devo-aws-collector/internal/testutil/samples"
)

const (
	dashboardFile = "../../deploy/grafana/devo-aws-collector.json"
	alertsFile    = "../../deploy/prometheus/alerts.yaml"
)

// targetLabels are added by Prometheus to every scraped series.
var targetLabels = []string{"instance", "job"}

// TestMonitoringMetricsExist runs the binary with a network output and an
// SQS service moving events, scrapes /metrics, and checks that every metric
// the Grafana dashboard and the alert rules use is exposed, with every
// label they select on or group by.
func TestMonitoringMetricsExist(t *testing.T) {
	e := newEnv(t)
	rs := rsyslog.Start(t, rsyslog.Options{Certs: e.cert})
	url := e.queue("monitoring-q", nil)
	addr := freeAddr(t)
	path := e.writeConfig("  metrics_listen: "+addr, e.devoOutput(rs.TLSPort, e.cert.ClientCert, e.cert.ClientKey, ""),
		"      cisco-umbrella: {sqs_queue_name: monitoring-q, sqs_wait_time_seconds: 1}\n")
	obj := samples.Umbrella(1, "dnslogs", 5)
	bucketPut(t, e, "monitoring", obj.Key, obj.Body)
	e.send(url, samples.S3Notification("monitoring", obj.Key, len(obj.Body)), "")
	p := e.start(path)

	var families map[string]*dto.MetricFamily
	eventually(t, 60*time.Second, "events delivered and the SQS backlog measured in /metrics", func() bool {
		families = scrape(t, addr)
		return families["devo_collector_sqs_messages_visible"] != nil && families["devo_collector_aws_api_calls_total"] != nil &&
			families["devo_collector_output_spool_bytes"] != nil && counterSum(families["devo_collector_events_delivered_total"]) >= 5
	})
	terminate(t, p)

	exprs := map[string][]string{}
	exprs[dashboardFile] = dashboardExprs(t)
	exprs[alertsFile] = alertExprs(t)
	for file, list := range exprs {
		if len(list) < 8 {
			t.Fatalf("%s: only %d expressions", file, len(list))
		}
		for _, expr := range list {
			for _, problem := range checkExpr(expr, families) {
				t.Errorf("%s: %s\n  in %s", file, problem, expr)
			}
		}
	}
}

func bucketPut(t *testing.T, e *env, bucket, key string, body []byte) {
	t.Helper()
	if err := e.emu.CreateBucket(bucket); err != nil {
		t.Fatal(err)
	}
	if _, err := e.s3.PutObject(t.Context(), &s3.PutObjectInput{Bucket: aws.String(bucket), Key: aws.String(key), Body: bytes.NewReader(body)}); err != nil {
		t.Fatal(err)
	}
}

// scrape reads /metrics; nil while the listener is not up yet.
func scrape(t *testing.T, addr string) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		return nil
	}
	defer resp.Body.Close()
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("parse /metrics: %v", err)
	}
	return fams
}

func counterSum(f *dto.MetricFamily) float64 {
	if f == nil {
		return 0
	}
	sum := 0.0
	for _, m := range f.Metric {
		sum += m.GetCounter().GetValue()
	}
	return sum
}

func dashboardExprs(t *testing.T) []string {
	data, err := os.ReadFile(dashboardFile)
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		Panels []struct {
			Title   string `json:"title"`
			Type    string `json:"type"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(data, &d); err != nil {
		t.Fatalf("%s: %v", dashboardFile, err)
	}
	var out []string
	for _, p := range d.Panels {
		if p.Type != "row" && len(p.Targets) == 0 {
			t.Errorf("%s: panel %q has no query", dashboardFile, p.Title)
		}
		for _, tg := range p.Targets {
			out = append(out, tg.Expr)
		}
	}
	return out
}

func alertExprs(t *testing.T) []string {
	data, err := os.ReadFile(alertsFile)
	if err != nil {
		t.Fatal(err)
	}
	var f struct {
		Groups []struct {
			Name  string `yaml:"name"`
			Rules []struct {
				Alert       string            `yaml:"alert"`
				Expr        string            `yaml:"expr"`
				For         string            `yaml:"for"`
				Labels      map[string]string `yaml:"labels"`
				Annotations map[string]string `yaml:"annotations"`
			} `yaml:"rules"`
		} `yaml:"groups"`
	}
	if err := yaml.Unmarshal(data, &f); err != nil {
		t.Fatalf("%s: %v", alertsFile, err)
	}
	var out []string
	var names []string
	for _, g := range f.Groups {
		for _, r := range g.Rules {
			if r.Alert == "" || r.Expr == "" || r.Labels["severity"] == "" || r.Annotations["summary"] == "" {
				t.Errorf("%s: rule %q lacks alert, expr, labels.severity or annotations.summary", alertsFile, r.Alert)
			}
			if r.For != "" {
				if _, err := model.ParseDuration(r.For); err != nil {
					t.Errorf("%s: rule %s: for %q: %v", alertsFile, r.Alert, r.For, err)
				}
			}
			names = append(names, r.Alert)
			out = append(out, r.Expr)
		}
	}
	// The list: output down, spool growing, unit restarting,
	// credentials failing, backlog growing.
	for _, want := range []string{"DevoCollectorOutputDown", "DevoCollectorSpoolGrowing", "DevoCollectorUnitRestarting", "DevoCollectorCredentialsFailing", "DevoCollectorBacklogGrowing"} {
		if !slices.Contains(names, want) {
			t.Errorf("%s: no alert %s", alertsFile, want)
		}
	}
	return out
}

var (
	// selectorRE finds a metric name and its optional {label matchers}.
	selectorRE = regexp.MustCompile(`\b([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?`)
	matcherRE  = regexp.MustCompile(`([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)`)
	groupingRE = regexp.MustCompile(`\b(?:by|without)\s*\(([^)]*)\)`)
	// promqlWords are PromQL functions, aggregations and keywords, which
	// the selector pattern also matches.
	promqlWords = []string{"sum", "max", "min", "avg", "count", "rate", "irate", "increase", "deriv", "by", "without",
		"and", "or", "unless", "absent", "absent_over_time", "label_values", "on", "ignoring", "group_left", "group_right",
		"bool", "offset", "topk", "bottomk", "histogram_quantile", "delta", "idelta", "avg_over_time", "max_over_time", "min_over_time"}
)

// checkExpr returns what is wrong with expr against the scraped families:
// metrics that are not exposed, labels a selector or a by() names that the
// metrics do not carry, unbalanced brackets.
func checkExpr(expr string, fams map[string]*dto.MetricFamily) []string {
	var problems []string
	if strings.Count(expr, "(") != strings.Count(expr, ")") || strings.Count(expr, "{") != strings.Count(expr, "}") || strings.Count(expr, "[") != strings.Count(expr, "]") {
		problems = append(problems, "unbalanced brackets")
	}
	// Drop strings and range durations before looking for names.
	clean := regexp.MustCompile(`"[^"]*"`).ReplaceAllString(expr, `""`)
	clean = regexp.MustCompile(`\[[^\]]*\]`).ReplaceAllString(clean, "")
	labelsOf := map[string]bool{}
	for _, l := range targetLabels {
		labelsOf[l] = true
	}
	groupings := groupingRE.FindAllStringSubmatch(clean, -1)
	clean = groupingRE.ReplaceAllString(clean, "")
	var used []string
	for _, m := range selectorRE.FindAllStringSubmatch(clean, -1) {
		name := m[1]
		if slices.Contains(promqlWords, name) || regexp.MustCompile(`^\d`).MatchString(name) {
			continue
		}
		if strings.HasPrefix(clean[strings.Index(clean, name)+len(name):], "(") && m[2] == "" {
			continue // a function call
		}
		f := fams[name]
		if f == nil {
			problems = append(problems, "metric "+name+" is not in /metrics")
			continue
		}
		used = append(used, name)
		for _, mt := range f.Metric {
			for _, lp := range mt.Label {
				labelsOf[lp.GetName()] = true
			}
		}
		for _, mm := range matcherRE.FindAllStringSubmatch(m[2], -1) {
			if !slices.Contains(targetLabels, mm[1]) && !hasLabel(f, mm[1]) {
				problems = append(problems, "metric "+name+" has no label "+mm[1])
			}
		}
	}
	if len(used) == 0 {
		problems = append(problems, "uses no collector metric")
	}
	for _, g := range groupings {
		for _, l := range strings.Split(g[1], ",") {
			if l = strings.TrimSpace(l); l != "" && !labelsOf[l] {
				problems = append(problems, "grouping label "+l+" is on none of the metrics used")
			}
		}
	}
	return problems
}

func hasLabel(f *dto.MetricFamily, label string) bool {
	for _, m := range f.Metric {
		for _, lp := range m.Label {
			if lp.GetName() == label {
				return true
			}
		}
	}
	return false
}

// TestCheckExprFindsMistakes: the dashboard/alert check fails on a metric
// that does not exist, a label the metric lacks, and a grouping label no
// metric carries; it passes a correct expression.
func TestCheckExprFindsMistakes(t *testing.T) {
	name, label := "devo_collector_unit_restarts_total", "service"
	fams := map[string]*dto.MetricFamily{name: {Name: &name, Metric: []*dto.Metric{{Label: []*dto.LabelPair{{Name: &label, Value: &label}}}}}}
	for expr, want := range map[string]string{
		`sum by (service) (increase(devo_collector_unit_restarts_total{service="x", instance=~"$i"}[5m]))`: "",
		`rate(devo_collector_unit_restart_total[5m])`:                                                      "metric devo_collector_unit_restart_total is not in /metrics; uses no collector metric",
		`devo_collector_unit_restarts_total{output="x"}`:                                                   "metric devo_collector_unit_restarts_total has no label output",
		`sum by (region) (devo_collector_unit_restarts_total)`:                                             "grouping label region is on none of the metrics used",
	} {
		got := strings.Join(checkExpr(expr, fams), "; ")
		if got != want {
			t.Errorf("checkExpr(%s) = %q, want %q", expr, got, want)
		}
	}
}
