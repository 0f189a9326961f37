package s3sqs

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/klauspost/compress/gzip"

	"github.com/devo-aws-collector/devo-aws-collector/internal/pipeline"
	"github.com/devo-aws-collector/devo-aws-collector/internal/testutil/svcconfig"
	"github.com/devo-aws-collector/devo-aws-collector/internal/wire"
)

// wireSink is the source's emitter in the benchmarks: the real pipeline
// with one output whose consumer runs inline, on the source's goroutine (the
// benchmarks run on one core anyway). It encodes every event into the Devo
// line exactly as the TLS output does (the trusted path for Clean events),
// discards the line and reports the event delivered, every 256 events and
// at flush, so that what a real output's settling frees (the payload blocks)
// is reused as it would be.
type wireSink struct {
	p      *pipeline.Pipeline
	q      *pipeline.Queue
	take   []*pipeline.Event
	enc    wire.Encoder
	buf    []byte
	events int
	bytes  int
	last   string // a sample line, kept when keep is set
	keep   bool
}

func newWireSink() *wireSink {
	q := pipeline.NewQueue(1024, 1<<30)
	return &wireSink{
		q:   q,
		p:   pipeline.New(slog.New(slog.DiscardHandler), pipeline.Options{}, []*pipeline.Output{{Name: "devo", Queue: q}}, nil),
		enc: wire.NewEncoder(wire.DevoLine, "collector"),
	}
}

func (w *wireSink) Emit(ctx context.Context, ev *pipeline.Event) error {
	if err := w.p.Emit(ctx, ev); err != nil {
		return err
	}
	if n, _ := w.q.Depth(); n >= 256 {
		w.flush()
	}
	return nil
}

// flush delivers every queued event.
func (w *wireSink) flush() {
	w.take = w.q.TryGet(w.take, 1024)
	for _, ev := range w.take {
		if ev.Clean {
			w.buf = w.enc.AppendTrusted(w.buf[:0], ev.Time, ev.Tag, ev.Payload)
		} else {
			w.buf = w.enc.Append(w.buf[:0], ev.Time, ev.Tag, ev.Payload)
		}
		w.events++
		w.bytes += len(w.buf)
		if w.keep {
			w.last = string(w.buf)
		}
		w.q.Settle(ev, pipeline.Delivered)
	}
	clear(w.take)
}

// handle runs one message through the source and delivers what it emitted.
func (w *wireSink) handle(b *testing.B, h *harness, body string) {
	if err := h.src.Handle(context.Background(), benchMessage(body), pipeline.NewBatch(nil), w); err != nil {
		b.Fatal(err)
	}
	w.flush()
}

// benchTrail is a realistic CloudTrail file: records of about 1.3 KiB with
// nested identity, request and response members, and random identifiers,
// addresses and times, so it compresses about as well as real trails
// (8–12×) instead of the 100× of repeated text.
func benchTrail(n int) []byte {
	rng := rand.New(rand.NewPCG(1, 2))
	hex := func(k int) string {
		const digits = "0123456789abcdef"
		out := make([]byte, k)
		for i := range out {
			out[i] = digits[rng.IntN(16)]
		}
		return string(out)
	}
	sources := []string{"ec2", "s3", "iam", "sts", "kms", "lambda", "signin", "ec2-instance-connect"}
	var b bytes.Buffer
	b.WriteString(`{"Records":[`)
	for i := range n {
		if i > 0 {
			b.WriteByte(',')
		}
		src := sources[i%len(sources)]
		fmt.Fprintf(&b, `{"eventVersion":"1.09","userIdentity":{"type":"AssumedRole","principalId":"AROA4EXAMPLEID:user%d","arn":"arn:aws:sts::123456789012:assumed-role/ops/user%d","accountId":"123456789012","accessKeyId":"ASIA%s","sessionContext":{"sessionIssuer":{"type":"Role","principalId":"AROA4EXAMPLEID","arn":"arn:aws:iam::123456789012:role/ops","accountId":"123456789012","userName":"ops"},"attributes":{"creationDate":"2024-05-31T12:58:10Z","mfaAuthenticated":"true"}}},"eventTime":"2024-05-31T13:%02d:%02dZ","eventSource":"%s.amazonaws.com","eventName":"Describe%d","awsRegion":"eu-west-1","sourceIPAddress":"%d.%d.%d.%d","userAgent":"aws-cli/2.15.30 Python/3.11.8 Linux/6.1 exe/x86_64.amzn.2 prompt/off command/%s.describe","requestParameters":{"instancesSet":{"items":[{"instanceId":"i-%s"}]},"filterSet":{},"maxResults":%d,"dryRun":false},"responseElements":null,"requestID":"%s-%s-%s-%s-%s","eventID":"%s-%s-%s-%s-%s","readOnly":true,"eventType":"AwsApiCall","managementEvent":true,"recipientAccountId":"123456789012","eventCategory":"Management","tlsDetails":{"tlsVersion":"TLSv1.3","cipherSuite":"TLS_AES_128_GCM_SHA256","clientProvidedHostHeader":"%s.eu-west-1.amazonaws.com"}}`,
			i%300, i%300, strings.ToUpper(hex(16)), rng.IntN(60), rng.IntN(60), src, rng.IntN(50),
			rng.IntN(256), rng.IntN(256), rng.IntN(256), rng.IntN(256), src, hex(17), rng.IntN(1000),
			hex(8), hex(4), hex(4), hex(4), hex(12), hex(8), hex(4), hex(4), hex(4), hex(12), src)
	}
	b.WriteString(`]}`)
	return b.Bytes()
}

func gunzipAll(b *testing.B, data []byte) int64 {
	zr, err := gzip.NewReader(bytes.NewReader(data))
	if err != nil {
		b.Fatal(err)
	}
	n, err := io.Copy(io.Discard, zr)
	if err != nil {
		b.Fatal(err)
	}
	return n
}

// naiveTrail is the baseline a first version would write: gunzip, decode
// into maps, re-encode each record with the pulling id, format the line.
func naiveTrail(b *testing.B, data []byte) int {
	zr, err := gzip.NewReader(bytes.NewReader(data))
	if err != nil {
		b.Fatal(err)
	}
	var doc map[string]any
	if err := json.NewDecoder(zr).Decode(&doc); err != nil {
		b.Fatal(err)
	}
	recs := doc["Records"].([]any)
	var line []byte
	for _, r := range recs {
		m := r.(map[string]any)
		m["@devo_pulling_id"] = "1717161300.123456"
		src, _ := m["eventSource"].(string)
		payload, err := json.Marshal(m)
		if err != nil {
			b.Fatal(err)
		}
		line = fmt.Appendf(line[:0], "<14>Jan  1 00:00:00 collector cloud.aws.cloudtrail.%s.123456789012.eu-west-1.1: %s\n", src, payload)
	}
	return len(recs)
}

// pullingIDOf returns the value of the last "@devo_pulling_id" in line.
func pullingIDOf(line string) string {
	const k = `"@devo_pulling_id":"`
	i := strings.LastIndex(line, k)
	if i < 0 {
		return "<none>"
	}
	v := line[i+len(k):]
	if j := strings.IndexByte(v, '"'); j >= 0 {
		return v[:j]
	}
	return "<none>"
}

// timePerOp runs f until it has taken at least d, and returns the mean.
func timePerOp(d time.Duration, f func()) time.Duration {
	start := time.Now()
	n := 0
	for n < 3 || time.Since(start) < d {
		f()
		n++
	}
	return time.Since(start) / time.Duration(n)
}

// noPoison turns off, for one benchmark, TestMain's test-only overwrite of
// freed payload blocks: it costs a memset per block.
func noPoison(b *testing.B) {
	p := poisonFreed
	poisonFreed = false
	b.Cleanup(func() { poisonFreed = p })
}

// BenchmarkCloudTrailObject: one gzip CloudTrail object through the real
// handler: gunzip, record split, field pick, tag lookup, payload with
// @devo_pulling_id, Devo line encoding into a discarding sink (S3 fake in
// memory). Reports records/s and decompressed MB/s, and the throughput
// ratios to gunzip alone of the same object (goal ≥ 0.5) and to a naive
// encoding/json map round-trip (goal ≥ 8). The baselines run interleaved
// with the measured iterations (timer stopped), so that a noisy machine
// slows both sides of a ratio alike.
func BenchmarkCloudTrailObject(b *testing.B) {
	noPoison(b)
	const records = 5000
	text := benchTrail(records)
	data := gz(b, text)
	svc := svcconfig.Load(b, "audit-events-all", "        types: [audits_s3]\n        sqs_queue_name: ct\n        auto_event_type: true\n", "")
	h := newHarness(b, svc, nil)
	h.s3.put("b", ctKey, data)
	body := s3Body("eu-west-1", "b", ctKey)
	sink := newWireSink()
	if n := gunzipAll(b, data); n != int64(len(text)) {
		b.Fatalf("gunzip gave %d bytes, want %d", n, len(text))
	}
	if n := naiveTrail(b, data); n != records {
		b.Fatalf("naive baseline read %d records, want %d", n, records)
	}
	// One run outside the timing checks that the lines are complete Devo
	// lines: tagged by eventSource, with the pulling id last.
	sink.keep = true
	sink.handle(b, h, body)
	payload := sink.last[strings.Index(sink.last, ": {")+2 : len(sink.last)-1]
	if id := pullingIDOf(sink.last); !strings.Contains(sink.last, " cloud.aws.cloudtrail.") || !json.Valid([]byte(payload)) ||
		!strings.HasSuffix(payload, `,"@devo_pulling_id":"`+id+`"}`) || id == "" {
		b.Fatalf("unexpected line %q", sink.last)
	}
	sink.keep = false
	var ours, gunzip time.Duration
	b.SetBytes(int64(len(text)))
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		sink.events = 0
		start := time.Now()
		sink.handle(b, h, body)
		ours += time.Since(start)
		if sink.events != records {
			b.Fatalf("%d events, want %d", sink.events, records)
		}
		b.StopTimer()
		start = time.Now()
		gunzipAll(b, data)
		gunzip += time.Since(start)
		b.StartTimer()
	}
	b.StopTimer()
	perOp := ours / time.Duration(b.N)
	naive := timePerOp(500*time.Millisecond, func() { naiveTrail(b, data) })
	b.ReportMetric(float64(records)/perOp.Seconds(), "records/s")
	b.ReportMetric(float64(gunzip)/float64(ours), "x_gunzip")
	b.ReportMetric(float64(naive)/float64(perOp), "x_naive")
}

// BenchmarkVPCFlowObject: one gzip VPC Flow Logs object through the real
// handler; goal ≥ 1.5 M lines/s on one core (run with -cpu 1).
func BenchmarkVPCFlowObject(b *testing.B) {
	noPoison(b)
	const lines = 100000
	text := vpcText(lines)
	data := gz(b, text)
	svc := svcconfig.Load(b, "non-cloudwatch-logs", logsYAML, "")
	h := newHarness(b, svc, nil)
	h.s3.put("b", vpcKey, data)
	body := s3Body("eu-west-1", "b", vpcKey)
	sink := newWireSink()
	b.SetBytes(int64(len(text)))
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	for range b.N {
		sink.events = 0
		sink.handle(b, h, body)
		if sink.events != lines {
			b.Fatalf("%d events, want %d", sink.events, lines)
		}
	}
	ours := time.Since(start) / time.Duration(b.N)
	b.StopTimer()
	gunzip := timePerOp(300*time.Millisecond, func() { gunzipAll(b, data) })
	b.ReportMetric(float64(lines)/ours.Seconds(), "lines/s")
	b.ReportMetric(float64(gunzip)/float64(ours), "x_gunzip")
}
