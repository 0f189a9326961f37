package apisource

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/devo-aws-collector/devo-aws-collector/internal/config"
	"github.com/devo-aws-collector/devo-aws-collector/internal/lease"
	"github.com/devo-aws-collector/devo-aws-collector/internal/state"
)

func TestCheckReportsEveryMissingField(t *testing.T) {
	var c Common
	err := c.Check("src", errors.New("src: nil Client"))
	if err == nil {
		t.Fatal("Check of an empty Common passed")
	}
	want := "src: nil Service\nsrc: nil Client\nsrc: nil AccountID\nsrc: nil Store"
	if err.Error() != want {
		t.Fatalf("Check: %q, want %q", err, want)
	}
	if c.Leases != nil || c.Log != nil || c.Now != nil {
		t.Fatal("Check filled defaults although it failed")
	}
}

func TestCheckFillsDefaults(t *testing.T) {
	c := Common{
		Service:   &config.Service{},
		AccountID: func(context.Context) (string, error) { return "123456789012", nil },
		Store:     state.NewMemory(),
	}
	if err := c.Check("src", nil); err != nil {
		t.Fatalf("Check: %v", err)
	}
	if _, ok := c.Leases.(lease.Solo); !ok {
		t.Errorf("Leases = %T, want lease.Solo", c.Leases)
	}
	if c.Log == nil || c.Now == nil {
		t.Fatal("Log or Now left nil")
	}
	c.Log.Info("discarded")
	if d := time.Since(c.Now()); d < 0 || d > time.Minute {
		t.Errorf("Now is %v away from the clock", d)
	}
}

func TestOriginAndTag(t *testing.T) {
	c := Common{Service: &config.Service{}}
	if o, err := c.Origin(time.RFC3339Nano); err != nil || !o.IsZero() {
		t.Fatalf("Origin with no start_time: %v, %v; want zero, nil", o, err)
	}
	c.Service.StartTime = "2026-01-02T03:04:05Z"
	o, err := c.Origin(time.RFC3339Nano)
	if err != nil || !o.Equal(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)) {
		t.Fatalf("Origin: %v, %v", o, err)
	}
	c.Service.StartTime = "yesterday"
	if _, err := c.Origin(time.RFC3339Nano); err == nil || !strings.HasPrefix(err.Error(), `start_time "yesterday": `) {
		t.Fatalf("Origin of a bad start_time: %v", err)
	}
	c.Service.TagTemplate = "my.app.{no_such_placeholder}"
	if err := c.CheckTag(); err == nil || !strings.HasPrefix(err.Error(), "tag template: ") {
		t.Fatalf("CheckTag of a bad template: %v", err)
	}
	c.Service.TagTemplate = "my.app.aws"
	if err := c.CheckTag(); err != nil {
		t.Fatalf("CheckTag: %v", err)
	}
}
