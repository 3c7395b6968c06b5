package main

// The packaging files at the repository root (Dockerfile, docker-compose.yml,
// deploy/) are checked here, where the manager's subcommands and package
// config are at hand, so they cannot rot where no Docker daemon or kubectl
// runs: every command line they give parses with the manager's own flags,
// every WAFLEET_* variable they set overrides a real key, every
// configuration they assemble loads, and the ports, probes and users agree
// with each other.

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"maps"
	"net"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/wafleet/wafleet/config"
	"github.com/wafleet/wafleet/crypto"
)

// repoRoot is the repository root seen from this package's directory.
const repoRoot = "../.."

// dockerfile is the part of the Dockerfile the checks need.
type dockerfile struct {
	args   map[string]string // ARG defaults before the first FROM
	stages []*dockerStage
}

type dockerStage struct {
	from, name  string
	env         map[string]string
	runs        []string
	copies      [][]string // the words after COPY, flags included
	user        string
	entrypoint  []string
	cmd         []string
	healthcheck []string // the exec form after HEALTHCHECK [options] CMD
	expose      []string
}

// parseDockerfile reads the instructions of a Dockerfile: comments and
// blank lines dropped, continuation lines joined.
func parseDockerfile(t *testing.T, file string) *dockerfile {
	t.Helper()
	raw, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var lines []string
	var cont strings.Builder
	for _, line := range strings.Split(string(raw), "\n") {
		trimmed := strings.TrimSpace(line)
		if trimmed == "" || strings.HasPrefix(trimmed, "#") {
			continue
		}
		if strings.HasSuffix(trimmed, `\`) {
			cont.WriteString(strings.TrimSuffix(trimmed, `\`) + " ")
			continue
		}
		cont.WriteString(trimmed)
		lines = append(lines, cont.String())
		cont.Reset()
	}
	df := &dockerfile{args: map[string]string{}}
	var st *dockerStage
	for _, line := range lines {
		instr, rest, _ := strings.Cut(line, " ")
		rest = strings.TrimSpace(rest)
		instr = strings.ToUpper(instr)
		if instr == "FROM" {
			f := strings.Fields(rest)
			st = &dockerStage{from: f[0], env: map[string]string{}}
			if len(f) == 3 && strings.EqualFold(f[1], "AS") {
				st.name = f[2]
			}
			df.stages = append(df.stages, st)
			continue
		}
		if st == nil {
			if instr == "ARG" {
				k, v, _ := strings.Cut(rest, "=")
				df.args[k] = strings.Trim(v, `"`)
				continue
			}
			t.Fatalf("Dockerfile: %s before the first FROM", instr)
		}
		switch instr {
		case "ENV":
			for _, kv := range strings.Fields(rest) {
				k, v, ok := strings.Cut(kv, "=")
				if !ok {
					t.Fatalf("Dockerfile: ENV %q: use the KEY=VALUE form", rest)
				}
				st.env[k] = v
			}
		case "RUN":
			st.runs = append(st.runs, rest)
		case "COPY":
			st.copies = append(st.copies, strings.Fields(rest))
		case "USER":
			st.user = rest
		case "ENTRYPOINT":
			st.entrypoint = execForm(t, instr, rest)
		case "CMD":
			st.cmd = execForm(t, instr, rest)
		case "HEALTHCHECK":
			_, exec, ok := strings.Cut(rest, " CMD ")
			if !ok {
				t.Fatalf("Dockerfile: HEALTHCHECK %q has no CMD", rest)
			}
			st.healthcheck = execForm(t, instr, exec)
		case "EXPOSE":
			st.expose = append(st.expose, strings.Fields(rest)...)
		}
	}
	if len(df.stages) < 2 {
		t.Fatalf("Dockerfile: %d stages, want a builder and a final stage", len(df.stages))
	}
	return df
}

// execForm decodes the JSON (exec) form of ENTRYPOINT, CMD or HEALTHCHECK:
// the shell form would need a shell, which the final image has not.
func execForm(t *testing.T, instr, s string) []string {
	t.Helper()
	var words []string
	if err := json.Unmarshal([]byte(s), &words); err != nil || len(words) == 0 {
		t.Fatalf("Dockerfile: %s %s: want the exec form [\"…\", …]", instr, s)
	}
	return words
}

func (df *dockerfile) final() *dockerStage { return df.stages[len(df.stages)-1] }

// checkCommand fails unless args (after the program name) name a
// subcommand whose flags accept them: they are run with -h appended, which
// stops each subcommand right after its flags parsed.
func checkCommand(t *testing.T, where string, args []string) {
	t.Helper()
	if len(args) == 0 {
		t.Errorf("%s: no subcommand", where)
		return
	}
	if _, ok := commands[args[0]]; !ok {
		t.Errorf("%s: %q is not a manager subcommand", where, args[0])
		return
	}
	var stdout, stderr bytes.Buffer
	if code := run(context.Background(), &env{stdout: &stdout, stderr: &stderr}, append(slices.Clone(args), "-h")); code != 0 {
		t.Errorf("%s: manager %s: exit %d: %s", where, strings.Join(args, " "), code, firstLine(stderr.String()))
	}
}

func firstLine(s string) string {
	line, _, _ := strings.Cut(s, "\n")
	return line
}

// flagValue returns the value of --name in args ("--name v" or
// "--name=v").
func flagValue(args []string, name string) (string, bool) {
	for i, a := range args {
		a = "-" + strings.TrimLeft(a, "-")
		if a == "-"+name && i+1 < len(args) {
			return args[i+1], true
		}
		if v, ok := strings.CutPrefix(a, "-"+name+"="); ok {
			return v, true
		}
	}
	return "", false
}

// knownEnvVars are the variables package config reads.
func knownEnvVars() map[string]bool {
	vars := map[string]bool{}
	for _, k := range config.Keys() {
		vars[config.EnvVar(k)] = true
	}
	return vars
}

// checkEnvNames fails for a WAFLEET_* variable that overrides no key.
func checkEnvNames(t *testing.T, where string, names []string) {
	t.Helper()
	known := knownEnvVars()
	for _, n := range names {
		if strings.HasPrefix(n, "WAFLEET_") && !known[n] {
			t.Errorf("%s: %s overrides no configuration key", where, n)
		}
	}
}

// loadWithEnv loads the config file at path with exactly env set among the
// WAFLEET_* variables.
func loadWithEnv(t *testing.T, file string, env map[string]string) (*config.Config, error) {
	t.Helper()
	for _, kv := range os.Environ() {
		if name, _, _ := strings.Cut(kv, "="); strings.HasPrefix(name, "WAFLEET_") {
			t.Setenv(name, "")
			os.Unsetenv(name)
		}
	}
	for k, v := range env {
		t.Setenv(k, v)
	}
	return config.Load(file)
}

func portOf(t *testing.T, where, hostport string) string {
	t.Helper()
	_, port, err := net.SplitHostPort(hostport)
	if err != nil {
		t.Fatalf("%s: %q: %v", where, hostport, err)
	}
	return port
}

// checkHealthURL fails unless raw is http://127.0.0.1:port/ + one of paths.
func checkHealthURL(t *testing.T, where, raw, port string, paths ...string) {
	t.Helper()
	u, err := url.Parse(raw)
	if err != nil || u.Scheme != "http" || u.Hostname() != "127.0.0.1" || u.Port() != port || !slices.Contains(paths, u.Path) {
		t.Errorf("%s: health check URL %q, want http://127.0.0.1:%s%s", where, raw, port, strings.Join(paths, " or "))
	}
}

func uidOf(user string) int {
	uid, err := strconv.Atoi(strings.SplitN(user, ":", 2)[0])
	if err != nil {
		return -1
	}
	return uid
}

// TestDockerfile: a static, trimmed build of ./cmd/manager stamped with the
// version build arguments, on the Go of go.mod; a final image that runs it
// as a non-root uid owning a writable /data, with the shipped config, a
// default command that parses, a health check of /healthz on the port the
// image makes the API listen on.
func TestDockerfile(t *testing.T) {
	df := parseDockerfile(t, filepath.Join(repoRoot, "Dockerfile"))
	build, final := df.stages[0], df.final()

	gomod, err := os.ReadFile(filepath.Join(repoRoot, "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	goLine := regexp.MustCompile(`(?m)^go (\d+\.\d+)`).FindSubmatch(gomod)
	if goLine == nil {
		t.Fatal("go.mod has no go directive")
	}
	from := strings.ReplaceAll(build.from, "${GO_VERSION}", df.args["GO_VERSION"])
	if !strings.HasPrefix(from, "golang:"+string(goLine[1])) {
		t.Errorf("builder FROM %s (GO_VERSION %q), want golang:%s as go.mod says", build.from, df.args["GO_VERSION"], goLine[1])
	}
	var goBuild string
	for _, r := range build.runs {
		if strings.Contains(r, "go build") {
			goBuild = r
		}
	}
	for _, want := range []string{"-trimpath", "./cmd/manager", "-X main.buildVersion=${VERSION}", "-X main.buildRevision=${REVISION}"} {
		if !strings.Contains(goBuild, want) {
			t.Errorf("builder's go build %q lacks %s", goBuild, want)
		}
	}
	if build.env["CGO_ENABLED"] != "0" && !strings.Contains(goBuild, "CGO_ENABLED=0") {
		t.Error("the builder does not set CGO_ENABLED=0: the binary would not be static")
	}
	ignore, err := os.ReadFile(filepath.Join(repoRoot, ".dockerignore"))
	if err != nil || !slices.Contains(strings.Fields(string(ignore)), ".git") {
		t.Errorf(".dockerignore does not leave out .git (%v): the revision comes from the build arguments", err)
	}
	if bv, br := buildVersion, buildRevision; bv != "" || br != "" {
		t.Errorf("main.buildVersion %q, main.buildRevision %q: set only by the linker", bv, br)
	}

	if !strings.HasPrefix(final.from, "gcr.io/distroless/static") && final.from != "scratch" {
		t.Errorf("final FROM %s, want distroless/static or scratch (a static binary needs no libc)", final.from)
	}
	uid := uidOf(final.user)
	if uid <= 0 {
		t.Errorf("final USER %q, want a numeric non-root uid (Kubernetes' runAsNonRoot checks it)", final.user)
	}
	if len(final.entrypoint) != 1 {
		t.Fatalf("ENTRYPOINT %q, want the manager alone", final.entrypoint)
	}
	binary := final.entrypoint[0]
	copied := map[string]string{} // destination → source
	var dataOwned bool
	for _, c := range final.copies {
		var words []string
		var chown string
		for _, w := range c {
			if v, ok := strings.CutPrefix(w, "--chown="); ok {
				chown = v
			}
			if !strings.HasPrefix(w, "--") {
				words = append(words, w)
			}
		}
		copied[words[len(words)-1]] = words[0]
		if words[len(words)-1] == "/data" && uidOf(chown) == uid {
			dataOwned = true
		}
	}
	if _, ok := copied[binary]; !ok {
		t.Errorf("ENTRYPOINT %s is not copied into the final stage", binary)
	}
	checkCommand(t, "Dockerfile CMD", final.cmd)
	cfgPath, _ := flagValue(final.cmd, "config")
	if copied[cfgPath] != "config.yaml" {
		t.Errorf("CMD reads %q; the shipped config.yaml is copied to %v", cfgPath, copied)
	}
	if !dataOwned {
		t.Errorf("no /data owned by uid %d: the embedded store could not be written", uid)
	}
	if dir := path.Dir(final.env["WAFLEET_STORE_PATH"]); dir != "/data" {
		t.Errorf("WAFLEET_STORE_PATH %q is not in /data", final.env["WAFLEET_STORE_PATH"])
	}
	checkEnvNames(t, "Dockerfile ENV", slices.Collect(maps.Keys(final.env)))

	// The image's environment and config, with a token (it listens off
	// loopback), make a configuration that loads.
	env := mergeEnv(final.env, map[string]string{"WAFLEET_HTTP_TOKEN": testToken(t), "WAFLEET_STORE_PATH": filepath.Join(t.TempDir(), "wafleet.db")})
	cfg, err := loadWithEnv(t, filepath.Join(repoRoot, "config.yaml"), env)
	if err != nil {
		t.Fatalf("the image's configuration: %v", err)
	}
	port := portOf(t, "http.listen", cfg.HTTP.Listen)
	if !slices.Contains(final.expose, port) {
		t.Errorf("EXPOSE %v, want the API's port %s", final.expose, port)
	}
	if len(final.healthcheck) < 4 || final.healthcheck[0] != binary {
		t.Fatalf("HEALTHCHECK %q, want %s health --url …", final.healthcheck, binary)
	}
	checkCommand(t, "Dockerfile HEALTHCHECK", final.healthcheck[1:])
	u, _ := flagValue(final.healthcheck[1:], "url")
	checkHealthURL(t, "Dockerfile HEALTHCHECK", u, port, "/healthz")
}

// imageEnv returns the final stage's ENV: the environment every container
// of the image starts with.
func imageEnv(t *testing.T) map[string]string {
	t.Helper()
	return parseDockerfile(t, filepath.Join(repoRoot, "Dockerfile")).final().env
}

// mergeEnv merges its arguments, later ones winning.
func mergeEnv(ms ...map[string]string) map[string]string {
	out := map[string]string{}
	for _, m := range ms {
		for k, v := range m {
			out[k] = v
		}
	}
	return out
}

// testToken is a token strong enough for an API off loopback.
func testToken(t *testing.T) string { return testKey(t) }

// testKey is a fresh store encryption key (32 bytes, base64).
func testKey(t *testing.T) string {
	t.Helper()
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return base64.StdEncoding.EncodeToString(b)
}

type composeFile struct {
	Services map[string]composeService `yaml:"services"`
	Volumes  map[string]any            `yaml:"volumes"`
}

type composeService struct {
	Image       string            `yaml:"image"`
	Build       string            `yaml:"build"`
	Command     []string          `yaml:"command"`
	Environment map[string]string `yaml:"environment"`
	Ports       []string          `yaml:"ports"`
	Volumes     []string          `yaml:"volumes"`
	ReadOnly    bool              `yaml:"read_only"`
	Healthcheck struct {
		Test []string `yaml:"test"`
	} `yaml:"healthcheck"`
	DependsOn map[string]struct {
		Condition string `yaml:"condition"`
	} `yaml:"depends_on"`
}

// composeVar matches an interpolation: ${NAME}, ${NAME:?message}, ….
var composeVar = regexp.MustCompile(`\$\{([A-Za-z_][A-Za-z0-9_]*)(?::?[-?+][^}]*)?\}`)

// TestCompose: `docker compose up` starts two fleet instances of the image
// on one Redis with AOF on a volume, against an emulator whose fixed root
// key they trust; each loads the shipped config.yaml with its environment
// (the image's, then the service's); the token and store key come from the
// caller's environment and are required; ports are published on 127.0.0.1
// only; commands and health checks parse.
func TestCompose(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join(repoRoot, "docker-compose.yml"))
	if err != nil {
		t.Fatal(err)
	}
	secrets := map[string]string{"WAFLEET_HTTP_TOKEN": testToken(t), "WAFLEET_STORE_ENCRYPTION_KEY": testKey(t)}
	expanded := composeVar.ReplaceAllStringFunc(string(raw), func(m string) string {
		sub := composeVar.FindStringSubmatch(m)
		v, ok := secrets[sub[1]]
		if !ok {
			t.Errorf("docker-compose.yml interpolates %s, which this test does not know", sub[1])
		}
		if !strings.HasPrefix(m, "${"+sub[1]+":?") {
			t.Errorf("docker-compose.yml: %s must be required (${%s:?message}): there is no safe default", m, sub[1])
		}
		return v
	})
	for name := range secrets {
		if !strings.Contains(string(raw), "${"+name+":?") {
			t.Errorf("docker-compose.yml does not take %s from the environment", name)
		}
	}
	var cf composeFile
	if err := yaml.Unmarshal([]byte(expanded), &cf); err != nil {
		t.Fatalf("docker-compose.yml: %v", err)
	}

	var managers, redises, emulators []string
	for name, s := range cf.Services {
		switch {
		case len(s.Command) > 0 && s.Command[0] == "run":
			managers = append(managers, name)
		case len(s.Command) > 0 && s.Command[0] == "emulator":
			emulators = append(emulators, name)
		case strings.HasPrefix(s.Image, "redis:"):
			redises = append(redises, name)
		}
		for _, p := range s.Ports {
			if !strings.HasPrefix(p, "127.0.0.1:") {
				t.Errorf("service %s publishes %q: publish on 127.0.0.1 only", name, p)
			}
		}
	}
	slices.Sort(managers)
	if len(managers) < 2 || len(redises) != 1 || len(emulators) != 1 {
		t.Fatalf("services: managers %v, redis %v, emulators %v; want two or more managers, one Redis, one emulator", managers, redises, emulators)
	}

	redis := cf.Services[redises[0]]
	for _, want := range [][]string{{"--appendonly", "yes"}, {"--appendfsync", "everysec"}} {
		if i := slices.Index(redis.Command, want[0]); i < 0 || i+1 >= len(redis.Command) || redis.Command[i+1] != want[1] {
			t.Errorf("redis command %q lacks %s %s", redis.Command, want[0], want[1])
		}
	}
	var redisVolume bool
	for _, v := range redis.Volumes {
		src, dst, _ := strings.Cut(v, ":")
		if _, named := cf.Volumes[src]; named && dst == "/data" {
			redisVolume = true
		}
	}
	if !redisVolume {
		t.Errorf("redis volumes %q: its /data (the AOF) must be a named volume", redis.Volumes)
	}

	emuName := emulators[0]
	emu := cf.Services[emuName]
	checkCommand(t, "emulator command", emu.Command)
	emuListen, _ := flagValue(emu.Command, "listen")
	emuPort := portOf(t, "emulator --listen", emuListen)
	keyFile, ok := flagValue(emu.Command, "root-key-file")
	if !ok {
		t.Fatal("the emulator has no --root-key-file: its root key would change at every start")
	}
	var emuPub string
	for _, v := range emu.Volumes {
		parts := strings.Split(v, ":")
		if len(parts) >= 2 && parts[1] == keyFile {
			raw, err := os.ReadFile(filepath.Join(repoRoot, parts[0]))
			if err != nil {
				t.Fatalf("emulator root key: %v", err)
			}
			priv, err := hex.DecodeString(strings.TrimSpace(string(raw)))
			if err != nil {
				t.Fatalf("emulator root key %s: %v", parts[0], err)
			}
			kp, err := crypto.KeyPairFromPrivate(priv)
			if err != nil {
				t.Fatalf("emulator root key %s: %v", parts[0], err)
			}
			emuPub = hex.EncodeToString(kp.Pub[:])
		}
	}
	if emuPub == "" {
		t.Fatalf("no volume mounts %s into the emulator", keyFile)
	}
	if test := emu.Healthcheck.Test; len(test) < 3 || test[0] != "CMD" {
		t.Errorf("emulator healthcheck %q, want [CMD, manager, health, --url, …]", test)
	} else {
		checkCommand(t, "emulator health check", test[2:])
		u, _ := flagValue(emu.Healthcheck.Test, "url")
		checkHealthURL(t, "emulator health check", u, emuPort, "/stats")
	}

	image := imageEnv(t)
	ids := map[string]bool{}
	hostPorts := map[string]bool{}
	for _, name := range managers {
		s := cf.Services[name]
		t.Run(name, func(t *testing.T) {
			checkCommand(t, "command", s.Command)
			checkEnvNames(t, "environment", slices.Collect(maps.Keys(s.Environment)))
			if s.Environment["WAFLEET_FLEET_INSTANCE_ID"] == "" {
				t.Error("no WAFLEET_FLEET_INSTANCE_ID: the instance id would be a container's hostname")
			}
			for _, dep := range []string{redises[0], emuName} {
				if _, ok := s.DependsOn[dep]; !ok {
					t.Errorf("does not depend on %s", dep)
				}
			}
			cfgPath, _ := flagValue(s.Command, "config")
			if cfgPath != "/etc/wafleet/config.yaml" {
				t.Errorf("--config %q: the image's config is /etc/wafleet/config.yaml", cfgPath)
			}
			cfg, err := loadWithEnv(t, filepath.Join(repoRoot, "config.yaml"), mergeEnv(image, s.Environment))
			if err != nil {
				t.Fatalf("config: %v", err)
			}
			if ids[cfg.Fleet.InstanceID] {
				t.Errorf("instance id %s is used twice", cfg.Fleet.InstanceID)
			}
			ids[cfg.Fleet.InstanceID] = true
			if cfg.Store.Kind != "redis" || cfg.Redis.Addr != redises[0]+":6379" {
				t.Errorf("store %s at %s, want redis at %s:6379", cfg.Store.Kind, cfg.Redis.Addr, redises[0])
			}
			if key, err := cfg.Store.Key(); err != nil || key == nil {
				t.Errorf("store key %v: the device state would not be sealed", err)
			}
			if cfg.HTTP.Token == "" {
				t.Error("no API token")
			}
			server, err := url.Parse(cfg.Server.URL)
			if err != nil || server.Hostname() != emuName || server.Port() != emuPort {
				t.Errorf("server.url %s, want the emulator at %s:%s", cfg.Server.URL, emuName, emuPort)
			}
			if cfg.Server.RootPublicKey != emuPub {
				t.Errorf("server.root_public_key %s, want the emulator's %s", cfg.Server.RootPublicKey, emuPub)
			}
			if v, err := url.Parse(cfg.Client.VersionURL); err != nil || v.Hostname() != emuName {
				t.Errorf("client.version_url %s: offline, the emulator publishes the version", cfg.Client.VersionURL)
			}
			port := portOf(t, "http.listen", cfg.HTTP.Listen)
			if len(s.Ports) != 1 {
				t.Fatalf("ports %q, want the API's", s.Ports)
			}
			parts := strings.Split(s.Ports[0], ":")
			if len(parts) != 3 || parts[2] != port {
				t.Errorf("port %q, want 127.0.0.1:HOST:%s", s.Ports[0], port)
			}
			if hostPorts[parts[1]] {
				t.Errorf("host port %s published twice", parts[1])
			}
			hostPorts[parts[1]] = true
			test := s.Healthcheck.Test
			if len(test) < 3 || test[0] != "CMD" {
				t.Fatalf("healthcheck %q, want [CMD, manager, health, --url, …]", test)
			}
			checkCommand(t, "healthcheck", test[2:])
			u, _ := flagValue(test, "url")
			checkHealthURL(t, "healthcheck", u, port, "/healthz", "/readyz")
		})
	}
}

// Kubernetes objects, as far as the checks read them.
type k8sObject struct {
	Kind     string `yaml:"kind"`
	Metadata struct {
		Name   string            `yaml:"name"`
		Labels map[string]string `yaml:"labels"`
	} `yaml:"metadata"`
	Data map[string]string `yaml:"data"` // ConfigMap
	Spec struct {
		// StatefulSet, Deployment
		Replicas *int `yaml:"replicas"`
		Selector struct {
			MatchLabels map[string]string `yaml:"matchLabels"`
		} `yaml:"selector"`
		Template struct {
			Metadata struct {
				Labels map[string]string `yaml:"labels"`
			} `yaml:"metadata"`
			Spec k8sPodSpec `yaml:"spec"`
		} `yaml:"template"`
		// Service
		ServiceSelector map[string]string `yaml:"-"`
		Ports           []struct {
			Name       string `yaml:"name"`
			Port       int    `yaml:"port"`
			TargetPort any    `yaml:"targetPort"`
		} `yaml:"ports"`
	} `yaml:"spec"`
}

type k8sPodSpec struct {
	SecurityContext struct {
		RunAsNonRoot *bool `yaml:"runAsNonRoot"`
		RunAsUser    *int  `yaml:"runAsUser"`
	} `yaml:"securityContext"`
	Containers []k8sContainer `yaml:"containers"`
	Volumes    []struct {
		Name      string `yaml:"name"`
		ConfigMap *struct {
			Name string `yaml:"name"`
		} `yaml:"configMap"`
		Secret *struct {
			SecretName string `yaml:"secretName"`
			Items      []struct {
				Key  string `yaml:"key"`
				Path string `yaml:"path"`
			} `yaml:"items"`
		} `yaml:"secret"`
		EmptyDir              any `yaml:"emptyDir"`
		PersistentVolumeClaim any `yaml:"persistentVolumeClaim"`
	} `yaml:"volumes"`
}

type k8sContainer struct {
	Name    string   `yaml:"name"`
	Command []string `yaml:"command"`
	Args    []string `yaml:"args"`
	Env     []struct {
		Name      string `yaml:"name"`
		Value     string `yaml:"value"`
		ValueFrom *struct {
			FieldRef *struct {
				FieldPath string `yaml:"fieldPath"`
			} `yaml:"fieldRef"`
			SecretKeyRef *struct {
				Name string `yaml:"name"`
				Key  string `yaml:"key"`
			} `yaml:"secretKeyRef"`
		} `yaml:"valueFrom"`
	} `yaml:"env"`
	Ports []struct {
		Name          string `yaml:"name"`
		ContainerPort int    `yaml:"containerPort"`
	} `yaml:"ports"`
	LivenessProbe  *k8sProbe `yaml:"livenessProbe"`
	ReadinessProbe *k8sProbe `yaml:"readinessProbe"`
	Resources      struct {
		Requests map[string]string `yaml:"requests"`
	} `yaml:"resources"`
	SecurityContext struct {
		AllowPrivilegeEscalation *bool `yaml:"allowPrivilegeEscalation"`
		ReadOnlyRootFilesystem   *bool `yaml:"readOnlyRootFilesystem"`
		RunAsNonRoot             *bool `yaml:"runAsNonRoot"`
	} `yaml:"securityContext"`
	VolumeMounts []struct {
		Name      string `yaml:"name"`
		MountPath string `yaml:"mountPath"`
	} `yaml:"volumeMounts"`
}

type k8sProbe struct {
	HTTPGet *struct {
		Path string `yaml:"path"`
		Port any    `yaml:"port"`
	} `yaml:"httpGet"`
}

// readManifests decodes every document of the files kustomization.yaml
// lists, and checks it lists every manifest of the folder.
func readManifests(t *testing.T) []k8sObject {
	t.Helper()
	dir := filepath.Join(repoRoot, "deploy", "kubernetes")
	raw, err := os.ReadFile(filepath.Join(dir, "kustomization.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var kust struct {
		Resources []string `yaml:"resources"`
	}
	if err := yaml.Unmarshal(raw, &kust); err != nil {
		t.Fatalf("kustomization.yaml: %v", err)
	}
	files, err := filepath.Glob(filepath.Join(dir, "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		if base := filepath.Base(f); base != "kustomization.yaml" && !slices.Contains(kust.Resources, base) {
			t.Errorf("kustomization.yaml does not list %s", base)
		}
	}
	var objs []k8sObject
	for _, name := range kust.Resources {
		raw, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		dec := yaml.NewDecoder(bytes.NewReader(raw))
		for {
			var node yaml.Node
			if err := dec.Decode(&node); err != nil {
				if errors.Is(err, io.EOF) {
					break
				}
				t.Fatalf("%s: %v", name, err)
			}
			var obj k8sObject
			if err := node.Decode(&obj); err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			if obj.Kind == "Service" {
				var svc struct {
					Spec struct {
						Selector map[string]string `yaml:"selector"`
					} `yaml:"spec"`
				}
				if err := node.Decode(&svc); err != nil {
					t.Fatalf("%s: %v", name, err)
				}
				obj.Spec.ServiceSelector = svc.Spec.Selector
			}
			objs = append(objs, obj)
		}
	}
	return objs
}

func subset(small, big map[string]string) bool {
	if len(small) == 0 {
		return false
	}
	for k, v := range small {
		if big[k] != v {
			return false
		}
	}
	return true
}

// TestKubernetesManifests: the StatefulSet runs the image's manager with
// the ConfigMap's config.yaml, the instance id from the pod name, the API
// token and store key from the Secret; that configuration loads; the
// probes hit /healthz and /readyz on the port the API listens on; the pod
// is non-root (the image's uid) on a read-only root file system with
// resource requests; the Services select its pods and reach that port.
func TestKubernetesManifests(t *testing.T) {
	objs := readManifests(t)
	var workload, configMap *k8sObject
	var services []*k8sObject
	for i := range objs {
		switch objs[i].Kind {
		case "StatefulSet", "Deployment":
			workload = &objs[i]
		case "ConfigMap":
			configMap = &objs[i]
		case "Service":
			services = append(services, &objs[i])
		}
	}
	if workload == nil || configMap == nil || len(services) == 0 {
		t.Fatalf("want a StatefulSet or Deployment, a ConfigMap and a Service; have %d objects", len(objs))
	}
	pod := workload.Spec.Template.Spec
	podLabels := workload.Spec.Template.Metadata.Labels
	if !subset(workload.Spec.Selector.MatchLabels, podLabels) {
		t.Errorf("%s selector %v does not select its pods %v", workload.Kind, workload.Spec.Selector.MatchLabels, podLabels)
	}
	if len(pod.Containers) != 1 {
		t.Fatalf("%d containers, want the manager alone", len(pod.Containers))
	}
	c := pod.Containers[0]
	if c.Command != nil {
		t.Errorf("command %q replaces the image's ENTRYPOINT; set args", c.Command)
	}
	checkCommand(t, "container args", c.Args)

	mounts := map[string]string{} // volume name → mount path
	for _, m := range c.VolumeMounts {
		mounts[m.Name] = m.MountPath
	}
	tmp := t.TempDir()
	files := map[string]string{} // path in the pod → path here
	secretValue := func(key string) string {
		if strings.Contains(key, "encryption") {
			return testKey(t)
		}
		return testToken(t)
	}
	var secretName string
	for _, v := range pod.Volumes {
		mount, ok := mounts[v.Name]
		switch {
		case !ok:
			t.Errorf("volume %s is not mounted", v.Name)
		case v.ConfigMap != nil:
			if v.ConfigMap.Name != configMap.Metadata.Name {
				t.Errorf("volume %s: ConfigMap %s, want %s", v.Name, v.ConfigMap.Name, configMap.Metadata.Name)
			}
			for key, content := range configMap.Data {
				local := filepath.Join(tmp, "configmap", key)
				os.MkdirAll(filepath.Dir(local), 0o700)
				if err := os.WriteFile(local, []byte(content), 0o600); err != nil {
					t.Fatal(err)
				}
				files[path.Join(mount, key)] = local
			}
		case v.Secret != nil:
			secretName = v.Secret.SecretName
			for _, item := range v.Secret.Items {
				local := filepath.Join(tmp, "secret", item.Path)
				os.MkdirAll(filepath.Dir(local), 0o700)
				if err := os.WriteFile(local, []byte(secretValue(item.Key)+"\n"), 0o600); err != nil {
					t.Fatal(err)
				}
				files[path.Join(mount, item.Path)] = local
			}
		}
	}

	env := mergeEnv(imageEnv(t))
	var names []string
	var instanceFromPod, tokenFromSecret bool
	for _, e := range c.Env {
		names = append(names, e.Name)
		switch {
		case e.ValueFrom != nil && e.ValueFrom.FieldRef != nil:
			if e.ValueFrom.FieldRef.FieldPath != "metadata.name" {
				t.Errorf("%s from %s; only metadata.name is known here", e.Name, e.ValueFrom.FieldRef.FieldPath)
			}
			env[e.Name] = "wafleet-0"
			instanceFromPod = instanceFromPod || e.Name == "WAFLEET_FLEET_INSTANCE_ID"
		case e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil:
			if secretName != "" && e.ValueFrom.SecretKeyRef.Name != secretName {
				t.Errorf("%s from Secret %s, the volume from %s: use one Secret", e.Name, e.ValueFrom.SecretKeyRef.Name, secretName)
			}
			env[e.Name] = secretValue(e.ValueFrom.SecretKeyRef.Key)
			tokenFromSecret = tokenFromSecret || e.Name == "WAFLEET_HTTP_TOKEN"
		default:
			env[e.Name] = e.Value
			if local, ok := files[e.Value]; ok {
				env[e.Name] = local
			}
			if strings.Contains(e.Name, "TOKEN") || strings.HasSuffix(e.Name, "ENCRYPTION_KEY") {
				t.Errorf("%s is written in the manifest: take it from the Secret", e.Name)
			}
		}
	}
	checkEnvNames(t, "container env", names)
	if !instanceFromPod {
		t.Error("WAFLEET_FLEET_INSTANCE_ID does not come from the pod name (fieldRef metadata.name)")
	}
	if !tokenFromSecret {
		t.Error("WAFLEET_HTTP_TOKEN does not come from a Secret")
	}

	cfgPath, _ := flagValue(c.Args, "config")
	local, ok := files[cfgPath]
	if !ok {
		t.Fatalf("--config %s is no file of the ConfigMap's volume (%v)", cfgPath, slices.Collect(maps.Keys(files)))
	}
	cfg, err := loadWithEnv(t, local, env)
	if err != nil {
		t.Fatalf("the pod's configuration: %v", err)
	}
	if cfg.Fleet.InstanceID != "wafleet-0" {
		t.Errorf("instance id %q, want the pod name", cfg.Fleet.InstanceID)
	}
	if key, err := cfg.Store.Key(); err != nil || key == nil {
		t.Errorf("store key %v: the device state would not be sealed", err)
	}
	if replicas := workload.Spec.Replicas; (replicas == nil || *replicas > 1) && cfg.Store.Kind != "redis" {
		t.Errorf("several replicas on store %s: instances share accounts only through Redis", cfg.Store.Kind)
	}
	if cfg.Store.Kind == "embedded" {
		var mounted bool
		for _, m := range mounts {
			mounted = mounted || strings.HasPrefix(cfg.Store.Path, m+"/")
		}
		if !mounted {
			t.Errorf("store.path %s is on the read-only root file system", cfg.Store.Path)
		}
	}

	listenPort, _ := strconv.Atoi(portOf(t, "http.listen", cfg.HTTP.Listen))
	portNumber := func(where string, p any) int {
		switch p := p.(type) {
		case int:
			return p
		case string:
			for _, cp := range c.Ports {
				if cp.Name == p {
					return cp.ContainerPort
				}
			}
		}
		t.Errorf("%s: port %v is not a port of the container", where, p)
		return -1
	}
	for _, p := range []struct {
		name  string
		probe *k8sProbe
		path  string
	}{{"livenessProbe", c.LivenessProbe, "/healthz"}, {"readinessProbe", c.ReadinessProbe, "/readyz"}} {
		if p.probe == nil || p.probe.HTTPGet == nil {
			t.Errorf("no %s httpGet", p.name)
			continue
		}
		if p.probe.HTTPGet.Path != p.path {
			t.Errorf("%s path %s, want %s", p.name, p.probe.HTTPGet.Path, p.path)
		}
		if n := portNumber(p.name, p.probe.HTTPGet.Port); n != listenPort {
			t.Errorf("%s port %d, the API listens on %d", p.name, n, listenPort)
		}
	}
	for _, svc := range services {
		if !subset(svc.Spec.ServiceSelector, podLabels) {
			t.Errorf("Service %s selects %v, not the pods %v", svc.Metadata.Name, svc.Spec.ServiceSelector, podLabels)
		}
		for _, sp := range svc.Spec.Ports {
			if n := portNumber("Service "+svc.Metadata.Name, sp.TargetPort); n != listenPort {
				t.Errorf("Service %s targets port %d, the API listens on %d", svc.Metadata.Name, n, listenPort)
			}
		}
	}

	if c.Resources.Requests["cpu"] == "" || c.Resources.Requests["memory"] == "" {
		t.Errorf("resource requests %v, want cpu and memory", c.Resources.Requests)
	}
	isTrue := func(b *bool) bool { return b != nil && *b }
	if !isTrue(pod.SecurityContext.RunAsNonRoot) && !isTrue(c.SecurityContext.RunAsNonRoot) {
		t.Error("runAsNonRoot is not set")
	}
	if uid := uidOf(parseDockerfile(t, filepath.Join(repoRoot, "Dockerfile")).final().user); pod.SecurityContext.RunAsUser != nil && *pod.SecurityContext.RunAsUser != uid {
		t.Errorf("runAsUser %d, the image's user is %d", *pod.SecurityContext.RunAsUser, uid)
	}
	if !isTrue(c.SecurityContext.ReadOnlyRootFilesystem) {
		t.Error("readOnlyRootFilesystem is not set")
	}
	if c.SecurityContext.AllowPrivilegeEscalation == nil || *c.SecurityContext.AllowPrivilegeEscalation {
		t.Error("allowPrivilegeEscalation is not false")
	}
}
