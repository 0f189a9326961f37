package s3sqs

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/devo-aws-collector/devo-aws-collector/internal/config"
)

// TestMain poisons every payload block as it is freed, so that any test
// whose events are read after their fate (a block freed too early) sees
// garbage instead of a plausible payload.
func TestMain(m *testing.M) {
	poisonFreed = true
	os.Exit(m.Run())
}

// loadService loads a real config holding one service (YAML mapping body
// for inputs.aws.services.<name>) and returns it with defaults applied.
func loadService(t testing.TB, name, body, environment string) *config.Service {
	t.Helper()
	env := ""
	if environment != "" {
		env = "    environment: " + environment + "\n"
	}
	src := "outputs:\n  con: {type: console, config: {destination: standard, format: json}}\n" +
		"inputs:\n  aws:\n    id: 1\n    credentials: {}\n    regions: [eu-west-1]\n" + env +
		"    services:\n      " + name + ":\n" + body
	dir := t.TempDir()
	p := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(p, []byte(src), 0o644); err != nil {
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
