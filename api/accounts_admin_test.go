package api

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/wafleet/wafleet/events"
	"github.com/wafleet/wafleet/status"
)

// fakeAdmin records the calls that reach it and answers err (nil: OK).
type fakeAdmin struct {
	mu    sync.Mutex
	calls []string
	err   error
}

func (f *fakeAdmin) record(call string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, call)
	return f.err
}

func (f *fakeAdmin) taken() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := f.calls
	f.calls = nil
	return out
}

func (f *fakeAdmin) Create(_ context.Context, spec AccountSpec) (status.Account, error) {
	if err := f.record(fmt.Sprintf("create %s proxy=%q name=%q", spec.ID, spec.Proxy, spec.DeviceName)); err != nil {
		return status.Account{}, err
	}
	return status.Account{ID: spec.ID, State: events.StateConnecting}, nil
}

func (f *fakeAdmin) Update(_ context.Context, id string, p AccountPatch) error {
	show := func(s *string) string {
		if s == nil {
			return "kept"
		}
		return fmt.Sprintf("%q", *s)
	}
	return f.record(fmt.Sprintf("update %s proxy=%s name=%s", id, show(p.Proxy), show(p.DeviceName)))
}

func (f *fakeAdmin) Delete(_ context.Context, id string, logout bool) error {
	return f.record(fmt.Sprintf("delete %s logout=%v", id, logout))
}

// TestAdminRoutes: the bodies and parameters of POST, PATCH and DELETE are
// checked before the AccountAdmin sees them (400 naming the field, 413),
// and its answers map to 201/200/204, 404 and 409. Every answer is held
// to the OpenAPI document (newFixture's conform).
func TestAdminRoutes(t *testing.T) {
	admin := &fakeAdmin{}
	f := newFixture(t, func(c *Config) { c.Admin = admin })
	tests := []struct {
		method, path, body string
		err                error
		code               int
		says, call         string
	}{
		{"POST", "/api/accounts", `{"id":"new","proxy":"socks5://u:p@h:1","device_name":"Caja"}`, nil, 201, `"state":"connecting"`, `create new proxy="socks5://u:p@h:1" name="Caja"`},
		{"POST", "/api/accounts", `{"id":"new"}`, fmt.Errorf("store: %w", ErrAccountExists), 409, "create: account exists", "create new proxy=\"\" name=\"\""},
		{"POST", "/api/accounts", `{"id":"../x"}`, nil, 400, "id:", ""},
		{"POST", "/api/accounts", `{"proxy":"http://h:1"}`, nil, 400, "id:", ""},
		{"POST", "/api/accounts", `{"id":"x","proxy":"ftp://h:1"}`, nil, 400, `proxy scheme \"ftp\"`, ""},
		{"POST", "/api/accounts", `{"id":"x","proxy":"not a url"}`, nil, 400, "proxy is not a URL", ""},
		{"POST", "/api/accounts", `{"id":"x","device_name":"a\tb"}`, nil, 400, "device_name contains a control character", ""},
		{"POST", "/api/accounts", `{"id":"x","phone":"15551234567"}`, nil, 400, "phone: want an E.164 number", ""},
		{"POST", "/api/accounts", `{"id":"x","extra":true}`, nil, 400, `unknown field \"extra\"`, ""},
		{"POST", "/api/accounts", `{"id":5}`, nil, 400, "id: want a JSON string", ""},
		{"POST", "/api/accounts", `{"id":"x"}{"id":"y"}`, nil, 400, "more than one JSON value", ""},
		{"POST", "/api/accounts", ``, nil, 400, "body is empty", ""},
		{"POST", "/api/accounts", `{"id":`, nil, 400, "not a JSON object", ""},
		{"POST", "/api/accounts", `{"id":"x","device_name":"` + strings.Repeat("n", maxAdminBody) + `"}`, nil, 413, "longer than 8192 bytes", ""},
		{"PATCH", "/api/accounts/made", `{"proxy":""}`, nil, 200, `"action":"update"`, `update made proxy="" name=kept`},
		{"PATCH", "/api/accounts/made", `{"device_name":"Caja 2"}`, nil, 200, `"status":"accepted"`, `update made proxy=kept name="Caja 2"`},
		{"PATCH", "/api/accounts/made", `{}`, nil, 400, "nothing to change", ""},
		{"PATCH", "/api/accounts/made", `{"proxy":"gopher://h"}`, nil, 400, "proxy scheme", ""},
		{"PATCH", "/api/accounts/yaml", `{"proxy":""}`, &Refused{Reason: "account is configured in the YAML file: change it there"}, 409, "update: account is configured in the YAML file: change it there", `update yaml proxy="" name=kept`},
		{"PATCH", "/api/accounts/nobody", `{"proxy":""}`, ErrUnknownAccount, 404, "update: unknown account", `update nobody proxy="" name=kept`},
		{"DELETE", "/api/accounts/made", ``, nil, 204, "", "delete made logout=false"},
		{"DELETE", "/api/accounts/made?logout=true", ``, nil, 204, "", "delete made logout=true"},
		{"DELETE", "/api/accounts/made?logout=yes", ``, nil, 400, "logout: want true or false", ""},
		{"DELETE", "/api/accounts/nobody", ``, ErrUnknownAccount, 404, "delete: unknown account", "delete nobody logout=false"},
		{"DELETE", "/api/accounts/yaml", ``, &Refused{Reason: "account is configured in the YAML file: remove it there"}, 409, "remove it there", "delete yaml logout=false"},
	}
	for _, tt := range tests {
		t.Run(tt.method+" "+tt.path+" "+tt.body[:min(len(tt.body), 40)], func(t *testing.T) {
			admin.err = tt.err
			resp, body := f.send(t, tt.method, tt.path, tt.body)
			if resp.StatusCode != tt.code || !strings.Contains(string(body), tt.says) {
				t.Fatalf("%d %s, want %d saying %s", resp.StatusCode, body, tt.code, tt.says)
			}
			if tt.code >= 400 {
				wantError(t, resp, body, tt.code)
			}
			if tt.code == 201 && resp.Header.Get("Location") != "/api/accounts/new" {
				t.Fatalf("Location %q", resp.Header.Get("Location"))
			}
			calls := admin.taken()
			if tt.call == "" && len(calls) != 0 || tt.call != "" && (len(calls) != 1 || calls[0] != tt.call) {
				t.Fatalf("admin calls %q, want %q", calls, tt.call)
			}
		})
	}
}

func TestAdminRoutesWithoutAdmin(t *testing.T) {
	f := newFixture(t, nil)
	for _, r := range [][3]string{{"POST", "/api/accounts", `{"id":"x"}`}, {"PATCH", "/api/accounts/x", `{"proxy":""}`}, {"DELETE", "/api/accounts/x", ""}} {
		resp, body := f.send(t, r[0], r[1], r[2])
		wantError(t, resp, body, http.StatusServiceUnavailable)
	}
}
