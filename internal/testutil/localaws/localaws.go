// Package localaws sets up the AWS side of the files in examples/ on the
// fauxqs emulator: their queues (in their region) and a bucket, and sample
// events for each service, sent the way AWS would send them (the object
// uploaded, then its S3 notification on the queue). `make emulator`
// (tools/emulator) and the examples tests share it, so what a user tries is
// what the tests run.
package localaws

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/sqs"

	"github.com/devo-aws-collector/devo-aws-collector/internal/awstest/fauxqs"
	"github.com/devo-aws-collector/devo-aws-collector/internal/testutil/samples"
)

// Region is the region of the examples' queues; fauxqs keeps queues per
// region.
const Region = "eu-west-1"

// Bucket holds the sample objects the S3+SQS services read.
const Bucket = "devo-aws-logs"

// Service is one SQS-fed service of the examples: its queue and the
// example file that reads it.
type Service struct {
	Name    string // service key, e.g. "cisco-umbrella"
	Example string // file in examples/
	Queue   string // queue name; a name ending in .fifo is a FIFO queue
}

// Services are the examples' SQS-fed services.
var Services = []Service{
	{"service-events-all", "service-events-all.yaml", "devo-aws-events.fifo"},
	{"sqs-cloudwatch-consumer", "security-hub.yaml", "devo-aws-securityhub.fifo"},
	{"audit-events-all", "cloudtrail-s3.yaml", "devo-aws-cloudtrail"},
	{"non-cloudwatch-logs", "vpc-flow-cloudfront.yaml", "devo-aws-s3-logs"},
	{"cisco-umbrella", "cisco-umbrella.yaml", "devo-aws-umbrella"},
}

// Env is an emulator with the examples' queues and bucket.
type Env struct {
	Emu *fauxqs.Server
	SQS *sqs.Client
	S3  *s3.Client

	sent int // messages sent, for unique deduplication ids
}

// Setup creates every queue of Services in Region and the bucket.
func Setup(ctx context.Context, emu *fauxqs.Server) (*Env, error) {
	e := &Env{Emu: emu, SQS: emu.SQS(func(o *sqs.Options) { o.Region = Region }), S3: emu.S3()}
	for _, s := range Services {
		in := &sqs.CreateQueueInput{QueueName: aws.String(s.Queue)}
		if strings.HasSuffix(s.Queue, ".fifo") {
			in.Attributes = map[string]string{"FifoQueue": "true", "ContentBasedDeduplication": "true"}
		}
		if _, err := e.SQS.CreateQueue(ctx, in); err != nil {
			return nil, fmt.Errorf("create queue %s: %w", s.Queue, err)
		}
	}
	if _, err := e.S3.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String(Bucket)}); err != nil {
		return nil, fmt.Errorf("create bucket %s: %w", Bucket, err)
	}
	return e, nil
}

// Seed sends sample events for service (a key of Services) and returns how
// many events the collector must deliver, by Devo table (the first four
// tag levels, e.g. "cloud.aws.vpc.flowlogs").
func (e *Env) Seed(ctx context.Context, service string) (map[string]int, error) {
	var svc Service
	for _, s := range Services {
		if s.Name == service {
			svc = s
		}
	}
	if svc.Queue == "" {
		return nil, fmt.Errorf("no example service %q", service)
	}
	u, err := e.SQS.GetQueueUrl(ctx, &sqs.GetQueueUrlInput{QueueName: aws.String(svc.Queue)})
	if err != nil {
		return nil, err
	}
	send := func(body, group string) error {
		in := &sqs.SendMessageInput{QueueUrl: u.QueueUrl, MessageBody: aws.String(body)}
		if group != "" {
			// A fresh deduplication id: seeding twice within SQS's
			// five-minute window must not drop the second batch.
			e.sent++
			in.MessageGroupId = aws.String(group)
			in.MessageDeduplicationId = aws.String(fmt.Sprintf("seed-%d-%d", time.Now().UnixNano(), e.sent))
		}
		_, err := e.SQS.SendMessage(ctx, in)
		return err
	}
	want := map[string]int{}
	upload := func(o samples.Object, table string) error {
		if _, err := e.S3.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(Bucket), Key: aws.String(o.Key), Body: strings.NewReader(string(o.Body))}); err != nil {
			return fmt.Errorf("upload %s: %w", o.Key, err)
		}
		want[table] += o.Events
		return send(samples.S3Notification(Bucket, o.Key, len(o.Body)), "")
	}
	switch service {
	case "service-events-all":
		// One event per sample source; one message group moves about one
		// message a second, as in Devo's EventBridge setup.
		n := len(samples.EventBridgeSources)
		for i := 0; i < n; i++ {
			if err := send(samples.EventBridge(i), "devo-collector"); err != nil {
				return nil, err
			}
		}
		want["cloud.aws.cloudwatch"] = n
	case "sqs-cloudwatch-consumer":
		if err := send(samples.SecurityHub(3), "devo-collector"); err != nil {
			return nil, err
		}
		want["cloud.aws.securityhub.findings"] = 3
	case "audit-events-all":
		err = upload(samples.CloudTrail(1, 25), "cloud.aws.cloudtrail")
	case "non-cloudwatch-logs":
		if err = upload(samples.VPCFlow(2, 2, 20), "cloud.aws.vpc.flowlogs"); err == nil {
			err = upload(samples.CloudFront(3, 10), "cloud.aws.cloudfront.logs")
		}
	case "cisco-umbrella":
		if err = upload(samples.Umbrella(4, "dnslogs", 10), "sig.cisco.umbrella.dns"); err == nil {
			err = upload(samples.Umbrella(5, "proxylogs", 5), "sig.cisco.umbrella.proxy")
		}
	}
	if err != nil {
		return nil, err
	}
	return want, nil
}
