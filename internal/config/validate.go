package config

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strconv"
	"strings"
	"time"

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
		errs = append(errs, c.checkTLSFiles(o)...)
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

// checkTLSFiles reports, for each of the output's chain, cert and key, a
// file that does not exist (P15) or does not parse as what it should be
// (P23), and a key that is not the certificate's (P24). Every file is
// checked, so one run names every bad one. An expired certificate is a
// warning: Devo refuses it, but the file itself is well formed.
func (c *Config) checkTLSFiles(o *Output) Errors {
	var errs Errors
	p := "outputs." + o.Name + ".config."
	read := func(key, path string) []byte {
		if path == "" {
			return nil
		}
		data, err := os.ReadFile(path)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			errs = append(errs, newError("P15", p+key, "path", path).withHint("relative paths are looked up in certs/ next to the config/ directory"))
		case err != nil:
			errs = append(errs, newError("P23", p+key, "path", path, "what", "readable", "reason", err.Error()))
		default:
			return data
		}
		return nil
	}
	bad := func(key, path, what, reason string) {
		errs = append(errs, newError("P23", p+key, "path", path, "what", what, "reason", reason))
	}
	if data := read("chain", o.Chain); data != nil {
		if certs, reason := pemCertificates(data); len(certs) == 0 {
			bad("chain", o.Chain, "a PEM certificate chain", reason)
		}
	}
	certPEM, keyPEM := read("cert", o.Cert), read("key", o.Key)
	var leaf *x509.Certificate
	if certPEM != nil {
		certs, reason := pemCertificates(certPEM)
		if len(certs) == 0 {
			bad("cert", o.Cert, "a PEM certificate", reason)
			certPEM = nil
		} else {
			leaf = certs[0]
		}
	}
	if keyPEM != nil {
		if reason := pemPrivateKey(keyPEM); reason != "" {
			bad("key", o.Key, "a PEM private key", reason)
			keyPEM = nil
		}
	}
	if certPEM != nil && keyPEM != nil {
		if _, err := tls.X509KeyPair(certPEM, keyPEM); err != nil {
			errs = append(errs, newError("P24", p+"key", "name", o.Name, "reason", err.Error()).
				withHint("use the .crt and .key files downloaded together for your Devo domain"))
		}
	}
	if leaf != nil && time.Now().After(leaf.NotAfter) {
		c.Warnings = append(c.Warnings, fmt.Sprintf("%scert: the certificate %q expired on %s; Devo will refuse it", p, o.Cert, leaf.NotAfter.UTC().Format(time.DateOnly)))
	}
	return errs
}

// pemCertificates parses every CERTIFICATE block of data; reason says why
// there is none.
func pemCertificates(data []byte) ([]*x509.Certificate, string) {
	var out []*x509.Certificate
	reason := "no PEM block found (expected -----BEGIN CERTIFICATE-----)"
	for {
		var b *pem.Block
		b, data = pem.Decode(data)
		if b == nil {
			return out, reason
		}
		if b.Type != "CERTIFICATE" {
			reason = fmt.Sprintf("found a %q PEM block, expected CERTIFICATE", b.Type)
			continue
		}
		cert, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			reason = err.Error()
			continue
		}
		out = append(out, cert)
	}
}

// pemPrivateKey returns "" when data holds a PEM private key in a form
// Go's TLS stack loads (PKCS#1, PKCS#8 or SEC 1), else the reason.
func pemPrivateKey(data []byte) string {
	reason := "no PEM block found (expected -----BEGIN PRIVATE KEY-----)"
	for {
		var b *pem.Block
		b, data = pem.Decode(data)
		if b == nil {
			return reason
		}
		if !strings.HasSuffix(b.Type, "PRIVATE KEY") {
			reason = fmt.Sprintf("found a %q PEM block, expected a PRIVATE KEY", b.Type)
			continue
		}
		if _, err := x509.ParsePKCS8PrivateKey(b.Bytes); err == nil {
			return ""
		}
		if _, err := x509.ParsePKCS1PrivateKey(b.Bytes); err == nil {
			return ""
		}
		if _, err := x509.ParseECPrivateKey(b.Bytes); err == nil {
			return ""
		}
		reason = "the " + b.Type + " block does not parse (an encrypted key is not supported)"
	}
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
