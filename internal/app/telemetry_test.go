package app

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/aws/smithy-go"

	"github.com/devo-aws-collector/devo-aws-collector/internal/awsapi"
	"github.com/devo-aws-collector/devo-aws-collector/internal/stats"
)

func TestCallOutcome(t *testing.T) {
	for err, want := range map[error]string{
		nil:                         stats.CallOK,
		errors.New("dial: refused"): stats.CallError,
		fmt.Errorf("op: %w", &smithy.GenericAPIError{Code: "ThrottlingException"}):                     stats.CallThrottled,
		fmt.Errorf("op: %w", &smithy.GenericAPIError{Code: "RequestThrottled"}):                        stats.CallThrottled,
		fmt.Errorf("op: %w", &smithy.GenericAPIError{Code: "SlowDown"}):                                stats.CallThrottled,
		fmt.Errorf("op: %w", &smithy.GenericAPIError{Code: "AWS.SimpleQueueService.NonExistentQueue"}): stats.CallError,
	} {
		if got := callOutcome(err); got != want {
			t.Errorf("callOutcome(%v) = %s, want %s", err, got, want)
		}
	}
}

func TestUnitCounters(t *testing.T) {
	reg := stats.NewRegistry()
	u := unitCounters(reg, "aws/cisco-umbrella/us-east-1")
	if u == nil || u.Input != "aws" || u.Service != "cisco-umbrella" || u.Region != "us-east-1" || u != reg.Unit("aws", "cisco-umbrella", "us-east-1") {
		t.Fatalf("unitCounters: %+v", u)
	}
	if unitCounters(reg, "nonsense") != nil || unitCounters(reg, "a/b") != nil {
		t.Error("a malformed unit name gave counters")
	}
}

type fakeCreds struct {
	h   chan awsapi.Health
	cur awsapi.Health
}

func (f *fakeCreds) Health() awsapi.Health {
	select {
	case f.cur = <-f.h:
	default:
	}
	return f.cur
}

func (f *fakeCreds) HealthError() error {
	if f.cur == awsapi.Degraded {
		return errors.New("arn:aws:iam::111122223333:role/r: AccessDenied")
	}
	return nil
}

// watchCredentials follows the session: running, degraded with the reason,
// running again.
func TestWatchCredentials(t *testing.T) {
	h := stats.NewHealth()
	f := &fakeCreds{h: make(chan awsapi.Health, 1)}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go watchCredentials(ctx, "credentials/aws", f, h, 5*time.Millisecond)
	wait := func(state stats.State, reason string) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for {
			c := h.Report().Components["credentials/aws"]
			if c.State == state && c.Reason == reason {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("component %+v, want %s %q", c, state, reason)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	wait(stats.Running, "")
	f.h <- awsapi.Degraded
	wait(stats.Degraded, "arn:aws:iam::111122223333:role/r: AccessDenied")
	f.h <- awsapi.Healthy
	wait(stats.Running, "")
}
