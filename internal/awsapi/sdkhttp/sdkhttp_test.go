package sdkhttp

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
)

// slowWriteConn passes every write on at once and then holds the writer for
// a while, so that the server's answer arrives (and the SDK closes the
// request body) before net/http's check after the body.
type slowWriteConn struct{ net.Conn }

func (c slowWriteConn) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	time.Sleep(100 * time.Millisecond)
	return n, err
}

// TestAnswerSurvivesEarlyBodyClose forces the race between smithy-go's
// early close of the request body and net/http's check after it: the server
// sends its headers at once and the body of its answer 300 ms later. Through
// the SDK's own body the connection is closed under the answer; through Wrap
// the call succeeds.
func TestAnswerSurvivesEarlyBodyClose(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, err := io.Copy(io.Discard, r.Body); err != nil {
			t.Errorf("read request: %v", err)
		}
		w.Header().Set("Content-Type", "application/x-amz-json-1.0")
		w.WriteHeader(http.StatusOK)
		w.(http.Flusher).Flush()
		time.Sleep(300 * time.Millisecond)
		io.WriteString(w, `{"QueueUrl":"https://sqs.eu-west-1.amazonaws.com/123456789012/q"}`)
	}))
	defer srv.Close()

	slow := func() *http.Client {
		tr := http.DefaultTransport.(*http.Transport).Clone()
		var d net.Dialer
		tr.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
			c, err := d.DialContext(ctx, network, addr)
			if err != nil {
				return nil, err
			}
			return slowWriteConn{c}, nil
		}
		t.Cleanup(tr.CloseIdleConnections)
		return &http.Client{Transport: tr}
	}
	call := func(hc aws.HTTPClient) error {
		c := sqs.NewFromConfig(aws.Config{
			Region:           "eu-west-1",
			Credentials:      credentials.NewStaticCredentialsProvider("AKID", "secret", ""),
			RetryMaxAttempts: 1,
			BaseEndpoint:     aws.String(srv.URL),
			HTTPClient:       hc,
		})
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		out, err := c.GetQueueUrl(ctx, &sqs.GetQueueUrlInput{QueueName: aws.String("q")})
		if err == nil && !strings.HasSuffix(aws.ToString(out.QueueUrl), "/q") {
			t.Fatalf("QueueUrl = %q", aws.ToString(out.QueueUrl))
		}
		return err
	}

	// The race is real: without Wrap the answer is lost. Should the SDK or
	// net/http ever fix it, this fails and the wrapper can go.
	if err := call(slow()); err == nil || !strings.Contains(err.Error(), "use of closed network connection") {
		t.Fatalf("without Wrap: err = %v, want the lost answer (use of closed network connection)", err)
	}
	if err := call(Wrap(slow())); err != nil {
		t.Fatalf("through Wrap: %v", err)
	}
}

// TestWrap: Wrap does not wrap twice, gives the SDK's client for nil, and
// leaves the caller's request alone.
func TestWrap(t *testing.T) {
	w := Wrap(nil)
	if _, ok := w.(client); !ok {
		t.Fatalf("Wrap(nil) = %T", w)
	}
	if again := Wrap(w); again != w {
		t.Fatal("Wrap wrapped a wrapped client")
	}
	var seen *http.Request
	rec := clientFunc(func(r *http.Request) (*http.Response, error) { seen = r; return nil, nil })
	req, _ := http.NewRequest(http.MethodPost, "http://x", nil)
	orig := writerToBody{strings.NewReader("{}")}
	req.Body = orig
	Wrap(rec).Do(req)
	if req.Body != orig {
		t.Fatal("the caller's request was changed")
	}
	if _, ok := seen.Body.(io.WriterTo); ok || seen == req {
		t.Fatal("the body sent on still has WriteTo")
	}
}

type clientFunc func(*http.Request) (*http.Response, error)

func (f clientFunc) Do(r *http.Request) (*http.Response, error) { return f(r) }

// writerToBody is a request body with WriteTo, as smithy-go's are.
type writerToBody struct{ *strings.Reader }

func (writerToBody) Close() error { return nil }
