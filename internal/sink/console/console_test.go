package console

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/devo-aws-collector/devo-aws-collector/internal/pipeline"
	"github.com/devo-aws-collector/devo-aws-collector/internal/testutil/poison"
)

// recWriter records each Write call separately.
type recWriter struct {
	mu     sync.Mutex
	writes []string
	err    error
}

func (w *recWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.err != nil {
		return 0, w.err
	}
	w.writes = append(w.writes, string(p))
	return len(p), nil
}

func (w *recWriter) all() (string, int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return strings.Join(w.writes, ""), len(w.writes)
}

var t0 = time.Date(2024, 5, 31, 13, 12, 8, 535999000, time.FixedZone("CEST", 2*3600))

func sampleEvents(b *pipeline.Batch) []*pipeline.Event {
	return []*pipeline.Event{
		pipeline.NewEvent(b, "cloud.aws.cloudtrail.ec2.123456789012.us-east-1.1", t0, []byte(`{"eventName":"StartInstances","x":"<&>"}`)),
		pipeline.NewEvent(b, "cloud.aws.vpc.flowlogs.123456789012.eu-west-1", t0, []byte("2 123 eni-1 10.0.0.1 \xff\n")),
		pipeline.NewEvent(b, "my.app.demo", time.Time{}, []byte("first line\nsecond line")),
	}
}

// runOnce queues evs, closes the queue and runs the sink to the end.
func runOnce(t *testing.T, o Options, evs []*pipeline.Event) (string, *pipeline.Queue) {
	t.Helper()
	s, err := New(nil, o)
	if err != nil {
		t.Fatal(err)
	}
	w := &recWriter{}
	s.w = w
	s.now = func() time.Time { return time.Date(2025, 1, 2, 3, 4, 5, 6_000_000, time.UTC) }
	q := pipeline.NewQueue(100, 1<<20)
	for _, ev := range evs {
		if err := q.Put(context.Background(), ev); err != nil {
			t.Fatal(err)
		}
	}
	q.Close()
	if err := s.Run(context.Background(), q); err != nil {
		t.Fatalf("Run returned %v", err)
	}
	out, _ := w.all()
	return out, q
}

func TestDevoLineExactBytes(t *testing.T) {
	out, q := runOnce(t, Options{Hostname: "collector 7f3a"}, sampleEvents(nil))
	want := "<14>Jan  1 00:00:00 collector_7f3a cloud.aws.cloudtrail.ec2.123456789012.us-east-1.1: {\"eventName\":\"StartInstances\",\"x\":\"<&>\"}\n" +
		"<14>Jan  1 00:00:00 collector_7f3a cloud.aws.vpc.flowlogs.123456789012.eu-west-1: 2 123 eni-1 10.0.0.1 \uFFFD\n" +
		"71 <14>Jan  1 00:00:00 collector_7f3a my.app.demo: first line\nsecond line\n"
	if out != want {
		t.Fatalf("got\n%q\nwant\n%q", out, want)
	}
	if d, f := q.Settled(); d != 3 || f != 0 {
		t.Fatalf("settled %d delivered %d failed, want 3 0", d, f)
	}
}

func TestJSONExactBytes(t *testing.T) {
	out, _ := runOnce(t, Options{Format: FormatJSON}, sampleEvents(nil))
	want := `{"timestamp":"2024-05-31 11:12:08.535","tag":"cloud.aws.cloudtrail.ec2.123456789012.us-east-1.1","content":"{\"eventName\":\"StartInstances\",\"x\":\"<&>\"}"}` + "\n" +
		`{"timestamp":"2024-05-31 11:12:08.535","tag":"cloud.aws.vpc.flowlogs.123456789012.eu-west-1","content":"2 123 eni-1 10.0.0.1 \ufffd\n"}` + "\n" +
		`{"timestamp":"2025-01-02 03:04:05.006","tag":"my.app.demo","content":"first line\nsecond line"}` + "\n"
	if out != want {
		t.Fatalf("got\n%s\nwant\n%s", out, want)
	}
	for i, line := range strings.Split(strings.TrimSuffix(out, "\n"), "\n") {
		var m map[string]string
		if err := json.Unmarshal([]byte(line), &m); err != nil || len(m) != 3 {
			t.Fatalf("line %d is not an object of exactly three strings: %v %v", i, m, err)
		}
	}
}

func TestUnknownFormat(t *testing.T) {
	_, err := New(io.Discard, Options{Format: "xml"})
	if err == nil || !strings.Contains(err.Error(), `"xml"`) || !strings.Contains(err.Error(), "devo_line") {
		t.Fatalf("New with format xml: %v", err)
	}
}

// TestFlushesWhenQueueEmpties checks that waiting events are written in
// one block, and that a later event shows without the queue closing.
func TestFlushesWhenQueueEmpties(t *testing.T) {
	s, err := New(nil, Options{Hostname: "h"})
	if err != nil {
		t.Fatal(err)
	}
	w := &recWriter{}
	s.w = w
	q := pipeline.NewQueue(100, 1<<20)
	settled := make(chan pipeline.Result, 2)
	b := pipeline.NewBatch(func(r pipeline.Result) { settled <- r })
	for i := range 3 {
		if err := q.Put(context.Background(), pipeline.NewEvent(nil, "a.b.c", t0, []byte{'0' + byte(i)})); err != nil {
			t.Fatal(err)
		}
	}
	done := make(chan error, 1)
	go func() { done <- s.Run(context.Background(), q) }()

	// A fourth event with a batch, queued while the sink runs; the
	// pipeline never closes the queue in between.
	ev := pipeline.NewEvent(b, "a.b.c", t0, []byte("3"))
	em := emitterFor(q)
	if err := em.Emit(context.Background(), ev); err != nil {
		t.Fatal(err)
	}
	b.Close()
	select {
	case r := <-settled:
		if !r.OK() || r.Delivered != 1 {
			t.Fatalf("batch result %+v", r)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("event not settled while the queue stayed open: the sink did not flush on an empty queue")
	}
	out, writes := w.all()
	want := "<14>Jan  1 00:00:00 h a.b.c: 0\n<14>Jan  1 00:00:00 h a.b.c: 1\n<14>Jan  1 00:00:00 h a.b.c: 2\n<14>Jan  1 00:00:00 h a.b.c: 3\n"
	if out != want {
		t.Fatalf("got %q, want %q", out, want)
	}
	if writes > 2 {
		t.Fatalf("%d writes for 4 events queued in two goes", writes)
	}
	q.Close()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// emitterFor is a one-output emitter over q, as the pipeline builds.
func emitterFor(q *pipeline.Queue) pipeline.Emitter {
	return pipeline.New(slog.New(slog.DiscardHandler), pipeline.Options{}, []*pipeline.Output{{Name: "c", Queue: q}}, nil)
}

func TestWriteErrorSettlesFailedAndLogsOnce(t *testing.T) {
	var logBuf bytes.Buffer
	s, err := New(nil, Options{Log: slog.New(slog.NewTextHandler(&logBuf, nil))})
	if err != nil {
		t.Fatal(err)
	}
	s.w = &recWriter{err: errors.New("broken pipe")}
	q := pipeline.NewQueue(10, 1<<20)
	done := make(chan error, 1)
	go func() { done <- s.Run(context.Background(), q) }()
	em := emitterFor(q)
	results := make(chan pipeline.Result, 5)
	for i := range 5 {
		b := pipeline.NewBatch(func(r pipeline.Result) { results <- r })
		if err := em.Emit(context.Background(), pipeline.NewEvent(b, "t", t0, []byte(fmt.Sprint(i)))); err != nil {
			t.Fatal(err)
		}
		b.Close()
		if r := <-results; r.Failed != 1 {
			t.Fatalf("event %d: result %+v, want failed", i, r)
		}
	}
	q.Close()
	if err := <-done; err != nil {
		t.Fatalf("Run returned %v; a console output never fails", err)
	}
	if n := strings.Count(logBuf.String(), "console output write failed"); n != 1 {
		t.Fatalf("logged %d times:\n%s", n, logBuf.String())
	}
}

// eventSource emits n batches of k events each and records the results.
type eventSource struct {
	n, k    int
	mu      sync.Mutex
	results []pipeline.Result
	settled chan struct{} // closed when every batch has a result
}

func (s *eventSource) Run(ctx context.Context, out pipeline.Emitter) error {
	for i := range s.n {
		b := pipeline.NewBatch(func(r pipeline.Result) {
			s.mu.Lock()
			s.results = append(s.results, r)
			if len(s.results) == s.n {
				close(s.settled)
			}
			s.mu.Unlock()
		})
		for j := range s.k {
			ev := pipeline.NewEvent(b, fmt.Sprintf("cloud.aws.test.%d", i), t0, []byte(fmt.Sprintf(`{"i":%d,"j":%d}`, i, j)))
			poison.AfterFate(ev) // a read after settling would print '#'s
			if err := out.Emit(ctx, ev); err != nil {
				b.Close()
				return nil
			}
		}
		b.Close()
	}
	<-ctx.Done()
	return nil
}

func TestThroughPipeline(t *testing.T) {
	for _, format := range []string{FormatDevoLine, FormatJSON} {
		t.Run(format, func(t *testing.T) {
			w := &recWriter{}
			s, err := New(w, Options{Format: format, Hostname: "h"})
			if err != nil {
				t.Fatal(err)
			}
			src := &eventSource{n: 200, k: 50, settled: make(chan struct{})}
			// A small queue so the source waits on the sink many times.
			q := pipeline.NewQueue(64, 1<<20)
			p := pipeline.New(slog.New(slog.DiscardHandler), pipeline.Options{},
				[]*pipeline.Output{{Name: "console", Sink: s, Queue: q}},
				[]pipeline.Unit{{Name: "test/src/r", Source: src}})
			stop, cancel := context.WithCancel(context.Background())
			ran := make(chan error, 1)
			go func() { ran <- p.Run(stop, context.Background()) }()
			select {
			case <-src.settled:
			case <-time.After(30 * time.Second):
				t.Fatal("batches did not settle")
			}
			cancel()
			if err := <-ran; err != nil {
				t.Fatal(err)
			}
			for i, r := range src.results {
				if r.Delivered != src.k || r.Failed != 0 {
					t.Fatalf("batch %d: %+v", i, r)
				}
			}
			out, _ := w.all()
			lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
			if len(lines) != src.n*src.k {
				t.Fatalf("%d lines, want %d", len(lines), src.n*src.k)
			}
			for n, line := range lines {
				i, j := n/src.k, n%src.k
				var want string
				payload := fmt.Sprintf(`{"i":%d,"j":%d}`, i, j)
				if format == FormatJSON {
					want = fmt.Sprintf(`{"timestamp":"2024-05-31 11:12:08.535","tag":"cloud.aws.test.%d","content":%q}`, i, payload)
				} else {
					want = fmt.Sprintf("<14>Jan  1 00:00:00 h cloud.aws.test.%d: %s", i, payload)
				}
				if line != want {
					t.Fatalf("line %d: got %q, want %q", n, line, want)
				}
			}
		})
	}
}
