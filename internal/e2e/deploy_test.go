package e2e

import (
	"bufio"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/devo-aws-collector/devo-aws-collector/internal/testutil/certs"
	"github.com/devo-aws-collector/devo-aws-collector/internal/testutil/rsyslog"
)

// The packaging the tests below keep honest: whatever these files name
// (commands, flags, paths, ports, probe paths) must be what the binary
// takes and serves.
const (
	k8sDir      = "../../deploy/kubernetes"
	unitFile    = "../../deploy/systemd/devo-aws-collector.service"
	dockerfile  = "../../Dockerfile"
	repoRoot    = "../.."
	exitInvalid = 2 // docs/errors.md: an invalid configuration
)

// manifests is what the tests read from deploy/kubernetes.
type manifests struct {
	kustomize struct {
		Resources []string `yaml:"resources"`
	}
	sts       k8sObject
	config    k8sObject // the ConfigMap
	secret    k8sObject
	service   k8sObject
	monitor   k8sObject // the PodMonitor
	container container
}

// k8sObject holds the fields of the objects the tests look at.
type k8sObject struct {
	Kind     string `yaml:"kind"`
	Metadata struct {
		Name        string            `yaml:"name"`
		Annotations map[string]string `yaml:"annotations"`
	} `yaml:"metadata"`
	Data       map[string]string `yaml:"data"`
	StringData map[string]string `yaml:"stringData"`
	Spec       struct {
		Replicas    int `yaml:"replicas"`
		ServiceName string
		Selector    struct {
			MatchLabels map[string]string `yaml:"matchLabels"`
		} `yaml:"selector"`
		Template struct {
			Metadata struct {
				Labels map[string]string `yaml:"labels"`
			} `yaml:"metadata"`
			Spec struct {
				ServiceAccountName string `yaml:"serviceAccountName"`
				SecurityContext    struct {
					RunAsNonRoot *bool `yaml:"runAsNonRoot"`
					RunAsUser    int   `yaml:"runAsUser"`
					FSGroup      int   `yaml:"fsGroup"`
				} `yaml:"securityContext"`
				Containers []container `yaml:"containers"`
				Volumes    []struct {
					Name      string `yaml:"name"`
					ConfigMap *struct {
						Name string `yaml:"name"`
					} `yaml:"configMap"`
					Secret *struct {
						SecretName string `yaml:"secretName"`
					} `yaml:"secret"`
				} `yaml:"volumes"`
			} `yaml:"spec"`
		} `yaml:"template"`
		VolumeClaimTemplates []struct {
			Metadata struct {
				Name string `yaml:"name"`
			} `yaml:"metadata"`
			Spec struct {
				Resources struct {
					Requests map[string]string `yaml:"requests"`
				} `yaml:"resources"`
			} `yaml:"spec"`
		} `yaml:"volumeClaimTemplates"`
		// Service and PodMonitor.
		Ports []struct {
			Name       string `yaml:"name"`
			Port       int    `yaml:"port"`
			TargetPort string `yaml:"targetPort"`
		} `yaml:"ports"`
		PodMetricsEndpoints []struct {
			Port string `yaml:"port"`
			Path string `yaml:"path"`
		} `yaml:"podMetricsEndpoints"`
	} `yaml:"spec"`
}

type container struct {
	Name  string   `yaml:"name"`
	Image string   `yaml:"image"`
	Args  []string `yaml:"args"`
	Env   []struct {
		Name  string `yaml:"name"`
		Value string `yaml:"value"`
	} `yaml:"env"`
	Ports []struct {
		Name          string `yaml:"name"`
		ContainerPort int    `yaml:"containerPort"`
	} `yaml:"ports"`
	ReadinessProbe *probe `yaml:"readinessProbe"`
	LivenessProbe  *probe `yaml:"livenessProbe"`
	Resources      struct {
		Requests map[string]string `yaml:"requests"`
		Limits   map[string]string `yaml:"limits"`
	} `yaml:"resources"`
	SecurityContext struct {
		AllowPrivilegeEscalation *bool `yaml:"allowPrivilegeEscalation"`
		ReadOnlyRootFilesystem   bool  `yaml:"readOnlyRootFilesystem"`
		Capabilities             struct {
			Drop []string `yaml:"drop"`
		} `yaml:"capabilities"`
	} `yaml:"securityContext"`
	VolumeMounts []struct {
		Name      string `yaml:"name"`
		MountPath string `yaml:"mountPath"`
	} `yaml:"volumeMounts"`
}

type probe struct {
	HTTPGet *struct {
		Path string `yaml:"path"`
		Port string `yaml:"port"`
	} `yaml:"httpGet"`
}

// readManifests parses every file of deploy/kubernetes and fails on a file
// the kustomization leaves out without saying why, or an object kind twice.
func readManifests(t *testing.T) *manifests {
	t.Helper()
	m := &manifests{}
	files, err := filepath.Glob(filepath.Join(k8sDir, "*.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no manifests in %s: %v", k8sDir, err)
	}
	seen := map[string]bool{}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if filepath.Base(f) == "kustomization.yaml" {
			if err := yaml.Unmarshal(data, &m.kustomize); err != nil {
				t.Fatalf("%s: %v", f, err)
			}
			continue
		}
		var o k8sObject
		if err := yaml.Unmarshal(data, &o); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		if seen[o.Kind] {
			t.Fatalf("%s: a second %s", f, o.Kind)
		}
		seen[o.Kind] = true
		switch o.Kind {
		case "StatefulSet":
			m.sts = o
		case "ConfigMap":
			m.config = o
		case "Secret":
			m.secret = o
		case "Service":
			m.service = o
		case "PodMonitor":
			m.monitor = o
		case "ServiceAccount", "Namespace":
		default:
			t.Errorf("%s: unexpected kind %q", f, o.Kind)
		}
	}
	for _, f := range files {
		name := filepath.Base(f)
		if name != "kustomization.yaml" && name != "podmonitor.yaml" && !slices.Contains(m.kustomize.Resources, name) {
			t.Errorf("kustomization.yaml does not list %s", name)
		}
	}
	for _, r := range m.kustomize.Resources {
		if _, err := os.Stat(filepath.Join(k8sDir, r)); err != nil {
			t.Errorf("kustomization.yaml: %v", err)
		}
	}
	for _, kind := range []string{"StatefulSet", "ConfigMap", "Secret", "Service", "PodMonitor", "ServiceAccount"} {
		if !seen[kind] {
			t.Fatalf("deploy/kubernetes has no %s", kind)
		}
	}
	cs := m.sts.Spec.Template.Spec.Containers
	if len(cs) != 1 {
		t.Fatalf("StatefulSet: %d containers, want 1", len(cs))
	}
	m.container = cs[0]
	return m
}

// mountOf is the mount path of the volume that holds the named ConfigMap or
// Secret ("" when none does).
func (m *manifests) mountOf(configMap, secret string) string {
	for _, v := range m.sts.Spec.Template.Spec.Volumes {
		if (v.ConfigMap != nil && v.ConfigMap.Name == configMap && configMap != "") ||
			(v.Secret != nil && v.Secret.SecretName == secret && secret != "") {
			return m.volumeMount(v.Name)
		}
	}
	return ""
}

func (m *manifests) volumeMount(volume string) string {
	for _, vm := range m.container.VolumeMounts {
		if vm.Name == volume {
			return vm.MountPath
		}
	}
	return ""
}

// containerPort resolves a probe's or monitor's port (a name or a number).
func (m *manifests) containerPort(t *testing.T, port string) int {
	t.Helper()
	for _, p := range m.container.Ports {
		if p.Name == port || strconv.Itoa(p.ContainerPort) == port {
			return p.ContainerPort
		}
	}
	t.Fatalf("the container has no port %q", port)
	return 0
}

// env is the container's environment as NAME=value.
func (m *manifests) env() []string {
	var out []string
	for _, e := range m.container.Env {
		out = append(out, e.Name+"="+e.Value)
	}
	return out
}

// configFlag returns the value of --config in args.
func configFlag(t *testing.T, args []string) string {
	t.Helper()
	for i, a := range args {
		if v, ok := strings.CutPrefix(a, "--config="); ok {
			return v
		}
		if (a == "--config" || a == "-config") && i+1 < len(args) {
			return args[i+1]
		}
	}
	t.Fatalf("no --config in %q", args)
	return ""
}

// checkCommandLine fails unless args (without the program) are a command
// of the binary followed by flags its --help lists.
func checkCommandLine(t *testing.T, what string, args []string) {
	t.Helper()
	if len(args) == 0 || !slices.Contains([]string{"run", "validate"}, args[0]) {
		t.Fatalf("%s: %q is not a command of the collector", what, args)
	}
	out, _ := exec.Command(collectorBin, args[0], "-h").CombinedOutput()
	flags := map[string]bool{}
	for _, m := range regexp.MustCompile(`(?m)^\s+-(\S+)`).FindAllStringSubmatch(string(out), -1) {
		flags[m[1]] = true
	}
	if len(flags) == 0 {
		t.Fatalf("%s -h lists no flags:\n%s", args[0], out)
	}
	for _, a := range args[1:] {
		if !strings.HasPrefix(a, "-") {
			continue
		}
		name, _, _ := strings.Cut(strings.TrimLeft(a, "-"), "=")
		if !flags[name] {
			t.Errorf("%s: flag %s is not one of the collector's %s flags (%v)", what, a, args[0], flags)
		}
	}
}

// podConfig returns the ConfigMap's config.yaml and the globals it sets.
func podConfig(t *testing.T, m *manifests) (text string, globals map[string]any) {
	t.Helper()
	text = m.config.Data["config.yaml"]
	if text == "" {
		t.Fatal("the ConfigMap has no config.yaml")
	}
	return text, podGlobals(t, text)
}

// podGlobals parses the globals of a config.yaml.
func podGlobals(t *testing.T, text string) map[string]any {
	t.Helper()
	var doc struct {
		Globals map[string]any `yaml:"globals"`
	}
	if err := yaml.Unmarshal([]byte(text), &doc); err != nil {
		t.Fatalf("ConfigMap config.yaml: %v", err)
	}
	return doc.Globals
}

// mebibytes parses a Kubernetes quantity of memory or storage (Mi, Gi, M, G).
func mebibytes(t *testing.T, q string) float64 {
	t.Helper()
	units := map[string]float64{"Ki": 1.0 / 1024, "Mi": 1, "Gi": 1024, "M": 1e6 / (1 << 20), "G": 1e9 / (1 << 20)}
	for _, u := range []string{"Ki", "Mi", "Gi", "M", "G"} {
		if n, ok := strings.CutSuffix(q, u); ok {
			v, err := strconv.ParseFloat(n, 64)
			if err != nil {
				t.Fatalf("quantity %q: %v", q, err)
			}
			return v * units[u]
		}
	}
	t.Fatalf("quantity %q: no unit the test knows", q)
	return 0
}

// dockerfileInstructions returns the final stage's instructions by keyword
// (ENTRYPOINT, CMD, USER, VOLUME, EXPOSE), continuation lines joined.
func dockerfileInstructions(t *testing.T) map[string]string {
	t.Helper()
	data, err := os.ReadFile(dockerfile)
	if err != nil {
		t.Fatal(err)
	}
	text := strings.ReplaceAll(string(data), "\\\n", " ")
	out := map[string]string{}
	for _, line := range strings.Split(text, "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		kw, rest, _ := strings.Cut(line, " ")
		if strings.EqualFold(kw, "FROM") {
			out = map[string]string{} // only the last stage counts
		}
		out[strings.ToUpper(kw)] = strings.TrimSpace(rest)
	}
	return out
}

// jsonArray parses an instruction in exec form (["a", "b"]).
func jsonArray(t *testing.T, kw, s string) []string {
	t.Helper()
	var v []string
	if err := json.Unmarshal([]byte(s), &v); err != nil {
		t.Fatalf("Dockerfile %s %s: not in exec form: %v", kw, s, err)
	}
	return v
}

// TestKubernetesManifests checks deploy/kubernetes against the binary and
// the Dockerfile without a cluster: the container's command line, the
// mounts against the paths the collector resolves, the probe and monitor
// ports against metrics_listen, the security settings, the sizes against
// the memory and disk bounds, and replicas against coordination.
func TestKubernetesManifests(t *testing.T) {
	m := readManifests(t)
	c := m.container
	_, globals := podConfig(t, m)

	checkCommandLine(t, "StatefulSet args", c.Args)
	cfgPath := configFlag(t, c.Args)
	cfgDir := m.mountOf(m.config.Metadata.Name, "")
	if cfgDir == "" || path.Join(cfgDir, "config.yaml") != cfgPath {
		t.Errorf("--config %s, but the ConfigMap %s is mounted at %q", cfgPath, m.config.Metadata.Name, cfgDir)
	}
	// Relative certificate paths resolve in <base>/certs, <base> being the
	// parent of the config/ directory (docs/configuration.md).
	if path.Base(cfgDir) != "config" {
		t.Errorf("the configuration is mounted at %s: relative certificate paths resolve in <base>/certs only when its directory is named config", cfgDir)
	}
	if want, got := path.Join(path.Dir(cfgDir), "certs"), m.mountOf("", m.secret.Metadata.Name); got != want {
		t.Errorf("the Secret %s is mounted at %q, want %s (where the collector looks for relative certificate paths)", m.secret.Metadata.Name, got, want)
	}

	// The image runs what the StatefulSet runs, as the user it names.
	df := dockerfileInstructions(t)
	image := append(jsonArray(t, "ENTRYPOINT", df["ENTRYPOINT"]), jsonArray(t, "CMD", df["CMD"])...)
	if !slices.Equal(image[1:], c.Args) {
		t.Errorf("StatefulSet args %q differ from the image's CMD %q", c.Args, image[1:])
	}
	user, _, _ := strings.Cut(df["USER"], ":")
	if uid, err := strconv.Atoi(user); err != nil || uid == 0 || uid != m.sts.Spec.Template.Spec.SecurityContext.RunAsUser {
		t.Errorf("Dockerfile USER %q: want the numeric non-root UID the StatefulSet runs as (%d)", df["USER"], m.sts.Spec.Template.Spec.SecurityContext.RunAsUser)
	}
	stateMount := m.volumeMount("state")
	if vols := jsonArray(t, "VOLUME", df["VOLUME"]); !slices.Contains(vols, stateMount) {
		t.Errorf("Dockerfile VOLUME %q does not hold the state mount %q", vols, stateMount)
	}

	// Probes and the PodMonitor reach the port metrics_listen binds.
	listen, _ := globals["metrics_listen"].(string)
	_, lport, err := net.SplitHostPort(listen)
	if err != nil {
		t.Fatalf("ConfigMap metrics_listen %q: %v", listen, err)
	}
	if host, _, _ := net.SplitHostPort(listen); host == "127.0.0.1" || host == "localhost" {
		t.Errorf("metrics_listen %s: the kubelet and Prometheus cannot reach loopback", listen)
	}
	for name, p := range map[string]*probe{"readiness": c.ReadinessProbe, "liveness": c.LivenessProbe} {
		if p == nil || p.HTTPGet == nil {
			t.Errorf("no %s httpGet probe", name)
			continue
		}
		if p.HTTPGet.Path != "/healthz" {
			t.Errorf("%s probe path %s, the collector serves /healthz", name, p.HTTPGet.Path)
		}
		if got := m.containerPort(t, p.HTTPGet.Port); strconv.Itoa(got) != lport {
			t.Errorf("%s probe port %d, metrics_listen %s", name, got, listen)
		}
	}
	if len(m.monitor.Spec.PodMetricsEndpoints) == 0 {
		t.Error("the PodMonitor has no endpoint")
	}
	for _, ep := range m.monitor.Spec.PodMetricsEndpoints {
		if got := m.containerPort(t, ep.Port); strconv.Itoa(got) != lport || ep.Path != "/metrics" {
			t.Errorf("PodMonitor scrapes %s on port %d; the collector serves /metrics on %s", ep.Path, got, listen)
		}
	}
	for _, p := range m.service.Spec.Ports {
		if m.containerPort(t, p.TargetPort) != p.Port {
			t.Errorf("Service port %s: %d, target %s", p.Name, p.Port, p.TargetPort)
		}
	}
	if df["EXPOSE"] != lport {
		t.Errorf("Dockerfile EXPOSE %q, metrics_listen port %s", df["EXPOSE"], lport)
	}

	// Security: non-root, read-only root, no capabilities.
	psc := m.sts.Spec.Template.Spec.SecurityContext
	if psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot || psc.RunAsUser == 0 || psc.FSGroup == 0 {
		t.Errorf("pod securityContext %+v: want runAsNonRoot, a non-root runAsUser and an fsGroup (the state volume and the key must be the user's)", psc)
	}
	sc := c.SecurityContext
	if !sc.ReadOnlyRootFilesystem || sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation || !slices.Equal(sc.Capabilities.Drop, []string{"ALL"}) {
		t.Errorf("container securityContext %+v: want readOnlyRootFilesystem, no privilege escalation, drop ALL", sc)
	}
	if m.sts.Spec.Template.Spec.ServiceAccountName == "" {
		t.Error("the pods run under no ServiceAccount (no IRSA role)")
	}
	for k, v := range m.sts.Spec.Selector.MatchLabels {
		if m.sts.Spec.Template.Metadata.Labels[k] != v {
			t.Errorf("selector %s=%s does not match the pod labels", k, v)
		}
	}

	// Memory: the in-flight budget (96 MiB) and the Go soft limit (+32 MiB)
	// put a busy collector near 150 MB resident (docs/performance.md).
	req, lim := mebibytes(t, c.Resources.Requests["memory"]), mebibytes(t, c.Resources.Limits["memory"])
	if req < 150 || lim < req {
		t.Errorf("memory request %.0f Mi, limit %.0f Mi: want a request of at least 150 Mi and a limit above it", req, lim)
	}
	// Disk: each network output may hold spool_max_size_in_mb of spool and
	// as much again of write-ahead journal.
	spool := 1024.0
	if mb := regexp.MustCompile(`spool_max_size_in_mb:\s*(\d+)`).FindStringSubmatch(m.config.Data["config.yaml"]); mb != nil {
		spool, _ = strconv.ParseFloat(mb[1], 64)
	}
	for _, vct := range m.sts.Spec.VolumeClaimTemplates {
		if vct.Metadata.Name == "state" {
			if got := mebibytes(t, vct.Spec.Resources.Requests["storage"]); got < 2*spool {
				t.Errorf("state volume %.0f Mi < spool + journal (2 × %.0f MB)", got, spool)
			}
		}
	}
	if stateMount == "" {
		t.Error("no volume mounted as state")
	}

	// Two collectors without coordination would pull every API stream twice.
	if _, coordinated := globals["coordination"]; m.sts.Spec.Replicas != 1 && !coordinated {
		t.Errorf("replicas %d without globals.coordination: run exactly 1", m.sts.Spec.Replicas)
	}
}

// uncommentBlock removes the "# " of a commented YAML block that starts
// with "# <first>" and goes on while the commented lines are indented
// deeper, as a user uncommenting it would.
func uncommentBlock(text, first string) string {
	lines := strings.Split(text, "\n")
	for i, l := range lines {
		indent, rest, ok := strings.Cut(l, "# "+first)
		if !ok || strings.TrimSpace(indent) != "" || rest != "" {
			continue
		}
		lines[i] = indent + first
		for j := i + 1; j < len(lines); j++ {
			body, ok := strings.CutPrefix(lines[j], indent+"# ")
			if !ok || !strings.HasPrefix(body, " ") {
				break
			}
			lines[j] = indent + body
		}
		return strings.Join(lines, "\n")
	}
	return text
}

// podLayout lays the pod's files out under a temporary <base> as the
// StatefulSet mounts them: config/config.yaml from the ConfigMap and the
// Secret's keys in certs/, with generated certificates. It returns the
// config path and the state directory.
func podLayout(t *testing.T, m *manifests, set *certs.Set, text string) (cfg, state string) {
	t.Helper()
	base := t.TempDir()
	for _, d := range []string{"config", "certs", "state"} {
		if err := os.MkdirAll(filepath.Join(base, d), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	pem := map[string]string{"chain.crt": set.CA, "domain.crt": set.ClientCert, "domain.key": set.ClientKey}
	for key := range m.secret.StringData {
		src, ok := pem[key]
		if !ok {
			t.Fatalf("Secret key %s: the test knows chain.crt, domain.crt and domain.key", key)
		}
		copyFile(t, src, filepath.Join(base, "certs", key))
	}
	cfg = filepath.Join(base, "config", "config.yaml")
	if err := os.WriteFile(cfg, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return cfg, filepath.Join(base, "state")
}

// TestKubernetesConfigRuns validates the ConfigMap's config.yaml with the
// binary, in the pod's environment and with only the Secret's keys as
// certificates, then runs the collector with it: the probe path and the
// PodMonitor path answer on the metrics port, and SIGTERM stops it cleanly.
func TestKubernetesConfigRuns(t *testing.T) {
	m := readManifests(t)
	text, globals := podConfig(t, m)
	set := certs.New(t)

	// validate, as the pod would run it: the pod's variables only, and the
	// state directory as the ConfigMap defaults it.
	cfg, _ := podLayout(t, m, set, text)
	cmd := exec.Command(collectorBin, "validate", "--config", cfg)
	cmd.Env = exampleEnv(append(m.env(), "STATE_DIRECTORY=")...)
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "configuration is valid") {
		t.Fatalf("validate the ConfigMap's config.yaml: %v\n%s", err, out)
	}
	if strings.Contains(string(out), "warning:") {
		t.Errorf("the ConfigMap's config.yaml warns:\n%s", out)
	}
	if want := "state in " + m.volumeMount("state") + "\n"; !strings.Contains(string(out), want) {
		t.Errorf("validate does not say %q: the state directory is not the state volume\n%s", strings.TrimSpace(want), out)
	}

	// The coordinated variant docs/deploy.md describes: the commented
	// coordination block, uncommented, is valid too.
	coordinated := uncommentBlock(text, "coordination:")
	if coordinated == text {
		t.Fatal("config.yaml has no commented coordination block to uncomment")
	}
	cfg, _ = podLayout(t, m, set, coordinated)
	cmd = exec.Command(collectorBin, "validate", "--config", cfg)
	cmd.Env = exampleEnv(append(m.env(), "STATE_DIRECTORY=")...)
	out, err = cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "configuration is valid") || strings.Contains(string(out), "warning:") {
		t.Errorf("validate the ConfigMap's config.yaml with coordination uncommented: %v\n%s\n%s", err, out, coordinated)
	}
	if _, ok := podGlobals(t, coordinated)["coordination"]; !ok {
		t.Errorf("uncommenting gave no globals.coordination:\n%s", coordinated)
	}

	// run: the listener moves to a free loopback port (the port itself is
	// checked against the manifests by TestKubernetesManifests), AWS to a
	// closed port (the units retry; health is degraded, not failed), Devo
	// to a local TLS receiver.
	listen := globals["metrics_listen"].(string)
	addr := freeAddr(t)
	if strings.Count(text, listen) != 1 {
		t.Fatalf("metrics_listen %q appears %d times in config.yaml", listen, strings.Count(text, listen))
	}
	cfg, state := podLayout(t, m, set, strings.Replace(text, listen, addr, 1))
	rs := rsyslog.Start(t, rsyslog.Options{Certs: set})
	env := exampleEnv(append(m.env(),
		"STATE_DIRECTORY="+state, "DEVO_ADDRESS=127.0.0.1", "DEVO_PORT="+strconv.Itoa(rs.TLSPort),
		"AWS_ENDPOINT_URL=http://"+freeAddr(t), "AWS_ACCESS_KEY_ID=K8SKEY", "AWS_SECRET_ACCESS_KEY=k8s-secret", "AWS_EC2_METADATA_DISABLED=true")...)
	p := startExample(t, cfg, env)

	probe := m.container.ReadinessProbe.HTTPGet.Path
	var health struct {
		Status     string         `json:"status"`
		Components map[string]any `json:"components"`
	}
	eventually(t, 30*time.Second, "the probe path answering on the metrics listener", func() bool {
		resp, err := httpClient.Get("http://" + addr + probe)
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 {
			t.Fatalf("%s: HTTP %d (a probe would fail)\n%s", probe, resp.StatusCode, body)
		}
		return json.Unmarshal(body, &health) == nil && len(health.Components) > 0
	})
	if !slices.Contains([]string{"starting", "running", "degraded"}, health.Status) {
		t.Errorf("%s status %q", probe, health.Status)
	}
	metrics := httpGet(t, "http://"+addr+m.monitor.Spec.PodMetricsEndpoints[0].Path, 200)
	if !strings.Contains(metrics, "devo_collector_health_overall") {
		t.Errorf("%s has no collector metrics:\n%s", m.monitor.Spec.PodMetricsEndpoints[0].Path, tail(metrics, 20))
	}
	if _, err := os.Stat(filepath.Join(state, "checkpoints.db")); err != nil {
		t.Errorf("the state directory from STATE_DIRECTORY is not used: %v", err)
	}
	stopExample(t, p)
}

// unitService reads the [Service] section of the systemd unit: each key's
// values in order.
func unitService(t *testing.T) map[string][]string {
	t.Helper()
	f, err := os.Open(unitFile)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	out := map[string][]string{}
	section := ""
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "" || strings.HasPrefix(line, "#"):
		case strings.HasPrefix(line, "["):
			section = line
		case section == "[Service]":
			k, v, ok := strings.Cut(line, "=")
			if !ok {
				t.Fatalf("%s: %q", unitFile, line)
			}
			out[k] = append(out[k], v)
		}
	}
	return out
}

// TestSystemdUnit checks the unit against the binary: ExecStart's command
// and flags exist, the exit status it does not restart on is the one an
// invalid configuration gives, the state directory systemd creates is the
// one the shipped configuration defaults to, there is no ExecReload (SIGHUP
// is not handled), and systemd-analyze verify accepts it.
func TestSystemdUnit(t *testing.T) {
	svc := unitService(t)
	if len(svc["ExecStart"]) != 1 {
		t.Fatalf("ExecStart: %q", svc["ExecStart"])
	}
	exec0 := strings.Fields(svc["ExecStart"][0])
	checkCommandLine(t, "ExecStart", exec0[1:])
	cfgPath := configFlag(t, exec0[1:])
	m := readManifests(t)
	if k8s := configFlag(t, m.container.Args); cfgPath != k8s {
		t.Errorf("the unit reads %s, the container %s: one layout for both (docs/deploy.md)", cfgPath, k8s)
	}
	if len(svc["StateDirectory"]) != 1 || "/var/lib/"+svc["StateDirectory"][0] != m.volumeMount("state") {
		t.Errorf("StateDirectory %q: want the state directory the shipped configuration defaults to, %s", svc["StateDirectory"], m.volumeMount("state"))
	}
	if _, ok := svc["ExecReload"]; ok {
		t.Error("ExecReload: the collector does not handle SIGHUP (it would stop)")
	}
	if svc["Restart"][0] != "on-failure" || svc["ProtectSystem"][0] != "strict" || svc["NoNewPrivileges"][0] != "yes" {
		t.Errorf("want Restart=on-failure, ProtectSystem=strict, NoNewPrivileges=yes: %v", svc)
	}
	if _, dynamic := svc["DynamicUser"]; !dynamic && len(svc["User"]) == 0 {
		t.Error("the unit runs as root: want DynamicUser= or User=")
	}

	// The status RestartPreventExitStatus names is the binary's for an
	// invalid configuration.
	bad := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(bad, []byte("globals: {name: 'bad name!'}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	err := exec.Command(collectorBin, "run", "--config", bad).Run()
	code := -1
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	}
	if code != exitInvalid || !slices.Contains(strings.Fields(strings.Join(svc["RestartPreventExitStatus"], " ")), strconv.Itoa(code)) {
		t.Errorf("an invalid configuration exits %d; RestartPreventExitStatus=%q", code, svc["RestartPreventExitStatus"])
	}

	t.Run("systemd-analyze verify", func(t *testing.T) {
		analyze, err := exec.LookPath("systemd-analyze")
		if err != nil {
			t.Skip("systemd-analyze is not installed (package systemd)")
		}
		// verify wants ExecStart's binary to exist: point it at the one
		// under test.
		data, err := os.ReadFile(unitFile)
		if err != nil {
			t.Fatal(err)
		}
		unit := filepath.Join(t.TempDir(), filepath.Base(unitFile))
		if err := os.WriteFile(unit, []byte(strings.ReplaceAll(string(data), exec0[0], collectorBin)), 0o644); err != nil {
			t.Fatal(err)
		}
		out, err := exec.Command(analyze, "verify", unit).CombinedOutput()
		// Unknown or malformed keys are only printed: any output fails.
		if err != nil || len(strings.TrimSpace(string(out))) > 0 {
			t.Errorf("systemd-analyze verify: %v\n%s", err, out)
		}
	})
}

// httpClient bounds each request as the kubelet bounds a probe.
var httpClient = &http.Client{Timeout: 5 * time.Second}
