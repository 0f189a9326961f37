// Package sdkhttp holds the HTTP client wrapper every AWS SDK client of the
// collector uses.
//
// It works around a race between smithy-go and net/http that loses answers.
// smithy-go wraps each request body in a closer whose WriteTo returns io.EOF
// once the body is closed, and closes the body as soon as the response
// headers arrive. net/http, after sending a body of known length, reads the
// body once more to check that nothing is left, through WriteTo when the body
// has one. When the answer comes back quickly enough, that check runs after
// the close, gets io.EOF as an error, and net/http treats it as a failed
// request write: it closes the connection while the response body is still
// being read. The call then fails with "deserialization failed, failed to
// decode response body, … use of closed network connection" (reported as
// aws-sdk-go-v2 #1825 and #2737). Retried calls merely cost an extra request;
// a ReceiveMessage without retries loses the messages SQS handed out until
// their visibility timeout.
//
// Without WriteTo, the check goes through Read, where the closed body answers
// (0, io.EOF): an ordinary end of the body.
package sdkhttp

import (
	"io"
	"net/http"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
)

// Wrap returns c, or the SDK's default client when c is nil, with request
// bodies that net/http can only Read.
func Wrap(c aws.HTTPClient) aws.HTTPClient {
	if c == nil {
		c = awshttp.NewBuildableClient()
	}
	if _, ok := c.(client); ok {
		return c
	}
	return client{c}
}

type client struct{ next aws.HTTPClient }

func (c client) Do(req *http.Request) (*http.Response, error) {
	if _, ok := req.Body.(io.WriterTo); ok {
		r := *req // a client must not change the caller's request
		r.Body = readOnly{req.Body}
		req = &r
	}
	return c.next.Do(req)
}

// readOnly is a request body without the WriteTo of the body it wraps.
type readOnly struct{ io.ReadCloser }
