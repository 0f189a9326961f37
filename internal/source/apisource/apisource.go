// Package apisource holds what the API pullers (cloudtrailapi, guardduty,
// cwlogs, cwmetrics) are all given: the unit's identity, its checkpoint
// store and lease holder, its logger and counters. Each source embeds
// Common in its Options, next to its own fields (its client, its tuning),
// and checks it once in New; internal/app fills it once per unit.
package apisource

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/devo-aws-collector/devo-aws-collector/internal/config"
	"github.com/devo-aws-collector/devo-aws-collector/internal/lease"
	"github.com/devo-aws-collector/devo-aws-collector/internal/state"
	"github.com/devo-aws-collector/devo-aws-collector/internal/stats"
	"github.com/devo-aws-collector/devo-aws-collector/internal/tag"
)

// Common is the part of an API source's Options shared by every API
// source. Service, AccountID and Store are required; the rest may be left
// zero (see Check for the defaults).
type Common struct {
	Service   *config.Service
	Region    string // the region pulled, and the tag's {region_id}
	InputName string
	// AccountID returns the session's account, for {account_id} and the
	// limiters shared per account and region; called once per Run until it
	// succeeds.
	AccountID   func(ctx context.Context) (string, error)
	Environment string
	Store       state.Store
	// Leases runs each stream while this collector holds its lease, named
	// by the stream's checkpoint key; nil is lease.Solo (always held). Each
	// source's Options says what its streams are.
	Leases lease.Holder

	Log      *slog.Logger     // the unit's logger; nil discards
	Stats    *stats.Unit      // may be nil
	Registry *stats.Registry  // may be nil: API and stream counters then go nowhere
	Now      func() time.Time // [time.Now]
}

// Check reports every required field left nil, each error prefixed with
// the source's name ("cwlogs: nil Store"), joined with extra (the source's
// own problems, which come after Service's) in one error. When there is
// none it fills the defaults: Leases lease.Solo, Log a discarding logger,
// Now time.Now.
func (c *Common) Check(name string, extra ...error) error {
	var errs []error
	if c.Service == nil {
		errs = append(errs, fmt.Errorf("%s: nil Service", name))
	}
	errs = append(errs, extra...)
	if c.AccountID == nil {
		errs = append(errs, fmt.Errorf("%s: nil AccountID", name))
	}
	if c.Store == nil {
		errs = append(errs, fmt.Errorf("%s: nil Store", name))
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	if c.Leases == nil {
		c.Leases = lease.Solo{}
	}
	if c.Log == nil {
		c.Log = slog.New(slog.DiscardHandler)
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return nil
}

// Origin is the service's start_time parsed with layout, or the zero time
// when start_time is unset (the source's own default then applies). Call
// it after Check.
func (c *Common) Origin(layout string) (time.Time, error) {
	st := c.Service.StartTime
	if st == "" {
		return time.Time{}, nil
	}
	t, err := time.Parse(layout, st)
	if err != nil {
		return time.Time{}, fmt.Errorf("start_time %q: %w", st, err)
	}
	return t, nil
}

// CheckTag reports whether the service's tag template compiles, so that a
// bad one is refused at start rather than on the first event. Call it
// after Check.
func (c *Common) CheckTag() error {
	if _, err := tag.Compile(c.Service.TagTemplate); err != nil {
		return fmt.Errorf("tag template: %w", err)
	}
	return nil
}
