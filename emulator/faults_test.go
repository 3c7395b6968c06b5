package emulator_test

import (
	"context"
	"errors"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/wafleet/wafleet/emulator"
)

func TestParseFaults(t *testing.T) {
	tests := []struct {
		specs []string
		want  emulator.Faults
		err   error
	}{
		{specs: nil, want: emulator.Faults{}},
		{specs: []string{"bad-root-signature"}, want: emulator.Faults{BadRootSignature: true}},
		{specs: []string{"wrong-leaf-key", "expired-certificate", "wrong-issuer-serial"},
			want: emulator.Faults{WrongLeafKey: true, ExpiredCertificate: true, WrongIssuerSerial: true}},
		{specs: []string{"drop-after-hello", "stall-after-hello"}, want: emulator.Faults{DropAfterHello: true, StallAfterHello: true}},
		{specs: []string{"slow-server-hello"}, want: emulator.Faults{SlowServerHello: emulator.DefaultSlowServerHello}},
		{specs: []string{"slow-server-hello=250ms"}, want: emulator.Faults{SlowServerHello: 250 * time.Millisecond}},
		{specs: []string{"bad-pair-hmac", "bad-account-signature"}, want: emulator.Faults{BadPairHMAC: true, BadAccountSignature: true}},
		{specs: []string{"login-failure-401", "conflict-after-success", "refuse-connections"},
			want: emulator.Faults{LoginFailure401: true, ConflictAfterSuccess: true, RefuseConnections: true}},
		{specs: []string{"random-disconnects"}, want: emulator.Faults{RandomDisconnects: emulator.DefaultDisconnectRate}},
		{specs: []string{"random-disconnects=0.5"}, want: emulator.Faults{RandomDisconnects: 0.5}},
		{specs: []string{" drop-after-hello "}, want: emulator.Faults{DropAfterHello: true}},
		{specs: []string{"nope"}, err: emulator.ErrUnknownFault},
		{specs: []string{"Drop-After-Hello"}, err: emulator.ErrUnknownFault},
		{specs: []string{"drop-after-hello=1"}, err: emulator.ErrBadFault},
		{specs: []string{"slow-server-hello=soon"}, err: emulator.ErrBadFault},
		{specs: []string{"slow-server-hello=-1s"}, err: emulator.ErrBadFault},
		{specs: []string{"random-disconnects=0"}, err: emulator.ErrBadFault},
		{specs: []string{"random-disconnects=NaN"}, err: emulator.ErrBadFault},
		{specs: []string{"random-disconnects=1e9"}, err: emulator.ErrBadFault},
		{specs: []string{"login-failure-402"}, want: emulator.Faults{LoginFailure402: emulator.DefaultTemporaryBan}},
		{specs: []string{"login-failure-402=90s", "login-failure-403", "login-failure-406", "drop-pongs"},
			want: emulator.Faults{LoginFailure402: 90 * time.Second, LoginFailure403: true, LoginFailure406: true, DropPongs: true}},
		{specs: []string{"login-failure-402=0s"}, err: emulator.ErrBadFault},
		{specs: []string{"login-failure-402=later"}, err: emulator.ErrBadFault},
		{specs: []string{"drop-pongs=1"}, err: emulator.ErrBadFault},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.specs, ","), func(t *testing.T) {
			got, err := emulator.ParseFaults(tt.specs...)
			if !errors.Is(err, tt.err) {
				t.Fatalf("error %v, want %v", err, tt.err)
			}
			if err != nil {
				return
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("got %+v, want %+v", got, tt.want)
			}
			// Specs round-trips.
			again, err := emulator.ParseFaults(got.Specs()...)
			if err != nil || !reflect.DeepEqual(again, got) {
				t.Fatalf("Specs %v do not round-trip: %+v, %v", got.Specs(), again, err)
			}
		})
	}
}

func TestUnknownFaultListsValidNames(t *testing.T) {
	_, err := emulator.ParseFaults("nope")
	for _, name := range []string{"bad-root-signature", "wrong-leaf-key", "expired-certificate", "wrong-issuer-serial",
		"drop-after-hello", "stall-after-hello", "slow-server-hello", "bad-pair-hmac", "bad-account-signature",
		"login-failure-401", "conflict-after-success", "random-disconnects", "refuse-connections",
		"login-failure-402", "login-failure-403", "login-failure-406", "drop-pongs", "restart-after-active",
		"huge-server-hello", "link-code-no-answer", "link-code-bad-primary-hello"} {
		if !strings.Contains(err.Error(), name) {
			t.Errorf("error %q does not list %s", err, name)
		}
	}
	if n := len(emulator.FaultNames()); n != 21 {
		t.Fatalf("%d fault names, want 21", n)
	}
	if !slices.Contains(emulator.FaultNames(), "slow-server-hello[=DURATION]") || !slices.Contains(emulator.FaultNames(), "login-failure-402[=DURATION]") {
		t.Fatalf("FaultNames %v", emulator.FaultNames())
	}
}

func TestOptionsValidation(t *testing.T) {
	tests := []struct {
		name string
		opts emulator.Options
	}{
		{name: "too many refs", opts: emulator.Options{RefCount: 1000}},
		{name: "negative ttl", opts: emulator.Options{FirstRefTTL: -time.Second}},
		{name: "negative scan timeout", opts: emulator.Options{ScanTimeout: -1}},
		{name: "negative violations cap", opts: emulator.Options{MaxViolations: -1}},
		{name: "bad min version", opts: emulator.Options{MinVersion: "2.3000"}},
		{name: "bad latest version", opts: emulator.Options{LatestVersion: "v2.3000.1"}},
		{name: "day-one push rate too high", opts: emulator.Options{DayOne: emulator.DayOne{Enabled: true, PushRate: 1e6}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := emulator.New(tt.opts); !errors.Is(err, emulator.ErrBadOptions) {
				t.Fatalf("New: %v, want ErrBadOptions", err)
			}
		})
	}
}

func TestLifecycle(t *testing.T) {
	srv, err := emulator.New(emulator.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if srv.URL() != "" || srv.ControlURL() != "" {
		t.Fatal("URLs before Start")
	}
	ctx, cancel := context.WithCancel(context.Background())
	if err := srv.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(ctx); !errors.Is(err, emulator.ErrStarted) {
		t.Fatalf("second Start: %v", err)
	}
	if !strings.HasPrefix(srv.URL(), "ws://127.0.0.1:") || !strings.HasSuffix(srv.URL(), "/ws/chat") {
		t.Fatalf("URL %q", srv.URL())
	}
	// WaitFor gives up with the context.
	wctx, wcancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
	defer wcancel()
	if _, err := srv.WaitFor(wctx, func(s emulator.Stats) bool { return s.Logins > 0 }); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("WaitFor: %v", err)
	}
	// Cancelling Start's context closes the server.
	cancel()
	srv.Close() // idempotent, and waits for the close started by ctx
	if err := srv.Start(context.Background()); !errors.Is(err, emulator.ErrClosed) {
		t.Fatalf("Start after Close: %v", err)
	}
	if _, err := srv.Phone().Scan(context.Background(), "x"); !errors.Is(err, emulator.ErrClosed) {
		t.Fatalf("Scan after Close: %v", err)
	}
}
