package app

import (
	"context"
	"io"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/devo-aws-collector/devo-aws-collector/internal/config"
	"github.com/devo-aws-collector/devo-aws-collector/internal/lease"
	"github.com/devo-aws-collector/devo-aws-collector/internal/pipeline"
	"github.com/devo-aws-collector/devo-aws-collector/internal/state"
	"github.com/devo-aws-collector/devo-aws-collector/internal/stats"
	"github.com/devo-aws-collector/devo-aws-collector/internal/testutil/syncbuf"
	"github.com/devo-aws-collector/devo-aws-collector/internal/wire"
)

func TestSenderOptionsFollowTheOutputConfig(t *testing.T) {
	cfg := &config.Config{Globals: config.Globals{GzipThreshold: -1, CompressionLevel: 9, CompressionBuffer: 1234,
		QueueMaxMessages: 77, QueueMaxBytes: 888}}
	q := pipeline.NewQueue(1, 1)
	log := slog.New(slog.DiscardHandler)

	devo := senderOptions(cfg, &config.Output{Name: "d", Type: config.OutputDevo, Address: "collector-eu.devo.io", Port: 443,
		Transport: "SSL", Chain: "/c", Cert: "/x", Key: "/k", ConcurrentConnections: 3, AckSettle: 3 * time.Second,
		InactivityTimeout: 7 * time.Second, HandshakeProbeTimeout: time.Second}, q, nil, log)
	if !devo.TLS || devo.Format != wire.DevoLine || devo.Connections != 3 || devo.AckSettle != 3*time.Second ||
		devo.InactivityTimeout != 7*time.Second || devo.ProbeTimeout != time.Second || devo.Chain != "/c" || devo.Cert != "/x" || devo.Key != "/k" {
		t.Errorf("devo_platform options: %+v", devo)
	}
	if devo.GzipThreshold != -1 || devo.GzipLevel != 9 || devo.GzipBuffer != 1234 || devo.QueueMaxMessages != 77 || devo.QueueMaxBytes != 888 {
		t.Errorf("gzip/queue options: %+v", devo)
	}
	if devo.MaxConnectionAge != time.Hour || devo.SendingTimeout <= 0 {
		t.Errorf("unset keys must keep the sender's defaults: %+v", devo)
	}

	sys := senderOptions(cfg, &config.Output{Name: "s", Type: config.OutputSyslog, Address: "10.0.0.5", Port: 514, Transport: "TCP"}, q, nil, log)
	if sys.TLS || sys.Format != wire.RFC3164 {
		t.Errorf("syslog over TCP: TLS=%v format=%v", sys.TLS, sys.Format)
	}
	relay := senderOptions(cfg, &config.Output{Name: "r", Type: config.OutputRelay, Transport: "TCP"}, q, nil, log)
	if relay.TLS || relay.Format != wire.DevoLine {
		t.Errorf("relay over TCP keeps the Devo line: TLS=%v format=%v", relay.TLS, relay.Format)
	}
}

// A kind without a builder is refused at start, naming the service. Every
// kind has one today, so the test removes the logs builder for its run.
func TestUnimplementedServiceKindFailsAtStart(t *testing.T) {
	saved := builders[config.Logs]
	delete(builders, config.Logs)
	defer func() { builders[config.Logs] = saved }()
	cfg := &config.Config{Inputs: []*config.Input{{Name: "aws", ID: "1", Enabled: true, Regions: []string{"us-east-1"},
		Credentials: config.Credentials{Mode: config.CredKeys, AccessKey: "AKIAEXAMPLE", AccessSecret: "s"},
		Services:    []*config.Service{{Name: "cwl_1", Custom: true, Kind: config.Logs, Regions: []string{"us-east-1"}}}}}}
	_, err := buildUnits(context.Background(), cfg, checkpoints{Store: state.NewMemory(), Leases: lease.Solo{}}, stats.NewRegistry(), slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err == nil || !strings.Contains(err.Error(), `service "cwl_1"`) || !strings.Contains(err.Error(), "does not implement") {
		t.Fatalf("error %v, want one naming the service", err)
	}
}

// TestEverySQSServiceKindHasASource: every SQS kind of the config registry
// has a source, and every builder serves a registered kind.
func TestEverySQSServiceKindHasASource(t *testing.T) {
	kinds := config.Kinds()
	for _, k := range kinds {
		if k.SQS() && builders[k] == nil {
			t.Errorf("no builder for %s", k)
		}
	}
	for k := range builders {
		if !slices.Contains(kinds, k) {
			t.Errorf("builder for %q, which config does not register", k)
		}
	}
}

// audits_api, metrics, aws-guardduty and custom logs have builders.
func TestAPIServiceKinds(t *testing.T) {
	for _, k := range []config.ServiceKind{config.CloudTrailAPI, config.Metrics, config.GuardDuty, config.Logs} {
		if builders[k] == nil {
			t.Errorf("no builder for %s", k)
		}
	}
}

// TestCollectorDetailsAndQueueMetrics: generate_collector_details gives one
// start-up record naming the outputs, and queue_generate_metrics a record
// per output every period; both reach the log and, as internal messages,
// the outputs. Off (the default), neither appears.
func TestCollectorDetailsAndQueueMetrics(t *testing.T) {
	run := func(on bool) (stdout, stderr string) {
		cfg := &config.Config{
			Path: "config.yaml",
			Globals: config.Globals{Name: "details_test", ID: "42", PersistenceDir: t.TempDir(),
				QueueMaxMessages: 100, QueueMaxBytes: 1 << 20, SenderStatsPeriod: 100 * time.Millisecond,
				QueueGenerateMetrics: on, GenerateCollectorDetails: on},
			Outputs: []*config.Output{{Name: "con", Type: config.OutputConsole, Format: "devo_line"}},
		}
		ctx, cancel := context.WithTimeout(context.Background(), 700*time.Millisecond)
		defer cancel()
		var out, log syncbuf.Buffer
		if err := Run(ctx, cfg, &out, &log); err != nil {
			t.Fatalf("Run: %v\n%s", err, log.String())
		}
		return out.String(), log.String()
	}
	stdout, stderr := run(true)
	for _, want := range []string{`msg="collector details"`, `collector_id=42`, `outputs="[con (console)]"`, `persistence=`} {
		if !strings.Contains(stderr, want) {
			t.Errorf("log lacks %s:\n%s", want, stderr)
		}
	}
	if n := strings.Count(stderr, `msg="queue metrics" output=con queued_messages=`); n < 2 {
		t.Errorf("%d queue metrics records in 700 ms with a 100 ms period, want several:\n%s", n, stderr)
	}
	if !strings.Contains(stderr, "max_messages=100 max_bytes=1048576") {
		t.Errorf("queue metrics lack the bounds:\n%s", stderr)
	}
	for _, want := range []string{`devo.collectors.out.local.info: {"msg":"collector details collector_id=42 `, `devo.collectors.out.local.info: {"msg":"queue metrics output=con `} {
		if !strings.Contains(stdout, want) {
			t.Errorf("console output lacks %s:\n%s", want, stdout)
		}
	}
	_, stderr = run(false)
	if strings.Contains(stderr, "collector details") || strings.Contains(stderr, "queue metrics") {
		t.Errorf("records while both keys are off:\n%s", stderr)
	}
}

// The soft memory limit follows the in-flight bound unless set, and
// GOMEMLIMIT in the environment wins over both.
func TestMemoryLimit(t *testing.T) {
	t.Setenv("GOMEMLIMIT", "")
	g := config.Globals{InFlightMaxBytes: 96 << 20}
	if got := memoryLimit(g); got != 128<<20 {
		t.Errorf("derived limit %d, want %d", got, 128<<20)
	}
	g.MemoryLimitBytes = 300 << 20
	if got := memoryLimit(g); got != 300<<20 {
		t.Errorf("set limit %d, want %d", got, 300<<20)
	}
	if got := memoryLimit(config.Globals{}); got != 0 {
		t.Errorf("no bound, no limit: got %d", got)
	}
	t.Setenv("GOMEMLIMIT", "1GiB")
	if got := memoryLimit(g); got != 0 {
		t.Errorf("with GOMEMLIMIT set: %d, want 0 (left to the runtime)", got)
	}
}
