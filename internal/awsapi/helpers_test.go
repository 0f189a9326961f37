package awsapi

import (
	"context"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/devo-aws-collector/devo-aws-collector/internal/awstest"
)

const (
	userKey     = "AKIAUSERKEY00000001"
	userSecret  = "user-secret-do-not-log-0000000000000001"
	userAccount = "111111111111"
	envKey      = "AKIAENVKEY000000001"
	envSecret   = "env-secret-do-not-log-00000000000000001"
	envAccount  = "837131528613"
	sameRole    = "arn:aws:iam::111111111111:role/devo-collector-reader"
	baseRole    = "arn:aws:iam::837131528613:role/devo-xaccount-cs-role"
	targetRole  = "arn:aws:iam::123456789012:role/devo-collector-reader"
	targetExtID = "7d1f0c2e-acme"
)

// isolateEnv keeps the developer's own AWS settings out of the test: no
// profile, no shared files, no instance metadata, no environment keys.
func isolateEnv(t *testing.T) {
	t.Helper()
	dir := t.TempDir()
	t.Setenv("AWS_CONFIG_FILE", filepath.Join(dir, "config"))
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", filepath.Join(dir, "credentials"))
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true")
	for _, k := range []string{"AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN",
		"AWS_REGION", "AWS_DEFAULT_REGION", "AWS_ROLE_ARN", "AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_STS",
		"AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "AWS_CONTAINER_CREDENTIALS_FULL_URI", "AWS_CA_BUNDLE"} {
		t.Setenv(k, "")
	}
}

// newFakeSTS is a fake STS knowing the test's user keys, environment keys
// and roles, with the isolated environment.
func newFakeSTS(t *testing.T) *awstest.STS {
	t.Helper()
	isolateEnv(t)
	f := awstest.NewSTS(t)
	f.AddUser(userKey, userSecret, userAccount)
	f.AddUser(envKey, envSecret, envAccount)
	f.AddRole(awstest.STSRole{ARN: sameRole})
	f.AddRole(awstest.STSRole{ARN: baseRole})
	f.AddRole(awstest.STSRole{ARN: targetRole, ExternalID: targetExtID})
	return f
}

// logRecorder keeps every record logged through it.
type logRecorder struct {
	mu      sync.Mutex
	records []slog.Record
}

func (r *logRecorder) Enabled(context.Context, slog.Level) bool { return true }
func (r *logRecorder) Handle(_ context.Context, rec slog.Record) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.records = append(r.records, rec.Clone())
	return nil
}
func (r *logRecorder) WithAttrs([]slog.Attr) slog.Handler { return r }
func (r *logRecorder) WithGroup(string) slog.Handler      { return r }

func (r *logRecorder) messages(level slog.Level) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, rec := range r.records {
		if rec.Level == level {
			out = append(out, rec.Message)
		}
	}
	return out
}

// find returns the attributes of the first record with this level and
// message, and whether there was one.
func (r *logRecorder) find(level slog.Level, msg string) (map[string]string, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, rec := range r.records {
		if rec.Level == level && rec.Message == msg {
			attrs := map[string]string{}
			rec.Attrs(func(a slog.Attr) bool {
				attrs[a.Key] = a.Value.String()
				return true
			})
			return attrs, true
		}
	}
	return nil, false
}

// text is everything logged, messages and attribute values.
func (r *logRecorder) text() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var b strings.Builder
	for _, rec := range r.records {
		b.WriteString(rec.Message)
		rec.Attrs(func(a slog.Attr) bool {
			b.WriteString(" " + a.Key + "=" + a.Value.String())
			return true
		})
		b.WriteString("\n")
	}
	return b.String()
}
