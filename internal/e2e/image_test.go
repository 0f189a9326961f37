package e2e

import (
	"debug/elf"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/devo-aws-collector/devo-aws-collector/internal/testutil/certs"
	"github.com/devo-aws-collector/devo-aws-collector/internal/testutil/rsyslog"
	"github.com/devo-aws-collector/devo-aws-collector/internal/testutil/syncbuf"
)

// buildah runs buildah on a private store under dir: the vfs driver and
// chroot isolation need no daemon, no registry and no kernel overlay
// support, so the image builds wherever the tests run as root.
type buildah struct {
	t   *testing.T
	bin string
	dir string
}

func (b *buildah) run(args ...string) string {
	b.t.Helper()
	full := append([]string{"--storage-driver", "vfs", "--root", filepath.Join(b.dir, "root"), "--runroot", filepath.Join(b.dir, "runroot")}, args...)
	cmd := exec.Command(b.bin, full...)
	cmd.Env = append(os.Environ(), "BUILDAH_ISOLATION=chroot")
	// Standard output alone is the answer (JSON for inspect, the
	// program's output for run); buildah's warnings go to standard error.
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		b.t.Fatalf("buildah %s: %v\n%s\n%s", strings.Join(args, " "), err, tail(string(out), 40), tail(stderr.String(), 40))
	}
	return strings.TrimSpace(string(out))
}

// goEnv is `go env NAME`.
func goEnv(t *testing.T, name string) string {
	t.Helper()
	out, err := exec.Command("go", "env", name).Output()
	if err != nil {
		t.Fatalf("go env %s: %v", name, err)
	}
	return strings.TrimSpace(string(out))
}

// staticBusybox finds a statically linked busybox, the builder image's shell.
func staticBusybox(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("busybox")
	if err != nil {
		t.Fatal("busybox not found: install busybox-static (scripts/deps.sh does)")
	}
	f, err := elf.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, prog := range f.Progs {
		if prog.Type == elf.PT_INTERP {
			t.Fatalf("%s is dynamically linked: install busybox-static (scripts/deps.sh does)", p)
		}
	}
	return p
}

// TestContainerImage builds the repository's Dockerfile, unchanged, with
// buildah and no registry: the builder stage runs on a local image holding
// only a shell (busybox) and the CA bundle, with this machine's Go toolchain
// and module cache mounted where the official golang image has them. Then
// it checks the image (numeric non-root user, the state volume, the metrics
// port, the command the StatefulSet runs, the state directory owned by the
// user) and runs `validate` inside it, as that user, on the ConfigMap's
// configuration mounted where the StatefulSet mounts it.
func TestContainerImage(t *testing.T) {
	bin, err := exec.LookPath("buildah")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("buildah not found: scripts/deps.sh installs it")
		}
		t.Skip("buildah not found (apt-get install buildah busybox-static, or scripts/deps.sh)")
	}
	if os.Geteuid() != 0 {
		t.Skip("building an image with buildah's chroot isolation needs root")
	}
	b := &buildah{t: t, bin: bin, dir: t.TempDir()}

	// The builder base: /bin/sh and friends from busybox, /tmp, the CA
	// bundle, and golang's environment (PATH, GOPATH).
	bb := staticBusybox(t)
	c := b.run("from", "scratch")
	b.run("copy", c, bb, "/bin/busybox")
	b.run("run", c, "/bin/busybox", "mkdir", "-p", "/usr/bin", "/sbin", "/usr/sbin", "/etc/ssl/certs", "/tmp")
	b.run("run", c, "/bin/busybox", "--install", "-s")
	b.run("run", c, "/bin/busybox", "chmod", "1777", "/tmp")
	b.run("copy", c, "/etc/ssl/certs/ca-certificates.crt", "/etc/ssl/certs/ca-certificates.crt")
	b.run("config", "--env", "PATH=/usr/local/go/bin:/go/bin:/usr/local/bin:/usr/bin:/bin", "--env", "GOPATH=/go",
		"--env", "HOME=/root", "--env", "GOTOOLCHAIN=local", c)
	b.run("commit", "-q", c, "localhost/devo-test-golang:local")

	const tag = "localhost/devo-aws-collector:test"
	b.run("bud", "--isolation", "chroot", "--layers=false",
		"--build-arg", "GO_IMAGE=localhost/devo-test-golang:local",
		"--build-arg", "GOPROXY=off", "--build-arg", "GOFLAGS=-mod=mod",
		"-v", goEnv(t, "GOROOT")+":/usr/local/go:ro",
		"-v", goEnv(t, "GOMODCACHE")+":/go/pkg/mod:ro",
		"-v", goEnv(t, "GOCACHE")+":/root/.cache/go-build",
		"-f", dockerfile, "-t", tag, repoRoot)

	var img struct {
		OCIv1 struct {
			Config struct {
				User         string              `json:"User"`
				Entrypoint   []string            `json:"Entrypoint"`
				Cmd          []string            `json:"Cmd"`
				Volumes      map[string]struct{} `json:"Volumes"`
				ExposedPorts map[string]struct{} `json:"ExposedPorts"`
			} `json:"config"`
		} `json:"OCIv1"`
	}
	if err := json.Unmarshal([]byte(b.run("inspect", "--type", "image", tag)), &img); err != nil {
		t.Fatal(err)
	}
	cfg := img.OCIv1.Config
	m := readManifests(t)
	if cfg.User != "10001:10001" || m.sts.Spec.Template.Spec.SecurityContext.RunAsUser != 10001 {
		t.Errorf("image user %q, StatefulSet runAsUser %d: want 10001 in both", cfg.User, m.sts.Spec.Template.Spec.SecurityContext.RunAsUser)
	}
	state := m.volumeMount("state")
	if _, ok := cfg.Volumes[state]; !ok {
		t.Errorf("image volumes %v lack the state directory %s", cfg.Volumes, state)
	}
	if _, ok := cfg.ExposedPorts["9464/tcp"]; !ok {
		t.Errorf("image exposes %v, not the metrics port 9464/tcp", cfg.ExposedPorts)
	}
	if !slices.Equal(cfg.Cmd, m.container.Args) || len(cfg.Entrypoint) != 1 {
		t.Errorf("image entrypoint %q cmd %q; the StatefulSet runs %q", cfg.Entrypoint, cfg.Cmd, m.container.Args)
	}

	// The files: the binary, the state directory owned by the user, the
	// Devo layout's state link.
	c = b.run("from", tag)
	root := b.run("mount", c)
	fi, err := os.Stat(filepath.Join(root, state))
	if err != nil {
		t.Fatal(err)
	}
	if st := fileOwner(fi); st != 10001 {
		t.Errorf("%s is owned by %d, not the collector's user: a new volume would not be writable", state, st)
	}
	if link, err := os.Readlink(filepath.Join(root, "etc/devo-aws-collector/state")); err != nil || link != state {
		t.Errorf("/etc/devo-aws-collector/state -> %q (%v), want %s", link, err, state)
	}
	b.run("umount", c)

	// validate inside the image, as its user, with the pod's mounts.
	text, _ := podConfig(t, m)
	cfgFile, _ := podLayout(t, m, certsFor(t), text)
	base := filepath.Dir(filepath.Dir(cfgFile))
	args := []string{"run", "--isolation", "chroot",
		"-v", filepath.Join(base, "config") + ":" + m.mountOf(m.config.Metadata.Name, "") + ":ro",
		"-v", filepath.Join(base, "certs") + ":" + m.mountOf("", m.secret.Metadata.Name) + ":ro"}
	for _, kv := range m.env() {
		args = append(args, "--env", kv)
	}
	// The certificates must be readable by the image's user, as the
	// Secret's fsGroup makes them in a pod.
	for _, d := range []string{"config", "certs"} {
		chownTree(t, filepath.Join(base, d), 10001)
	}
	args = append(args, c, "--", cfg.Entrypoint[0], "validate", "--config", configFlag(t, m.container.Args))
	out := b.run(args...)
	if !strings.Contains(out, "configuration is valid") || !strings.Contains(out, "state in "+state) {
		t.Errorf("validate in the image:\n%s", out)
	}
	if v := b.run("run", "--isolation", "chroot", c, "--", cfg.Entrypoint[0], "version"); !strings.HasPrefix(v, "devo-aws-collector ") {
		t.Errorf("version in the image: %q", v)
	}

	t.Run("run", func(t *testing.T) { runImage(t, b, c, cfg.Entrypoint, m, text) })
}

// runImage runs the image's entry point with the StatefulSet's arguments
// and mounts: the probe and scrape paths answer, the state lands on the
// image's state volume, written by the image's user, and
// SIGTERM stops the collector with status 0. Chroot isolation shares the
// host's network, so the listener moves to a free loopback port and Devo
// is a local TLS receiver; AWS is a closed port (units retry, degraded).
func runImage(t *testing.T, b *buildah, container string, entrypoint []string, m *manifests, text string) {
	set := certsFor(t)
	rs := rsyslog.Start(t, rsyslog.Options{Certs: set})
	listen, _ := podGlobals(t, text)["metrics_listen"].(string)
	addr := freeAddr(t)
	cfgFile, _ := podLayout(t, m, set, strings.Replace(text, listen, addr, 1))
	base := filepath.Dir(filepath.Dir(cfgFile))
	for _, d := range []string{"config", "certs"} {
		chownTree(t, filepath.Join(base, d), 10001)
	}
	args := []string{"--storage-driver", "vfs", "--root", filepath.Join(b.dir, "root"), "--runroot", filepath.Join(b.dir, "runroot"),
		"run", "--isolation", "chroot",
		"-v", filepath.Join(base, "config") + ":" + m.mountOf(m.config.Metadata.Name, "") + ":ro",
		"-v", filepath.Join(base, "certs") + ":" + m.mountOf("", m.secret.Metadata.Name) + ":ro"}
	for _, kv := range append(m.env(), "DEVO_ADDRESS=127.0.0.1", "DEVO_PORT="+strconv.Itoa(rs.TLSPort),
		"AWS_ENDPOINT_URL=http://"+freeAddr(t), "AWS_ACCESS_KEY_ID=IMAGEKEY", "AWS_SECRET_ACCESS_KEY=image-secret", "AWS_EC2_METADATA_DISABLED=true") {
		args = append(args, "--env", kv)
	}
	args = append(append(append(args, container, "--"), entrypoint...), m.container.Args...)
	cmd := exec.Command(b.bin, args...)
	cmd.Env = append(os.Environ(), "BUILDAH_ISOLATION=chroot")
	var out syncbuf.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	// Its own process group: the collector inside is found there, and
	// nothing is left behind if the test fails.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	// A process of the group that outlives buildah must not hold Wait on
	// the output pipe.
	cmd.WaitDelay = 10 * time.Second
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{}) // closed once buildah exited; then waitErr is set
	var waitErr error
	go func() { waitErr = cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		select {
		case <-done:
		default:
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-done
		}
		if t.Failed() {
			t.Logf("collector in the image:\n%s", tail(out.String(), 40))
		}
	})

	probe := m.container.ReadinessProbe.HTTPGet.Path
	eventually(t, 60*time.Second, "the probe path answering from the container", func() bool {
		select {
		case <-done:
			t.Fatalf("the collector in the image exited: %v", waitErr)
		default:
		}
		resp, err := httpClient.Get("http://" + addr + probe)
		if err != nil {
			return false
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("%s from the container: HTTP %d", probe, resp.StatusCode)
		}
		return true
	})
	if body := httpGet(t, "http://"+addr+m.monitor.Spec.PodMetricsEndpoints[0].Path, 200); !strings.Contains(body, "devo_collector_health_overall") {
		t.Errorf("/metrics from the container has no collector metrics")
	}
	// buildah run puts its own volume, a copy of the image's directory,
	// on each VOLUME of the image, over a -v at the same place (docker,
	// podman and Kubernetes let the mount win). So the state is looked for
	// there: written by the image's user into the copy of the image's
	// state directory, as in a new Docker volume.
	dbs, _ := filepath.Glob(filepath.Join(b.dir, "root", "vfs-containers", "*", "userdata", "buildah-volumes", "*", "checkpoints.db"))
	if len(dbs) != 1 {
		t.Fatalf("checkpoints.db in the image's state volume: found %q", dbs)
	}
	fi, err := os.Stat(dbs[0])
	if err != nil {
		t.Fatal(err)
	}
	if fileOwner(fi) != 10001 {
		t.Errorf("checkpoints.db owned by %d", fileOwner(fi))
	}

	// SIGTERM to the collector alone (as the kubelet's to the container's
	// first process): it drains and exits 0, and buildah with it.
	pid := collectorPID(t, cmd.Process.Pid, entrypoint[0])
	if err := syscall.Kill(pid, syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-done:
		if waitErr != nil {
			t.Errorf("after SIGTERM: %v", waitErr)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("the collector in the image did not stop within 60 s of SIGTERM")
	}
	if !strings.Contains(out.String(), "collector stopped") {
		t.Errorf("no \"collector stopped\" line:\n%s", tail(out.String(), 20))
	}
}

// collectorPID finds the process running bin in process group pgid.
func collectorPID(t *testing.T, pgid int, bin string) int {
	t.Helper()
	entries, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if g, err := syscall.Getpgid(pid); err != nil || g != pgid {
			continue
		}
		cmdline, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err == nil && strings.HasPrefix(string(cmdline), bin+"\x00") {
			return pid
		}
	}
	t.Fatalf("no %s in process group %d", bin, pgid)
	return 0
}

// fileOwner is the file's numeric owner.
func fileOwner(fi os.FileInfo) int {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return int(st.Uid)
	}
	return -1
}

// chownTree gives dir and everything in it to uid.
func chownTree(t *testing.T, dir string, uid int) {
	t.Helper()
	err := filepath.Walk(dir, func(p string, _ os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		return os.Chown(p, uid, uid)
	})
	if err != nil {
		t.Fatal(err)
	}
}

// certsFor generates a certificate set for the image test.
func certsFor(t *testing.T) *certs.Set { return certs.New(t) }
