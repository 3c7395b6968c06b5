package emulator_test

import (
	"encoding/json"
	"io"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/wafleet/wafleet/emulator"
	"github.com/wafleet/wafleet/emulator/emutest"
	"github.com/wafleet/wafleet/wire/jid"
	"github.com/wafleet/wafleet/wire/node"
	"github.com/wafleet/wafleet/wire/payload"
)

// loginVersion dials with d's login payload carrying appVersion v.
func loginVersion(t *testing.T, srv *emulator.Server, d *testDevice, v payload.Version) *testConn {
	t.Helper()
	user, err := d.jid.UserInt()
	if err != nil {
		t.Fatal(err)
	}
	cp, err := payload.Login(payload.LoginData{Username: user, Device: uint32(d.jid.Device), Version: v})
	if err != nil {
		t.Fatal(err)
	}
	c, err := handshake(t, srv, d.noise, marshal(t, cp), 0)
	if err != nil {
		t.Fatalf("login handshake: %v", err)
	}
	return c
}

func expectFailure(t *testing.T, c *testConn, reason string) node.Node {
	t.Helper()
	f := c.expectTag("failure")
	if r, _ := f.Attr("reason"); r != reason {
		t.Fatalf("got %v, want failure %s", f, reason)
	}
	if loc, _ := f.Attr("location"); loc == "" {
		t.Fatalf("failure without location: %v", f)
	}
	c.expectClosed()
	return f
}

func TestMinVersion(t *testing.T) {
	srv := emutest.Start(t, emulator.Options{})
	d := newTestDevice(t)
	pair(t, srv, d)
	def := payload.DefaultVersion()
	min := payload.Version{Primary: def.Primary, Secondary: def.Secondary, Tertiary: def.Tertiary + 1}
	if err := srv.SetVersions(emulator.Versions{Min: min.String()}); err != nil {
		t.Fatal(err)
	}
	expectFailure(t, login(t, srv, d), "405")
	expectFailure(t, register(t, srv, newTestDevice(t)), "405") // registrations too
	expectFailure(t, loginVersion(t, srv, d, payload.Version{Primary: 2, Secondary: 2999, Tertiary: 2_000_000_000}), "405")
	loginVersion(t, srv, d, min).expectTag("success")
	loginVersion(t, srv, d, payload.Version{Primary: 2, Secondary: 3001, Tertiary: 1}).expectTag("success")
	if st := srv.Stats(); st.LoginsRejected != 3 || st.Logins != 2 || len(st.Violations) != 0 {
		t.Fatalf("stats %+v", st)
	}
	if v := srv.Versions(); v.Min != min.String() || v.Latest != min.String() {
		t.Fatalf("versions %+v: latest defaults to min", v)
	}
}

// Three ways clients read the version from sw.js.
var baileysRevision = regexp.MustCompile(`\\?"client_revision\\?":\s*(\d+)`)
var swDataLiteral = regexp.MustCompile(`self\.__swData=JSON\.parse\(/\*BTDS\*/("(?:[^"\\]|\\.)*")\);`)

func revisionsInSWJS(t *testing.T, js string) [3]int64 {
	t.Helper()
	var out [3]int64
	m := baileysRevision.FindStringSubmatch(js)
	if m == nil {
		t.Fatalf("Baileys' regexp finds no client_revision in %.200q", js)
	}
	out[0], _ = strconv.ParseInt(m[1], 10, 64)
	// whatsapp-rust: the first digits after the first "client_revision".
	i := strings.Index(js, "client_revision")
	rest := js[i+len("client_revision"):]
	j := strings.IndexAny(rest, "0123456789")
	k := j
	for k < len(rest) && rest[k] >= '0' && rest[k] <= '9' {
		k++
	}
	out[1], _ = strconv.ParseInt(rest[j:k], 10, 64)
	// Decoding the string literal, then the JSON.
	lm := swDataLiteral.FindStringSubmatch(js)
	if lm == nil {
		t.Fatal("no self.__swData=JSON.parse(/*BTDS*/\"…\");")
	}
	var inner string
	if err := json.Unmarshal([]byte(lm[1]), &inner); err != nil {
		t.Fatalf("the JSON.parse argument is not a string literal: %v", err)
	}
	var data struct {
		DynamicData struct {
			SiteData struct {
				ClientRevision int64 `json:"client_revision"`
				ServerRevision int64 `json:"server_revision"`
				SpinR          int64 `json:"__spin_r"`
			} `json:"SiteData"`
		} `json:"dynamic_data"`
	}
	if err := json.Unmarshal([]byte(inner), &data); err != nil {
		t.Fatalf("__swData is not JSON: %v", err)
	}
	sd := data.DynamicData.SiteData
	if sd.ServerRevision != sd.ClientRevision || sd.SpinR != sd.ClientRevision {
		t.Fatalf("SiteData revisions disagree: %+v", sd)
	}
	out[2] = sd.ClientRevision
	if strings.Count(js, "client_revision") != 1 {
		t.Fatal("client_revision occurs more than once")
	}
	if first, _, _ := strings.Cut(js[strings.Index(js, "self.__swData"):], "\n"); len(first) < 500 {
		t.Fatalf("the data line is short (%d characters); the real one is long", len(first))
	}
	return out
}

func getSWJS(t *testing.T, srv *emulator.Server) string {
	t.Helper()
	resp, err := http.Get(srv.ControlURL() + "/sw.js")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/javascript") {
		t.Fatalf("GET /sw.js: %d %q", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	return string(b)
}

func TestSWJSAndVersionControl(t *testing.T) {
	srv := emutest.Start(t, emulator.Options{})
	base := srv.ControlURL()
	def := int64(payload.DefaultVersion().Tertiary)
	if got := revisionsInSWJS(t, getSWJS(t, srv)); got != [3]int64{def, def, def} {
		t.Fatalf("sw.js revisions %v, want %d (the built-in version)", got, def)
	}
	tests := []struct {
		name, method, body string
		status             int
		min, latest        string // for 200
		errWant            string // for errors: in the message
	}{
		{name: "get", method: "GET", status: 200, latest: payload.DefaultVersion().String()},
		{name: "min only: latest follows", method: "POST", body: `{"min":"2.3000.1050000000"}`, status: 200, min: "2.3000.1050000000", latest: "2.3000.1050000000"},
		{name: "latest", method: "POST", body: `{"latest":"2.3000.1060000000"}`, status: 200, min: "2.3000.1050000000", latest: "2.3000.1060000000"},
		{name: "clear min", method: "POST", body: `{"min":""}`, status: 200, latest: "2.3000.1060000000"},
		{name: "malformed min", method: "POST", body: `{"min":"2.3000"}`, status: 400, errWant: "min"},
		{name: "malformed latest", method: "POST", body: `{"latest":"v2"}`, status: 400, errWant: "latest"},
		{name: "unknown field", method: "POST", body: `{"max":"2.3000.1"}`, status: 400, errWant: "max"},
		{name: "not JSON", method: "POST", body: `{`, status: 400},
		{name: "PUT", method: "PUT", status: 405},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, body := httpJSON(t, tt.method, base+"/version", tt.body)
			if status != tt.status {
				t.Fatalf("status %d (%v), want %d", status, body, tt.status)
			}
			if status != 200 {
				if e, _ := body["error"].(string); e == "" || !strings.Contains(e, tt.errWant) {
					t.Fatalf("error %v, want it to name %q", body, tt.errWant)
				}
				return
			}
			if body["min"] != tt.min || body["latest"] != tt.latest {
				t.Fatalf("body %v, want min %q latest %q", body, tt.min, tt.latest)
			}
		})
	}
	if got := revisionsInSWJS(t, getSWJS(t, srv)); got != [3]int64{1060000000, 1060000000, 1060000000} {
		t.Fatalf("sw.js revisions %v after POST /version", got)
	}
}

func TestDayOneControl(t *testing.T) {
	srv := emutest.Start(t, emulator.Options{})
	base := srv.ControlURL()
	tests := []struct {
		name, method, body string
		status             int
		want               map[string]any
		errWant            string
	}{
		{name: "get: off", method: "GET", status: 200, want: map[string]any{"enabled": false}},
		{name: "on with defaults", method: "POST", body: `{"enabled":true}`, status: 200,
			want: map[string]any{"enabled": true, "push_rate": 1.0, "push_burst": 20.0, "ack_deadline": "1m0s", "ping_interval": "30s"}},
		{name: "partial update", method: "POST", body: `{"push_rate":2.5,"ack_deadline":"90s"}`, status: 200,
			want: map[string]any{"enabled": true, "push_rate": 2.5, "push_burst": 20.0, "ack_deadline": "1m30s", "ping_interval": "30s"}},
		{name: "negative turns a part off", method: "POST", body: `{"ping_interval":"-1s"}`, status: 200,
			want: map[string]any{"ping_interval": "-1s"}},
		{name: "bad duration", method: "POST", body: `{"ack_deadline":"soon"}`, status: 400, errWant: "ack_deadline"},
		{name: "duration as a number", method: "POST", body: `{"ping_interval":30}`, status: 400, errWant: "ping_interval"},
		{name: "rate too high", method: "POST", body: `{"push_rate":5000}`, status: 400, errWant: "push_rate"},
		{name: "burst not a number", method: "POST", body: `{"push_burst":"x"}`, status: 400, errWant: "push_burst"},
		{name: "enabled not a bool", method: "POST", body: `{"enabled":"yes"}`, status: 400, errWant: "enabled"},
		{name: "unknown field", method: "POST", body: `{"push_ratio":1}`, status: 400, errWant: "push_ratio"},
		{name: "not JSON", method: "POST", body: `[`, status: 400},
		{name: "get after errors", method: "GET", status: 200,
			want: map[string]any{"enabled": true, "push_rate": 2.5, "ack_deadline": "1m30s", "ping_interval": "-1s"}},
		{name: "DELETE", method: "DELETE", status: 405},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, body := httpJSON(t, tt.method, base+"/dayone", tt.body)
			if status != tt.status {
				t.Fatalf("status %d (%v), want %d", status, body, tt.status)
			}
			if status != 200 {
				if e, _ := body["error"].(string); e == "" || !strings.Contains(e, tt.errWant) {
					t.Fatalf("error %v, want it to name %q", body, tt.errWant)
				}
				return
			}
			for k, v := range tt.want {
				if body[k] != v {
					t.Fatalf("%s = %v, want %v (body %v)", k, body[k], v, body)
				}
			}
		})
	}
	if d := srv.DayOne(); !d.Enabled || d.PushRate != 2.5 || d.PingInterval >= 0 {
		t.Fatalf("DayOne() %+v", d)
	}
}

func TestLoginFailuresRemoveTheDevice(t *testing.T) {
	tests := []struct {
		fault, reason string
		attrs         []string // further attributes the failure carries
	}{
		{fault: "login-failure-403", reason: "403", attrs: []string{"logout_message_header", "logout_message_subtext"}},
		{fault: "login-failure-406", reason: "406"},
	}
	for _, tt := range tests {
		t.Run(tt.fault, func(t *testing.T) {
			srv := emutest.Start(t, emulator.Options{})
			d := newTestDevice(t)
			pair(t, srv, d)
			live := login(t, srv, d)
			live.expectTag("success")
			f, err := emulator.ParseFaults(tt.fault)
			if err != nil {
				t.Fatal(err)
			}
			if err := srv.SetFaults(f); err != nil {
				t.Fatal(err)
			}
			fail := expectFailure(t, login(t, srv, d), tt.reason)
			for _, a := range tt.attrs {
				if v, _ := fail.Attr(a); v == "" {
					t.Fatalf("failure %v without %s", fail, a)
				}
			}
			// The device is gone: its live connection too, and later logins
			// are 401 once the fault is off.
			expectConflict(t, live.expectTag("stream:error"), "401", "device_removed")
			if devs := srv.Devices(); len(devs) != 0 {
				t.Fatalf("devices %+v", devs)
			}
			if err := srv.SetFaults(emulator.Faults{}); err != nil {
				t.Fatal(err)
			}
			expectFailure(t, login(t, srv, d), "401")
			if st := srv.Stats(); st.LoginsRejected != 2 || st.Logins != 1 {
				t.Fatalf("stats %+v", st)
			}
		})
	}
}

func TestKick401KeepsTheDevice(t *testing.T) {
	srv := emutest.Start(t, emulator.Options{})
	d := newTestDevice(t)
	pair(t, srv, d)
	c := login(t, srv, d)
	c.expectTag("success")
	if err := srv.Phone().Kick(d.jid, "401"); err != nil {
		t.Fatal(err)
	}
	expectConflict(t, c.expectTag("stream:error"), "401", "")
	c.expectClosed()
	if devs := srv.Devices(); len(devs) != 1 {
		t.Fatalf("devices after kick 401: %+v", devs)
	}
	c = login(t, srv, d)
	c.expectTag("success")
	status, body := httpJSON(t, "POST", srv.ControlURL()+"/kick", `{"jid":"`+d.jid.String()+`","reason":"401"}`)
	if status != 200 || body["reason"] != "401" {
		t.Fatalf("POST /kick 401: %d %v", status, body)
	}
	expectConflict(t, c.expectTag("stream:error"), "401", "")
	login(t, srv, d).expectTag("success")
}

func TestDropPongs(t *testing.T) {
	srv := emutest.Start(t, emulator.Options{})
	d := newTestDevice(t)
	pair(t, srv, d)
	c := login(t, srv, d)
	c.expectTag("success")
	c.send(iq("p1", "get", "w:p"))
	c.expectResult("p1", "result")
	f, _ := emulator.ParseFaults("drop-pongs")
	if err := srv.SetFaults(f); err != nil { // a live connection is affected
		t.Fatal(err)
	}
	// The server answers in order: the IQ after the ping is answered, the
	// ping never is.
	c.send(iq("p2", "get", "w:p"))
	c.send(iq("p3", "get", "w:p", node.New("ping")))
	c.send(iq("a1", "set", "passive", node.New("active")))
	c.expectResult("a1", "result")
	if err := srv.SetFaults(emulator.Faults{}); err != nil {
		t.Fatal(err)
	}
	c.send(iq("p4", "get", "w:p"))
	c.expectResult("p4", "result")
	if st := srv.Stats(); st.Pings != 2 || len(st.Violations) != 0 || st.ActiveConnections != 1 {
		t.Fatalf("stats %+v", st)
	}
}

func TestRemoveCompanionDevice(t *testing.T) {
	srv := emutest.Start(t, emulator.Options{})
	d := newTestDevice(t)
	other := newTestDevice(t)
	pair(t, srv, d)
	pair(t, srv, other)
	c := login(t, srv, d)
	c.expectTag("success")
	remove := func(id string, j jid.JID) node.Node {
		return iq(id, "set", "md", node.New("remove-companion-device", node.JIDAttr("jid", j), node.StrAttr("reason", "user_initiated")))
	}
	// Another device: refused and listed.
	c.send(remove("r1", other.jid))
	if e, ok := c.expectResult("r1", "error").Child("error"); !ok || attr(*e, "code") != "403" {
		t.Fatalf("removing another device: %v", e)
	}
	if st := srv.Stats(); len(st.Violations) != 1 || !strings.Contains(st.Violations[0], "not the device itself") {
		t.Fatalf("violations %v", st.Violations)
	}
	// Itself: a result, then the device is gone and its logins fail.
	c.send(remove("r2", d.jid))
	c.expectResult("r2", "result")
	expectConflict(t, c.expectTag("stream:error"), "401", "device_removed")
	if devs := srv.Devices(); len(devs) != 1 || devs[0].JID != other.jid.String() {
		t.Fatalf("devices after the unlink: %+v", devs)
	}
	expectFailure(t, login(t, srv, d), "401")
}
