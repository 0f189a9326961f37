package config

import (
	"slices"
	"testing"
	"time"
)

func TestCoordinationAbsentChangesNothing(t *testing.T) {
	c, errs := load(t, "config.yaml", withServices("{aws-guardduty: {}}"))
	if errs != nil {
		t.Fatal(errs)
	}
	if c.Globals.Coordination != nil {
		t.Fatalf("coordination = %+v without globals.coordination", c.Globals.Coordination)
	}
}

func TestCoordinationAsInTheIssue(t *testing.T) {
	body := `globals:
  coordination:
    type: dynamodb
    config:
      table: devo-aws-collector
      region: us-east-1
      endpoint_url: http://127.0.0.1:8000
      lease_duration_in_sec: 12
` + withServices("{aws-guardduty: {}}")
	c, errs := load(t, "config.yaml", body)
	if errs != nil {
		t.Fatal(errs)
	}
	want := Coordination{Type: "dynamodb", Table: "devo-aws-collector", Region: "us-east-1",
		EndpointURL: "http://127.0.0.1:8000", LeaseDuration: 12 * time.Second}
	if got := c.Globals.Coordination; got == nil || *got != want {
		t.Fatalf("coordination = %+v, want %+v", got, want)
	}

	// The optional keys have defaults.
	c, errs = load(t, "config.yaml", "globals: {coordination: {type: dynamodb, config: {table: t-1, region: eu-west-1}}}\n"+withServices("{aws-guardduty: {}}"))
	if errs != nil {
		t.Fatal(errs)
	}
	if got := c.Globals.Coordination; got.LeaseDuration != 20*time.Second || got.EndpointURL != "" {
		t.Fatalf("defaults: %+v", got)
	}
}

// Every bad value is named by its key path.
func TestCoordinationBadValues(t *testing.T) {
	g := func(s string) string {
		return "globals: {coordination: " + s + "}\n" + withServices("{aws-guardduty: {}}")
	}
	tests := []struct {
		config string
		rows   []string
		paths  []string
	}{
		{g("dynamodb"), []string{"P20"}, []string{"globals.coordination"}},
		{g("{config: {table: abc, region: us-east-1}}"), []string{"P26"}, []string{"globals.coordination.type"}},
		{g("{type: 5, config: {table: abc, region: us-east-1}}"), []string{"P20"}, []string{"globals.coordination.type"}},
		{g("{type: dynamodb}"), []string{"P26"}, []string{"globals.coordination.config"}},
		{g("{type: dynamodb, config: {table: abc}}"), []string{"P26"}, []string{"globals.coordination.config.region"}},
		{g("{type: dynamodb, config: {table: abc, region: mars-1}}"), []string{"P20"}, []string{"globals.coordination.config.region"}},
		{g("{type: dynamodb, config: {table: 'a b', region: us-east-1}}"), []string{"P20"}, []string{"globals.coordination.config.table"}},
		{g("{type: dynamodb, config: {table: abc, region: us-east-1, endpoint_url: 'ftp://x'}}"), []string{"P20"}, []string{"globals.coordination.config.endpoint_url"}},
		{g("{type: dynamodb, config: {table: abc, region: us-east-1, lease_duration_in_sec: 1}}"), []string{"P20"}, []string{"globals.coordination.config.lease_duration_in_sec"}},
		{g("{type: dynamodb, config: {table: abc, region: us-east-1, lease_duration_in_sec: soon}}"), []string{"P20"}, []string{"globals.coordination.config.lease_duration_in_sec"}},
		{g("{type: dynamodb, config: {tabel: abc, region: us-east-1}}"), []string{"P26", "P21"}, []string{"globals.coordination.config.table", "globals.coordination.config.tabel"}},
	}
	for _, tc := range tests {
		_, errs := load(t, "config.yaml", tc.config)
		var rows, paths []string
		for _, e := range errs {
			rows = append(rows, e.Row)
			paths = append(paths, e.Path)
		}
		slices.Sort(rows)
		slices.Sort(paths)
		wantRows := slices.Sorted(slices.Values(tc.rows))
		wantPaths := slices.Sorted(slices.Values(tc.paths))
		if !slices.Equal(rows, wantRows) || !slices.Equal(paths, wantPaths) {
			t.Errorf("%s:\n got rows %v at %v\nwant rows %v at %v\n%v", tc.config, rows, paths, wantRows, wantPaths, errs)
		}
	}
}
