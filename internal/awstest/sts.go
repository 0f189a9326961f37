package awstest

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
)

// STS is a fake AWS Security Token Service listening on 127.0.0.1. It speaks
// the AWS query protocol (form-encoded POST, XML responses and XML error
// bodies) for AssumeRole and GetCallerIdentity, so the real SDK client,
// stscreds and the credential cache are exercised end to end.
//
// Every request must carry a valid SigV4 signature made with either a
// long-lived key registered with AddUser or a temporary credential this fake
// issued and that has not expired (otherwise ExpiredToken). Issued
// credentials live for the configured lifetime, which may be far shorter
// than AWS's own 900 s minimum so that renewal can be tested.
type STS struct {
	// URL is the base URL of the server, for an SDK client's BaseEndpoint.
	URL string

	srv *httptest.Server

	mu       sync.Mutex
	lifetime time.Duration
	users    map[string]stsUser   // long-lived access key id → user
	roles    map[string]STSRole   // role ARN → role
	issued   map[string]stsIssued // temporary access key id → credential
	failures map[string]string    // role ARN → error code AssumeRole returns
	calls    []STSCall
}

// STSRole is a role the fake lets principals assume.
type STSRole struct {
	// ARN is arn:aws:iam::<account>:role/<name>.
	ARN string
	// ExternalID, when not empty, must be sent as ExternalId by AssumeRole
	// (the trust policy's sts:ExternalId condition); a wrong or missing one
	// is AccessDenied.
	ExternalID string
}

// STSCall is one request the fake answered, in arrival order.
type STSCall struct {
	Time        time.Time
	Action      string // AssumeRole, GetCallerIdentity, or the unknown action asked for
	RoleARN     string // AssumeRole only
	ExternalID  string // AssumeRole only; as sent
	SessionName string // AssumeRole only
	// AccessKey is the access key id that signed the request, read from the
	// Authorization header (empty when the header is missing).
	AccessKey string
	// IssuedKey is the access key id AssumeRole handed out, when it succeeded.
	IssuedKey string
	// ErrorCode is the AWS error code answered, empty on success.
	ErrorCode string
}

// STSPrincipal is the identity behind a valid signature.
type STSPrincipal struct {
	AccessKey string
	Account   string
	ARN       string // user ARN, or arn:aws:sts::<account>:assumed-role/<role>/<session>
	RoleARN   string // the assumed role, empty for a long-lived user key
	// Expires is when a temporary credential stops being accepted; zero for
	// a long-lived key.
	Expires time.Time
}

// STSAuthError is why a request was not authenticated. Code and Status are
// what AWS answers in that case, so other fakes can render it in their own
// protocol.
type STSAuthError struct {
	Code    string // MissingAuthenticationToken, InvalidClientTokenId, ExpiredToken, SignatureDoesNotMatch, IncompleteSignature
	Message string
	Status  int
}

func (e *STSAuthError) Error() string { return e.Code + ": " + e.Message }

type stsUser struct {
	secret  string
	account string
}

type stsIssued struct {
	secret  string
	token   string
	expires time.Time
	role    string
	account string
	session string
}

// NewSTS starts a fake STS on 127.0.0.1 and stops it when the test ends.
// Credentials it issues live one hour until SetLifetime says otherwise.
func NewSTS(t testing.TB) *STS {
	t.Helper()
	f := &STS{
		lifetime: time.Hour,
		users:    map[string]stsUser{},
		roles:    map[string]STSRole{},
		issued:   map[string]stsIssued{},
		failures: map[string]string{},
	}
	f.srv = httptest.NewServer(http.HandlerFunc(f.serveHTTP))
	f.URL = f.srv.URL
	t.Cleanup(f.srv.Close)
	return f
}

// AddUser registers a long-lived access key of an IAM user in account.
func (f *STS) AddUser(accessKey, secret, account string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.users[accessKey] = stsUser{secret: secret, account: account}
}

// AddRole registers a role that any authenticated principal may assume.
func (f *STS) AddRole(r STSRole) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.roles[r.ARN] = r
}

// SetLifetime sets how long credentials issued from now on stay valid. A
// shorter DurationSeconds in the request wins.
func (f *STS) SetLifetime(d time.Duration) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.lifetime = d
}

// FailAssumeRole makes AssumeRole on roleARN answer the AWS error code
// (AccessDenied, Throttling, InternalFailure, …) until called again with an
// empty code.
func (f *STS) FailAssumeRole(roleARN, code string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if code == "" {
		delete(f.failures, roleARN)
		return
	}
	f.failures[roleARN] = code
}

// ExpireIssued makes every credential issued so far expired, as if its
// lifetime had passed.
func (f *STS) ExpireIssued() {
	f.mu.Lock()
	defer f.mu.Unlock()
	past := time.Now().Add(-time.Second)
	for k, c := range f.issued {
		c.expires = past
		f.issued[k] = c
	}
}

// Calls returns a copy of the calls answered so far.
func (f *STS) Calls() []STSCall {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]STSCall(nil), f.calls...)
}

// CallsOf returns the calls of one action, in order.
func (f *STS) CallsOf(action string) []STSCall {
	var out []STSCall
	for _, c := range f.Calls() {
		if c.Action == action {
			out = append(out, c)
		}
	}
	return out
}

// Authenticate checks that r is SigV4-signed with a key this fake knows: a
// user key, or an issued temporary credential that has not expired and whose
// session token is sent. Other fakes use it to accept only requests signed
// with credentials obtained here. The body is read and put back. A failure is
// an *STSAuthError.
func (f *STS) Authenticate(r *http.Request) (STSPrincipal, error) {
	auth := r.Header.Get("Authorization")
	if auth == "" {
		return STSPrincipal{}, &STSAuthError{Code: "MissingAuthenticationToken", Message: "Request is missing Authentication Token", Status: http.StatusForbidden}
	}
	sig, err := stsParseAuthorization(auth)
	if err != nil {
		return STSPrincipal{}, err
	}

	f.mu.Lock()
	user, isUser := f.users[sig.accessKey]
	tmp, isTmp := f.issued[sig.accessKey]
	f.mu.Unlock()

	var (
		p     STSPrincipal
		creds aws.Credentials
	)
	switch {
	case isUser:
		p = STSPrincipal{AccessKey: sig.accessKey, Account: user.account, ARN: fmt.Sprintf("arn:aws:iam::%s:user/%s", user.account, sig.accessKey)}
		creds = aws.Credentials{AccessKeyID: sig.accessKey, SecretAccessKey: user.secret}
	case isTmp:
		if r.Header.Get("X-Amz-Security-Token") != tmp.token {
			return STSPrincipal{}, &STSAuthError{Code: "InvalidClientTokenId", Message: "The security token included in the request is invalid.", Status: http.StatusForbidden}
		}
		if !time.Now().Before(tmp.expires) {
			return STSPrincipal{}, &STSAuthError{Code: "ExpiredToken", Message: "The security token included in the request is expired", Status: http.StatusBadRequest}
		}
		p = STSPrincipal{AccessKey: sig.accessKey, Account: tmp.account, ARN: stsAssumedARN(tmp.role, tmp.session), RoleARN: tmp.role, Expires: tmp.expires}
		creds = aws.Credentials{AccessKeyID: sig.accessKey, SecretAccessKey: tmp.secret, SessionToken: tmp.token}
	default:
		return STSPrincipal{}, &STSAuthError{Code: "InvalidClientTokenId", Message: "The security token included in the request is invalid.", Status: http.StatusForbidden}
	}
	if err := stsVerifySignature(r, sig, creds); err != nil {
		return STSPrincipal{}, err
	}
	return p, nil
}

func (f *STS) serveHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		stsWriteError(w, http.StatusBadRequest, "InvalidRequest", "unreadable body")
		return
	}
	r.Body = io.NopCloser(bytes.NewReader(body))
	form, err := url.ParseQuery(string(body))
	if r.Method != http.MethodPost || err != nil {
		stsWriteError(w, http.StatusBadRequest, "InvalidRequest", "expected a form-encoded POST")
		return
	}
	call := STSCall{Time: time.Now(), Action: form.Get("Action")}
	if sig, err := stsParseAuthorization(r.Header.Get("Authorization")); err == nil {
		call.AccessKey = sig.accessKey
	}

	code, status, msg := "", 0, ""
	var resp any
	principal, err := f.Authenticate(r)
	var authErr *STSAuthError
	switch {
	case errors.As(err, &authErr):
		code, status, msg = authErr.Code, authErr.Status, authErr.Message
	case err != nil:
		code, status, msg = "InternalFailure", http.StatusInternalServerError, err.Error()
	case form.Get("Version") != "2011-06-15":
		code, status, msg = "InvalidAction", http.StatusBadRequest, "unsupported Version "+form.Get("Version")
	case call.Action == "GetCallerIdentity":
		resp = stsCallerIdentityResponse{
			Result:   stsCallerIdentityResult{Arn: principal.ARN, UserID: principal.AccessKey, Account: principal.Account},
			Metadata: stsMetadata{RequestID: stsRequestID()},
		}
	case call.Action == "AssumeRole":
		call.RoleARN = form.Get("RoleArn")
		call.ExternalID = form.Get("ExternalId")
		call.SessionName = form.Get("RoleSessionName")
		var out stsAssumeRoleResponse
		out, code, status, msg = f.assumeRole(principal, form)
		if code == "" {
			call.IssuedKey = out.Result.Credentials.AccessKeyID
			resp = out
		}
	default:
		code, status, msg = "InvalidAction", http.StatusBadRequest, fmt.Sprintf("Could not find operation %q for version 2011-06-15", call.Action)
	}
	call.ErrorCode = code

	f.mu.Lock()
	f.calls = append(f.calls, call)
	f.mu.Unlock()

	if code != "" {
		stsWriteError(w, status, code, msg)
		return
	}
	stsWriteXML(w, http.StatusOK, resp)
}

func (f *STS) assumeRole(caller STSPrincipal, form url.Values) (out stsAssumeRoleResponse, code string, status int, msg string) {
	roleARN, session := form.Get("RoleArn"), form.Get("RoleSessionName")
	if roleARN == "" || session == "" {
		return out, "ValidationError", http.StatusBadRequest, "RoleArn and RoleSessionName are required"
	}
	if len(session) < 2 || len(session) > 64 {
		return out, "ValidationError", http.StatusBadRequest, "1 validation error detected: Value at 'roleSessionName' failed to satisfy constraint: Member must have length between 2 and 64"
	}

	f.mu.Lock()
	defer f.mu.Unlock()
	denied := fmt.Sprintf("User: %s is not authorized to perform: sts:AssumeRole on resource: %s", caller.ARN, roleARN)
	if failure := f.failures[roleARN]; failure != "" {
		return out, failure, stsStatusOf(failure), "injected failure: " + denied
	}
	role, ok := f.roles[roleARN]
	if !ok || (role.ExternalID != "" && form.Get("ExternalId") != role.ExternalID) {
		return out, "AccessDenied", http.StatusForbidden, denied
	}
	account, ok := stsRoleAccount(roleARN)
	if !ok {
		return out, "ValidationError", http.StatusBadRequest, "invalid role ARN " + roleARN
	}

	lifetime := f.lifetime
	if s := form.Get("DurationSeconds"); s != "" {
		secs, err := strconv.Atoi(s)
		if err != nil || secs <= 0 {
			return out, "ValidationError", http.StatusBadRequest, "invalid DurationSeconds " + s
		}
		if d := time.Duration(secs) * time.Second; d < lifetime {
			lifetime = d
		}
	}
	// Whole seconds on the wire; the stored expiry is the same instant so the
	// client never believes in a credential the fake already refuses.
	expires := time.Now().Add(lifetime).UTC().Truncate(time.Second)
	cred := stsIssued{
		secret:  stsRandom(30),
		token:   stsRandom(96),
		expires: expires,
		role:    roleARN,
		account: account,
		session: session,
	}
	key := stsKeyID("ASIA")
	f.issued[key] = cred

	out.Result.Credentials = stsCredentials{AccessKeyID: key, SecretAccessKey: cred.secret, SessionToken: cred.token, Expiration: expires.Format(time.RFC3339)}
	out.Result.AssumedRoleUser = stsAssumedRoleUser{Arn: stsAssumedARN(roleARN, session), AssumedRoleID: "AROA" + strings.ToUpper(hex.EncodeToString([]byte(roleARN)))[:16] + ":" + session}
	out.Metadata.RequestID = stsRequestID()
	return out, "", 0, ""
}

// stsSignature is the parsed Authorization header of a SigV4 request.
type stsSignature struct {
	accessKey     string
	date          string
	region        string
	service       string
	signedHeaders []string
	signature     string
}

func stsParseAuthorization(h string) (stsSignature, error) {
	bad := &STSAuthError{Code: "IncompleteSignature", Message: "Authorization header is not a valid AWS4-HMAC-SHA256 signature", Status: http.StatusBadRequest}
	rest, ok := strings.CutPrefix(h, "AWS4-HMAC-SHA256 ")
	if !ok {
		return stsSignature{}, bad
	}
	var s stsSignature
	for part := range strings.SplitSeq(rest, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(part), "=")
		if !ok {
			return stsSignature{}, bad
		}
		switch k {
		case "Credential":
			scope := strings.Split(v, "/")
			if len(scope) != 5 || scope[4] != "aws4_request" {
				return stsSignature{}, bad
			}
			s.accessKey, s.date, s.region, s.service = scope[0], scope[1], scope[2], scope[3]
		case "SignedHeaders":
			s.signedHeaders = strings.Split(v, ";")
		case "Signature":
			s.signature = v
		}
	}
	if s.accessKey == "" || s.signature == "" || len(s.signedHeaders) == 0 {
		return stsSignature{}, bad
	}
	return s, nil
}

// stsVerifySignature signs a copy of r holding only the headers the client
// signed, with the SDK's own signer, and compares signatures.
func stsVerifySignature(r *http.Request, sig stsSignature, creds aws.Credentials) error {
	mismatch := &STSAuthError{Code: "SignatureDoesNotMatch", Message: "The request signature we calculated does not match the signature you provided.", Status: http.StatusForbidden}
	signedAt, err := time.Parse("20060102T150405Z", r.Header.Get("X-Amz-Date"))
	if err != nil {
		return mismatch
	}
	payloadHash := r.Header.Get("X-Amz-Content-Sha256")
	if payloadHash == "" {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			return mismatch
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		sum := sha256.Sum256(body)
		payloadHash = hex.EncodeToString(sum[:])
	}

	u := *r.URL
	u.Scheme, u.Host = "http", r.Host
	cp, err := http.NewRequestWithContext(context.Background(), r.Method, u.String(), nil)
	if err != nil {
		return mismatch
	}
	cp.Host = r.Host
	for _, h := range sig.signedHeaders {
		switch h {
		case "host":
		case "content-length":
			cp.ContentLength = r.ContentLength
		default:
			if vs, ok := r.Header[http.CanonicalHeaderKey(h)]; ok {
				cp.Header[http.CanonicalHeaderKey(h)] = vs
			}
		}
	}
	if err := v4.NewSigner().SignHTTP(context.Background(), creds, cp, payloadHash, sig.service, sig.region, signedAt); err != nil {
		return mismatch
	}
	want, err := stsParseAuthorization(cp.Header.Get("Authorization"))
	if err != nil || want.signature != sig.signature {
		return mismatch
	}
	return nil
}

func stsRoleAccount(arn string) (string, bool) {
	parts := strings.SplitN(arn, ":", 6)
	if len(parts) != 6 || parts[0] != "arn" || parts[2] != "iam" || !strings.HasPrefix(parts[5], "role/") || len(parts[4]) != 12 {
		return "", false
	}
	return parts[4], true
}

func stsAssumedARN(roleARN, session string) string {
	account, _ := stsRoleAccount(roleARN)
	name := roleARN[strings.LastIndex(roleARN, "/")+1:]
	return fmt.Sprintf("arn:aws:sts::%s:assumed-role/%s/%s", account, name, session)
}

func stsStatusOf(code string) int {
	switch code {
	case "AccessDenied", "InvalidClientTokenId", "SignatureDoesNotMatch":
		return http.StatusForbidden
	case "InternalFailure", "InternalError":
		return http.StatusInternalServerError
	case "ServiceUnavailable":
		return http.StatusServiceUnavailable
	default:
		return http.StatusBadRequest
	}
}

func stsRandom(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return base64.RawStdEncoding.EncodeToString(b)
}

// stsKeyID makes an access key id: a four-letter prefix and 16 upper-case
// hex digits, the shape of AWS's own.
func stsKeyID(prefix string) string {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	return prefix + strings.ToUpper(hex.EncodeToString(b))
}

func stsRequestID() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	h := hex.EncodeToString(b)
	return h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

const stsNamespace = "https://sts.amazonaws.com/doc/2011-06-15/"

type stsMetadata struct {
	RequestID string `xml:"RequestId"`
}

type stsCallerIdentityResult struct {
	Arn     string `xml:"Arn"`
	UserID  string `xml:"UserId"`
	Account string `xml:"Account"`
}

type stsCallerIdentityResponse struct {
	XMLName  xml.Name                `xml:"GetCallerIdentityResponse"`
	Xmlns    string                  `xml:"xmlns,attr"`
	Result   stsCallerIdentityResult `xml:"GetCallerIdentityResult"`
	Metadata stsMetadata             `xml:"ResponseMetadata"`
}

type stsCredentials struct {
	AccessKeyID     string `xml:"AccessKeyId"`
	SecretAccessKey string `xml:"SecretAccessKey"`
	SessionToken    string `xml:"SessionToken"`
	Expiration      string `xml:"Expiration"`
}

type stsAssumedRoleUser struct {
	Arn           string `xml:"Arn"`
	AssumedRoleID string `xml:"AssumedRoleId"`
}

type stsAssumeRoleResponse struct {
	XMLName xml.Name `xml:"AssumeRoleResponse"`
	Xmlns   string   `xml:"xmlns,attr"`
	Result  struct {
		AssumedRoleUser stsAssumedRoleUser `xml:"AssumedRoleUser"`
		Credentials     stsCredentials     `xml:"Credentials"`
	} `xml:"AssumeRoleResult"`
	Metadata stsMetadata `xml:"ResponseMetadata"`
}

type stsErrorResponse struct {
	XMLName xml.Name `xml:"ErrorResponse"`
	Xmlns   string   `xml:"xmlns,attr"`
	Error   struct {
		Type    string `xml:"Type"`
		Code    string `xml:"Code"`
		Message string `xml:"Message"`
	} `xml:"Error"`
	RequestID string `xml:"RequestId"`
}

func stsWriteError(w http.ResponseWriter, status int, code, msg string) {
	var e stsErrorResponse
	e.Error.Type = "Sender"
	if status >= 500 {
		e.Error.Type = "Receiver"
	}
	e.Error.Code, e.Error.Message = code, msg
	e.RequestID = stsRequestID()
	stsWriteXML(w, status, &e)
}

func stsWriteXML(w http.ResponseWriter, status int, v any) {
	switch x := v.(type) {
	case stsCallerIdentityResponse:
		x.Xmlns = stsNamespace
		v = x
	case stsAssumeRoleResponse:
		x.Xmlns = stsNamespace
		v = x
	case *stsErrorResponse:
		x.Xmlns = stsNamespace
	}
	b, err := xml.Marshal(v)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/xml")
	w.Header().Set("X-Amzn-Requestid", stsRequestID())
	w.WriteHeader(status)
	_, _ = w.Write([]byte(xml.Header))
	_, _ = w.Write(b)
}
