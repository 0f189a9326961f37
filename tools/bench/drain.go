package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"sync"
	"sync/atomic"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/sqs"

	"github.com/devo-aws-collector/devo-aws-collector/internal/awsapi/sdkhttp"
)

// objectHandler does a baseline's work on one S3 object's body.
type objectHandler func(body io.Reader) error

// drainQueue is the loop both baselines share: rc.Workers workers, each with
// the handler newWorker makes for it (and closes with the returned func),
// receive notifications (up to 10, 1 s long poll), GetObject, hand the body
// to the handler and delete the message, until rc.Objects are processed.
// The first worker error is returned.
func drainQueue(rc refConfig, newWorker func() (objectHandler, func(), error)) error {
	ctx := context.Background()
	cfg := aws.Config{
		Region:       "us-east-1",
		Credentials:  credentials.NewStaticCredentialsProvider("BENCHACCESSKEY", "bench-secret", ""),
		BaseEndpoint: aws.String(rc.Endpoint),
		// The SDK's default client, with the collector's fix for a
		// smithy-go/net/http race that fails calls (see sdkhttp).
		HTTPClient: sdkhttp.Wrap(nil),
	}
	sqsc := sqs.NewFromConfig(cfg)
	s3c := s3.NewFromConfig(cfg, func(o *s3.Options) { o.UsePathStyle = true })
	var processed atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, rc.Workers)
	for range rc.Workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			handle, done, err := newWorker()
			if err == nil {
				err = drainWorker(ctx, rc, sqsc, s3c, handle, &processed)
				done()
			}
			if err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	return <-errs
}

func drainWorker(ctx context.Context, rc refConfig, sqsc *sqs.Client, s3c *s3.Client, handle objectHandler, processed *atomic.Int64) error {
	for processed.Load() < int64(rc.Objects) {
		out, err := sqsc.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{QueueUrl: &rc.Queue, MaxNumberOfMessages: 10, WaitTimeSeconds: 1, VisibilityTimeout: 60})
		if err != nil {
			return fmt.Errorf("receive: %w", err)
		}
		for _, m := range out.Messages {
			var n notification
			if err := json.Unmarshal([]byte(aws.ToString(m.Body)), &n); err != nil || len(n.Records) == 0 {
				return fmt.Errorf("notification %q: %v", aws.ToString(m.Body), err)
			}
			obj, err := s3c.GetObject(ctx, &s3.GetObjectInput{Bucket: &n.Records[0].S3.Bucket.Name, Key: &n.Records[0].S3.Object.Key})
			if err != nil {
				return fmt.Errorf("get object: %w", err)
			}
			err = handle(obj.Body)
			obj.Body.Close()
			if err != nil {
				return err
			}
			if _, err := sqsc.DeleteMessage(ctx, &sqs.DeleteMessageInput{QueueUrl: &rc.Queue, ReceiptHandle: m.ReceiptHandle}); err != nil {
				return fmt.Errorf("delete: %w", err)
			}
			processed.Add(1)
		}
	}
	return nil
}
