package app

import (
	"context"
	"fmt"
	"log/slog"
	"strings"

	"github.com/devo-aws-collector/devo-aws-collector/internal/config"
	"github.com/devo-aws-collector/devo-aws-collector/internal/pipeline"
	"github.com/devo-aws-collector/devo-aws-collector/internal/stats"
)

// Deps is what a service builder gets to make one unit's source.
type Deps struct {
	Input   *config.Input
	Service *config.Service
	Region  string
	Log     *slog.Logger // scoped with input, service, region
	Stats   *stats.Unit
	Env     *Env // shared per input: AWS session, account id, state store
	// Registry holds the counters beyond the unit's own (API calls per
	// operation, pull-engine streams).
	Registry *stats.Registry
}

// Builder makes the source of one (input, service, region) unit.
type Builder func(ctx context.Context, d Deps) (pipeline.Source, error)

// unitName is how logs and /healthz name a unit.
func unitName(in *config.Input, svc *config.Service, region string) string {
	return strings.Join([]string{in.Name, svc.Name, region}, "/")
}

// unitCounters returns the counters of the unit named by unitName, nil for
// a name not of that form.
func unitCounters(reg *stats.Registry, name string) *stats.Unit {
	first, last := strings.Index(name, "/"), strings.LastIndex(name, "/")
	if first < 0 || first == last {
		return nil
	}
	return reg.Unit(name[:first], name[first+1:last], name[last+1:])
}

func buildUnits(ctx context.Context, cfg *config.Config, ck checkpoints, reg *stats.Registry, log *slog.Logger) ([]pipeline.Unit, error) {
	var units []pipeline.Unit
	for _, in := range cfg.Inputs {
		if !in.Enabled {
			log.Info("input disabled", "input", in.Name)
			continue
		}
		env, err := newEnv(ctx, in, ck, reg, log)
		if err != nil {
			return nil, err
		}
		go watchCredentials(ctx, "credentials/"+in.Name, env.Session, reg.Health(), credentialsPoll)
		for _, svc := range in.Services {
			build, ok := builders[svc.Kind]
			if !ok {
				return nil, fmt.Errorf("service %q: this build of the collector does not implement %s services yet", svc.Name, svc.Kind)
			}
			for _, region := range svc.Regions {
				ulog := log.With("input", in.Name, "service", svc.Name, "region", region)
				counters := reg.Unit(in.Name, svc.Name, region)
				if svc.Kind.SQS() {
					go watchQueue(ctx, serviceSQS(env.Session, svc, region), svc.Name, region, svc.QueueName, counters, ulog, queuePoll)
				}
				src, err := build(ctx, Deps{
					Input: in, Service: svc, Region: region,
					Log: ulog, Stats: counters, Env: env, Registry: reg,
				})
				if err != nil {
					return nil, fmt.Errorf("service %q in %s: %w", svc.Name, region, err)
				}
				units = append(units, pipeline.Unit{Name: unitName(in, svc, region), Source: src,
					Counters: pipeline.Counters{Delivered: &counters.Delivered, Failed: &counters.Failed}})
			}
		}
	}
	return units, nil
}
