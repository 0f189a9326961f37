package app

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"time"

	"github.com/devo-aws-collector/devo-aws-collector/internal/config"
	"github.com/devo-aws-collector/devo-aws-collector/internal/pipeline"
	"github.com/devo-aws-collector/devo-aws-collector/internal/sink/console"
	"github.com/devo-aws-collector/devo-aws-collector/internal/sink/devo"
	"github.com/devo-aws-collector/devo-aws-collector/internal/spool"
	"github.com/devo-aws-collector/devo-aws-collector/internal/stats"
	"github.com/devo-aws-collector/devo-aws-collector/internal/wire"
)

// output is one built output: its pipeline side and what the app needs
// around it (start-up check, statistics, files to close).
type output struct {
	*pipeline.Output
	sender  *devo.Sender // nil for console outputs
	spool   *spool.Spool
	journal *spool.Spool // write_ahead: the write-ahead journal
}

// buildOutputs makes one sink and one bounded queue per configured output.
func buildOutputs(cfg *config.Config, reg *stats.Registry, log *slog.Logger, stdout io.Writer) ([]*output, error) {
	var outs []*output
	fail := func(err error) ([]*output, error) {
		closeOutputs(outs)
		return nil, err
	}
	for _, o := range cfg.Outputs {
		olog := log.With("output", o.Name)
		q := pipeline.NewQueue(cfg.Globals.QueueMaxMessages, cfg.Globals.QueueMaxBytes)
		out := &output{Output: &pipeline.Output{Name: o.Name, Queue: q}}
		switch o.Type {
		case config.OutputConsole, config.OutputStdout:
			s, err := console.New(stdout, console.Options{Format: o.Format, Hostname: o.Hostname, Log: olog})
			if err != nil {
				return fail(fmt.Errorf("output %s: %w", o.Name, err))
			}
			out.Sink = s
		case config.OutputDevo, config.OutputRelay, config.OutputSyslog, config.OutputSidecar, config.OutputInHouseRelay:
			sp, err := spool.Open(filepath.Join(cfg.Globals.PersistenceDir, "spool", o.Name), o.SpoolMaxBytes)
			if err != nil {
				return fail(fmt.Errorf("output %s: %w", o.Name, err))
			}
			out.spool = sp
			// The sender scopes its logger with the output's name itself
			// (and its address): olog would print output= twice.
			opts := senderOptions(cfg, o, q, sp, log)
			if o.WriteAhead {
				j, err := spool.Open(filepath.Join(cfg.Globals.PersistenceDir, "journal", o.Name), o.SpoolMaxBytes)
				if err != nil {
					sp.Close()
					return fail(fmt.Errorf("output %s: write-ahead journal: %w", o.Name, err))
				}
				out.journal, opts.Journal = j, j
			}
			s, err := devo.New(opts)
			if err != nil {
				closeOutputs([]*output{out})
				return fail(fmt.Errorf("output %s: %w", o.Name, err))
			}
			out.Sink, out.sender = s, s
		default:
			return fail(fmt.Errorf("output %s: type %q is not implemented", o.Name, o.Type))
		}
		m := reg.Output(o.Name, q.Depth)
		q.CountInto(&m.Delivered, &m.Failed)
		m.CapacityMessages.Store(int64(cfg.Globals.QueueMaxMessages))
		m.CapacityBytes.Store(cfg.Globals.QueueMaxBytes)
		if sp := out.spool; sp != nil {
			m.SetSpool(func() (int64, int64) { return sp.Len(), sp.Bytes() })
		}
		outs = append(outs, out)
	}
	return outs, nil
}

func closeOutputs(outs []*output) {
	for _, o := range outs {
		if o.spool != nil {
			o.spool.Close()
		}
		if o.journal != nil {
			o.journal.Close()
		}
	}
}

// senderOptions maps an output's configuration onto the network sender.
func senderOptions(cfg *config.Config, o *config.Output, q *pipeline.Queue, sp devo.Spool, log *slog.Logger) devo.Options {
	opts := devo.DefaultOptions()
	opts.Name = o.Name
	opts.Address, opts.Port = o.Address, o.Port
	opts.TLS = o.Transport != "TCP"
	opts.Chain, opts.Cert, opts.Key = o.Chain, o.Cert, o.Key
	opts.CheckHostname = o.CheckHostname
	opts.Hostname = o.Hostname
	opts.Format = wire.DevoLine
	if o.Type != config.OutputDevo && o.Type != config.OutputRelay {
		opts.Format = wire.RFC3164
	}
	setInt(&opts.Connections, o.ConcurrentConnections)
	setInt(&opts.ConnectRetries, o.ConnectingRetries)
	setInt(&opts.SendRetries, o.SendingRetries)
	setDur(&opts.ConnectBackoffInitial, o.ConnectingInitialWait)
	setDur(&opts.ConnectBackoffMax, o.ConnectingMaxWait)
	setDur(&opts.SendingTimeout, o.SendingTimeout)
	setDur(&opts.SendBackoffInitial, o.SendingInitialWait)
	setDur(&opts.SendBackoffMax, o.SendingMaxWait)
	setDur(&opts.ProbeTimeout, o.HandshakeProbeTimeout)
	setDur(&opts.AckSettle, o.AckSettle)
	setDur(&opts.InactivityTimeout, o.InactivityTimeout)
	setDur(&opts.MaxConnectionAge, o.MaxConnectionAge)
	g := cfg.Globals
	opts.GzipThreshold = g.GzipThreshold
	opts.GzipLevel = g.CompressionLevel
	setInt(&opts.GzipBuffer, g.CompressionBuffer)
	opts.QueueMaxMessages, opts.QueueMaxBytes = g.QueueMaxMessages, g.QueueMaxBytes
	opts.Spool = sp
	opts.Logger = log
	return opts
}

func setInt(dst *int, v int) {
	if v > 0 {
		*dst = v
	}
}

func setDur(dst *time.Duration, v time.Duration) {
	if v > 0 {
		*dst = v
	}
}

// checkOutputs opens one connection per network output before any source
// starts. A rejected client certificate is fatal; an unreachable receiver is
// not (events wait, then spool, until it comes back).
func checkOutputs(ctx context.Context, outs []*output, log *slog.Logger) error {
	for _, o := range outs {
		if o.sender == nil {
			continue
		}
		cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		err := o.sender.Check(cctx)
		cancel()
		var auth *devo.AuthError
		switch {
		case errors.As(err, &auth):
			return fmt.Errorf("output %s: %w", o.Name, err)
		case err != nil:
			log.Warn("output not reachable at start, events will wait for it", "output", o.Name, "err", err)
		default:
			log.Info("output connected", "output", o.Name)
		}
	}
	return nil
}

// logSenderStats runs the seed's sender statistics lines for every network
// output until ctx ends.
func logSenderStats(ctx context.Context, outs []*output, period time.Duration, log *slog.Logger) {
	for _, o := range outs {
		if o.sender == nil {
			continue
		}
		s := o.sender
		go stats.LogSenderStats(ctx, log.With("output", o.Name), period, stats.Standard, func() stats.SenderSnapshot {
			st := s.Stats()
			return stats.SenderSnapshot{Senders: st.Available, QueueSize: st.QueueSize, Sent: st.Total + st.Spooled}
		})
	}
}
