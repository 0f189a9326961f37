package s3sqs

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	s3types "github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go"
	"github.com/klauspost/compress/gzip"

	"github.com/devo-aws-collector/devo-aws-collector/internal/config"
	"github.com/devo-aws-collector/devo-aws-collector/internal/pipeline"
	"github.com/devo-aws-collector/devo-aws-collector/internal/sqsengine"
	"github.com/devo-aws-collector/devo-aws-collector/internal/tag"
)

// fakeS3 serves objects from memory with the SDK's error types, and
// records which region and key each GetObject asked for.
type fakeS3 struct {
	mu      sync.Mutex
	objects map[string][]byte // "bucket/key"
	denied  map[string]bool
	// failAfter, when set for a key, makes the body fail with a network
	// error after that many bytes.
	failAfter map[string]int
	calls     []string // "region bucket/key"
}

func newFakeS3() *fakeS3 {
	return &fakeS3{objects: map[string][]byte{}, denied: map[string]bool{}, failAfter: map[string]int{}}
}

func (f *fakeS3) put(bucket, key string, data []byte) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.objects[bucket+"/"+key] = data
}

func (f *fakeS3) client(region string) S3Client { return &regionS3{f: f, region: region} }

func (f *fakeS3) callLog() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.calls...)
}

type regionS3 struct {
	f      *fakeS3
	region string
}

func (c *regionS3) GetObject(ctx context.Context, in *s3.GetObjectInput, _ ...func(*s3.Options)) (*s3.GetObjectOutput, error) {
	f := c.f
	k := aws.ToString(in.Bucket) + "/" + aws.ToString(in.Key)
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, c.region+" "+k)
	if f.denied[k] {
		return nil, &smithy.GenericAPIError{Code: "AccessDenied", Message: "Access Denied"}
	}
	data, ok := f.objects[k]
	if !ok {
		return nil, &s3types.NoSuchKey{Message: aws.String("The specified key does not exist.")}
	}
	var body io.Reader = bytes.NewReader(data)
	if n, ok := f.failAfter[k]; ok {
		body = io.MultiReader(bytes.NewReader(data[:n]), errReader{})
	}
	return &s3.GetObjectOutput{Body: io.NopCloser(body), ContentLength: aws.Int64(int64(len(data)))}, nil
}

type errReader struct{}

func (errReader) Read([]byte) (int, error) {
	return 0, fmt.Errorf("read tcp 127.0.0.1:1234: connection reset by peer")
}

func gz(t testing.TB, data []byte) []byte {
	t.Helper()
	var b bytes.Buffer
	w := gzip.NewWriter(&b)
	if _, err := w.Write(data); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// s3Body is the S3 event notification S3 itself sends for objects created
// in one bucket (keys URL-encoded in form style, as S3 does).
func s3Body(region, bucket string, keys ...string) string {
	type rec struct {
		EventVersion string `json:"eventVersion"`
		EventSource  string `json:"eventSource"`
		AWSRegion    string `json:"awsRegion"`
		EventTime    string `json:"eventTime"`
		EventName    string `json:"eventName"`
		S3           any    `json:"s3"`
	}
	var recs []rec
	for _, k := range keys {
		recs = append(recs, rec{
			EventVersion: "2.1", EventSource: "aws:s3", AWSRegion: region, EventTime: "2024-05-31T13:15:02.418Z",
			EventName: "ObjectCreated:Put",
			S3: map[string]any{
				"s3SchemaVersion": "1.0", "configurationId": "devo-collector",
				"bucket": map[string]any{"name": bucket, "arn": "arn:aws:s3:::" + bucket},
				"object": map[string]any{"key": strings.ReplaceAll(url.QueryEscape(k), "%2F", "/"), "size": 1234, "sequencer": "00665A4C1E3B7F2A11"},
			},
		})
	}
	b, _ := json.Marshal(map[string]any{"Records": recs})
	return string(b)
}

// harness runs the real handler with a fake S3 and a real pipeline whose
// one output queue the test drains and settles.
type harness struct {
	t    testing.TB
	src  *Source
	s3   *fakeS3
	q    *pipeline.Queue
	p    *pipeline.Pipeline
	logs *bytes.Buffer
}

var fixedCycleStart = time.Unix(1717161300, 123456000)

func newHarness(t testing.TB, svc *config.Service, tune func(*Options)) *harness {
	t.Helper()
	f := newFakeS3()
	logs := &bytes.Buffer{}
	o := Options{
		Service: svc, Region: "eu-west-1", InputName: "aws",
		SQS: noSQS{}, S3: f.client,
		AccountID:   func(context.Context) (string, error) { return "123456789012", nil },
		Environment: "prod-1",
		Log:         slog.New(slog.NewTextHandler(&lockedWriter{w: logs}, nil)),
	}
	if tune != nil {
		tune(&o)
	}
	src, err := newSource(o)
	if err != nil {
		t.Fatal(err)
	}
	// A fixed cycle makes @devo_pulling_id reproducible in golden files.
	src.Start(tag.Values{AccountID: "123456789012", RegionID: o.Region, Environment: o.Environment, ServiceName: svc.Name}, fixedCycleStart)
	q := pipeline.NewQueue(1<<20, 1<<30)
	p := pipeline.New(slog.New(slog.DiscardHandler), pipeline.Options{}, []*pipeline.Output{{Name: "rec", Queue: q}}, nil)
	return &harness{t: t, src: src, s3: f, q: q, p: p, logs: logs}
}

// outcome is what became of one message.
type outcome struct {
	events []*pipeline.Event
	err    error
	fired  bool
	res    pipeline.Result
}

// handle runs the handler on body, then delivers every event it emitted.
// The outcome holds copies: like an output, the harness must not read an
// event after reporting its fate (its payload block may be reused).
func (h *harness) handle(body string) outcome {
	h.t.Helper()
	var o outcome
	b := pipeline.NewBatch(func(r pipeline.Result) { o.fired, o.res = true, r })
	o.err = h.src.Handle(context.Background(), sqsengine.Message{ID: "m-1", Body: body, ReceiveCount: 1}, b, h.p)
	b.Close()
	for _, ev := range h.q.TryGet(nil, 1<<20) {
		cp := pipeline.NewEvent(nil, ev.Tag, ev.Time, bytes.Clone(ev.Payload))
		cp.Clean = ev.Clean
		o.events = append(o.events, cp)
		h.q.Settle(ev, pipeline.Delivered)
	}
	return o
}

// noSQS is never called: handler tests do not run the engine.
type noSQS struct{ sqsengine.Client }

type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

func benchMessage(body string) sqsengine.Message {
	return sqsengine.Message{ID: "bench", Body: body, ReceiveCount: 1}
}
