package app

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"

	"github.com/devo-aws-collector/devo-aws-collector/internal/awsapi"
	"github.com/devo-aws-collector/devo-aws-collector/internal/config"
	"github.com/devo-aws-collector/devo-aws-collector/internal/sqsengine"
)

// Check is `validate --check`: it reaches AWS with every enabled input's
// credentials (printing the mode and the account id, never a secret) and
// resolves every SQS queue in every region. It prints one line per check
// and returns an error naming every one that failed, with AWS's reason.
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
				q, err := sqsengine.Resolve(ctx, sess.SQS(region), svc.Name, region, svc.QueueName)
				if err != nil {
					fail(err)
					continue
				}
				fmt.Fprintf(w, "ok   service %s in %s: queue %s\n", svc.Name, region, q.URL)
			}
		}
	}
	if len(failed) > 0 {
		return fmt.Errorf("%d check(s) failed: %w", len(failed), errors.Join(failed...))
	}
	return nil
}
