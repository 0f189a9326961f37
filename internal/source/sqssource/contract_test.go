package sqssource_test

import (
	"bytes"
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/sqs"

	"github.com/devo-aws-collector/devo-aws-collector/internal/awstest/fauxqs"
	"github.com/devo-aws-collector/devo-aws-collector/internal/config"
	"github.com/devo-aws-collector/devo-aws-collector/internal/pipeline"
	"github.com/devo-aws-collector/devo-aws-collector/internal/source/s3sqs"
	"github.com/devo-aws-collector/devo-aws-collector/internal/source/sqsevents"
	"github.com/devo-aws-collector/devo-aws-collector/internal/sqsengine"
	"github.com/devo-aws-collector/devo-aws-collector/internal/testutil/pipetest"
	"github.com/devo-aws-collector/devo-aws-collector/internal/testutil/poison"
	"github.com/devo-aws-collector/devo-aws-collector/internal/testutil/samples"
	"github.com/devo-aws-collector/devo-aws-collector/internal/testutil/sqsrec"
	"github.com/devo-aws-collector/devo-aws-collector/internal/testutil/svcconfig"
)

// contractService is one SQS service as the contract test drives it.
type contractService struct {
	name    string // the test's name
	service string // the config's service key
	extra   string // more keys of the service (YAML, indented 8)
	// message puts what one message announces (S3 objects) and returns its
	// body and the number of events it makes.
	message func(e *env, i int) (body string, events int)
}

// env is the emulator with a bucket for the S3 services.
type env struct {
	t      *testing.T
	emu    *fauxqs.Server
	bucket string
}

func (e *env) put(o samples.Object) string {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := e.emu.S3().PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(e.bucket), Key: aws.String(o.Key),
		Body: bytes.NewReader(o.Body)}); err != nil {
		e.t.Fatalf("put %s: %v", o.Key, err)
	}
	return samples.S3Notification(e.bucket, o.Key, len(o.Body))
}

// services are every SQS service of the collector.
var services = []contractService{
	{"service-events-all", "service-events-all", "", func(e *env, i int) (string, int) {
		return samples.EventBridge(i), 1
	}},
	{"sqs-cloudwatch-consumer", "sqs-cloudwatch-consumer", "", func(e *env, i int) (string, int) {
		return samples.SecurityHub(2), 2
	}},
	{"audits_s3", "audit-events-all", "        types: [audits_s3]\n", func(e *env, i int) (string, int) {
		return e.put(samples.CloudTrail(i, 3)), 3
	}},
	{"flowlogs", "non-cloudwatch-logs", "        types: [flowlogs]\n", func(e *env, i int) (string, int) {
		return e.put(samples.VPCFlow(i, 2, 4)), 4
	}},
	{"cloudfrontlogs", "non-cloudwatch-logs", "        types: [cloudfrontlogs]\n", func(e *env, i int) (string, int) {
		return e.put(samples.CloudFront(i, 5)), 5
	}},
	{"cisco-umbrella", "cisco-umbrella", "", func(e *env, i int) (string, int) {
		return e.put(samples.Umbrella(i, "dnslogs", 6)), 6
	}},
}

// TestContract holds every SQS service, built from a real configuration as
// the app builds it, to the same rules against fauxqs:
//   - sqs_wait_time_seconds: 0 is honoured: every receive carries
//     WaitTimeSeconds 0 (on an empty queue they follow each other about a
//     second apart instead of one 20 s long poll);
//   - Run returns when its context ends;
//   - Run may be called again, and the source then delivers;
//   - no event's payload is read after its fate: every payload is
//     overwritten with '#' as soon as its fate is known (poison.AfterFate),
//     and the events the output recorded are whole.
func TestContract(t *testing.T) {
	if testing.Short() {
		t.Skip("starts the fauxqs emulator")
	}
	emu := fauxqs.Start(t)
	e := &env{t: t, emu: emu, bucket: "contract-bucket"}
	emu.MustCreateBucket(t, e.bucket)
	for i, cs := range services {
		t.Run(cs.name, func(t *testing.T) {
			e.t = t
			queue := "contract-" + strings.ReplaceAll(cs.name, "_", "-")
			url := emu.MustCreateQueue(t, queue, map[string]string{"VisibilityTimeout": "10"})
			svc := svcconfig.Load(t, cs.service, "        sqs_queue_name: "+queue+"\n        sqs_wait_time_seconds: 0\n"+cs.extra, "")
			rc := sqsrec.New(emu.SQS())
			src := build(t, emu, svc, rc)

			rec := pipetest.NewRecorder()
			out := poisoning{pipetest.Emitter(t, rec)}

			// 1. An empty queue, no long poll.
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- src.Run(ctx, out) }()
			pipetest.WaitFor(t, 20*time.Second, "two answered receives", func() bool { return len(rc.Receives()) >= 2 })
			for _, r := range rc.Receives() {
				if r.WaitTimeSeconds != 0 {
					t.Fatalf("a receive carried WaitTimeSeconds %d with sqs_wait_time_seconds: 0", r.WaitTimeSeconds)
				}
			}

			// 2. The context ends: Run returns.
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Fatalf("Run: %v", err)
				}
			case <-time.After(30 * time.Second):
				t.Fatal("Run did not return within 30 s of the end of its context")
			}

			// 3. Run again: it delivers.
			var bodies []string
			want := 0
			for j := range 2 {
				b, n := cs.message(e, 100*i+j)
				bodies = append(bodies, b)
				want += n
			}
			sendAll(t, emu, url, bodies)
			eng := src.(interface{ Engine() *sqsengine.Engine }).Engine()
			ctx2, cancel2 := context.WithCancel(context.Background())
			done2 := make(chan error, 1)
			go func() { done2 <- src.Run(ctx2, out) }()
			pipetest.WaitFor(t, time.Minute, "both messages deleted", func() bool { return eng.Counters().Deleted.Load() == 2 })
			cancel2()
			select {
			case err := <-done2:
				if err != nil {
					t.Fatalf("second Run: %v", err)
				}
			case <-time.After(30 * time.Second):
				t.Fatal("second Run did not return")
			}
			for _, r := range rc.Receives() {
				if r.WaitTimeSeconds != 0 {
					t.Fatalf("a receive of the second run carried WaitTimeSeconds %d", r.WaitTimeSeconds)
				}
			}

			// 4. Whole payloads, each message received and delivered once
			// (the two messages' contents may repeat each other).
			got := rec.Delivered()
			if len(got) != want || eng.Counters().Received.Load() != 2 {
				t.Fatalf("%d events delivered from %d receipts, want %d from 2", len(got), eng.Counters().Received.Load(), want)
			}
			for _, ev := range got {
				if ev.Payload == "" || strings.Contains(ev.Payload, "##") {
					t.Fatalf("payload overwritten before its fate: %q", ev.Payload)
				}
			}
			if v, f := fauxqs.MustQueueCounts(t, emu.SQS(), url); v != 0 || f != 0 {
				t.Errorf("queue holds %d visible and %d in-flight messages after the run", v, f)
			}
		})
	}
}

// poisoning overwrites every event's payload with '#' as soon as its fate
// is known, so that whatever reads it afterwards reads '#'s.
type poisoning struct{ next pipeline.Emitter }

func (p poisoning) Emit(ctx context.Context, ev *pipeline.Event) error {
	poison.AfterFate(ev)
	return p.next.Emit(ctx, ev)
}

// build makes the service's source as the app does.
func build(t *testing.T, emu *fauxqs.Server, svc *config.Service, c sqsengine.Client) pipeline.Source {
	t.Helper()
	account := func(context.Context) (string, error) { return samples.Account, nil }
	var src pipeline.Source
	var err error
	switch svc.Kind {
	case config.EventBridge, config.SecurityHub:
		src, err = sqsevents.New(sqsevents.Options{Service: svc, Region: fauxqs.Region, InputName: "aws", SQS: c, AccountID: account})
	default:
		var mu sync.Mutex
		clients := map[string]s3sqs.S3Client{}
		src, err = s3sqs.New(s3sqs.Options{Service: svc, Region: fauxqs.Region, InputName: "aws", SQS: c, AccountID: account,
			S3: func(region string) s3sqs.S3Client {
				mu.Lock()
				defer mu.Unlock()
				if cl, ok := clients[region]; ok {
					return cl
				}
				cl := emu.S3(func(o *s3.Options) { o.Region = region })
				clients[region] = cl
				return cl
			}})
	}
	if err != nil {
		t.Fatal(err)
	}
	return src
}

func sendAll(t *testing.T, emu *fauxqs.Server, url string, bodies []string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for _, b := range bodies {
		if _, err := emu.SQS().SendMessage(ctx, &sqs.SendMessageInput{QueueUrl: &url, MessageBody: aws.String(b)}); err != nil {
			t.Fatal(err)
		}
	}
}
