package app

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/devo-aws-collector/devo-aws-collector/internal/awsapi"
	"github.com/devo-aws-collector/devo-aws-collector/internal/config"
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

func newEnv(ctx context.Context, in *config.Input, store state.Store, reg *stats.Registry, log *slog.Logger) (*Env, error) {
	opts := sessionOptions(in, log.With("input", in.Name))
	opts.OnAPICall = apiCallReporter(reg)
	sess, err := awsapi.NewSession(ctx, opts)
	if err != nil {
		return nil, fmt.Errorf("input %s: AWS session: %w", in.Name, err)
	}
	return &Env{Session: sess, State: store, Leases: lease.Solo{}}, nil
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
	publish()
	t := time.NewTicker(period)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			publish()
		}
	}
}
