package sqsevents

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"github.com/devo-aws-collector/devo-aws-collector/internal/awstest/fauxqs"
	"github.com/devo-aws-collector/devo-aws-collector/internal/config"
	"github.com/devo-aws-collector/devo-aws-collector/internal/testutil/syncbuf"
)

// The emulator is started on first use and shared by the package's tests;
// each test makes its own queues.
var (
	emuOnce sync.Once
	emu     *fauxqs.Server
	emuErr  error
)

func emulator(t *testing.T) *fauxqs.Server {
	t.Helper()
	emuOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		emu, emuErr = fauxqs.StartProcess(ctx)
	})
	if emuErr != nil {
		t.Fatalf("start fauxqs: %v", emuErr)
	}
	return emu
}

func TestMain(m *testing.M) {
	code := m.Run()
	if emu != nil {
		emu.Stop()
	}
	os.Exit(code)
}

// loadService loads a real configuration holding one service and returns
// that service as the config package resolved it (template, derivation,
// SQS keys, defaults).
func loadService(t *testing.T, name, body string) *config.Service {
	t.Helper()
	dir := t.TempDir()
	yaml := `globals:
  persistence:
    type: filesystem
    config:
      directory_name: state
outputs:
  console_1:
    type: console
inputs:
  aws:
    id: "1"
    enabled: true
    regions: [us-east-1]
    credentials:
      access_key: AKIAEXAMPLEKEY000001
      access_secret: "test-secret"
    services:
      ` + name + `:
` + body
	path := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(path, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := config.Load(path)
	if err != nil {
		t.Fatalf("load config: %v\n%s", err, yaml)
	}
	for _, in := range c.Inputs {
		for _, s := range in.Services {
			if s.Name == name {
				return s
			}
		}
	}
	t.Fatalf("service %s not in the loaded config", name)
	return nil
}

// sendBodies sends bodies in order, ten per batch. On a FIFO queue group
// picks each body's message group.
func sendBodies(t *testing.T, c *sqs.Client, url string, bodies []string, group func(i int) string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	for i := 0; i < len(bodies); i += 10 {
		var entries []types.SendMessageBatchRequestEntry
		for j := i; j < min(i+10, len(bodies)); j++ {
			e := types.SendMessageBatchRequestEntry{Id: aws.String(strconv.Itoa(j)), MessageBody: aws.String(bodies[j])}
			if group != nil {
				e.MessageGroupId = aws.String(group(j))
			}
			entries = append(entries, e)
		}
		out, err := c.SendMessageBatch(ctx, &sqs.SendMessageBatchInput{QueueUrl: &url, Entries: entries})
		if err != nil {
			t.Fatal(err)
		}
		if len(out.Failed) > 0 {
			t.Fatalf("send failed: %+v", out.Failed)
		}
	}
}

// sources are the twelve EventBridge sources the delivery tests send:
// AWS services (derived event type = the name), a custom source and a
// partner source (both → "events").
var sources = []string{
	"aws.ec2", "aws.ssm", "aws.s3", "aws.sts", "aws.backup", "aws.kms",
	"aws.tag", "aws.config", "aws.logs", "aws.cloudtrail",
	"com.acme.orders", "aws.partner/example.com/123",
}

// envelope returns an EventBridge event from source whose detail carries
// seq, so a test can tell every event apart and check order.
func envelope(source string, seq int) string {
	b, err := json.Marshal(map[string]any{
		"version":     "0",
		"id":          fmt.Sprintf("00000000-0000-4000-8000-%012d", seq),
		"detail-type": "Test Event",
		"source":      source,
		"account":     "123456789012",
		"time":        "2024-05-31T13:20:11Z",
		"region":      "us-east-1",
		"resources":   []string{},
		"detail":      map[string]any{"seq": seq},
	})
	if err != nil {
		panic(err)
	}
	return string(b)
}

// decoded is what the tests read back from a payload.
type decoded struct {
	Source    string `json:"source"`
	PullingID string `json:"@devo_pulling_id"`
	Detail    struct {
		Seq      int               `json:"seq"`
		Findings []json.RawMessage `json:"findings"`
	} `json:"detail"`
}

func decode(t *testing.T, payload string) decoded {
	t.Helper()
	var d decoded
	if err := json.Unmarshal([]byte(payload), &d); err != nil {
		t.Fatalf("payload is not JSON: %v: %s", err, payload)
	}
	return d
}

// logBuffer collects log lines for assertions; safe for concurrent use.
type logBuffer struct{ syncbuf.Buffer }

func (l *logBuffer) logger() *slog.Logger {
	return slog.New(slog.NewJSONHandler(l, &slog.HandlerOptions{Level: slog.LevelDebug}))
}
