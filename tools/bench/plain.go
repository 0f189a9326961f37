package main

import (
	"compress/gzip"
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

// runPlain is the plain SDK loop the issue sets the collector's wall-clock
// target against: what a few lines of Go with the AWS SDK do with the same
// queue, and no more. Workers receive notifications (up to 10, 1 s long
// poll), GetObject, gunzip the body with the standard library into
// io.Discard, and delete the message. Nothing is parsed, framed or sent: it
// measures how fast the emulator hands the objects out and they decompress,
// the ceiling for any pipeline that must also deliver them.
func runPlain(rc refConfig) error {
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
			if err := plainWorker(ctx, rc, sqsc, s3c, &processed); err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	return <-errs
}

func plainWorker(ctx context.Context, rc refConfig, sqsc *sqs.Client, s3c *s3.Client, processed *atomic.Int64) error {
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
			zr, err := gzip.NewReader(obj.Body)
			if err == nil {
				_, err = io.Copy(io.Discard, zr)
			}
			obj.Body.Close()
			if err != nil {
				return fmt.Errorf("gunzip: %w", err)
			}
			if _, err := sqsc.DeleteMessage(ctx, &sqs.DeleteMessageInput{QueueUrl: &rc.Queue, ReceiptHandle: m.ReceiptHandle}); err != nil {
				return fmt.Errorf("delete: %w", err)
			}
			processed.Add(1)
		}
	}
	return nil
}
