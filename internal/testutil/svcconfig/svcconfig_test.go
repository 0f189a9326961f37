package svcconfig

import (
	"testing"

	"github.com/devo-aws-collector/devo-aws-collector/internal/config"
)

// A CloudWatch Logs service, whose kind makes requests_per_second
// mandatory, loads with its settings.
func TestLoadsACloudWatchLogsService(t *testing.T) {
	svc := Load(t, "cwl_1", "        log_group: /g\n", "")
	if svc.Name != "cwl_1" || svc.Kind != config.Logs || svc.LogGroup != "/g" {
		t.Errorf("service %q kind %q log group %q, want cwl_1, %q, /g", svc.Name, svc.Kind, svc.LogGroup, config.Logs)
	}
}
