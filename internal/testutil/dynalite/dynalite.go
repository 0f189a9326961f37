// Package dynalite runs the dynalite DynamoDB emulator for tests and hands
// out SDK settings pointed at it.
//
// The emulator and the Node 22 runtime it runs on are installed from npm by
// scripts/dynalite/install.sh into $DYNALITE_DIR (default
// <repo>/.cache/dynalite); Start runs that script once per process, and the
// script returns at once when the pinned versions are already there. Like the
// fauxqs harness, a test that needs the emulator fails (it is never skipped)
// when it cannot be installed or started: CI installs it with
// scripts/deps.sh. Every server listens on 127.0.0.1 only, keeps its tables
// in memory, and is stopped by whoever started it.
package dynalite

import (
	"context"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"

	"github.com/devo-aws-collector/devo-aws-collector/internal/awsapi/sdkhttp"
	"github.com/devo-aws-collector/devo-aws-collector/internal/testutil/nodeproc"
)

// Region is the region the helper settings sign for. dynalite keeps tables
// per region, taken from the request signature.
const Region = "us-east-1"

// Server is one running dynalite process.
type Server struct {
	// Proc gives the URL ("http://127.0.0.1:<port>", an SDK client's
	// BaseEndpoint), the Port, Stop (SIGTERM, then SIGKILL after 3 s; safe
	// to call more than once) and Output (what the process printed).
	*nodeproc.Proc
}

// Start installs dynalite if needed, starts it on a free 127.0.0.1 port and
// registers a cleanup that stops it. It fails the test if the emulator
// cannot start.
func Start(t testing.TB) *Server {
	t.Helper()
	return nodeproc.StartT(t, "dynalite", StartProcess)
}

// StartProcess is Start for code that is not a test. The caller must call
// Stop. ctx bounds installation and start-up only.
func StartProcess(ctx context.Context) (*Server, error) {
	dir, err := nodeproc.Install(ctx, "dynalite")
	if err != nil {
		return nil, err
	}
	p, err := nodeproc.Start(ctx, nodeproc.Spec{
		Name: "dynalite",
		Dir:  dir,
		Args: func(port int) []string {
			return []string{
				filepath.Join(dir, "node_modules", "dynalite", "cli.js"),
				"--host", "127.0.0.1",
				"--port", strconv.Itoa(port),
				// Tables become ACTIVE quickly, so table-creation tests stay
				// fast while still going through the CREATING state.
				"--createTableMs", "50",
				"--deleteTableMs", "50",
				"--updateTableMs", "50",
			}
		},
		// dynalite answers a bare GET with an error document, which is
		// enough to know it listens.
		ReadyPath: "/",
	})
	if err != nil {
		return nil, err
	}
	return &Server{p}, nil
}

// Pause stops the emulator process (SIGSTOP) so that every request to it
// hangs, as during a network partition; Resume continues it.
func (s *Server) Pause() error { return s.Signal(syscall.SIGSTOP) }

// Resume continues a paused emulator (SIGCONT).
func (s *Server) Resume() error { return s.Signal(syscall.SIGCONT) }

// Config returns SDK settings for the emulator: static test credentials, the
// helper Region and few retries, so a broken emulator fails a test fast.
func (s *Server) Config() aws.Config {
	return aws.Config{
		Region:           Region,
		Credentials:      credentials.NewStaticCredentialsProvider("AKIADYNALITETEST", "dynalite-test", ""),
		RetryMaxAttempts: 2,
		BaseEndpoint:     aws.String(s.URL),
		HTTPClient:       sdkhttp.Wrap(nil), // as the collector's clients
	}
}
