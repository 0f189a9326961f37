package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/devo-aws-collector/devo-aws-collector/internal/testutil/dynalite"
	"github.com/devo-aws-collector/devo-aws-collector/internal/testutil/rsyslog"
	"github.com/devo-aws-collector/devo-aws-collector/internal/testutil/samples"
)

// coordConfig writes one configuration for every instance: coordination in
// dynaliteURL's table, each instance's persistence directory and metrics
// address from its environment (${INSTANCE}, ${METRICS}).
func (e *env) coordConfig(rs *rsyslog.Server, dynaliteURL, services string) string {
	e.t.Helper()
	cfg := fmt.Sprintf(`globals:
  name: e2e
  persistence: {type: filesystem, config: {directory_name: "state-${INSTANCE}"}}
  metrics_listen: "${METRICS}"
  coordination:
    type: dynamodb
    config:
      table: e2e-leases
      region: us-east-1
      endpoint_url: %q
      lease_duration_in_sec: 3
%s
inputs:
  aws:
    id: "42"
    requests_per_second: 1000
    regions: [us-east-1]
    endpoint_url: %q
    credentials: {access_key: E2EACCESSKEY, access_secret: e2e-secret}
    services:
%s`, dynaliteURL, e.devoOutput(rs.TLSPort, e.cert.ClientCert, e.cert.ClientKey, ""), e.emu.URL, services)
	path := filepath.Join(e.dir, "config", "config.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		e.t.Fatal(err)
	}
	return path
}

// startInstance starts the binary with INSTANCE and METRICS set.
func (e *env) startInstance(cfgPath, instance, metrics string) *proc {
	e.t.Helper()
	return e.startBinEnv(collectorBin, cfgPath, []string{"INSTANCE=" + instance, "METRICS=" + metrics})
}

// TestCoordinationTwoCollectorsThroughBinary: two collector processes on one
// configuration with globals.coordination. The first creates the table;
// both start, show their lease metrics, and consume the same S3+SQS queue
// as competing consumers, every event delivered once; SIGTERM stops both
// cleanly. The same configuration with an unreachable table fails at start
// with P27 and exit status 1.
func TestCoordinationTwoCollectorsThroughBinary(t *testing.T) {
	e := newEnv(t)
	dyn := dynalite.Start(t)
	rs := rsyslog.Start(t, rsyslog.Options{Certs: e.cert})
	e.emu.MustCreateBucket(t, "coord-logs")
	q := e.queue("coord-umbrella", map[string]string{"VisibilityTimeout": "30"})
	cfg := e.coordConfig(rs, dyn.URL, "      cisco-umbrella: {sqs_queue_name: coord-umbrella, sqs_wait_time_seconds: 1}\n")

	addrs := map[string]string{"a": freeAddr(t), "b": freeAddr(t)}
	procs := map[string]*proc{}
	for _, name := range []string{"a", "b"} {
		procs[name] = e.startInstance(cfg, name, addrs[name])
	}
	for name, p := range procs {
		eventually(t, 60*time.Second, "collector "+name+" started with coordination", func() bool {
			return strings.Contains(p.log(), "coordination enabled") && strings.Contains(p.log(), "collector started")
		})
	}

	// The table exists, on-demand.
	db := dynamodb.NewFromConfig(dyn.Config())
	desc, err := db.DescribeTable(context.Background(), &dynamodb.DescribeTableInput{TableName: aws.String("e2e-leases")})
	if err != nil {
		t.Fatalf("the collectors did not create the table: %v", err)
	}
	if desc.Table.TableStatus != types.TableStatusActive || desc.Table.BillingModeSummary == nil ||
		desc.Table.BillingModeSummary.BillingMode != types.BillingModePayPerRequest {
		t.Errorf("table: status %s, billing %+v", desc.Table.TableStatus, desc.Table.BillingModeSummary)
	}

	// validate --check reads the table the collector would use.
	check := exec.Command(collectorBin, "validate", "--check", "--config", cfg)
	check.Env = append(quickExit(os.Environ()), "INSTANCE=check", "METRICS=127.0.0.1:0", "AWS_EC2_METADATA_DISABLED=true")
	out, err := check.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "ok   coordination: table e2e-leases in us-east-1 is ACTIVE, 0 lease(s), 0 held") {
		t.Errorf("validate --check: %v\n%s", err, out)
	}

	const objects = 40
	total := 0
	for i := range objects {
		o := samples.Umbrella(i, "dnslogs", 10)
		if _, err := e.s3.PutObject(context.Background(), &s3.PutObjectInput{Bucket: aws.String("coord-logs"), Key: aws.String(o.Key), Body: strings.NewReader(string(o.Body))}); err != nil {
			t.Fatal(err)
		}
		e.send(q, samples.S3Notification("coord-logs", o.Key, len(o.Body)), "")
		total += o.Events
	}
	eventually(t, 90*time.Second, "every event delivered", func() bool { return len(dataMessages(rs.Messages())) >= total })

	// Each collector counts an event delivered once it has settled
	// (ack_settle after it was written).
	delivered := map[string]float64{}
	eventually(t, 30*time.Second, "deliveries settled in both collectors' /metrics", func() bool {
		for name, addr := range addrs {
			delivered[name] = counterSum(scrape(t, addr)["devo_collector_events_delivered_total"])
		}
		return delivered["a"]+delivered["b"] >= float64(total)
	})
	for name, addr := range addrs {
		fams := scrape(t, addr)
		if fams["devo_collector_leases_held"] == nil || !hasLabel(fams["devo_collector_leases_held"], "owner") {
			t.Errorf("collector %s: no devo_collector_leases_held{owner} in /metrics", name)
		}
	}
	t.Logf("events delivered: a=%v b=%v of %d", delivered["a"], delivered["b"], total)
	for _, p := range procs {
		terminate(t, p)
	}
	if got := len(dataMessages(rs.Messages())); got != total {
		t.Errorf("rsyslog got %d events, want %d (each once)", got, total)
	}
	if delivered["a"]+delivered["b"] != float64(total) {
		t.Errorf("delivered a=%v + b=%v, want %d", delivered["a"], delivered["b"], total)
	}

	// The same configuration with the table out of reach: P27, exit 1.
	dyn.Stop()
	p := e.startInstance(cfg, "c", freeAddr(t))
	if code := p.wait(60 * time.Second); code != 1 {
		t.Fatalf("unreachable table: exit %d, want 1\n%s", code, p.log())
	}
	if !strings.Contains(p.log(), `CoordinationError(1): Coordination table "e2e-leases" in region "us-east-1" is not available`) {
		t.Errorf("unreachable table: no P27 line:\n%s", p.log())
	}
}
