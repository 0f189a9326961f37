package e2e

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"

	"github.com/devo-aws-collector/devo-aws-collector/internal/awsapi"
	"github.com/devo-aws-collector/devo-aws-collector/internal/awstest"
	"github.com/devo-aws-collector/devo-aws-collector/internal/awstest/fauxqs"
	"github.com/devo-aws-collector/devo-aws-collector/internal/pipeline"
	"github.com/devo-aws-collector/devo-aws-collector/internal/sqsengine"
)

// deliverSink settles every event Delivered at once.
type deliverSink struct{ n atomic.Int64 }

func (s *deliverSink) Run(ctx context.Context, in *pipeline.Queue) error {
	var buf []*pipeline.Event
	for {
		evs, err := in.Get(ctx, buf, 64)
		if err != nil {
			return nil
		}
		for _, ev := range evs {
			in.Settle(ev, pipeline.Delivered)
			s.n.Add(1)
		}
		buf = evs
	}
}

// Credentials that expire every 20 s renew under a running SQS consumer
// with no failed receive. SQS goes through a proxy that accepts only
// requests signed with a key the fake STS issued and that has not expired,
// so a consumer still signing with an expired key would fail there.
func TestCredentialRenewalUnderRunningSQSConsumer(t *testing.T) {
	if testing.Short() {
		t.Skip("50 s test")
	}
	fakeSTS := awstest.NewSTS(t)
	fakeSTS.AddUser("AKIARENEWALUSER0001", "renewal-secret", "111122223333")
	role := "arn:aws:iam::111122223333:role/devo-collector-reader"
	fakeSTS.AddRole(awstest.STSRole{ARN: role})
	fakeSTS.SetLifetime(20 * time.Second)

	emu := fauxqs.Start(t)
	queueURL := emu.MustCreateQueue(t, "renewal", nil)
	target, _ := url.Parse(emu.URL)
	proxy := httputil.NewSingleHostReverseProxy(target)
	var rejected atomic.Int64
	front := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, err := fakeSTS.Authenticate(r); err != nil {
			rejected.Add(1)
			w.Header().Set("Content-Type", "application/x-amz-json-1.0")
			w.WriteHeader(http.StatusForbidden)
			fmt.Fprintf(w, `{"__type":"com.amazon.coral.service#ExpiredTokenException","message":%q}`, err.Error())
			return
		}
		proxy.ServeHTTP(w, r)
	}))
	t.Cleanup(front.Close)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	sess, err := awsapi.NewSession(ctx, awsapi.Options{
		InputID: "renewal", Mode: awsapi.KeysRole, AccessKey: "AKIARENEWALUSER0001", AccessSecret: "renewal-secret",
		BaseAssumeRole: role, Region: "us-east-1",
		Endpoints:    map[string]string{awsapi.APISTS: fakeSTS.URL, awsapi.APISQS: front.URL},
		ExpiryWindow: 5 * time.Second, RequestsPerSecond: 1000, Logger: log,
	})
	if err != nil {
		t.Fatal(err)
	}
	handler := sqsengine.HandlerFunc(func(ctx context.Context, m sqsengine.Message, b *pipeline.Batch, out pipeline.Emitter) error {
		return out.Emit(ctx, pipeline.NewEvent(b, "renewal", time.Now(), []byte(m.Body)))
	})
	eng, err := sqsengine.New(sess.SQS("us-east-1"), handler, sqsengine.Config{
		Service: "renewal", Region: "us-east-1", Queue: "renewal", WaitTime: 2 * time.Second, Log: log,
	})
	if err != nil {
		t.Fatal(err)
	}
	sink := &deliverSink{}
	p := pipeline.New(log, pipeline.Options{}, []*pipeline.Output{{Name: "sink", Sink: sink, Queue: pipeline.NewQueue(100, 1<<20)}},
		[]pipeline.Unit{{Name: "renewal", Source: eng}})
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx, context.Background()) }()

	producer := emu.SQS()
	sent := 0
	end := time.Now().Add(50 * time.Second)
	for time.Now().Before(end) {
		if _, err := producer.SendMessage(ctx, &sqs.SendMessageInput{QueueUrl: aws.String(queueURL), MessageBody: aws.String(fmt.Sprint("m", sent))}); err != nil {
			t.Fatal(err)
		}
		sent++
		time.Sleep(250 * time.Millisecond)
	}
	eventually(t, 30*time.Second, "every message delivered", func() bool { return sink.n.Load() >= int64(sent) })
	eventually(t, 30*time.Second, "every message deleted", func() bool { return eng.Counters().Deleted.Load() >= int64(sent) })
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}

	c := eng.Counters()
	if n := c.Errors.Load(); n != 0 {
		t.Errorf("%d failed SQS calls while credentials renewed", n)
	}
	if n := rejected.Load(); n != 0 {
		t.Errorf("%d SQS requests signed with expired or unknown credentials", n)
	}
	if n := len(fakeSTS.CallsOf("AssumeRole")); n < 3 {
		t.Errorf("%d AssumeRole calls in 50 s with 20 s credentials, want the session renewed at least twice", n)
	}
	t.Logf("%d messages, %d receives, %d AssumeRole calls", sent, c.Receives.Load(), len(fakeSTS.CallsOf("AssumeRole")))
}
