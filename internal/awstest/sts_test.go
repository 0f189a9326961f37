package awstest

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/sts"
	"github.com/aws/smithy-go"
)

const (
	stsTestUserKey    = "AKIATESTUSER0000001"
	stsTestUserSecret = "user-secret-0000000000000000000000000001"
	stsTestAccount    = "111111111111"
	stsTestRole       = "arn:aws:iam::222222222222:role/reader"
	stsTestRoleExtID  = "ext-123"
)

func stsTestServer(t *testing.T) *STS {
	t.Helper()
	f := NewSTS(t)
	f.AddUser(stsTestUserKey, stsTestUserSecret, stsTestAccount)
	f.AddRole(STSRole{ARN: stsTestRole, ExternalID: stsTestRoleExtID})
	f.AddRole(STSRole{ARN: "arn:aws:iam::333333333333:role/open"})
	return f
}

func stsTestClient(f *STS, creds aws.Credentials) *sts.Client {
	return sts.New(sts.Options{
		Region:           "us-east-1",
		BaseEndpoint:     aws.String(f.URL),
		Credentials:      credentials.StaticCredentialsProvider{Value: creds},
		RetryMaxAttempts: 1,
	})
}

func stsTestUser() aws.Credentials {
	return aws.Credentials{AccessKeyID: stsTestUserKey, SecretAccessKey: stsTestUserSecret}
}

func stsErrorCode(err error) string {
	var apiErr smithy.APIError
	if errors.As(err, &apiErr) {
		return apiErr.ErrorCode()
	}
	return ""
}

func TestSTSGetCallerIdentity(t *testing.T) {
	f := stsTestServer(t)
	ctx := context.Background()

	tests := []struct {
		name     string
		creds    aws.Credentials
		wantCode string
		wantAcct string
	}{
		{name: "user key", creds: stsTestUser(), wantAcct: stsTestAccount},
		{name: "unknown key", creds: aws.Credentials{AccessKeyID: "AKIAUNKNOWN", SecretAccessKey: "x"}, wantCode: "InvalidClientTokenId"},
		{name: "wrong secret", creds: aws.Credentials{AccessKeyID: stsTestUserKey, SecretAccessKey: "not-the-secret"}, wantCode: "SignatureDoesNotMatch"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, err := stsTestClient(f, tt.creds).GetCallerIdentity(ctx, &sts.GetCallerIdentityInput{})
			if got := stsErrorCode(err); got != tt.wantCode {
				t.Fatalf("error code = %q (err %v), want %q", got, err, tt.wantCode)
			}
			if tt.wantCode != "" {
				return
			}
			if aws.ToString(out.Account) != tt.wantAcct {
				t.Errorf("account = %q, want %q", aws.ToString(out.Account), tt.wantAcct)
			}
			if want := "arn:aws:iam::" + stsTestAccount + ":user/" + stsTestUserKey; aws.ToString(out.Arn) != want {
				t.Errorf("arn = %q, want %q", aws.ToString(out.Arn), want)
			}
		})
	}
	calls := f.CallsOf("GetCallerIdentity")
	if len(calls) != len(tests) {
		t.Fatalf("logged %d GetCallerIdentity calls, want %d", len(calls), len(tests))
	}
	if calls[0].AccessKey != stsTestUserKey || calls[0].ErrorCode != "" {
		t.Errorf("first call = %+v, want signed by %s and successful", calls[0], stsTestUserKey)
	}
	if calls[2].ErrorCode != "SignatureDoesNotMatch" {
		t.Errorf("third call error = %q, want SignatureDoesNotMatch", calls[2].ErrorCode)
	}
}

func TestSTSAssumeRole(t *testing.T) {
	f := stsTestServer(t)
	ctx := context.Background()
	client := stsTestClient(f, stsTestUser())

	tests := []struct {
		name       string
		role       string
		externalID string
		wantCode   string
	}{
		{name: "right external id", role: stsTestRole, externalID: stsTestRoleExtID},
		{name: "wrong external id", role: stsTestRole, externalID: "nope", wantCode: "AccessDenied"},
		{name: "missing external id", role: stsTestRole, wantCode: "AccessDenied"},
		{name: "role without condition", role: "arn:aws:iam::333333333333:role/open"},
		{name: "unknown role", role: "arn:aws:iam::333333333333:role/ghost", wantCode: "AccessDenied"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := &sts.AssumeRoleInput{RoleArn: aws.String(tt.role), RoleSessionName: aws.String("test-session")}
			if tt.externalID != "" {
				in.ExternalId = aws.String(tt.externalID)
			}
			out, err := client.AssumeRole(ctx, in)
			if got := stsErrorCode(err); got != tt.wantCode {
				t.Fatalf("error code = %q (err %v), want %q", got, err, tt.wantCode)
			}
			if tt.wantCode != "" {
				return
			}
			if !strings.HasPrefix(aws.ToString(out.Credentials.AccessKeyId), "ASIA") || aws.ToString(out.Credentials.SessionToken) == "" {
				t.Errorf("credentials = %+v, want a temporary ASIA key with a token", out.Credentials)
			}
			if !strings.HasSuffix(aws.ToString(out.AssumedRoleUser.Arn), "/test-session") {
				t.Errorf("assumed role arn = %q", aws.ToString(out.AssumedRoleUser.Arn))
			}
		})
	}

	calls := f.CallsOf("AssumeRole")
	if len(calls) != len(tests) {
		t.Fatalf("logged %d AssumeRole calls, want %d", len(calls), len(tests))
	}
	for i, c := range calls {
		if c.RoleARN != tests[i].role || c.ExternalID != tests[i].externalID || c.AccessKey != stsTestUserKey || c.SessionName != "test-session" || c.ErrorCode != tests[i].wantCode {
			t.Errorf("call %d = %+v, want role %s external id %q signed by %s, error %q", i, c, tests[i].role, tests[i].externalID, stsTestUserKey, tests[i].wantCode)
		}
		if (c.IssuedKey != "") != (tests[i].wantCode == "") {
			t.Errorf("call %d issued key %q with error %q", i, c.IssuedKey, c.ErrorCode)
		}
	}
}

func TestSTSIssuedCredentials(t *testing.T) {
	f := stsTestServer(t)
	f.SetLifetime(20 * time.Second)
	ctx := context.Background()

	out, err := stsTestClient(f, stsTestUser()).AssumeRole(ctx, &sts.AssumeRoleInput{
		RoleArn: aws.String(stsTestRole), RoleSessionName: aws.String("s1"), ExternalId: aws.String(stsTestRoleExtID),
		DurationSeconds: aws.Int32(3600),
	})
	if err != nil {
		t.Fatal(err)
	}
	life := time.Until(aws.ToTime(out.Credentials.Expiration))
	if life <= 15*time.Second || life > 20*time.Second {
		t.Errorf("credential lifetime = %v, want about 20s", life)
	}
	tmp := aws.Credentials{
		AccessKeyID:     aws.ToString(out.Credentials.AccessKeyId),
		SecretAccessKey: aws.ToString(out.Credentials.SecretAccessKey),
		SessionToken:    aws.ToString(out.Credentials.SessionToken),
	}

	id, err := stsTestClient(f, tmp).GetCallerIdentity(ctx, &sts.GetCallerIdentityInput{})
	if err != nil {
		t.Fatalf("issued credential refused: %v", err)
	}
	if aws.ToString(id.Account) != "222222222222" || aws.ToString(id.Arn) != "arn:aws:sts::222222222222:assumed-role/reader/s1" {
		t.Errorf("identity = %s %s", aws.ToString(id.Account), aws.ToString(id.Arn))
	}

	wrongToken := tmp
	wrongToken.SessionToken = "forged"
	if _, err := stsTestClient(f, wrongToken).GetCallerIdentity(ctx, &sts.GetCallerIdentityInput{}); stsErrorCode(err) != "InvalidClientTokenId" {
		t.Errorf("forged token: err = %v, want InvalidClientTokenId", err)
	}

	f.ExpireIssued()
	if _, err := stsTestClient(f, tmp).GetCallerIdentity(ctx, &sts.GetCallerIdentityInput{}); stsErrorCode(err) != "ExpiredToken" {
		t.Errorf("expired credential: err = %v, want ExpiredToken", err)
	}
}

func TestSTSFailAssumeRole(t *testing.T) {
	f := stsTestServer(t)
	ctx := context.Background()
	client := stsTestClient(f, stsTestUser())
	in := &sts.AssumeRoleInput{RoleArn: aws.String(stsTestRole), RoleSessionName: aws.String("s1"), ExternalId: aws.String(stsTestRoleExtID)}

	f.FailAssumeRole(stsTestRole, "Throttling")
	if _, err := client.AssumeRole(ctx, in); stsErrorCode(err) != "Throttling" {
		t.Fatalf("err = %v, want Throttling", err)
	}
	f.FailAssumeRole(stsTestRole, "")
	if _, err := client.AssumeRole(ctx, in); err != nil {
		t.Fatalf("after clearing the failure: %v", err)
	}
}

func TestSTSUnknownActionAndVersion(t *testing.T) {
	f := stsTestServer(t)
	ctx := context.Background()
	for _, tt := range []struct{ name, body string }{
		{"unknown action", "Action=DecodeAuthorizationMessage&Version=2011-06-15"},
		{"wrong version", "Action=GetCallerIdentity&Version=2099-01-01"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			req := stsSignedRequest(t, f.URL, tt.body, stsTestUser())
			resp, err := http.DefaultClient.Do(req.WithContext(ctx))
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusBadRequest {
				t.Errorf("status = %d, want 400", resp.StatusCode)
			}
		})
	}
	for _, c := range f.Calls() {
		if c.ErrorCode != "InvalidAction" {
			t.Errorf("call %+v, want InvalidAction", c)
		}
	}
}

// TestSTSAuthenticate is how another fake checks a request: signed with an
// issued, unexpired credential, and not tampered with after signing.
func TestSTSAuthenticate(t *testing.T) {
	f := stsTestServer(t)
	out, err := stsTestClient(f, stsTestUser()).AssumeRole(context.Background(), &sts.AssumeRoleInput{
		RoleArn: aws.String("arn:aws:iam::333333333333:role/open"), RoleSessionName: aws.String("other-fake"),
	})
	if err != nil {
		t.Fatal(err)
	}
	tmp := aws.Credentials{
		AccessKeyID:     aws.ToString(out.Credentials.AccessKeyId),
		SecretAccessKey: aws.ToString(out.Credentials.SecretAccessKey),
		SessionToken:    aws.ToString(out.Credentials.SessionToken),
	}

	const body = `{"logGroupName":"/aws/lambda/x"}`
	ok := stsSignedRequest(t, "http://127.0.0.1:1/", body, tmp)
	p, err := f.Authenticate(ok)
	if err != nil {
		t.Fatalf("valid request refused: %v", err)
	}
	if p.AccessKey != tmp.AccessKeyID || p.Account != "333333333333" || p.RoleARN != "arn:aws:iam::333333333333:role/open" || p.Expires.IsZero() {
		t.Errorf("principal = %+v", p)
	}

	tampered := stsSignedRequest(t, "http://127.0.0.1:1/", body, tmp)
	tampered.Header.Set("X-Amz-Target", "Logs_20140328.DeleteLogGroup")
	tampered.Header.Set("X-Amz-Date", time.Now().Add(time.Minute).UTC().Format("20060102T150405Z"))

	unsigned := stsSignedRequest(t, "http://127.0.0.1:1/", body, tmp)
	unsigned.Header.Del("Authorization")

	for _, tt := range []struct {
		name string
		req  *http.Request
		code string
	}{
		{"tampered", tampered, "SignatureDoesNotMatch"},
		{"unsigned", unsigned, "MissingAuthenticationToken"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := f.Authenticate(tt.req)
			var authErr *STSAuthError
			if !errors.As(err, &authErr) || authErr.Code != tt.code {
				t.Fatalf("err = %v, want %s", err, tt.code)
			}
		})
	}

	f.ExpireIssued()
	_, err = f.Authenticate(stsSignedRequest(t, "http://127.0.0.1:1/", body, tmp))
	var authErr *STSAuthError
	if !errors.As(err, &authErr) || authErr.Code != "ExpiredToken" || authErr.Status != http.StatusBadRequest {
		t.Fatalf("expired: err = %v, want ExpiredToken 400", err)
	}
}

func stsSignedRequest(t *testing.T, url, body string, creds aws.Credentials) *http.Request {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("X-Amz-Target", "Logs_20140328.FilterLogEvents")
	sum := sha256.Sum256([]byte(body))
	if err := v4.NewSigner().SignHTTP(context.Background(), creds, req, hex.EncodeToString(sum[:]), "sts", "us-east-1", time.Now()); err != nil {
		t.Fatal(err)
	}
	return req
}
