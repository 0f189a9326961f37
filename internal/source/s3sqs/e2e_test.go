package s3sqs

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/klauspost/compress/gzip"

	"github.com/devo-aws-collector/devo-aws-collector/internal/awstest/fauxqs"
	"github.com/devo-aws-collector/devo-aws-collector/internal/config"
	"github.com/devo-aws-collector/devo-aws-collector/internal/pipeline"
	"github.com/devo-aws-collector/devo-aws-collector/internal/sqsengine"
	"github.com/devo-aws-collector/devo-aws-collector/internal/stats"
	"github.com/devo-aws-collector/devo-aws-collector/internal/testutil/pipetest"
)

// e2e is one fauxqs emulator with a bucket, and helpers to upload objects
// and announce them the way S3 does.
type e2e struct {
	t      *testing.T
	emu    *fauxqs.Server
	sqs    *sqs.Client
	s3     *s3.Client
	bucket string
}

func newE2E(t *testing.T) *e2e {
	emu := fauxqs.Start(t)
	e := &e2e{t: t, emu: emu, sqs: emu.SQS(), s3: emu.S3(), bucket: "acme-logs"}
	emu.MustCreateBucket(t, e.bucket)
	return e
}

func (e *e2e) put(key string, data []byte) {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := e.s3.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(e.bucket), Key: aws.String(key), Body: bytes.NewReader(data)}); err != nil {
		e.t.Fatalf("put %s: %v", key, err)
	}
}

func (e *e2e) send(url string, bodies []string) {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for i := 0; i < len(bodies); i += 10 {
		var entries []types.SendMessageBatchRequestEntry
		for j := i; j < min(i+10, len(bodies)); j++ {
			entries = append(entries, types.SendMessageBatchRequestEntry{Id: aws.String(strconv.Itoa(j)), MessageBody: aws.String(bodies[j])})
		}
		out, err := e.sqs.SendMessageBatch(ctx, &sqs.SendMessageBatchInput{QueueUrl: &url, Entries: entries})
		if err != nil || len(out.Failed) > 0 {
			e.t.Fatalf("send: %v %+v", err, out)
		}
	}
}

// source builds a source for svc reading the emulator, with short engine
// waits so the test runs in seconds.
func (e *e2e) source(svc *config.Service, log *slog.Logger, unit *stats.Unit, tune func(*Options)) *Source {
	e.t.Helper()
	var mu sync.Mutex
	clients := map[string]S3Client{}
	o := Options{
		Service: svc, Region: fauxqs.Region, InputName: "aws",
		SQS: e.sqs,
		S3: func(region string) S3Client {
			mu.Lock()
			defer mu.Unlock()
			if c, ok := clients[region]; ok {
				return c
			}
			c := e.emu.S3(func(o *s3.Options) { o.Region = region })
			clients[region] = c
			return c
		},
		AccountID:     func(context.Context) (string, error) { return "000000000000", nil },
		Log:           log,
		Stats:         unit,
		Workers:       4,
		CycleInterval: time.Second,
		Tune: func(c *sqsengine.Config) {
			c.WaitTime = time.Second
			// Should a receive's answer ever be lost on the wire, its
			// messages stay hidden until the visibility timeout (fauxqs
			// ignores the attempt id the engine retries with): keep that
			// short. (The known cause of such losses is fixed: sdkhttp.)
			c.VisibilityTimeout = 20 * time.Second
			c.ReturnBackoff = 200 * time.Millisecond
			c.ReturnBackoffMax = 400 * time.Millisecond
			c.DeleteFlush = 50 * time.Millisecond
			c.Grace = 10 * time.Second
		},
	}
	if tune != nil {
		tune(&o)
	}
	s, err := newSource(o)
	if err != nil {
		e.t.Fatal(err)
	}
	return s
}

// TestEndToEndMixed: 200 objects of every kind, announced on three queues
// (one per service), read through a pipeline into a recording sink: exact
// counts per tag, no duplicates, every message deleted.
func TestEndToEndMixed(t *testing.T) {
	if testing.Short() {
		t.Skip("starts the fauxqs emulator")
	}
	e := newE2E(t)
	ctURL := e.emu.MustCreateQueue(t, "ct", nil)
	logsURL := e.emu.MustCreateQueue(t, "logs", nil)
	umbURL := e.emu.MustCreateQueue(t, "umb", nil)
	ctSvc := loadService(t, "audit-events-all", "        types: [audits_s3]\n        sqs_queue_name: ct\n        auto_event_type: true\n", "")
	logsSvc := loadService(t, "non-cloudwatch-logs", "        types: [flowlogs, cloudfrontlogs]\n        sqs_queue_name: logs\n        auto_event_type: true\n", "")
	umbSvc := loadService(t, "cisco-umbrella", "        sqs_queue_name: umb\n", "")

	want := map[string]int{}
	const acct, region = "000000000000", fauxqs.Region
	tagOf := func(base, et string) string { return base + "." + et + "." + acct + "." + region + ".1" }
	var ctBodies, logsBodies, umbBodies []string
	objects := 0
	// Objects are announced one or two per message, like S3 does when
	// uploads land together.
	announce := func(dst *[]string, keys ...string) {
		objects += len(keys)
		*dst = append(*dst, s3Body(region, e.bucket, keys...))
	}
	sources := []string{"ec2", "s3", "iam", "sts", "kms"}
	for i := range 50 { // CloudTrail, gzip, 40–89 records
		n := 40 + i
		var b bytes.Buffer
		b.WriteString(`{"Records":[`)
		for r := range n {
			if r > 0 {
				b.WriteByte(',')
			}
			src := sources[(i+r)%len(sources)]
			fmt.Fprintf(&b, `{"eventVersion":"1.09","eventTime":"2024-05-31T13:15:00Z","eventSource":"%s.amazonaws.com","eventName":"Call%d","awsRegion":"us-east-1","eventID":"%d-%d"}`, src, r, i, r)
			want[tagOf("cloud.aws.cloudtrail", src)]++
		}
		b.WriteString(`]}`)
		key := fmt.Sprintf("AWSLogs/%s/CloudTrail/us-east-1/2024/05/31/%s_CloudTrail_us-east-1_20240531T13%02dZ_u%d.json.gz", acct, acct, i%60, i)
		e.put(key, gz(t, b.Bytes()))
		announce(&ctBodies, key)
	}
	vpcHeader5 := "version account-id interface-id srcaddr dstaddr srcport dstport protocol packets bytes start end action log-status vpc-id subnet-id instance-id tcp-flags type pkt-srcaddr pkt-dstaddr region az-id sublocation-type sublocation-id pkt-src-aws-service pkt-dst-aws-service flow-direction traffic-path\n"
	var pending []string
	for i := range 70 { // VPC: 35 default (v2), 35 custom v5 headers
		var b bytes.Buffer
		n := 100 + i
		if i%2 == 0 {
			b.Write(vpcText(0))
			for r := range n {
				fmt.Fprintf(&b, "2 %s eni-%04d 10.0.%d.%d 10.1.0.1 443 %d 6 1 60 1717161240 1717161300 ACCEPT OK\n", acct, i, r/200, r%200, 1000+r)
			}
		} else {
			b.WriteString(vpcHeader5)
			for r := range n {
				fmt.Fprintf(&b, "5 %s eni-%04d 10.0.%d.%d 10.1.0.1 443 %d 6 1 60 1717161240 1717161300 ACCEPT OK vpc-1 subnet-1 i-1 19 IPv4 10.0.0.1 10.1.0.1 us-east-1 use1-az1 - - - S3 egress 1\n", acct, i, r/200, r%200, 1000+r)
			}
		}
		want[tagOf("cloud.aws.vpc", "flowlogs")] += n
		key := fmt.Sprintf("AWSLogs/%s/vpcflowlogs/us-east-1/2024/05/31/%s_vpcflowlogs_us-east-1_fl-%04d_20240531T1315Z_h%d.log.gz", acct, acct, i%7, i)
		e.put(key, gz(t, b.Bytes()))
		if pending = append(pending, key); len(pending) == 2 {
			announce(&logsBodies, pending...)
			pending = nil
		}
	}
	cfHeader := "#Version: 1.0\n#Fields: date time x-edge-location sc-bytes c-ip cs-method cs(Host) cs-uri-stem sc-status\n"
	for i := range 20 { // CloudFront
		var b bytes.Buffer
		b.WriteString(cfHeader)
		n := 30 + i
		for r := range n {
			fmt.Fprintf(&b, "2024-05-31\t13:%02d:00\tFRA56-P3\t%d\t198.51.100.%d\tGET\td1.cloudfront.net\t/p/%d\t200\n", r%60, 100+r, r%250, i)
		}
		want[tagOf("cloud.aws.cloudfront", "logs")] += n
		key := fmt.Sprintf("cf/E2QWRUHEXAMPLE.2024-05-31-%02d.c%d.gz", i%24, i)
		e.put(key, gz(t, b.Bytes()))
		announce(&logsBodies, key)
	}
	for i := range 60 { // Umbrella dns/ip/proxy
		kind := []string{"dns", "ip", "proxy"}[i%3]
		var b bytes.Buffer
		if i%6 == 0 {
			b.WriteString(`"Timestamp","Identity","Other"` + "\n")
		}
		n := 50 + i
		for r := range n {
			fmt.Fprintf(&b, `"2024-05-31 13:05:%02d","id-%d","10.20.1.%d","%s row %d"`+"\n", r%60, i, r%250, kind, r)
		}
		want[tagOf("sig.cisco.umbrella", kind)] += n
		key := fmt.Sprintf("umbrella/%slogs/2024-05-31/2024-05-31-13-10-%04d.csv.gz", kind, i)
		e.put(key, gz(t, b.Bytes()))
		announce(&umbBodies, key)
	}
	if objects != 200 {
		t.Fatalf("generated %d objects, want 200", objects)
	}
	// Test events arrive when notifications are configured.
	testEvent := `{"Service":"Amazon S3","Event":"s3:TestEvent","Time":"2024-05-31T12:00:00.000Z","Bucket":"acme-logs","RequestId":"R","HostId":"H"}`
	ctBodies = append(ctBodies, testEvent)
	logsBodies = append(logsBodies, testEvent)
	umbBodies = append(umbBodies, testEvent)
	e.send(ctURL, ctBodies)
	e.send(logsURL, logsBodies)
	e.send(umbURL, umbBodies)
	total := 0
	for _, n := range want {
		total += n
	}

	var logBuf bytes.Buffer
	log := slog.New(slog.NewTextHandler(&lockedWriter{w: &logBuf}, nil))
	reg := stats.NewRegistry()
	units := map[string]*stats.Unit{}
	var srcs []*Source
	var pu []pipeline.Unit
	for _, svc := range []*config.Service{ctSvc, logsSvc, umbSvc} {
		u := reg.Unit("aws", svc.Name, region)
		units[svc.Name] = u
		s := e.source(svc, log, u, nil)
		srcs = append(srcs, s)
		pu = append(pu, pipeline.Unit{Name: "aws/" + svc.Name + "/" + region, Source: s})
	}
	sink := pipetest.NewRecorder()
	out := &pipeline.Output{Name: "rec", Sink: sink, Queue: pipeline.NewQueue(2000, 8<<20)}
	p := pipeline.New(log, pipeline.Options{}, []*pipeline.Output{out}, pu)
	stop, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- p.Run(stop, context.Background()) }()

	messages := int64(len(ctBodies) + len(logsBodies) + len(umbBodies))
	pipetest.WaitFor(t, 3*time.Minute, "every message deleted", func() bool {
		var del int64
		for _, s := range srcs {
			del += s.Engine().Counters().Deleted.Load()
		}
		return del == messages
	})
	for _, u := range []string{ctURL, logsURL, umbURL} {
		pipetest.WaitFor(t, 30*time.Second, "queue "+u+" empty", func() bool {
			v, f := fauxqs.MustQueueCounts(e.t, e.sqs, u)
			return v == 0 && f == 0
		})
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("pipeline: %v", err)
		}
	case <-time.After(time.Minute):
		t.Fatal("pipeline did not stop")
	}

	got := sink.Tags()
	for tg, n := range want {
		if got[tg] != n {
			t.Errorf("tag %s: %d events, want %d", tg, got[tg], n)
		}
	}
	for tg, n := range got {
		if _, ok := want[tg]; !ok {
			t.Errorf("unexpected tag %s (%d events)", tg, n)
		}
	}
	if int(sink.Total()) != total || sink.Duplicates() != 0 {
		t.Errorf("sink got %d events (%d duplicates), want %d", sink.Total(), sink.Duplicates(), total)
	}
	var gen, delivered int64
	for _, u := range units {
		gen += u.Generated.Load()
		delivered += u.Delivered.Load()
	}
	if gen != int64(total) {
		t.Errorf("units generated %d, want %d", gen, total)
	}
	var tests, poison, returned int64
	for _, s := range srcs {
		tests += s.Counters().TestEvents.Load()
		poison += s.Engine().Counters().Poison.Load()
		returned += s.Engine().Counters().Returned.Load()
	}
	if tests != 3 || poison != 0 || returned != 0 {
		t.Errorf("test events %d, poison %d, returned %d", tests, poison, returned)
	}
	if !strings.Contains(logBuf.String(), "messages (fromSQS/generated): ") || !strings.Contains(logBuf.String(), "Starting data collection every 1 seconds") {
		t.Errorf("no pull-cycle line in the log:\n%.2000s", logBuf.String())
	}
	t.Logf("%d objects, %d messages, %d events; per tag %v", objects, messages, total, got)
}

// bombGzip is a valid multi-member gzip stream of a CloudTrail file: size
// bytes of leading whitespace (legal before a JSON value), then an empty
// Records array. About 1 KiB of gzip per MiB of text, so 1 GiB costs about
// 1 MiB on disk.
func bombGzip(t testing.TB, size int) []byte {
	var b bytes.Buffer
	var member bytes.Buffer
	w, _ := gzip.NewWriterLevel(&member, gzip.BestCompression)
	chunk := bytes.Repeat([]byte{' '}, 1<<20)
	if _, err := w.Write(chunk); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	for range size >> 20 {
		b.Write(member.Bytes())
	}
	b.Write(gz(t, []byte(`{"Records":[]}`)))
	return b.Bytes()
}

// TestEndToEndBadInputs: every bad input gets its fate and its counter on
// the emulator, memory stays bounded through a 1 GiB gzip bomb, and the
// source keeps serving good messages.
func TestEndToEndBadInputs(t *testing.T) {
	if testing.Short() {
		t.Skip("starts the fauxqs emulator")
	}
	e := newE2E(t)
	url := e.emu.MustCreateQueue(t, "ct-bad", nil)
	svc := loadService(t, "audit-events-all", "        types: [audits_s3]\n        sqs_queue_name: ct-bad\n        max_receive_count: 2\n", "")

	key := func(n string) string {
		return "AWSLogs/000000000000/CloudTrail/us-east-1/2024/05/31/000000000000_CloudTrail_us-east-1_20240531T1315Z_" + n + ".json.gz"
	}
	good := ctText(25)
	corrupt := gz(t, ctText(5000))
	for i := len(corrupt) / 2; i < len(corrupt)/2+32; i++ {
		corrupt[i] ^= 0xff
	}
	trunc := ctText(10)
	trunc = trunc[:bytes.Index(trunc, []byte("id-000004"))]
	const bombSize = 1 << 30
	bomb := bombGzip(t, bombSize)
	if len(bomb) > 4<<20 {
		t.Fatalf("bomb is %d bytes on disk", len(bomb))
	}
	e.put(key("corrupt"), corrupt)
	e.put(key("trunc"), gz(t, trunc))
	e.put(key("empty"), nil)
	e.put(key("bomb"), bomb)
	e.put(key("good"), gz(t, good))
	e.send(url, []string{
		s3Body("us-east-1", e.bucket, key("corrupt")),
		s3Body("us-east-1", e.bucket, key("trunc")),
		strings.Replace(s3Body("us-east-1", e.bucket, key("empty")), `"size":1234`, `"size":0`, 1),
		`{"detail-type":"Something Else","hello":"world"}`,
		`<?xml version="1.0"?><not-json/>`,
		s3Body("us-east-1", e.bucket, key("missing")),
		s3Body("us-east-1", e.bucket, key("bomb")),
	})

	var logBuf bytes.Buffer
	log := slog.New(slog.NewTextHandler(&lockedWriter{w: &logBuf}, nil))
	u := stats.NewRegistry().Unit("aws", svc.Name, fauxqs.Region)
	src := e.source(svc, log, u, func(o *Options) { o.MaxObjectBytes = 128 << 20 })
	sink := pipetest.NewRecorder()
	out := &pipeline.Output{Name: "rec", Sink: sink, Queue: pipeline.NewQueue(2000, 8<<20)}
	p := pipeline.New(log, pipeline.Options{}, []*pipeline.Output{out}, []pipeline.Unit{{Name: "bad", Source: src}})
	stop, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- p.Run(stop, context.Background()) }()

	var peak atomic.Uint64
	memDone := make(chan struct{})
	go func() {
		defer close(memDone)
		var ms runtime.MemStats
		for stop.Err() == nil {
			runtime.ReadMemStats(&ms)
			if ms.HeapInuse > peak.Load() {
				peak.Store(ms.HeapInuse)
			}
			select {
			case <-stop.Done():
			case <-time.After(20 * time.Millisecond):
			}
		}
	}()

	eng := src.Engine().Counters()
	// 5 poison (corrupt, truncated, not a notification, not JSON, bomb),
	// 2 deleted (empty, missing).
	pipetest.WaitFor(t, 4*time.Minute, "every bad message given its fate", func() bool {
		return eng.Poison.Load() == 5 && eng.Deleted.Load() == 2
	})
	e.send(url, []string{s3Body("us-east-1", e.bucket, key("good"))})
	pipetest.WaitFor(t, time.Minute, "the good message deleted", func() bool { return eng.Deleted.Load() == 3 })
	pipetest.WaitFor(t, 30*time.Second, "queue empty", func() bool {
		v, f := fauxqs.MustQueueCounts(e.t, e.sqs, url)
		return v == 0 && f == 0
	})
	cancel()
	<-done
	<-memDone

	c := src.Counters()
	checks := []struct {
		name      string
		got, want int64
	}{
		{"corrupt (gzip and JSON, 2 receives each)", c.Corrupt.Load(), 4},
		{"too large (2 receives)", c.TooLarge.Load(), 2},
		{"bad messages (2 bodies, 2 receives each)", c.BadMessages.Load(), 4},
		{"empty objects", c.EmptyObjects.Load(), 1},
		{"missing objects", c.MissingObjects.Load(), 1},
	}
	for _, ck := range checks {
		if ck.got != ck.want {
			t.Errorf("%s: %d, want %d", ck.name, ck.got, ck.want)
		}
	}
	// The good file's 25 records arrive; the truncated file's 4 complete
	// records and the corrupt file's records before the damage were sent
	// too (twice: once per receive), which is the documented cost of
	// "never lose": a failed object is read again.
	tags := sink.Tags()
	if n := tags["cloud.aws.cloudtrail.events.000000000000.us-east-1.1"]; n < 25+2*4 {
		t.Errorf("%d events, want at least the good file's 25 and the truncated file's 4 twice", n)
	}
	if pk := peak.Load(); pk > 200<<20 || pk*4 > bombSize {
		t.Errorf("heap in use peaked at %d MiB during a %d MiB bomb", pk>>20, bombSize>>20)
	} else {
		t.Logf("heap in use peaked at %d MiB through a %d MiB gzip bomb", pk>>20, bombSize>>20)
	}
	if n := strings.Count(logBuf.String(), "level=ERROR"); n == 0 {
		t.Errorf("no ERROR lines for poison messages:\n%.3000s", logBuf.String())
	}
}
