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
	"github.com/devo-aws-collector/devo-aws-collector/internal/pipeline"
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

// recorder is an output the test controls. It takes events from a real
// pipeline.Queue; hold, when set, decides per event whether to keep it
// unsettled (like a network output waiting for its settle window). Held
// events are settled Failed when the sink stops, as a sink whose connection
// never settled must.
type recorder struct {
	hold func(ev *pipeline.Event) bool

	mu     sync.Mutex
	events []got // delivered, in delivery order
	held   []*pipeline.Event
	seen   chan struct{} // a token: something was recorded or held
}

type got struct {
	Tag     string
	Time    time.Time
	Payload string
}

func newRecorder() *recorder { return &recorder{seen: make(chan struct{}, 1)} }

func (r *recorder) Run(ctx context.Context, in *pipeline.Queue) error {
	var buf []*pipeline.Event
	defer func() {
		r.mu.Lock()
		held := r.held
		r.held = nil
		r.mu.Unlock()
		for _, ev := range held {
			in.Settle(ev, pipeline.Failed)
		}
	}()
	for {
		evs, err := in.Get(ctx, buf, 100)
		if err != nil {
			return nil
		}
		for _, ev := range evs {
			r.mu.Lock()
			if r.hold != nil && r.hold(ev) {
				r.held = append(r.held, ev)
				r.mu.Unlock()
			} else {
				r.events = append(r.events, got{Tag: ev.Tag, Time: ev.Time, Payload: string(ev.Payload)})
				r.mu.Unlock()
				in.Settle(ev, pipeline.Delivered)
			}
			select {
			case r.seen <- struct{}{}:
			default:
			}
		}
		buf = evs
	}
}

func (r *recorder) delivered() []got {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]got(nil), r.events...)
}

func (r *recorder) heldCount() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.held)
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, limit time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", limit, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// running is a real pipeline with one recorder output and one unit.
type running struct {
	stop context.CancelFunc
	done chan error
}

// runPipeline runs src behind a real pipeline.New(...).Run with rec as its
// only output, until the returned stop is called (or the test ends).
func runPipeline(t *testing.T, src pipeline.Source, rec *recorder) *running {
	t.Helper()
	q := pipeline.NewQueue(10000, 64<<20)
	p := pipeline.New(slog.New(slog.DiscardHandler), pipeline.Options{DrainTimeout: 10 * time.Second},
		[]*pipeline.Output{{Name: "recorder", Sink: rec, Queue: q}},
		[]pipeline.Unit{{Name: "test", Source: src}})
	stop, cancel := context.WithCancel(context.Background())
	r := &running{stop: cancel, done: make(chan error, 1)}
	go func() { r.done <- p.Run(stop, context.Background()) }()
	t.Cleanup(func() { r.shutdown(t) })
	return r
}

// shutdown stops the pipeline and waits for it; safe to call twice.
func (r *running) shutdown(t *testing.T) {
	t.Helper()
	r.stop()
	select {
	case err, ok := <-r.done:
		if ok && err != nil {
			t.Errorf("pipeline: %v", err)
		}
		if ok {
			close(r.done)
		}
	case <-time.After(2 * time.Minute):
		t.Fatal("pipeline did not stop")
	}
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
