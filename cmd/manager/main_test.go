package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
)

func TestRunExitCodes(t *testing.T) {
	tests := []struct {
		name       string
		args       []string
		code       int
		stdout     string // substring
		stderr     string // substring
		noStderrOf string // must not appear twice in stderr
	}{
		{name: "no command", args: nil, code: 2, stderr: "usage: manager"},
		{name: "unknown command", args: []string{"frobnicate"}, code: 2, stderr: `unknown command "frobnicate"`},
		{name: "help", args: []string{"help"}, code: 0, stdout: "emulator"},
		{name: "version", args: []string{"version"}, code: 0, stdout: "wafleet "},
		{name: "version extra args", args: []string{"version", "x"}, code: 2, stderr: "unexpected arguments"},
		{name: "emulator -h", args: []string{"emulator", "-h"}, code: 0, stderr: "--fault"},
		{name: "emulator bad flag", args: []string{"emulator", "--nope"}, code: 2, stderr: "flag provided but not defined"},
		{name: "emulator unknown fault", args: []string{"emulator", "--fault", "nope"}, code: 2,
			stderr: "valid faults: bad-root-signature", noStderrOf: `unknown fault "nope"`},
		{name: "emulator bad fault value", args: []string{"emulator", "--fault", "slow-server-hello=soon"}, code: 2, stderr: "positive duration"},
		{name: "emulator bad log level", args: []string{"emulator", "--log-level", "loud"}, code: 2, stderr: "bad log level"},
		{name: "emulator missing key file", args: []string{"emulator", "--root-key-file", "/nonexistent/key"}, code: 1, stderr: "root key file"},
		{name: "emulator bad listen address", args: []string{"emulator", "--listen", "256.0.0.1:99999"}, code: 1, stderr: "listen"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := run(context.Background(), &env{stdout: &stdout, stderr: &stderr}, tt.args)
			if code != tt.code {
				t.Fatalf("exit code %d, want %d; stderr:\n%s", code, tt.code, stderr.String())
			}
			if !strings.Contains(stdout.String(), tt.stdout) {
				t.Fatalf("stdout %q does not contain %q", stdout.String(), tt.stdout)
			}
			if !strings.Contains(stderr.String(), tt.stderr) {
				t.Fatalf("stderr %q does not contain %q", stderr.String(), tt.stderr)
			}
			if tt.noStderrOf != "" && strings.Count(stderr.String(), tt.noStderrOf) != 1 {
				t.Fatalf("stderr reports %q %d times, want once", tt.noStderrOf, strings.Count(stderr.String(), tt.noStderrOf))
			}
		})
	}
}
