package main

import (
	"bufio"
	"context"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/wafleet/wafleet/crypto"
	"github.com/wafleet/wafleet/wire"
	"github.com/wafleet/wafleet/wire/node"
	"github.com/wafleet/wafleet/wire/payload"
)

// TestEmulatorCLIContract builds the binary and checks the contract that
// outside tools rely on: the first stdout line, the control API, a real
// handshake against the announced root key, and a clean exit on SIGTERM.
func TestEmulatorCLIContract(t *testing.T) {
	bin := managerBinary(t)

	cmd := exec.Command(bin, "emulator", "--listen", "127.0.0.1:0", "--fault", "slow-server-hello=1ms", "--fault", "bad-pair-hmac",
		"--fault", "drop-pongs", "--day-one", "--push-rate", "2.5", "--push-burst", "7", "--ack-deadline", "90s", "--ping-interval", "-1s",
		"--min-version", "2.3000.1", "--latest-version", "2.3000.1234567")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			cmd.Process.Kill()
			<-exited
		}
	})

	lines := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		if sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
		io.Copy(io.Discard, stdout)
		exited <- cmd.Wait()
	}()
	var first string
	select {
	case l, ok := <-lines:
		if !ok {
			t.Fatalf("no first line; stderr:\n%s", stderr.String())
		}
		first = l
	case <-time.After(20 * time.Second):
		t.Fatal("no first line in time")
	}

	var raw map[string]any
	if err := json.Unmarshal([]byte(first), &raw); err != nil {
		t.Fatalf("first line %q is not JSON: %v", first, err)
	}
	keys := make([]string, 0, len(raw))
	for k := range raw {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	if !slices.Equal(keys, []string{"control_url", "root_public_key", "url", "version_url"}) {
		t.Fatalf("first line keys %v", keys)
	}
	var info emulatorInfo
	json.Unmarshal([]byte(first), &info)
	m := regexp.MustCompile(`^ws://127\.0\.0\.1:([0-9]+)/ws/chat$`).FindStringSubmatch(info.URL)
	if m == nil || m[1] == "0" {
		t.Fatalf("url %q", info.URL)
	}
	if info.ControlURL != "http://127.0.0.1:"+m[1] {
		t.Fatalf("control_url %q for url %q", info.ControlURL, info.URL)
	}
	if info.VersionURL != info.ControlURL+"/sw.js" {
		t.Fatalf("version_url %q", info.VersionURL)
	}
	root, err := hex.DecodeString(info.RootPublicKey)
	if err != nil || len(root) != 32 || info.RootPublicKey != strings.ToLower(info.RootPublicKey) {
		t.Fatalf("root_public_key %q is not 64 lowercase hex characters", info.RootPublicKey)
	}

	// A registration handshake against the process, trusting the announced
	// root key, gets pair-device.
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	registerOnce(ctx, t, info.URL, root)

	resp, err := http.Get(info.ControlURL + "/stats")
	if err != nil {
		t.Fatal(err)
	}
	var st map[string]any
	err = json.NewDecoder(resp.Body).Decode(&st)
	resp.Body.Close()
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("GET /stats: %d %v", resp.StatusCode, err)
	}
	for _, k := range []string{"handshakes", "registrations", "pairings", "logins", "logins_rejected", "active_connections", "max_connections_per_device", "pings", "violations"} {
		if _, ok := st[k]; !ok {
			t.Fatalf("stats lack %q: %v", k, st)
		}
	}
	if st["handshakes"] != 1.0 || st["registrations"] != 1.0 {
		t.Fatalf("stats after one registration: %v", st)
	}
	for _, k := range []string{"stanzas_pushed", "acks_ok", "acks_malformed", "ack_deadline_kills", "redeliveries",
		"server_pings_sent", "server_pings_answered", "prekey_uploads", "devices_with_prekeys"} {
		if _, ok := st[k]; !ok {
			t.Fatalf("stats lack %q: %v", k, st)
		}
	}

	// The day-one, version and fault flags reached the server.
	for path, want := range map[string]map[string]any{
		"/dayone":  {"enabled": true, "push_rate": 2.5, "push_burst": 7.0, "ack_deadline": "1m30s", "ping_interval": "-1s"},
		"/version": {"min": "2.3000.1", "latest": "2.3000.1234567"},
		"/faults":  {},
	} {
		resp, err := http.Get(info.ControlURL + path)
		if err != nil {
			t.Fatal(err)
		}
		var got map[string]any
		err = json.NewDecoder(resp.Body).Decode(&got)
		resp.Body.Close()
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("GET %s: %d %v", path, resp.StatusCode, err)
		}
		for k, v := range want {
			if got[k] != v {
				t.Fatalf("GET %s: %s = %v, want %v (%v)", path, k, got[k], v, got)
			}
		}
		if path == "/faults" && !slices.Contains(got["faults"].([]any), any("drop-pongs")) {
			t.Fatalf("GET /faults: %v", got)
		}
	}
	resp, err = http.Get(info.VersionURL)
	if err != nil {
		t.Fatal(err)
	}
	js, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || resp.StatusCode != 200 || !regexp.MustCompile(`\\"client_revision\\":1234567,`).Match(js) {
		t.Fatalf("GET version_url: %d %v; no client_revision 1234567 in %.300q", resp.StatusCode, err, js)
	}
	resp, err = http.Post(info.ControlURL+"/scan", "text/plain", strings.NewReader("garbage"))
	if err != nil {
		t.Fatal(err)
	}
	var e map[string]string
	json.NewDecoder(resp.Body).Decode(&e)
	resp.Body.Close()
	if resp.StatusCode != 400 || e["error"] == "" {
		t.Fatalf("POST /scan garbage: %d %v", resp.StatusCode, e)
	}

	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		if err != nil {
			t.Fatalf("exit after SIGTERM: %v; stderr:\n%s", err, stderr.String())
		}
	case <-time.After(20 * time.Second):
		t.Fatal("no exit after SIGTERM")
	}
	// Logs are JSON lines on stderr.
	for _, l := range strings.Split(strings.TrimSpace(stderr.String()), "\n") {
		if !json.Valid([]byte(l)) {
			t.Fatalf("stderr line is not JSON: %q", l)
		}
	}
}

func registerOnce(ctx context.Context, t *testing.T, url string, root []byte) {
	t.Helper()
	noise, _ := crypto.GenerateKeyPair()
	identity, _ := crypto.GenerateKeyPair()
	spk, _ := crypto.GenerateKeyPair()
	sig, err := crypto.Sign(identity, append([]byte{5}, spk.Pub[:]...))
	if err != nil {
		t.Fatal(err)
	}
	cp, err := payload.Registration(payload.RegistrationData{RegistrationID: 7, IdentityPub: identity.Pub, SignedPreKeyID: 1, SignedPreKeyPub: spk.Pub, SignedPreKeySig: sig})
	if err != nil {
		t.Fatal(err)
	}
	b, _ := proto.Marshal(cp)
	conn, err := wire.Dial(ctx, url, wire.DialOptions{})
	if err != nil {
		t.Fatal(err)
	}
	tr, err := wire.ClientHandshake(ctx, conn, wire.ClientHandshakeConfig{NoiseKey: noise, Payload: b, RootKey: root})
	if err != nil {
		t.Fatalf("handshake with the announced root key: %v", err)
	}
	defer tr.Close()
	pt, err := tr.Receive()
	if err != nil {
		t.Fatal(err)
	}
	n, err := node.UnmarshalPayload(pt)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := n.Child("pair-device"); !ok {
		t.Fatalf("got %v, want pair-device", n)
	}
}

// TestEmulatorBadOptionFlags checks that a bad version or day-one flag is a
// usage error (exit 2) naming what is wrong.
func TestEmulatorBadOptionFlags(t *testing.T) {
	tests := []struct {
		args []string
		want string
	}{
		{args: []string{"--min-version", "2.3000"}, want: "min"},
		{args: []string{"--latest-version", "latest"}, want: "latest"},
		{args: []string{"--day-one", "--push-rate", "5000"}, want: "push_rate"},
		{args: []string{"--ack-deadline", "soon"}, want: "ack-deadline"},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			var stdout, stderr strings.Builder
			code := run(context.Background(), &env{stdout: &stdout, stderr: &stderr}, append([]string{"emulator", "--listen", "127.0.0.1:0"}, tt.args...))
			if code != 2 || !strings.Contains(stderr.String(), tt.want) {
				t.Fatalf("exit %d, stderr %q; want 2 and %q", code, stderr.String(), tt.want)
			}
			if stdout.Len() != 0 {
				t.Fatalf("stdout %q", stdout.String())
			}
		})
	}
}
