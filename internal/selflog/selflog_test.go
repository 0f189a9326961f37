package selflog

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/devo-aws-collector/devo-aws-collector/internal/pipeline"
)

var ident = Options{CollectorName: "aws_collector", CollectorVersion: "1.0.0", CollectorImage: "devo-aws-collector"}

// drainRing takes every buffered record.
func drainRing(h *Handler) []*pipeline.Event {
	var out []*pipeline.Event
	for ev := h.core.pop(); ev != nil; ev = h.core.pop() {
		out = append(out, ev)
	}
	h.core.mu.Lock()
	h.core.held = 0
	h.core.mu.Unlock()
	return out
}

func TestPayloadExact(t *testing.T) {
	var next bytes.Buffer
	h := New(slog.NewJSONHandler(&next, nil), ident)
	log := slog.New(h).With("input", "aws", "service", "sqs-cloudwatch-consumer", "region", "us-east-2")
	rec := slog.NewRecord(time.Date(2024, 5, 31, 15, 12, 8, 535000999, time.FixedZone("CEST", 2*3600)), slog.LevelError, "queue not available", 0)
	rec.AddAttrs(
		slog.String("queue", "devo-sec.fifo"),
		slog.Any("err", errors.New(`reason: "AWS.SimpleQueueService.NonExistentQueue"`)),
		slog.Group("http", slog.Int("status", 400)),
		slog.String("note", "<&> tab\there"),
	)
	if err := log.Handler().Handle(context.Background(), rec); err != nil {
		t.Fatal(err)
	}
	evs := drainRing(h)
	if len(evs) != 1 {
		t.Fatalf("%d events buffered, want 1", len(evs))
	}
	ev := evs[0]
	if ev.Tag != "devo.collectors.out.local.error" {
		t.Fatalf("tag %q", ev.Tag)
	}
	want := `{"msg":"queue not available region=us-east-2 queue=devo-sec.fifo err=\"reason: \\\"AWS.SimpleQueueService.NonExistentQueue\\\"\" http.status=400 note=\"<&> tab\\there\"",` +
		`"time":"2024-05-31T13:12:08.535000Z","level":"error","collector_name":"aws_collector","collector_version":"1.0.0","collector_image":"devo-aws-collector",` +
		`"input_name":"aws","service_name":"sqs-cloudwatch-consumer"}`
	if string(ev.Payload) != want {
		t.Fatalf("payload\n%s\nwant\n%s", ev.Payload, want)
	}
	if !ev.Time.Equal(rec.Time) {
		t.Fatalf("event time %v, want the record's %v", ev.Time, rec.Time)
	}
	var m map[string]any
	if err := json.Unmarshal(ev.Payload, &m); err != nil {
		t.Fatalf("payload is not JSON: %v", err)
	}
	// The normal handler got the record unchanged.
	var got map[string]any
	if err := json.Unmarshal(next.Bytes(), &got); err != nil {
		t.Fatalf("next handler output %q: %v", next.String(), err)
	}
	if got["msg"] != "queue not available" || got["input"] != "aws" || got["queue"] != "devo-sec.fifo" || got["http"].(map[string]any)["status"] != 400.0 {
		t.Fatalf("next handler saw %v", got)
	}
}

func TestGroupsAndUnit(t *testing.T) {
	h := New(slog.NewTextHandler(&bytes.Buffer{}, nil), Options{})
	log := slog.New(h).With("unit", "aws/cloudtrail/us-east-1").WithGroup("sqs").With("input", "not-top-level")
	log.Info("receive done", "messages", 3)
	log.WithGroup("").Info("empty group ignored")
	evs := drainRing(h)
	if len(evs) != 2 {
		t.Fatalf("%d events", len(evs))
	}
	want := `{"msg":"receive done sqs.input=not-top-level sqs.messages=3","time":"`
	if !strings.HasPrefix(string(evs[0].Payload), want) {
		t.Fatalf("payload %s, want prefix %s", evs[0].Payload, want)
	}
	if !strings.HasSuffix(string(evs[0].Payload), `"level":"info","collector_name":"","collector_version":"","collector_image":"","module_name":"aws/cloudtrail/us-east-1"}`) {
		t.Fatalf("payload %s", evs[0].Payload)
	}
	if evs[0].Tag != "devo.collectors.out.local.info" {
		t.Fatalf("tag %q", evs[0].Tag)
	}
}

func TestLevels(t *testing.T) {
	tests := []struct {
		name  string
		o     Options
		level slog.Level
		tag   string // "" means not delivered
	}{
		{"debug off: debug", Options{}, slog.LevelDebug, ""},
		{"debug off: info", Options{}, slog.LevelInfo, "devo.collectors.out.local.info"},
		{"debug off: warn is warning", Options{}, slog.LevelWarn, "devo.collectors.out.local.warning"},
		{"debug off: error", Options{}, slog.LevelError, "devo.collectors.out.local.error"},
		{"error+2 is error", Options{}, slog.LevelError + 2, "devo.collectors.out.local.error"},
		{"error+4 is critical", Options{}, slog.LevelError + 4, "devo.collectors.out.local.critical"},
		{"debug on: debug", Options{Debug: true}, slog.LevelDebug, "devo.collectors.out.local.debug"},
		{"debug on: below debug", Options{Debug: true}, slog.LevelDebug - 1, ""},
		{"debug on: info", Options{Debug: true}, slog.LevelInfo, "devo.collectors.out.local.info"},
		{"level warn: info", Options{Level: slog.LevelWarn}, slog.LevelInfo, ""},
		{"level warn: warn", Options{Level: slog.LevelWarn}, slog.LevelWarn, "devo.collectors.out.local.warning"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// The normal handler logs everything down to DEBUG-4, so its
			// level never decides what is delivered.
			var next bytes.Buffer
			h := New(slog.NewTextHandler(&next, &slog.HandlerOptions{Level: slog.LevelDebug - 4}), tt.o)
			slog.New(h).Log(context.Background(), tt.level, "hello")
			if !strings.Contains(next.String(), "msg=hello") {
				t.Fatalf("next handler did not get the record: %q", next.String())
			}
			evs := drainRing(h)
			switch {
			case tt.tag == "" && len(evs) != 0:
				t.Fatalf("delivered as %q, want not delivered", evs[0].Tag)
			case tt.tag != "" && (len(evs) != 1 || evs[0].Tag != tt.tag):
				t.Fatalf("got %d events %v, want one tagged %q", len(evs), evs, tt.tag)
			case tt.tag != "":
				level := strings.TrimPrefix(tt.tag, TagPrefix)
				if !strings.Contains(string(evs[0].Payload), `"level":"`+level+`"`) {
					t.Fatalf("payload %s lacks level %q", evs[0].Payload, level)
				}
			}
		})
	}
}

func TestNextHandlerLevelIsRespected(t *testing.T) {
	var next bytes.Buffer
	h := New(slog.NewTextHandler(&next, &slog.HandlerOptions{Level: slog.LevelWarn}), Options{})
	log := slog.New(h)
	if !log.Enabled(context.Background(), slog.LevelInfo) {
		t.Fatal("INFO not enabled although it is delivered to the outputs")
	}
	if log.Enabled(context.Background(), slog.LevelDebug) {
		t.Fatal("DEBUG enabled although nobody wants it")
	}
	log.Info("only for the outputs")
	if next.Len() != 0 {
		t.Fatalf("next handler below its level got %q", next.String())
	}
	if n := len(drainRing(h)); n != 1 {
		t.Fatalf("%d events, want 1", n)
	}
}

// blockSink takes nothing until release is closed, then settles all.
type blockSink struct {
	release chan struct{}
	mu      sync.Mutex
	got     []*pipeline.Event
	notify  chan struct{}
}

func newBlockSink() *blockSink {
	return &blockSink{release: make(chan struct{}), notify: make(chan struct{}, 1)}
}

func (s *blockSink) Run(ctx context.Context, in *pipeline.Queue) error {
	select {
	case <-s.release:
	case <-ctx.Done():
		return nil
	}
	var buf []*pipeline.Event
	for {
		evs, err := in.Get(ctx, buf, 64)
		if err != nil {
			return nil
		}
		s.mu.Lock()
		s.got = append(s.got, evs...)
		s.mu.Unlock()
		for _, ev := range evs {
			in.Settle(ev, pipeline.Delivered)
		}
		select {
		case s.notify <- struct{}{}:
		default:
		}
		buf = evs
	}
}

// waitFor waits until the sink has n events.
func (s *blockSink) waitFor(t *testing.T, n int) []*pipeline.Event {
	t.Helper()
	deadline := time.After(30 * time.Second)
	for {
		s.mu.Lock()
		got := append([]*pipeline.Event(nil), s.got...)
		s.mu.Unlock()
		if len(got) >= n {
			return got
		}
		select {
		case <-s.notify:
		case <-deadline:
			t.Fatalf("sink has %d events, want %d", len(got), n)
		}
	}
}

// dataSource emits one data event, then waits.
type dataSource struct{ emitted chan struct{} }

func (s *dataSource) Run(ctx context.Context, out pipeline.Emitter) error {
	if err := out.Emit(ctx, pipeline.NewEvent(nil, "cloud.aws.data", time.Now(), []byte("data"))); err != nil {
		return nil
	}
	close(s.emitted)
	<-ctx.Done()
	return nil
}

// TestStuckOutputDoesNotBlockLogging logs 100k records while the only
// output takes nothing and its queue is full of data: every Log call must
// return (a blocking handler would hang here forever), the overflow is
// counted, and once the output moves the newest records arrive in order,
// after the data event they never displaced.
func TestStuckOutputDoesNotBlockLogging(t *testing.T) {
	for _, viaOutputs := range []bool{false, true} {
		t.Run(fmt.Sprintf("outputs=%v", viaOutputs), func(t *testing.T) {
			sink := newBlockSink()
			q := pipeline.NewQueue(1, 1<<20)
			outs := []*pipeline.Output{{Name: "devo", Sink: sink, Queue: q}}
			src := &dataSource{emitted: make(chan struct{})}
			p := pipeline.New(slog.New(slog.DiscardHandler), pipeline.Options{}, outs, []pipeline.Unit{{Name: "u", Source: src}})
			stop, cancel := context.WithCancel(context.Background())
			defer cancel()
			ran := make(chan error, 1)
			go func() { ran <- p.Run(stop, context.Background()) }()
			<-src.emitted // the queue is now full of data

			h := New(slog.DiscardHandler, Options{Buffer: 100, RetryInterval: time.Millisecond})
			var em pipeline.Emitter = p
			if viaOutputs {
				em = NewOutputs(outs)
			}
			runCtx, stopRun := context.WithCancel(context.Background())
			runDone := make(chan struct{})
			go func() { h.Run(runCtx, em); close(runDone) }()

			log := slog.New(h)
			const total = 100_000
			logged := make(chan struct{})
			go func() {
				for i := range total {
					log.Info("record", "i", i)
				}
				close(logged)
			}()
			select {
			case <-logged:
			case <-time.After(60 * time.Second):
				t.Fatal("logging blocked behind a stuck output")
			}
			st := h.Stats()
			if st.Emitted != 0 || st.Buffered < 100 || st.Buffered > 101 || st.Dropped+st.Buffered != total {
				t.Fatalf("stats %+v after %d records into a buffer of 100 with the output stuck", st, total)
			}

			close(sink.release)
			got := sink.waitFor(t, 1+int(st.Buffered))
			if string(got[0].Payload) != "data" {
				t.Fatalf("first event %q, want the data event", got[0].Payload)
			}
			prev := -1
			for _, ev := range got[1:] {
				var m struct{ Msg string }
				if err := json.Unmarshal(ev.Payload, &m); err != nil {
					t.Fatal(err)
				}
				var i int
				if _, err := fmt.Sscanf(m.Msg, "record i=%d", &i); err != nil {
					t.Fatalf("msg %q: %v", m.Msg, err)
				}
				if i <= prev {
					t.Fatalf("record %d after %d", i, prev)
				}
				prev = i
			}
			if prev != total-1 {
				t.Fatalf("last record %d, want %d (the newest are kept)", prev, total-1)
			}
			stopRun()
			<-runDone
			cancel()
			if err := <-ran; err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestOutputsNeverDuplicates: with one output stuck and one flowing, the
// flowing output gets each record once, and both get all of them once the
// stuck one moves.
func TestOutputsNeverDuplicates(t *testing.T) {
	stuck, flowing := newBlockSink(), newBlockSink()
	close(flowing.release)
	qs, qf := pipeline.NewQueue(2, 1<<20), pipeline.NewQueue(1000, 1<<20)
	outs := []*pipeline.Output{{Name: "flowing", Sink: flowing, Queue: qf}, {Name: "stuck", Sink: stuck, Queue: qs}}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var wg sync.WaitGroup
	for _, o := range outs {
		wg.Add(1)
		go func() { defer wg.Done(); _ = o.Sink.Run(ctx, o.Queue) }()
	}
	h := New(slog.DiscardHandler, Options{Buffer: 50, RetryInterval: time.Millisecond})
	runDone := make(chan struct{})
	go func() { h.Run(ctx, NewOutputs(outs)); close(runDone) }()
	log := slog.New(h)
	for i := range 10 {
		log.Warn("w", "i", i)
	}
	// The stuck queue holds two; the third record is in hand, at the
	// flowing output already, and offered to the stuck one again and
	// again.
	flowing.waitFor(t, 3)
	deadline := time.Now().Add(30 * time.Second)
	for h.Stats().Buffered != 8 {
		if time.Now().After(deadline) {
			t.Fatalf("stats %+v, want 8 buffered (7 in the ring, 1 in hand)", h.Stats())
		}
		time.Sleep(time.Millisecond)
	}
	// Let Run offer the record in hand many times before the release.
	time.Sleep(50 * time.Millisecond)
	close(stuck.release)
	a := flowing.waitFor(t, 10)
	b := stuck.waitFor(t, 10)
	for _, got := range [][]*pipeline.Event{a, b} {
		if len(got) != 10 {
			t.Fatalf("%d events, want 10 exactly", len(got))
		}
		for i, ev := range got {
			if !strings.Contains(string(ev.Payload), fmt.Sprintf(`"msg":"w i=%d"`, i)) {
				t.Fatalf("event %d: %s", i, ev.Payload)
			}
		}
	}
	// The sinks may see the last record before Run counts it.
	for st := h.Stats(); st.Emitted != 10 || st.Dropped != 0 || st.Buffered != 0; st = h.Stats() {
		if time.Now().After(deadline) || st.Emitted > 10 || st.Dropped != 0 {
			t.Fatalf("stats %+v, want 10 emitted, nothing dropped or buffered", st)
		}
		time.Sleep(time.Millisecond)
	}
	cancel()
	<-runDone
	wg.Wait()
}

// A record logged with Local reaches the process's log and never the
// outputs, at any level; a context derived from Local stays local too.
func TestLocalStaysLocal(t *testing.T) {
	var next bytes.Buffer
	h := New(slog.NewTextHandler(&next, &slog.HandlerOptions{Level: slog.LevelDebug}), Options{Debug: true})
	log := slog.New(h).With("output", "devo")
	type k struct{}
	log.DebugContext(Local, "batch written", "events", 3)
	log.WarnContext(context.WithValue(Local, k{}, 1), "local warning")
	log.Debug("delivered")
	if !strings.Contains(next.String(), `msg="batch written"`) || !strings.Contains(next.String(), `msg="local warning"`) {
		t.Fatalf("local records missing from the process's log: %q", next.String())
	}
	evs := drainRing(h)
	if len(evs) != 1 || !strings.Contains(string(evs[0].Payload), `"msg":"delivered output=devo"`) {
		t.Fatalf("delivered %d records %v, want only the one logged without Local", len(evs), evs)
	}
}
