package e2e

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/devo-aws-collector/devo-aws-collector/internal/awstest"
)

type healthz struct {
	Status     string `json:"status"`
	Components map[string]struct {
		State  string `json:"state"`
		Reason string `json:"reason"`
	} `json:"components"`
}

func getHealthz(t *testing.T, addr string) (healthz, int, bool) {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/healthz")
	if err != nil {
		return healthz{}, 0, false // not listening yet
	}
	defer resp.Body.Close()
	var h healthz
	if err := json.NewDecoder(resp.Body).Decode(&h); err != nil {
		t.Fatalf("/healthz: %v", err)
	}
	return h, resp.StatusCode, true
}

// TestHealthzCredentialsThroughBinary: /healthz of the running binary shows
// the credentials/aws component: running with a good assumed role, degraded
// (naming the role and the AWS error) while STS refuses to renew it,
// running again once STS grants it. The metrics listener is announced once.
// (A role refused at start stops the collector at once, exit 1.)
func TestHealthzCredentialsThroughBinary(t *testing.T) {
	e := newEnv(t)
	e.queue("health-q", nil)
	sts := awstest.NewSTS(t)
	const key, role = "AKIAHEALTHUSER00001", "arn:aws:iam::111122223333:role/devo-collector-reader"
	sts.AddUser(key, "health-secret", "111122223333")
	sts.AddRole(awstest.STSRole{ARN: role})
	sts.SetLifetime(15 * time.Second) // renewals every few seconds

	addr := freeAddr(t)
	path := e.writeConfig("  metrics_listen: "+addr, "outputs: {console: {type: console}}", "      cisco-umbrella: {sqs_queue_name: health-q}\n")
	// The keys+role mode, with STS at the fake.
	body := readFile(t, path)
	body = strings.Replace(body, "credentials: {access_key: E2EACCESSKEY, access_secret: e2e-secret}",
		fmt.Sprintf("credentials: {access_key: %s, access_secret: health-secret, base_assume_role: %q}\n    endpoints: {sts: %q}", key, role, sts.URL), 1)
	writeFile(t, path, body)

	p := e.start(path)
	eventually(t, 30*time.Second, "credentials/aws running in /healthz", func() bool {
		h, _, ok := getHealthz(t, addr)
		return ok && h.Components["credentials/aws"].State == "running"
	})
	sts.FailAssumeRole(role, "AccessDenied")
	var last healthz
	eventually(t, 40*time.Second, "credentials/aws degraded in /healthz", func() bool {
		h, code, ok := getHealthz(t, addr)
		last = h
		c := h.Components["credentials/aws"]
		return ok && code == http.StatusOK && c.State == "degraded" && strings.Contains(c.Reason, role) && strings.Contains(c.Reason, "AccessDenied")
	})
	if last.Status != "degraded" {
		t.Errorf("overall status %q, want degraded", last.Status)
	}
	if strings.Contains(last.Components["credentials/aws"].Reason, "health-secret") {
		t.Errorf("the reason shows the secret: %q", last.Components["credentials/aws"].Reason)
	}

	sts.FailAssumeRole(role, "")
	eventually(t, 60*time.Second, "credentials/aws running again in /healthz", func() bool {
		h, _, ok := getHealthz(t, addr)
		return ok && h.Components["credentials/aws"].State == "running"
	})
	terminate(t, p)

	log := p.log()
	// The console output echoes internal messages too; count the log lines.
	if n := strings.Count(log, `msg="metrics listener started"`); n != 1 {
		t.Errorf("%d \"metrics listener started\" lines, want 1", n)
	}
	if strings.Contains(log, "metrics listening") {
		t.Errorf("duplicate metrics listener line:\n%s", log)
	}
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func writeFile(t *testing.T, path, body string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
}
