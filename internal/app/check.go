package app

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/devo-aws-collector/devo-aws-collector/internal/awsapi"
	"github.com/devo-aws-collector/devo-aws-collector/internal/config"
	"github.com/devo-aws-collector/devo-aws-collector/internal/coord"
	"github.com/devo-aws-collector/devo-aws-collector/internal/pipeline"
	"github.com/devo-aws-collector/devo-aws-collector/internal/sink/devo"
	"github.com/devo-aws-collector/devo-aws-collector/internal/sqsengine"
)

// Check is `validate --check`: it reaches AWS with every enabled input's
// credentials (printing the mode and the account id, never a secret),
// resolves every SQS queue in every region, and opens one connection to
// every network output through its start-up probe (so a rejected client
// certificate shows). It prints one line per check and returns an error
// naming every one that failed, with the reason.
func Check(ctx context.Context, cfg *config.Config, w io.Writer) error {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	var failed []error
	fail := func(err error) {
		failed = append(failed, err)
		fmt.Fprintf(w, "FAIL %v\n", err)
	}
	for _, in := range cfg.Inputs {
		if !in.Enabled {
			continue
		}
		opts := sessionOptions(in, log)
		opts.RetryMaxAttempts = 2
		sess, err := awsapi.NewSession(ctx, opts)
		if err != nil {
			fail(fmt.Errorf("input %s: credentials: %w", in.Name, err))
			continue
		}
		desc, err := sess.Describe(ctx)
		if err != nil {
			fail(fmt.Errorf("input %s: credentials (%s): %w", in.Name, sess.Mode(), err))
			continue
		}
		fmt.Fprintf(w, "ok   input %s: %s\n", in.Name, desc)
		for _, svc := range in.Services {
			if !svc.Kind.SQS() {
				continue
			}
			for _, region := range svc.Regions {
				q, err := sqsengine.Resolve(ctx, serviceSQS(sess, svc, region), svc.Name, region, svc.QueueName)
				if err != nil {
					fail(err)
					continue
				}
				fmt.Fprintf(w, "ok   service %s in %s: queue %s\n", svc.Name, region, q.URL)
			}
		}
	}
	if cc := cfg.Globals.Coordination; cc != nil {
		checkCoordination(ctx, cfg, cc, w, fail)
	}
	for _, o := range cfg.Outputs {
		if o.Type == config.OutputConsole || o.Type == config.OutputStdout {
			continue
		}
		s, err := devo.New(senderOptions(cfg, o, pipeline.NewQueue(1, 1), nil, log))
		if err != nil {
			fail(err) // devo.New names the output itself
			continue
		}
		cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		err = s.Check(cctx)
		cancel()
		if err != nil {
			fail(fmt.Errorf("output %s: %w", o.Name, err))
			continue
		}
		fmt.Fprintf(w, "ok   output %s: connected to %s:%d\n", o.Name, o.Address, o.Port)
	}
	if len(failed) > 0 {
		return &CheckFailed{Failed: failed}
	}
	return nil
}

// CheckFailed is Check's error: every check that failed, each already
// printed on its own FAIL line.
type CheckFailed struct{ Failed []error }

// Error counts the failures; the FAIL lines carry the reasons.
func (c *CheckFailed) Error() string { return fmt.Sprintf("%d check(s) failed", len(c.Failed)) }

// Unwrap returns every failure, for errors.Is and errors.As.
func (c *CheckFailed) Unwrap() []error { return c.Failed }

// checkCoordination reads the coordination table (never creating it) with
// the credentials the collector would use.
func checkCoordination(ctx context.Context, cfg *config.Config, cc *config.Coordination, w io.Writer, fail func(error)) {
	log := slog.New(slog.DiscardHandler)
	opts := coordinationSession(cfg, log)
	opts.RetryMaxAttempts = 2
	sess, err := awsapi.NewSession(ctx, opts)
	if err != nil {
		fail(fmt.Errorf("coordination: credentials: %w", err))
		return
	}
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	st, err := coord.Describe(cctx, coord.Config{Table: cc.Table, Region: cc.Region, Endpoint: cc.EndpointURL, AWS: sess.Config(cc.Region)})
	switch {
	case err != nil:
		fail(fmt.Errorf("coordination: table %s in %s: %w", cc.Table, cc.Region, err))
	case !st.Exists:
		fmt.Fprintf(w, "ok   coordination: table %s in %s does not exist yet; the first collector creates it\n", cc.Table, cc.Region)
	default:
		fmt.Fprintf(w, "ok   coordination: table %s in %s is %s, %d lease(s), %d held\n", cc.Table, cc.Region, st.Status, st.Leases, st.Owned)
	}
}
