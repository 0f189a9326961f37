package e2e

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/sqs"

	"github.com/devo-aws-collector/devo-aws-collector/internal/awstest/fauxqs"
	"github.com/devo-aws-collector/devo-aws-collector/internal/testutil/certs"
	"github.com/devo-aws-collector/devo-aws-collector/internal/testutil/rsyslog"
	"github.com/devo-aws-collector/devo-aws-collector/internal/testutil/syncbuf"
)

// collectorBin is the binary built once for the package by TestMain.
var collectorBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "e2e-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	collectorBin = filepath.Join(dir, "devo-aws-collector")
	build := exec.Command("go", "build", "-race", "-o", collectorBin, "../../cmd/devo-aws-collector")
	build.Stdout, build.Stderr = os.Stdout, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build collector:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// env is one test's world: fauxqs, an optional rsyslog, and a collector
// directory (<dir>/config/config.yaml, <dir>/certs, <dir>/state).
type env struct {
	t    testing.TB
	emu  *fauxqs.Server
	sqs  *sqs.Client
	s3   *s3.Client
	dir  string
	cert *certs.Set
}

func newEnv(t testing.TB) *env {
	t.Helper()
	emu := fauxqs.Start(t)
	dir := t.TempDir()
	for _, d := range []string{"config", "certs"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return &env{t: t, emu: emu, sqs: emu.SQS(), s3: emu.S3(), dir: dir, cert: certs.New(t)}
}

// devoOutput is the outputs block for a devo_platform output to rsyslog's
// TLS port with the given client certificate and key.
func (e *env) devoOutput(port int, cert, key string, extra string) string {
	return fmt.Sprintf(`outputs:
  devo:
    type: devo_platform
    config:
      address: 127.0.0.1
      port: %d
      chain: %s
      cert: %s
      key: %s
      hostname: e2e-collector
%s`, port, e.cert.CA, cert, key, extra)
}

// writeConfig writes the config file: globals, outputs, and the aws input
// with the given services block (indented under services:).
func (e *env) writeConfig(globals, outputs, services string) string {
	cfg := fmt.Sprintf(`globals:
  name: e2e
  persistence: {type: filesystem, config: {directory_name: state}}
%s
%s
inputs:
  aws:
    id: "42"
    requests_per_second: 1000
    regions: [us-east-1]
    endpoint_url: %q
    credentials: {access_key: E2EACCESSKEY, access_secret: e2e-secret}
    services:
%s`, globals, outputs, e.emu.URL, services)
	path := filepath.Join(e.dir, "config", "config.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		e.t.Fatal(err)
	}
	return path
}

// proc is a running collector process.
type proc struct {
	cmd    *exec.Cmd
	output syncbuf.Buffer // stdout and stderr
	done   chan struct{}
	err    error
}

func (e *env) start(cfgPath string) *proc {
	e.t.Helper()
	return e.startBin(collectorBin, cfgPath)
}

// startBin starts the collector binary bin with the config at cfgPath.
func (e *env) startBin(bin, cfgPath string) *proc {
	e.t.Helper()
	return e.startBinEnv(bin, cfgPath, nil)
}

// startBinEnv is startBin with extra environment variables ("NAME=value"),
// for several collectors on one config that differ through ${NAME}.
func (e *env) startBinEnv(bin, cfgPath string, extraEnv []string) *proc {
	e.t.Helper()
	p := &proc{done: make(chan struct{})}
	p.cmd = exec.Command(bin, "run", "--config", cfgPath)
	if extraEnv != nil {
		p.cmd.Env = append(os.Environ(), extraEnv...)
	}
	p.cmd.Dir = e.dir
	p.cmd.Stdout = &p.output
	p.cmd.Stderr = &p.output
	if err := p.cmd.Start(); err != nil {
		e.t.Fatal(err)
	}
	go func() {
		p.err = p.cmd.Wait()
		close(p.done)
	}()
	e.t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			_ = p.cmd.Process.Kill()
			<-p.done
		}
		if e.t.Failed() {
			lines := strings.Split(p.log(), "\n")
			if len(lines) > 80 {
				lines = lines[len(lines)-80:]
			}
			e.t.Logf("collector %v output (last lines):\n%s", extraEnv, strings.Join(lines, "\n"))
		}
	})
	return p
}

func (p *proc) log() string { return p.output.String() }

// wait waits for the process to exit and returns its exit code (-1 on
// timeout).
func (p *proc) wait(d time.Duration) int {
	select {
	case <-p.done:
		return p.cmd.ProcessState.ExitCode()
	case <-time.After(d):
		return -1
	}
}

func (e *env) queue(name string, attrs map[string]string) string {
	return e.emu.MustCreateQueue(e.t, name, attrs)
}

func (e *env) send(url, body, group string) {
	e.t.Helper()
	in := &sqs.SendMessageInput{QueueUrl: aws.String(url), MessageBody: aws.String(body)}
	if group != "" {
		in.MessageGroupId = aws.String(group)
	}
	if _, err := e.sqs.SendMessage(context.Background(), in); err != nil {
		e.t.Fatal(err)
	}
}

// pending is the number of messages visible or in flight in the queue.
func (e *env) pending(url string) int {
	e.t.Helper()
	visible, inFlight := fauxqs.MustQueueCounts(e.t, e.sqs, url)
	return visible + inFlight
}

// eventually polls cond until it holds or d passes.
func eventually(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func countTags(msgs []rsyslog.Message) map[string]int {
	m := map[string]int{}
	for _, x := range msgs {
		m[x.Tag]++
	}
	return m
}

func dataMessages(msgs []rsyslog.Message) []rsyslog.Message {
	var out []rsyslog.Message
	for _, m := range msgs {
		if !strings.HasPrefix(m.Tag, "devo.collectors.") {
			out = append(out, m)
		}
	}
	return out
}

// freeAddr returns a 127.0.0.1 address with a port that was free a moment ago.
func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// httpGet fetches url and checks the status code.
func httpGet(t *testing.T, url string, status int) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != status {
		t.Fatalf("GET %s: %d, want %d\n%s", url, resp.StatusCode, status, b)
	}
	return string(b)
}

func terminate(t testing.TB, p *proc) {
	t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if code := p.wait(60 * time.Second); code != 0 {
		t.Fatalf("collector exit code after SIGTERM: %d", code)
	}
}
