package e2e

import (
	"bufio"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/devo-aws-collector/devo-aws-collector/internal/awstest/fauxqs"
	"github.com/devo-aws-collector/devo-aws-collector/internal/testutil/certs"
	"github.com/devo-aws-collector/devo-aws-collector/internal/testutil/localaws"
	"github.com/devo-aws-collector/devo-aws-collector/internal/testutil/rsyslog"
	"github.com/devo-aws-collector/devo-aws-collector/internal/testutil/syncbuf"
)

const examplesDir = "../../examples"

// exampleLayout lays out <base>/config/config.yaml (a copy of the example)
// and <base>/certs with the chain, certificate and key the examples name,
// taken from set, as a user would after copying an example. It returns the
// config path.
func exampleLayout(t *testing.T, example string, set *certs.Set) string {
	t.Helper()
	base := t.TempDir()
	for _, d := range []string{"config", "certs"} {
		if err := os.MkdirAll(filepath.Join(base, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for dst, src := range map[string]string{"chain.crt": set.CA, "domain.crt": set.ClientCert, "domain.key": set.ClientKey} {
		copyFile(t, src, filepath.Join(base, "certs", dst))
	}
	path := filepath.Join(base, "config", "config.yaml")
	copyFile(t, filepath.Join(examplesDir, example), path)
	return path
}

func copyFile(t *testing.T, src, dst string) {
	t.Helper()
	data, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst, data, 0o600); err != nil {
		t.Fatal(err)
	}
}

// exampleEnv is the process environment without the variables the
// examples read, plus extra.
func exampleEnv(extra ...string) []string {
	var env []string
	for _, kv := range os.Environ() {
		name, _, _ := strings.Cut(kv, "=")
		switch {
		case strings.HasPrefix(name, "AWS_"), strings.HasPrefix(name, "DEVO_"), name == "STATE_DIR":
			continue
		}
		env = append(env, kv)
	}
	return append(quickExit(env), extra...)
}

// quickExit adds GORACE=atexit_sleep_ms=0 to env unless GORACE is set: the
// race-enabled binary otherwise sleeps a second at every exit.
func quickExit(env []string) []string {
	for _, kv := range env {
		if strings.HasPrefix(kv, "GORACE=") {
			return env
		}
	}
	return append(env, "GORACE=atexit_sleep_ms=0")
}

// TestExamplesValidate: every file in examples/ validates through the
// binary, as shipped (no environment variable set), with no warning.
func TestExamplesValidate(t *testing.T) {
	files, err := filepath.Glob(filepath.Join(examplesDir, "*.yaml"))
	if err != nil || len(files) < 10 {
		t.Fatalf("examples: %v %v", files, err)
	}
	set := certs.New(t)
	for _, f := range files {
		name := filepath.Base(f)
		t.Run(name, func(t *testing.T) {
			path := exampleLayout(t, name, set)
			cmd := exec.Command(collectorBin, "validate", "--config", path)
			cmd.Env = exampleEnv()
			out, err := cmd.CombinedOutput()
			if err != nil || !strings.Contains(string(out), "configuration is valid") {
				t.Fatalf("validate %s: %v\n%s", name, err, out)
			}
			if strings.Contains(string(out), "warning:") {
				t.Errorf("validate %s warns:\n%s", name, out)
			}
		})
	}
	for _, s := range localaws.Services {
		if _, err := os.Stat(filepath.Join(examplesDir, s.Example)); err != nil {
			t.Errorf("service %s: %v", s.Name, err)
		}
	}
}

// TestExamplesDeliverFromEmulator runs each SQS/S3 example, unchanged,
// against fauxqs (AWS_ENDPOINT_URL) and a TLS syslog receiver standing in
// for Devo (DEVO_ADDRESS, DEVO_PORT): every sample event arrives under its
// table. Then try-locally.yaml, the file `make emulator` points to, prints
// the events of every service on the console.
func TestExamplesDeliverFromEmulator(t *testing.T) {
	ctx := context.Background()
	la, err := localaws.Setup(ctx, fauxqs.Start(t))
	if err != nil {
		t.Fatal(err)
	}
	set := certs.New(t)
	rs := rsyslog.Start(t, rsyslog.Options{Certs: set})
	awsEnv := []string{"AWS_ENDPOINT_URL=" + la.Emu.URL, "AWS_ACCESS_KEY_ID=EXAMPLEKEY", "AWS_SECRET_ACCESS_KEY=example-secret", "AWS_EC2_METADATA_DISABLED=true"}

	for _, s := range localaws.Services {
		t.Run(s.Example, func(t *testing.T) {
			want, err := la.Seed(ctx, s.Name)
			if err != nil {
				t.Fatal(err)
			}
			path := exampleLayout(t, s.Example, set)
			p := startExample(t, path, exampleEnv(append(awsEnv, "DEVO_ADDRESS=127.0.0.1", "DEVO_PORT="+strconv.Itoa(rs.TLSPort))...))
			eventually(t, 60*time.Second, "every sample event at the receiver", func() bool {
				return covers(tagCounts(dataMessages(rs.Messages())), want)
			})
			stopExample(t, p)
		})
	}

	t.Run("try-locally.yaml", func(t *testing.T) {
		// A fresh emulator: the long polls of the collectors stopped
		// above may still be parked in fauxqs and would take (and hide
		// for the visibility timeout) the first message sent to their
		// queues, as real SQS may do too.
		la, err := localaws.Setup(ctx, fauxqs.Start(t))
		if err != nil {
			t.Fatal(err)
		}
		awsEnv := []string{"AWS_ENDPOINT_URL=" + la.Emu.URL, "AWS_ACCESS_KEY_ID=EXAMPLEKEY", "AWS_SECRET_ACCESS_KEY=example-secret", "AWS_EC2_METADATA_DISABLED=true"}
		want := map[string]int{}
		for _, s := range localaws.Services {
			w, err := la.Seed(ctx, s.Name)
			if err != nil {
				t.Fatal(err)
			}
			for k, v := range w {
				want[k] += v
			}
		}
		path := filepath.Join(t.TempDir(), "try-locally.yaml")
		copyFile(t, filepath.Join(examplesDir, "try-locally.yaml"), path)
		p := startExample(t, path, exampleEnv(append(awsEnv, "STATE_DIR="+t.TempDir())...))
		var got map[string]int
		t.Cleanup(func() {
			if t.Failed() {
				t.Logf("want %v\ngot %v", want, got)
			}
		})
		eventually(t, 60*time.Second, "every sample event on the console", func() bool {
			got = map[string]int{}
			sc := bufio.NewScanner(strings.NewReader(p.stdout.String()))
			for sc.Scan() {
				if tag, ok := devoLineTag(sc.Text()); ok && !strings.HasPrefix(tag, "devo.collectors.") {
					got[tag]++
				}
			}
			return covers(got, want)
		})
		if strings.Contains(p.stderr.String(), "level=WARN") || strings.Contains(p.stderr.String(), "warning:") {
			t.Errorf("try-locally warns:\n%s", p.stderr.String())
		}
		stopExample(t, p)
	})
}

type exampleProc struct {
	cmd            *exec.Cmd
	stdout, stderr syncbuf.Buffer
	done           chan struct{}
}

func startExample(t *testing.T, path string, env []string) *exampleProc {
	t.Helper()
	p := &exampleProc{done: make(chan struct{})}
	p.cmd = exec.Command(collectorBin, "run", "--config", path)
	p.cmd.Env = env
	p.cmd.Stdout, p.cmd.Stderr = &p.stdout, &p.stderr
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { _ = p.cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			_ = p.cmd.Process.Kill()
			<-p.done
		}
		if t.Failed() {
			t.Logf("collector stderr:\n%s\ncollector stdout:\n%s", tail(p.stderr.String(), 60), tail(p.stdout.String(), 10))
		}
	})
	return p
}

func stopExample(t *testing.T, p *exampleProc) {
	t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-p.done:
		if code := p.cmd.ProcessState.ExitCode(); code != 0 {
			t.Fatalf("exit %d after SIGTERM", code)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("collector did not stop within 60 s of SIGTERM")
	}
}

// tagCounts counts messages by tag.
func tagCounts(msgs []rsyslog.Message) map[string]int {
	m := map[string]int{}
	for _, x := range msgs {
		m[x.Tag]++
	}
	return m
}

// covers reports whether got (counts by tag) has, for each table of want
// (a tag prefix such as "cloud.aws.cloudtrail"), at least its count.
func covers(got, want map[string]int) bool {
	for table, n := range want {
		have := 0
		for tag, c := range got {
			if tag == table || strings.HasPrefix(tag, table+".") {
				have += c
			}
		}
		if have < n {
			return false
		}
	}
	return true
}

// devoLineTag is the tag of a Devo line printed by the console output:
// "<pri>Mmm dd hh:mm:ss host tag: message" (the day padded with a space).
func devoLineTag(line string) (string, bool) {
	f := strings.Fields(line)
	if len(f) < 5 || !strings.HasPrefix(f[0], "<") || !strings.HasSuffix(f[4], ":") {
		return "", false
	}
	return strings.TrimSuffix(f[4], ":"), true
}

func tail(s string, n int) string {
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
