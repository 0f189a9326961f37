// Package fauxqs runs the fauxqs AWS emulator (SQS, SNS, S3, STS) for tests
// and the demo, and hands out real AWS SDK clients pointed at it.
//
// The emulator and the Node 22 runtime it needs are installed from npm by
// scripts/fauxqs/install.sh into $FAUXQS_DIR (default <repo>/.cache/fauxqs);
// Start runs that script once per process, and the script itself returns at
// once when the pinned versions are already there. Every server listens on
// 127.0.0.1 only (a preloaded module rewrites fauxqs's listen calls) and is
// stopped by whoever started it.
package fauxqs

import (
	"context"
	"fmt"
	"net/http"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"github.com/devo-aws-collector/devo-aws-collector/internal/awsapi/sdkhttp"
	"github.com/devo-aws-collector/devo-aws-collector/internal/testutil/nodeproc"
)

// Region is the region the helper clients sign for unless told otherwise.
// fauxqs keeps queues per region, taken from the request signature.
const Region = "us-east-1"

// Server is one running fauxqs process.
type Server struct {
	// Proc gives the URL ("http://127.0.0.1:<port>", an SDK client's
	// BaseEndpoint), the Port, Stop (SIGTERM, then SIGKILL after 3 s; safe
	// to call more than once) and Output (what the process printed).
	*nodeproc.Proc
}

// Start installs fauxqs if needed, starts it on a free 127.0.0.1 port and
// registers a cleanup that stops it. It fails the test if the emulator
// cannot start.
func Start(t testing.TB) *Server {
	t.Helper()
	return nodeproc.StartT(t, "fauxqs", StartProcess)
}

// StartProcess is Start for code that is not a test (the demo script). The
// caller must call Stop. ctx bounds installation and start-up only.
func StartProcess(ctx context.Context) (*Server, error) {
	dir, err := nodeproc.Install(ctx, "fauxqs")
	if err != nil {
		return nil, err
	}
	return wrap(nodeproc.Start(ctx, spec(dir)))
}

// StartAt starts fauxqs on a given 127.0.0.1 port (a test that restarts the
// emulator on the same address uses it). The caller must call Stop.
func StartAt(ctx context.Context, port int) (*Server, error) {
	dir, err := nodeproc.Install(ctx, "fauxqs")
	if err != nil {
		return nil, err
	}
	return wrap(nodeproc.StartAt(ctx, spec(dir), port))
}

// spec runs fauxqs with a preloaded module that rewrites its listen calls to
// 127.0.0.1; it is ready when GET /_fauxqs/queues answers 200.
func spec(dir string) nodeproc.Spec {
	return nodeproc.Spec{
		Name: "fauxqs",
		Dir:  dir,
		Args: func(int) []string {
			return []string{
				"--no-warnings",
				"--import", filepath.Join(dir, "loopback.mjs"),
				filepath.Join(dir, "node_modules", "fauxqs", "dist", "cli.js"),
			}
		},
		Env: func(port int) []string {
			return []string{
				"FAUXQS_PORT=" + strconv.Itoa(port),
				"FAUXQS_HOST=127.0.0.1",
				"FAUXQS_LOGGER=false",
				"FAUXQS_DEFAULT_REGION=" + Region,
			}
		},
		ReadyPath: "/_fauxqs/queues",
		ReadyOK:   func(status int) bool { return status == http.StatusOK },
	}
}

func wrap(p *nodeproc.Proc, err error) (*Server, error) {
	if err != nil {
		return nil, err
	}
	return &Server{p}, nil
}

// Config returns SDK settings for the emulator: static test credentials, the
// helper Region and few retries, so a broken emulator fails a test fast.
func (s *Server) Config() aws.Config {
	return aws.Config{
		Region:           Region,
		Credentials:      credentials.NewStaticCredentialsProvider("AKIAFAUXQSTEST", "fauxqs-test", ""),
		RetryMaxAttempts: 2,
		BaseEndpoint:     aws.String(s.URL),
		HTTPClient:       sdkhttp.Wrap(nil), // as the collector's clients
	}
}

// SQS returns a real SQS client for the emulator; optFns may change the
// region (fauxqs keeps queues per region), the HTTP client or retries.
func (s *Server) SQS(optFns ...func(*sqs.Options)) *sqs.Client {
	return sqs.NewFromConfig(s.Config(), optFns...)
}

// S3 returns a real S3 client for the emulator, path-style addressed.
func (s *Server) S3(optFns ...func(*s3.Options)) *s3.Client {
	opts := append([]func(*s3.Options){func(o *s3.Options) { o.UsePathStyle = true }}, optFns...)
	return s3.NewFromConfig(s.Config(), opts...)
}

// CreateQueue creates a queue in Region with the given attributes (a name
// ending in ".fifo" needs FifoQueue "true") and returns its URL.
func (s *Server) CreateQueue(name string, attrs map[string]string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := s.SQS().CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: aws.String(name), Attributes: attrs})
	if err != nil {
		return "", fmt.Errorf("create queue %s: %w", name, err)
	}
	return aws.ToString(out.QueueUrl), nil
}

// MustCreateQueue is CreateQueue that fails t on error.
func (s *Server) MustCreateQueue(t testing.TB, name string, attrs map[string]string) string {
	t.Helper()
	u, err := s.CreateQueue(name, attrs)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// CreateBucket creates an S3 bucket.
func (s *Server) CreateBucket(name string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := s.S3().CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String(name)}); err != nil {
		return fmt.Errorf("create bucket %s: %w", name, err)
	}
	return nil
}

// MustCreateBucket is CreateBucket that fails t on error.
func (s *Server) MustCreateBucket(t testing.TB, name string) {
	t.Helper()
	if err := s.CreateBucket(name); err != nil {
		t.Fatal(err)
	}
}

// QueueCounts returns a queue's approximate visible and in-flight message
// counts (ApproximateNumberOfMessages and …NotVisible): a test or the demo
// knows every message was deleted when both are 0.
func QueueCounts(ctx context.Context, c *sqs.Client, url string) (visible, inFlight int, err error) {
	out, err := c.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{
		QueueUrl: aws.String(url),
		AttributeNames: []sqstypes.QueueAttributeName{
			sqstypes.QueueAttributeNameApproximateNumberOfMessages,
			sqstypes.QueueAttributeNameApproximateNumberOfMessagesNotVisible,
		},
	})
	if err != nil {
		return 0, 0, fmt.Errorf("queue attributes of %s: %w", url, err)
	}
	visible, _ = strconv.Atoi(out.Attributes[string(sqstypes.QueueAttributeNameApproximateNumberOfMessages)])
	inFlight, _ = strconv.Atoi(out.Attributes[string(sqstypes.QueueAttributeNameApproximateNumberOfMessagesNotVisible)])
	return visible, inFlight, nil
}

// MustQueueCounts is QueueCounts that fails t on error.
func MustQueueCounts(t testing.TB, c *sqs.Client, url string) (visible, inFlight int) {
	t.Helper()
	v, f, err := QueueCounts(context.Background(), c, url)
	if err != nil {
		t.Fatal(err)
	}
	return v, f
}
