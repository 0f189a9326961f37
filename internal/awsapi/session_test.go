package awsapi

import (
	"context"
	"encoding/pem"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/smithy-go"
)

func TestModeString(t *testing.T) {
	for m, want := range map[Mode]string{
		DefaultChain: "default-chain", Keys: "access-key", KeysRole: "assume-role", CrossAccount: "cross-account", Mode(9): "Mode(9)",
	} {
		if got := m.String(); got != want {
			t.Errorf("Mode(%d).String() = %q, want %q", int(m), got, want)
		}
	}
}

// TestNewSessionModes checks, for every mode, the chain of identities the
// Session goes through, as the fake STS saw it: who signed each AssumeRole,
// with which external id, and who signs the calls made through the Session.
func TestNewSessionModes(t *testing.T) {
	type hop struct{ role, externalID, signer string }
	tests := []struct {
		name     string
		opts     Options
		envKeys  bool
		hops     []hop  // AssumeRole calls, in order; signer "" = the previous hop's issued key
		signer   string // who signs GetCallerIdentity; "" = the last hop's issued key
		account  string
		describe string
		seedLogs bool // the product's three user-session lines
	}{
		{
			name:     "keys",
			opts:     Options{Mode: Keys, AccessKey: userKey, AccessSecret: userSecret},
			signer:   userKey,
			account:  userAccount,
			describe: "access-key account=" + userAccount,
			seedLogs: true,
		},
		{
			name:     "keys and same-account role",
			opts:     Options{Mode: KeysRole, AccessKey: userKey, AccessSecret: userSecret, BaseAssumeRole: sameRole},
			hops:     []hop{{role: sameRole, signer: userKey}},
			account:  userAccount,
			describe: "assume-role account=" + userAccount + " roles=" + sameRole,
		},
		{
			name:     "keys and role with external id",
			opts:     Options{Mode: KeysRole, AccessKey: userKey, AccessSecret: userSecret, BaseAssumeRole: targetRole, ExternalID: targetExtID},
			hops:     []hop{{role: targetRole, externalID: targetExtID, signer: userKey}},
			account:  "123456789012",
			describe: "assume-role account=123456789012 roles=" + targetRole,
		},
		{
			name:     "cross-account chain",
			opts:     Options{Mode: CrossAccount, BaseAssumeRole: baseRole, TargetAssumeRole: targetRole, ExternalID: targetExtID},
			envKeys:  true,
			hops:     []hop{{role: baseRole, signer: envKey}, {role: targetRole, externalID: targetExtID}},
			account:  "123456789012",
			describe: "cross-account account=123456789012 roles=" + baseRole + "," + targetRole,
		},
		{
			name:     "default chain",
			opts:     Options{Mode: DefaultChain},
			envKeys:  true,
			signer:   envKey,
			account:  envAccount,
			describe: "default-chain account=" + envAccount,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFakeSTS(t)
			if tt.envKeys {
				t.Setenv("AWS_ACCESS_KEY_ID", envKey)
				t.Setenv("AWS_SECRET_ACCESS_KEY", envSecret)
			}
			rec := &logRecorder{}
			o := tt.opts
			o.InputID, o.Region, o.EndpointURL, o.RetryMaxAttempts, o.Logger = "100001", "eu-west-1", f.URL, 1, slog.New(rec)
			ctx := context.Background()

			s, err := NewSession(ctx, o)
			if err != nil {
				t.Fatal(err)
			}
			account, err := s.AccountID(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if account != tt.account {
				t.Errorf("account = %q, want %q", account, tt.account)
			}
			if _, err := s.AccountID(ctx); err != nil {
				t.Fatal(err)
			}

			assumed := f.CallsOf("AssumeRole")
			if len(assumed) != len(tt.hops) {
				t.Fatalf("AssumeRole calls = %+v, want %d", assumed, len(tt.hops))
			}
			for i, h := range tt.hops {
				c := assumed[i]
				signer := h.signer
				if signer == "" {
					signer = assumed[i-1].IssuedKey
				}
				if c.RoleARN != h.role || c.ExternalID != h.externalID || c.AccessKey != signer || c.ErrorCode != "" {
					t.Errorf("AssumeRole %d = %+v, want role %s, external id %q, signed by %s", i, c, h.role, h.externalID, signer)
				}
				if c.SessionName != "devo-aws-collector-100001" {
					t.Errorf("session name = %q", c.SessionName)
				}
			}

			ids := f.CallsOf("GetCallerIdentity")
			if len(ids) != 1 {
				t.Fatalf("GetCallerIdentity calls = %d, want 1 (cached)", len(ids))
			}
			signer := tt.signer
			if signer == "" {
				signer = assumed[len(assumed)-1].IssuedKey
			}
			if ids[0].AccessKey != signer {
				t.Errorf("GetCallerIdentity signed by %s, want %s", ids[0].AccessKey, signer)
			}

			desc, err := s.Describe(ctx)
			if err != nil || desc != tt.describe {
				t.Errorf("Describe = %q, %v; want %q", desc, err, tt.describe)
			}
			if s.Mode() != tt.opts.Mode || s.Health() != Healthy || s.HealthError() != nil {
				t.Errorf("mode %v health %v %v", s.Mode(), s.Health(), s.HealthError())
			}

			infos := rec.messages(slog.LevelInfo)
			seed := []string{"Session cannot expire. Using user/profile authentication.", "Creating user session", "New AWS session started."}
			if tt.seedLogs && !slices.Equal(infos, seed) {
				t.Errorf("info lines = %q, want %q", infos, seed)
			}
			if !tt.seedLogs && (slices.Contains(infos, seed[0]) || infos[len(infos)-1] != seed[2]) {
				t.Errorf("info lines = %q, want no user-session line and %q last", infos, seed[2])
			}
			if logged := rec.text(); strings.Contains(logged, userSecret) || strings.Contains(logged, envSecret) {
				t.Errorf("a secret was logged:\n%s", logged)
			}
		})
	}
}

func TestNewSessionRefusesBadCredentials(t *testing.T) {
	tests := []struct {
		name     string
		opts     Options
		envKeys  bool
		wantCode string // AWS error from the fake; "" = refused before any call
		wantRole string // named in the ERROR line
	}{
		{name: "keys without secret", opts: Options{Mode: Keys, AccessKey: userKey}},
		{name: "role without keys", opts: Options{Mode: KeysRole, BaseAssumeRole: sameRole}},
		{name: "cross-account without target", opts: Options{Mode: CrossAccount, BaseAssumeRole: baseRole}},
		{name: "unknown mode", opts: Options{Mode: Mode(7)}},
		{
			name:     "cross-account wrong external id",
			opts:     Options{Mode: CrossAccount, BaseAssumeRole: baseRole, TargetAssumeRole: targetRole, ExternalID: "wrong"},
			envKeys:  true,
			wantCode: "AccessDenied", wantRole: targetRole,
		},
		{
			name:     "cross-account missing external id",
			opts:     Options{Mode: CrossAccount, BaseAssumeRole: baseRole, TargetAssumeRole: targetRole},
			envKeys:  true,
			wantCode: "AccessDenied", wantRole: targetRole,
		},
		{
			name:     "role with wrong secret",
			opts:     Options{Mode: KeysRole, AccessKey: userKey, AccessSecret: "wrong", BaseAssumeRole: sameRole},
			wantCode: "SignatureDoesNotMatch", wantRole: sameRole,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFakeSTS(t)
			if tt.envKeys {
				t.Setenv("AWS_ACCESS_KEY_ID", envKey)
				t.Setenv("AWS_SECRET_ACCESS_KEY", envSecret)
			}
			rec := &logRecorder{}
			o := tt.opts
			o.InputID, o.Region, o.EndpointURL, o.RetryMaxAttempts, o.Logger = "7", "us-east-1", f.URL, 1, slog.New(rec)
			_, err := NewSession(context.Background(), o)
			if err == nil {
				t.Fatal("NewSession succeeded")
			}
			if tt.wantCode == "" {
				if n := len(f.Calls()); n != 0 {
					t.Errorf("refused options still made %d STS calls", n)
				}
				return
			}
			var apiErr smithy.APIError
			if !errors.As(err, &apiErr) || apiErr.ErrorCode() != tt.wantCode {
				t.Fatalf("err = %v, want AWS error %s", err, tt.wantCode)
			}
			attrs, ok := rec.find(slog.LevelError, "assume role failed")
			if !ok || attrs["role_arn"] != tt.wantRole {
				t.Errorf("ERROR line attrs = %v (found %v), want role_arn %s", attrs, ok, tt.wantRole)
			}
		})
	}
}

func TestSessionName(t *testing.T) {
	for in, want := range map[string]string{
		"100001":                "devo-aws-collector-100001",
		"acme prod/1":           "devo-aws-collector-acme_prod_1",
		strings.Repeat("x", 80): "devo-aws-collector-" + strings.Repeat("x", 64-len("devo-aws-collector-")),
	} {
		if got := sessionName(in); got != want {
			t.Errorf("sessionName(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestAccountIDWaitsWithContext: a second caller waiting for the first one's
// GetCallerIdentity gives up when its context ends.
func TestAccountIDWaitsWithContext(t *testing.T) {
	f := newFakeSTS(t)
	s, err := NewSession(context.Background(), Options{Mode: Keys, AccessKey: userKey, AccessSecret: userSecret, EndpointURL: f.URL, Region: "us-east-1"})
	if err != nil {
		t.Fatal(err)
	}
	s.acct <- struct{}{} // as if another caller were asking STS
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, err := s.AccountID(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want deadline exceeded", err)
	}
	<-s.acct
	if id, err := s.AccountID(context.Background()); err != nil || id != userAccount {
		t.Fatalf("AccountID = %q, %v", id, err)
	}
	if n := len(f.CallsOf("GetCallerIdentity")); n != 1 {
		t.Errorf("GetCallerIdentity calls = %d, want 1", n)
	}
}

type countingTransport struct {
	mu       sync.Mutex
	n        int
	writerTo int // requests whose body has WriteTo (see sdkhttp)
}

func (c *countingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	c.mu.Lock()
	c.n++
	if _, ok := r.Body.(io.WriterTo); ok {
		c.writerTo++
	}
	c.mu.Unlock()
	return http.DefaultTransport.RoundTrip(r)
}

// TestSessionUsesHTTPClient: the caller's HTTP client carries both the
// AssumeRole calls and the data calls, wrapped by sdkhttp (no request body
// reaches net/http with the WriteTo that loses answers).
func TestSessionUsesHTTPClient(t *testing.T) {
	f := newFakeSTS(t)
	// A CA bundle in the environment must not stop a caller's client.
	tlsSrv := httptest.NewTLSServer(http.NotFoundHandler())
	defer tlsSrv.Close()
	bundle := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(bundle, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: tlsSrv.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("AWS_CA_BUNDLE", bundle)
	rt := &countingTransport{}
	s, err := NewSession(context.Background(), Options{
		Mode: KeysRole, AccessKey: userKey, AccessSecret: userSecret, BaseAssumeRole: sameRole,
		Region: "us-east-1", EndpointURL: f.URL, HTTPClient: &http.Client{Transport: rt},
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.AccountID(context.Background()); err != nil {
		t.Fatal(err)
	}
	rt.mu.Lock()
	defer rt.mu.Unlock()
	if rt.n != 2 || len(f.Calls()) != 2 {
		t.Errorf("transport carried %d requests, STS saw %d; want 2 (AssumeRole, GetCallerIdentity)", rt.n, len(f.Calls()))
	}
	if rt.writerTo != 0 {
		t.Errorf("%d request bodies reached net/http with WriteTo: the client is not wrapped by sdkhttp", rt.writerTo)
	}
}
