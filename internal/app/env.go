package app

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/devo-aws-collector/devo-aws-collector/internal/awsapi"
	"github.com/devo-aws-collector/devo-aws-collector/internal/config"
	"github.com/devo-aws-collector/devo-aws-collector/internal/coord"
	"github.com/devo-aws-collector/devo-aws-collector/internal/ctxtime"
	"github.com/devo-aws-collector/devo-aws-collector/internal/lease"
	"github.com/devo-aws-collector/devo-aws-collector/internal/state"
	"github.com/devo-aws-collector/devo-aws-collector/internal/stats"
)

// Env is what the units of one input share: one AWS session (one identity,
// hence one account) and the process's state store.
type Env struct {
	Session *awsapi.Session
	State   state.Store
	// Leases decides which streams of the API sources this collector runs:
	// lease.Solo (all of them) unless globals.coordination shares them out.
	Leases lease.Holder
}

// sessionOptions maps an input's configuration to the AWS session options.
func sessionOptions(in *config.Input, log *slog.Logger) awsapi.Options {
	region := "us-east-1"
	if len(in.Regions) > 0 {
		region = in.Regions[0]
	}
	return awsapi.Options{
		InputID:           in.ID,
		Mode:              credMode(in.Credentials.Mode),
		AccessKey:         in.Credentials.AccessKey,
		AccessSecret:      in.Credentials.AccessSecret,
		BaseAssumeRole:    in.Credentials.BaseAssumeRole,
		TargetAssumeRole:  in.Credentials.TargetAssumeRole,
		ExternalID:        in.Credentials.ExternalID,
		Region:            region,
		EndpointURL:       in.EndpointURL,
		Endpoints:         in.Endpoints,
		S3ForcePathStyle:  in.S3ForcePathStyle,
		RequestsPerSecond: in.RequestsPerSecond,
		Logger:            log,
	}
}

func credMode(m config.CredMode) awsapi.Mode {
	switch m {
	case config.CredKeys:
		return awsapi.Keys
	case config.CredKeysRole:
		return awsapi.KeysRole
	case config.CredCrossAccount:
		return awsapi.CrossAccount
	}
	return awsapi.DefaultChain
}

// checkpoints is where the API sources keep their checkpoints and which of
// their streams this collector runs: the local store and lease.Solo for a
// collector alone, the coordinator's store and the coordinator itself with
// globals.coordination.
type checkpoints struct {
	Store  state.Store
	Leases lease.Holder
}

func newEnv(ctx context.Context, in *config.Input, ck checkpoints, reg *stats.Registry, log *slog.Logger) (*Env, error) {
	opts := sessionOptions(in, log.With("input", in.Name))
	opts.OnAPICall = apiCallReporter(reg)
	sess, err := awsapi.NewSession(ctx, opts)
	if err != nil {
		return nil, fmt.Errorf("input %s: AWS session: %w", in.Name, err)
	}
	return &Env{Session: sess, State: ck.Store, Leases: ck.Leases}, nil
}

// coordinationSession is the AWS session of the coordination table: the
// first enabled input's credentials, or the default chain without one.
func coordinationSession(cfg *config.Config, log *slog.Logger) awsapi.Options {
	for _, in := range cfg.Inputs {
		if in.Enabled {
			return sessionOptions(in, log.With("input", in.Name))
		}
	}
	return awsapi.Options{Mode: awsapi.DefaultChain, Region: cfg.Globals.Coordination.Region, Logger: log}
}

// openCoordination opens the lease table of globals.coordination with the
// first enabled input's credentials (the default chain when there is
// none) and registers its metrics. The caller must Close it.
func openCoordination(ctx context.Context, cfg *config.Config, reg *stats.Registry, log *slog.Logger) (*coord.Coordinator, error) {
	cc := cfg.Globals.Coordination
	clog := log.With("component", "coordination")
	opts := coordinationSession(cfg, clog)
	opts.OnAPICall = apiCallReporter(reg)
	unavailable := func(err error) error {
		return config.RuntimeError("P27", "table", cc.Table, "region", cc.Region, "reason", err.Error())
	}
	sess, err := awsapi.NewSession(ctx, opts)
	if err != nil {
		return nil, unavailable(fmt.Errorf("AWS session: %w", err))
	}
	c, err := coord.Open(ctx, coord.Config{
		Table:         cc.Table,
		Region:        cc.Region,
		Endpoint:      cc.EndpointURL,
		LeaseDuration: cc.LeaseDuration,
		AWS:           sess.Config(cc.Region),
		Log:           clog,
	})
	if err != nil {
		return nil, unavailable(err)
	}
	reg.RegisterLeases(func() stats.LeaseInfo {
		held := c.Held()
		names := make([]string, len(held))
		for i, k := range held {
			names[i] = k.String()
		}
		return stats.LeaseInfo{Owner: c.Owner(), Held: names, Takeovers: c.Takeovers(), Lost: c.Lost()}
	})
	return c, nil
}

// credentialsPoll is how often watchCredentials reads a session's health.
const credentialsPoll = time.Second

// credentialHealth is the part of *awsapi.Session watchCredentials reads.
type credentialHealth interface {
	Health() awsapi.Health
	HealthError() error
}

// watchCredentials publishes the session's credential health as the
// /healthz component name ("credentials/<input>") until ctx ends: running
// while credentials are obtained, degraded while a retrieval or renewal
// fails, with the reason (it names role ARNs, never a secret). It reads
// every period; the session's own retries and backoff are unchanged.
func watchCredentials(ctx context.Context, name string, sess credentialHealth, h *stats.Health, period time.Duration) {
	publish := func() {
		if sess.Health() == awsapi.Degraded {
			reason := "credentials failing"
			if err := sess.HealthError(); err != nil {
				reason = err.Error()
			}
			h.Set(name, stats.Degraded, reason)
			return
		}
		h.Set(name, stats.Running, "")
	}
	ctxtime.NowAndEvery(ctx, period, publish)
}

// watchCoordination publishes the coordination table's health as the
// /healthz component "coordination" until ctx ends: running while the
// lease table answers, degraded with the DynamoDB error while it does not
// (the API streams stop if that lasts most of a lease duration).
func watchCoordination(ctx context.Context, c interface{ Health() error }, h *stats.Health, period time.Duration) {
	publish := func() {
		if err := c.Health(); err != nil {
			h.Set("coordination", stats.Degraded, "lease table: "+err.Error())
			return
		}
		h.Set("coordination", stats.Running, "")
	}
	ctxtime.NowAndEvery(ctx, period, publish)
}
