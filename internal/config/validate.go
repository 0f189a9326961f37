package config

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strconv"
	"strings"

	"github.com/devo-aws-collector/devo-aws-collector/internal/tag"
)

// worstAccount and worstRegion stand in for the runtime values when the tag
// length is checked: a 12-digit account and the longest region code in use.
const worstAccount = "000000000000"

// Validate returns every catalogue problem of c: those found while the file
// was decoded (wrong types, missing keys, bad values), then the checks that
// work on the decoded values: the built-in service definitions, certificate
// files (P15) and tag lengths (P10). It reads the local file system but
// never touches the network. Load calls it.
func (c *Config) Validate() Errors {
	errs := append(Errors(nil), c.problems...)
	errs = append(errs, CheckDefinitions()...)
	for _, o := range c.Outputs {
		for _, f := range [][2]string{{"chain", o.Chain}, {"cert", o.Cert}, {"key", o.Key}} {
			if f[1] == "" {
				continue
			}
			if _, err := os.Stat(f[1]); err != nil && errors.Is(err, fs.ErrNotExist) {
				errs = append(errs, newError("P15", "outputs."+o.Name+".config."+f[0], "path", f[1]))
			}
		}
	}
	for _, in := range c.Inputs {
		for _, s := range in.Services {
			if s.bad["tag"] {
				continue
			}
			if e := checkTagLength(in, s); e != nil {
				errs = append(errs, e)
			}
		}
	}
	sortErrors(errs)
	return errs
}

// checkTagLength expands every template of s with the longest values known
// before any event is read and reports P10 past tag.MaxLength.
func checkTagLength(in *Input, s *Service) *Error {
	templates := []string{s.TagTemplate}
	for _, t := range s.TypeTagTemplates {
		templates = append(templates, t)
	}
	eventTypes := []string{s.DefaultEventType}
	for _, p := range s.EventTypePatterns {
		eventTypes = append(eventTypes, p.EventType)
	}
	longest := 0
	for _, t := range templates {
		tp, err := tag.Compile(t)
		if err != nil {
			continue // P18 is reported by the decoder
		}
		for _, r := range append([]string{""}, s.Regions...) {
			for _, et := range eventTypes {
				n := len(tp.Expand(tag.Values{EventType: et, AccountID: worstAccount, RegionID: r, Environment: in.Environment, ServiceName: s.Name}))
				longest = max(longest, n)
			}
		}
	}
	if longest <= tag.MaxLength {
		return nil
	}
	p := inputPath + ".services." + s.Name
	return newError("P10", p+".tag", "service_config_key_path", p, "length", strconv.Itoa(longest))
}

// Summary writes what would run: each input and service with its types,
// queue or log group, tag template and regions, then the outputs.
func (c *Config) Summary(w io.Writer) {
	fmt.Fprintf(w, "config %s\n", c.Path)
	fmt.Fprintf(w, "collector %s (id %s), state in %s\n", c.Globals.Name, c.Globals.ID, c.Globals.PersistenceDir)
	for _, in := range c.Inputs {
		state := "enabled"
		if !in.Enabled {
			state = "disabled"
		}
		fmt.Fprintf(w, "input %s#%s (%s): credentials %s, regions %s", in.Name, in.ID, state, in.Credentials.Mode, strings.Join(in.Regions, ", "))
		if in.Environment != "" {
			fmt.Fprintf(w, ", environment %s", in.Environment)
		}
		fmt.Fprintf(w, ", %g requests/s\n", in.RequestsPerSecond)
		for _, s := range in.Services {
			origin := "predefined"
			if s.Custom {
				origin = "custom"
			}
			fmt.Fprintf(w, "  service %s (%s, %s)", s.Name, origin, s.Kind)
			if len(s.Types) > 0 {
				fmt.Fprintf(w, " types [%s]", strings.Join(s.Types, ", "))
			}
			switch {
			case s.QueueName != "":
				fmt.Fprintf(w, " queue %s", s.QueueName)
			case s.LogGroup != "":
				fmt.Fprintf(w, " log group %s", s.LogGroup)
			case len(s.MetricNamespaces) > 0:
				fmt.Fprintf(w, " namespaces [%s]", strings.Join(s.MetricNamespaces, ", "))
			}
			fmt.Fprintf(w, " regions [%s] tag %s", strings.Join(s.Regions, ", "), s.TagTemplate)
			if s.AutoEventType {
				fmt.Fprint(w, " (event type per event)")
			}
			fmt.Fprintln(w)
		}
	}
	for _, o := range c.Outputs {
		switch o.Type {
		case OutputConsole, OutputStdout:
			fmt.Fprintf(w, "output %s (%s): %s on stdout\n", o.Name, o.Type, o.Format)
		default:
			fmt.Fprintf(w, "output %s (%s): %s:%d %s\n", o.Name, o.Type, o.Address, o.Port, o.Transport)
		}
	}
}
