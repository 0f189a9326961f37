package awstest

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

// Call is one request a fake received, in arrival order.
type Call struct {
	// Op is the API operation name, e.g. "LookupEvents".
	Op string
	// Input is the decoded request: a pointer to the operation's request
	// type in this package (*LookupEventsRequest, *FilterLogEventsRequest …),
	// or nil when the body could not be decoded.
	Input any
	// AccessKeyID is the key id taken from the SigV4 Authorization header.
	AccessKeyID string
	// Region is the region of the signature's credential scope: the
	// region the client asked for (one fake can serve several).
	Region string
	// ErrCode is the error code the fake answered with, "" on success.
	ErrCode string
	// At is when the request arrived (wall clock, whatever SetClock says),
	// for rate assertions.
	At time.Time
}

// apiError is an error reply; each protocol renders it in its own shape.
type apiError struct {
	status  int
	code    string
	message string
}

func (e *apiError) Error() string { return e.code + ": " + e.message }

func newAPIError(status int, code, format string, args ...any) *apiError {
	return &apiError{status: status, code: code, message: fmt.Sprintf(format, args...)}
}

const throttleCode = "ThrottlingException"

// protocol renders replies in one AWS wire protocol.
type protocol interface {
	writeOutput(w http.ResponseWriter, v any)
	writeError(w http.ResponseWriter, e *apiError)
	// decode unmarshals a request body into v.
	decode(body []byte, v any) error
}

// fake is the machinery every service fake shares: the server, the call
// log, fault injection and pagination cursors. One mutex guards it and the
// service's dataset, so a test may load data while a client is paging.
type fake struct {
	// URL is the base URL of the server ("http://127.0.0.1:port"), for the
	// SDK client's BaseEndpoint.
	URL string

	srv   *httptest.Server
	proto protocol
	now   func() time.Time

	mu            sync.Mutex
	calls         []Call
	served        int // calls that passed authentication, for ThrottleEvery
	throttled     int
	throttleNext  int
	throttleEvery int
	expired       map[string]bool
	cursors       map[string]*cursor
	// rateN calls per ratePer, when set: AWS's per-second quotas.
	rateN    int
	ratePer  time.Duration
	accepted []time.Time // arrival of recent calls not throttled by the rate
}

func (f *fake) start(t testing.TB, p protocol, h http.Handler) {
	t.Helper()
	f.proto = p
	f.now = time.Now
	f.expired = map[string]bool{}
	f.cursors = map[string]*cursor{}
	// httptest binds 127.0.0.1 unless -httptest.serve says otherwise.
	f.srv = httptest.NewServer(h)
	f.URL = f.srv.URL
	t.Cleanup(f.srv.Close)
}

// SetClock replaces the fake's notion of now, used for AWS's retention
// windows (CloudTrail's 90 days, ListMetrics' two weeks and RecentlyActive).
func (f *fake) SetClock(now func() time.Time) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.now = now
}

// ThrottleNext makes the next n calls fail with ThrottlingException,
// whatever their operation.
func (f *fake) ThrottleNext(n int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.throttleNext = n
}

// ThrottleEvery makes every kth authenticated call (counted from the
// server's start) fail with ThrottlingException; k <= 0 turns it off.
func (f *fake) ThrottleEvery(k int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.throttleEvery = k
}

// LimitRate makes the fake enforce a quota as AWS does: a call that
// arrives when n calls were already accepted within the preceding per (a
// sliding window) fails with ThrottlingException. n <= 0 turns it off.
// CloudTrail's LookupEvents quota is LimitRate(2, time.Second).
func (f *fake) LimitRate(n int, per time.Duration) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.rateN, f.ratePer, f.accepted = n, per, nil
}

// ExpireAccessKey makes every later call signed with this access key id fail
// with ExpiredTokenException, as AWS answers for expired session credentials.
func (f *fake) ExpireAccessKey(id string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.expired[id] = true
}

// Calls returns a copy of the call log.
func (f *fake) Calls() []Call {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]Call(nil), f.calls...)
}

// Count returns how many calls of op were received, failed ones included.
func (f *fake) Count(op string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for _, c := range f.calls {
		if c.Op == op {
			n++
		}
	}
	return n
}

// Throttled returns how many calls were answered with ThrottlingException.
func (f *fake) Throttled() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.throttled
}

// serve runs one call: it decodes the body into in, logs the call, checks
// the signature and the injected faults, runs op under the lock and writes
// the reply in the fake's protocol.
func (f *fake) serve(w http.ResponseWriter, r *http.Request, op string, in any, run func() (any, *apiError)) {
	var decodeErr *apiError
	if in != nil {
		body, err := io.ReadAll(r.Body)
		if err == nil && len(body) > 0 {
			err = f.proto.decode(body, in)
		}
		if err != nil {
			decodeErr = newAPIError(http.StatusBadRequest, "SerializationException", "cannot decode request: %v", err)
			in = nil
		}
	}

	out, aerr := f.call(r, op, in, decodeErr, run)
	if aerr != nil {
		f.proto.writeError(w, aerr)
		return
	}
	f.proto.writeOutput(w, out)
}

func (f *fake) call(r *http.Request, op string, in any, decodeErr *apiError, run func() (any, *apiError)) (any, *apiError) {
	f.mu.Lock()
	defer f.mu.Unlock()
	akid, region, aerr := signatureKey(r.Header.Get("Authorization"))
	f.calls = append(f.calls, Call{Op: op, Input: in, AccessKeyID: akid, Region: region, At: time.Now()})
	c := &f.calls[len(f.calls)-1]

	if aerr == nil && f.expired[akid] {
		aerr = newAPIError(http.StatusBadRequest, "ExpiredTokenException", "The security token included in the request is expired")
	}
	if aerr == nil {
		aerr = f.throttle()
	}
	if aerr == nil {
		aerr = f.rateLimit(c.At)
	}
	if aerr == nil {
		aerr = decodeErr
	}
	var out any
	if aerr == nil {
		out, aerr = run()
	}
	if aerr != nil {
		c.ErrCode = aerr.code
	}
	return out, aerr
}

// throttle decides whether the current authenticated call is throttled.
func (f *fake) throttle() *apiError {
	f.served++
	hit := false
	if f.throttleNext > 0 {
		f.throttleNext--
		hit = true
	} else if f.throttleEvery > 0 && f.served%f.throttleEvery == 0 {
		hit = true
	}
	if !hit {
		return nil
	}
	f.throttled++
	return newAPIError(http.StatusBadRequest, throttleCode, "Rate exceeded")
}

// rateLimit applies LimitRate to a call that arrived at.
func (f *fake) rateLimit(at time.Time) *apiError {
	if f.rateN <= 0 {
		return nil
	}
	keep := f.accepted[:0]
	for _, t := range f.accepted {
		if at.Sub(t) < f.ratePer {
			keep = append(keep, t)
		}
	}
	f.accepted = keep
	if len(f.accepted) >= f.rateN {
		f.throttled++
		return newAPIError(http.StatusBadRequest, throttleCode, "Rate exceeded")
	}
	f.accepted = append(f.accepted, at)
	return nil
}

// signatureKey checks superficially that the request is SigV4-signed and
// returns the access key id and the region of its credential scope.
func signatureKey(h string) (akid, region string, _ *apiError) {
	if h == "" {
		return "", "", newAPIError(http.StatusForbidden, "MissingAuthenticationTokenException", "Missing Authentication Token")
	}
	rest, ok := strings.CutPrefix(h, "AWS4-HMAC-SHA256 ")
	if !ok {
		return "", "", newAPIError(http.StatusBadRequest, "IncompleteSignatureException", "Authorization header requires AWS4-HMAC-SHA256")
	}
	for part := range strings.SplitSeq(rest, ",") {
		cred, ok := strings.CutPrefix(strings.TrimSpace(part), "Credential=")
		if !ok {
			continue
		}
		// Credential=AKID/date/region/service/aws4_request
		fields := strings.Split(cred, "/")
		if len(fields) == 5 && fields[0] != "" && fields[4] == "aws4_request" {
			return fields[0], fields[2], nil
		}
	}
	return "", "", newAPIError(http.StatusBadRequest, "IncompleteSignatureException", "Authorization header requires a Credential=<key>/<scope> parameter")
}

// cursor is where a paginated listing stands. The matching items are
// captured on the first call, so later pages neither skip nor repeat when
// the test changes the dataset meanwhile.
type cursor struct {
	op, key string
	items   any
	offset  int
	empties int
}

// paginate serves one page of a listing. key identifies the request's
// parameters other than the token: AWS rejects a token reused with
// different parameters. list computes the matching items on a first call;
// take says how many of the remaining items fit in this page (at least one
// unless rest is empty); empties asks for that many empty pages, each with
// a token, before the first data page. ok is false for an unknown token or
// one issued for other parameters.
func paginate[T any](f *fake, op, key, token string, list func() []T, take func(rest []T) int, empties int) (page []T, next string, ok bool) {
	var c *cursor
	if token == "" {
		c = &cursor{op: op, key: key, items: list(), empties: empties}
	} else {
		prev, found := f.cursors[token]
		if !found || prev.op != op || prev.key != key {
			return nil, "", false
		}
		copied := *prev
		c = &copied
	}
	items := c.items.([]T)
	if c.empties > 0 {
		c.empties--
		return nil, f.remember(c), true
	}
	rest := items[c.offset:]
	n := min(take(rest), len(rest))
	page = rest[:n]
	c.offset += n
	if c.offset < len(items) {
		next = f.remember(c)
	}
	return page, next, true
}

// remember stores a cursor under a fresh random token.
func (f *fake) remember(c *cursor) string {
	var b [24]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(err) // crypto/rand does not fail on supported platforms
	}
	token := base64.RawURLEncoding.EncodeToString(b[:])
	f.cursors[token] = c
	return token
}

// upTo is a take function for a fixed page size.
func upTo[T any](n int) func([]T) int {
	return func([]T) int { return n }
}

// requestKey fingerprints a request without its token.
func requestKey(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err) // request types are plain data
	}
	return string(b)
}

// jsonProtocol is AWS JSON 1.1 (and, with a different content type, 1.0).
type jsonProtocol struct {
	contentType string
}

func (p jsonProtocol) decode(body []byte, v any) error { return json.Unmarshal(body, v) }

func (p jsonProtocol) writeOutput(w http.ResponseWriter, v any) {
	writeJSON(w, p.contentType, http.StatusOK, v)
}

func (p jsonProtocol) writeError(w http.ResponseWriter, e *apiError) {
	writeJSON(w, p.contentType, e.status, map[string]string{"__type": e.code, "message": e.message})
}

// restJSONProtocol is REST-JSON (restJson1): the error code travels in the
// X-Amzn-ErrorType header as well as in the body.
type restJSONProtocol struct{}

func (restJSONProtocol) decode(body []byte, v any) error { return json.Unmarshal(body, v) }

func (restJSONProtocol) writeOutput(w http.ResponseWriter, v any) {
	writeJSON(w, "application/json", http.StatusOK, v)
}

func (restJSONProtocol) writeError(w http.ResponseWriter, e *apiError) {
	status := e.status
	if e.code == throttleCode {
		status = http.StatusTooManyRequests
	}
	w.Header().Set("X-Amzn-ErrorType", e.code)
	writeJSON(w, "application/json", status, map[string]string{"__type": e.code, "message": e.message})
}

func writeJSON(w http.ResponseWriter, contentType string, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", contentType)
	w.Header().Set("X-Amzn-Requestid", requestID())
	w.WriteHeader(status)
	_, _ = w.Write(b)
}

func requestID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

// epochMillis converts a time to the epoch milliseconds CloudWatch Logs and
// GuardDuty criteria use.
func epochMillis(t time.Time) int64 { return t.UnixMilli() }

// intIn reports whether an optional limit is absent or within [lo, hi].
func intIn(v *int32, lo, hi int32) bool { return v == nil || (*v >= lo && *v <= hi) }

// orDefault returns *v, or def when v is nil.
func orDefault(v *int32, def int32) int {
	if v == nil {
		return int(def)
	}
	return int(*v)
}
