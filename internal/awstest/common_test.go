package awstest

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/smithy-go"

	"github.com/devo-aws-collector/devo-aws-collector/internal/awsapi/sdkhttp"
)

const testAccessKey = "AKIDFAKETEST0001"

// testConfig is an SDK config with static credentials, testMaxAttempts
// attempts per call and millisecond backoffs, so a broken fake fails fast.
// Its HTTP client is wrapped like the collector's (sdkhttp.Wrap): without
// that, the SDK now and then lost a successful answer that followed a
// throttled one and sent the request again, and attempt counts were not
// exact.
const testMaxAttempts = 3

func testConfig(akid string) aws.Config {
	return aws.Config{
		Region:      "eu-west-1",
		Credentials: credentials.NewStaticCredentialsProvider(akid, "fake-secret", ""),
		Retryer: func() aws.Retryer {
			return retry.NewStandard(func(o *retry.StandardOptions) {
				o.MaxAttempts = testMaxAttempts
				o.MaxBackoff = 5 * time.Millisecond
			})
		},
		HTTPClient: sdkhttp.Wrap(&http.Client{Timeout: 10 * time.Second}),
	}
}

func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// wantAPIError fails unless err is a smithy API error with this code.
func wantAPIError(t *testing.T, err error, code string) {
	t.Helper()
	var apiErr smithy.APIError
	if !errors.As(err, &apiErr) {
		t.Fatalf("error = %v (%T), want API error %s", err, err, code)
	}
	if apiErr.ErrorCode() != code {
		t.Fatalf("error code = %q (%v), want %q", apiErr.ErrorCode(), err, code)
	}
}

func TestSignatureKey(t *testing.T) {
	tests := []struct {
		header, key, region, code string
	}{
		{"", "", "", "MissingAuthenticationTokenException"},
		{"Bearer abc", "", "", "IncompleteSignatureException"},
		{"AWS4-HMAC-SHA256 SignedHeaders=host, Signature=00", "", "", "IncompleteSignatureException"},
		{"AWS4-HMAC-SHA256 Credential=AKID1/20240531/eu-west-1/logs/aws4_request, SignedHeaders=host, Signature=00", "AKID1", "eu-west-1", ""},
	}
	for _, tt := range tests {
		key, region, err := signatureKey(tt.header)
		code := ""
		if err != nil {
			code = err.code
		}
		if key != tt.key || region != tt.region || code != tt.code {
			t.Errorf("signatureKey(%q) = %q, %q, %q; want %q, %q, %q", tt.header, key, region, code, tt.key, tt.region, tt.code)
		}
	}
}

func TestUnsignedRequestIsRejected(t *testing.T) {
	ct := NewCloudTrail(t)
	req, err := http.NewRequest(http.MethodPost, ct.URL, strings.NewReader("{}"))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("X-Amz-Target", cloudTrailTargets[0])
	req.Header.Set("Content-Type", "application/x-amz-json-1.1")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Fatalf("status = %d, want 403", resp.StatusCode)
	}
	calls := ct.Calls()
	if len(calls) != 1 || calls[0].ErrCode != "MissingAuthenticationTokenException" {
		t.Fatalf("calls = %+v", calls)
	}
}
