package app

import (
	"context"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/devo-aws-collector/devo-aws-collector/internal/config"
	"github.com/devo-aws-collector/devo-aws-collector/internal/pipeline"
	"github.com/devo-aws-collector/devo-aws-collector/internal/state"
	"github.com/devo-aws-collector/devo-aws-collector/internal/stats"
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

func TestUnimplementedServiceKindFailsAtStart(t *testing.T) {
	cfg := &config.Config{Inputs: []*config.Input{{Name: "aws", ID: "1", Enabled: true, Regions: []string{"us-east-1"},
		Credentials: config.Credentials{Mode: config.CredKeys, AccessKey: "AKIAEXAMPLE", AccessSecret: "s"},
		Services:    []*config.Service{{Name: "cwl_1", Custom: true, Kind: config.Logs, Regions: []string{"us-east-1"}}}}}}
	_, err := buildUnits(context.Background(), cfg, state.NewMemory(), stats.NewRegistry(), slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err == nil || !strings.Contains(err.Error(), `service "cwl_1"`) {
		t.Fatalf("error %v, want one naming the service", err)
	}
}

func TestEverySQSServiceKindHasASource(t *testing.T) {
	for _, k := range []config.ServiceKind{config.EventBridge, config.SecurityHub, config.CloudTrailS3, config.S3Logs, config.Umbrella} {
		if builders[k] == nil {
			t.Errorf("no builder for %s", k)
		}
	}
}
