// Package svcconfig loads one service the way the collector does: from a
// real configuration file through config.Load, so that tests get the
// service's defaults, templates and derivations exactly as the binary does.
package svcconfig

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/devo-aws-collector/devo-aws-collector/internal/config"
)

// Load writes a configuration holding one aws input with the service name
// (body is its YAML mapping, indented by 8 spaces) and, when environment is
// not empty, that inputs.aws.environment; it loads the file and returns the
// service. It fails t when the configuration does not load.
//
// The input sets requests_per_second to 5, its default, so that a service
// of a kind that makes the key mandatory (CloudWatch Logs) loads too while
// every other service loads as it would without the key.
func Load(t testing.TB, name, body, environment string) *config.Service {
	t.Helper()
	env := ""
	if environment != "" {
		env = "    environment: " + environment + "\n"
	}
	src := "globals:\n  persistence: {type: filesystem, config: {directory_name: state}}\n" +
		"outputs:\n  con: {type: console, config: {destination: standard, format: json}}\n" +
		"inputs:\n  aws:\n    id: 1\n    enabled: true\n    regions: [us-east-1]\n    requests_per_second: 5\n" + env +
		"    credentials: {access_key: AKIAEXAMPLEKEY000001, access_secret: test-secret}\n" +
		"    services:\n      " + name + ":\n" + body
	p := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(p, []byte(src), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := config.Load(p)
	if err != nil {
		t.Fatalf("load config:\n%s\n%v", src, err)
	}
	for _, in := range c.Inputs {
		for _, s := range in.Services {
			if s.Name == name {
				return s
			}
		}
	}
	t.Fatalf("service %s not in the config", name)
	return nil
}
