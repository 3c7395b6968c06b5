package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/wafleet/wafleet/store/redis/redistest"
)

// instanceView is one member of GET /api/instances.
type instanceView struct {
	ID          string    `json:"id"`
	Accounts    int       `json:"accounts"`
	LeaseTTL    float64   `json:"lease_ttl_seconds"`
	LastRenewal time.Time `json:"last_renewal"`
	Self        bool      `json:"self"`
}

func (i *instance) instances() []instanceView {
	var list []instanceView
	resp, err := http.Get("http://" + i.listen + "/api/instances")
	if err != nil {
		return nil
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK || json.NewDecoder(resp.Body).Decode(&list) != nil {
		return nil
	}
	return list
}

// post sends an account action to the instance and returns the status and
// body.
func (i *instance) post(t *testing.T, path string) (int, string) {
	t.Helper()
	return i.request(t, http.MethodPost, path, "")
}

// request sends a request with a JSON body (none when empty) to the
// instance and returns the status and body.
func (i *instance) request(t *testing.T, method, path, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, "http://"+i.listen+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s on %s: %v", method, path, i.name, err)
	}
	defer resp.Body.Close()
	answer, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(answer)
}

// devices counts the devices paired with the emulator.
func (e *emulatorProcess) devices(t *testing.T) int {
	t.Helper()
	resp, err := http.Get(e.controlURL + "/devices")
	if err != nil {
		t.Fatalf("emulator devices: %v", err)
	}
	defer resp.Body.Close()
	var list []json.RawMessage
	if err := json.NewDecoder(resp.Body).Decode(&list); err != nil {
		t.Fatalf("emulator devices: %v", err)
	}
	return len(list)
}

// gauge reads wafleet_accounts{state} from the instance's /metrics.
func (i *instance) gauge(t *testing.T, state string) int {
	t.Helper()
	resp, err := http.Get("http://" + i.listen + "/metrics")
	if err != nil {
		t.Fatalf("metrics of %s: %v", i.name, err)
	}
	defer resp.Body.Close()
	want := `wafleet_accounts{state="` + state + `"} `
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), want); ok {
			n, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatalf("metrics of %s: %q", i.name, sc.Text())
			}
			return int(n)
		}
	}
	t.Fatalf("metrics of %s lack %s", i.name, want)
	return 0
}

// fleetWide checks one instance's GET /api/accounts against who runs what
// (connected, from each instance's own accounts): every account listed
// once, connected, on its instance, alive. It returns what differs.
func fleetWide(inst *instance, connected map[string]string, n int) []string {
	list := inst.fleetAccounts()
	var bad []string
	if len(list) != n {
		bad = append(bad, fmt.Sprintf("%s lists %d accounts, want %d", inst.name, len(list), n))
	}
	seen := map[string]bool{}
	for _, a := range list {
		switch {
		case seen[a.ID]:
			bad = append(bad, fmt.Sprintf("%s lists %s twice", inst.name, a.ID))
		case a.State != "connected" || a.Instance != connected[a.ID] || a.InstanceAlive == nil || !*a.InstanceAlive:
			alive := a.InstanceAlive != nil && *a.InstanceAlive
			bad = append(bad, fmt.Sprintf("%s shows %s %s on %q (alive %v), runs on %q", inst.name, a.ID, a.State, a.Instance, alive, connected[a.ID]))
		}
		seen[a.ID] = true
	}
	return bad
}

// waitFleetWide waits until every live instance's fleet-wide list agrees
// with who runs what.
func waitFleetWide(t *testing.T, instances []*instance, emu *emulatorProcess, n int) map[string]string {
	t.Helper()
	deadline := time.Now().Add(fleetPatience)
	for {
		v := waitFleet(t, instances, emu, n, false, fleetPatience)
		var bad []string
		for _, inst := range instances {
			if inst.alive() {
				bad = append(bad, fleetWide(inst, v.connected, n)...)
			}
		}
		if len(bad) == 0 {
			return v.connected
		}
		if time.Now().After(deadline) {
			t.Fatalf("the fleet-wide views disagree with who runs what: %v", bad[:min(10, len(bad))])
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// TestFleetWideViewAndRoutedActions runs three instances on one Redis:
// every instance lists every account once with the instance running it;
// GET /api/instances lists the three; actions sent to an instance that
// does not run the account take effect on the one that does and answer
// its result (a refusal included); the QR code of an account pairing
// elsewhere comes from its owner; an account created through the API and
// deleted with logout through an instance that does not run it is
// unlinked by its owner and leaves every list; after an instance is killed its
// accounts reappear under the survivors, with no stale stopped rows and
// gauges that sum to the fleet.
func TestFleetWideViewAndRoutedActions(t *testing.T) {
	bin := managerBinary(t)
	dir := t.TempDir()
	emu := startEmulatorProcess(t, bin)
	rs := redistest.Start(t, redistest.Config{})
	const n = 30
	instances := []*instance{
		startInstance(t, bin, dir, "inst-1", emu, oneRedis(rs.Addr()), n),
		startInstance(t, bin, dir, "inst-2", emu, oneRedis(rs.Addr()), n),
		startInstance(t, bin, dir, "inst-3", emu, oneRedis(rs.Addr()), n),
	}
	stopWatch := watchDoubles(t, emu)
	defer stopWatch()
	waitFleet(t, instances, emu, n, true, 5*time.Minute)
	// Every instance runs some accounts once the membership settled.
	waitSettled(t, instances, emu, n, 2*fleetLeaseTTL)
	connected := waitFleetWide(t, instances, emu, n)

	byName := map[string]*instance{}
	for _, inst := range instances {
		byName[inst.name] = inst
		list := inst.instances()
		var ids []string
		total := 0
		for _, m := range list {
			ids = append(ids, m.ID)
			total += m.Accounts
			if m.Self != (m.ID == inst.name) {
				t.Errorf("%s: member %s self = %v", inst.name, m.ID, m.Self)
			}
			if m.LeaseTTL != fleetLeaseTTL.Seconds() || m.LastRenewal.IsZero() {
				t.Errorf("%s: member %+v", inst.name, m)
			}
		}
		if !slices.Equal(ids, []string{"inst-1", "inst-2", "inst-3"}) || total != n {
			t.Errorf("%s: GET /api/instances = %+v, want the 3 members holding %d leases", inst.name, list, n)
		}
	}

	// An action sent to an instance that does not run the account.
	var acct string
	for _, id := range slices.Sorted(maps.Keys(connected)) {
		acct = id
		break
	}
	owner := byName[connected[acct]]
	var other *instance
	for _, inst := range instances {
		if inst != owner {
			other = inst
			break
		}
	}
	start := time.Now()
	code, body := other.post(t, "/api/accounts/"+acct+"/restart")
	if code != http.StatusConflict || !strings.Contains(body, "account is connected, not stopped") {
		t.Fatalf("restart of connected %s sent to %s: %d %s, want the owner's 409", acct, other.name, code, body)
	}
	refused := time.Since(start)
	start = time.Now()
	code, body = other.post(t, "/api/accounts/"+acct+"/logout")
	if code != http.StatusAccepted {
		t.Fatalf("logout of %s (on %s) sent to %s: %d %s", acct, owner.name, other.name, code, body)
	}
	t.Logf("routed through Redis: a refused restart answered in %s, a logout in %s", refused.Round(time.Microsecond), time.Since(start).Round(time.Microsecond))
	// It took effect on the owner: the account shows QR codes there, and
	// the other instance serves the code it fetched from the owner.
	deadline := time.Now().Add(fleetPatience)
	for {
		var mine *accountView
		for _, a := range owner.accounts() {
			if a.ID == acct {
				mine = &a
			}
		}
		if mine != nil && mine.QR != nil {
			resp, err := http.Get("http://" + other.listen + "/api/accounts/" + acct)
			var remote accountView
			if err == nil {
				_ = json.NewDecoder(resp.Body).Decode(&remote)
				resp.Body.Close()
			}
			if remote.QR != nil && remote.Instance == owner.name {
				png, err := http.Get("http://" + other.listen + "/api/accounts/" + acct + "/qr.png")
				if err != nil {
					t.Fatal(err)
				}
				png.Body.Close()
				if png.StatusCode != http.StatusOK || png.Header.Get("Content-Type") != "image/png" {
					t.Fatalf("qr.png of %s from %s: %s", acct, other.name, png.Status)
				}
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s never showed a QR code on %s, fetched by %s, after the routed logout", acct, owner.name, other.name)
		}
		time.Sleep(100 * time.Millisecond)
	}
	waitFleet(t, instances, emu, n, true, fleetPatience) // pair it again
	if st := emu.stats(t); st.Pairings != n+1 {
		t.Fatalf("pairings = %d, want %d: the logout unlinked the device once", st.Pairings, n+1)
	}

	// An account created through the API runs on one instance; deleted
	// with logout through another, its owner unlinks it and it leaves
	// every instance's list.
	if code, body := instances[0].request(t, http.MethodPost, "/api/accounts", `{"id":"api-1"}`); code != http.StatusCreated {
		t.Fatalf("POST /api/accounts: %d %s", code, body)
	}
	waitFleet(t, instances, emu, n+1, true, fleetPatience)
	connected = waitFleetWide(t, instances, emu, n+1)
	if got := emu.devices(t); got != n+1 {
		t.Fatalf("%d devices paired, want %d", got, n+1)
	}
	owner = byName[connected["api-1"]]
	for _, inst := range instances {
		if inst != owner {
			other = inst
			break
		}
	}
	if code, body := other.request(t, http.MethodDelete, "/api/accounts/api-1?logout=true", ""); code != http.StatusNoContent {
		t.Fatalf("DELETE api-1 (on %s) sent to %s: %d %s", owner.name, other.name, code, body)
	}
	waitFleetWide(t, instances, emu, n)
	if got := emu.devices(t); got != n {
		t.Fatalf("%d devices paired after the delete with logout, want %d", got, n)
	}

	// One instance dies: its accounts reappear under the survivors.
	victim := byName["inst-3"]
	if err := victim.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-victim.done
	waitFleetWide(t, instances, emu, n)
	sum := 0
	for _, inst := range instances {
		if !inst.alive() {
			continue
		}
		if got := len(inst.instances()); got != 2 {
			t.Errorf("%s lists %d instances after inst-3 died, want 2", inst.name, got)
		}
		if s := inst.gauge(t, "stopped"); s != 0 {
			t.Errorf("%s: wafleet_accounts{state=\"stopped\"} = %d, want 0", inst.name, s)
		}
		sum += inst.gauge(t, "connected")
	}
	if sum != n {
		t.Errorf("wafleet_accounts{state=\"connected\"} sums to %d over the survivors, want %d", sum, n)
	}
	if st := emu.stats(t); len(st.Violations) > 0 {
		t.Errorf("violations: %v", st.Violations[:min(5, len(st.Violations))])
	}
}
