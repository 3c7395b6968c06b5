// Command manager is the wafleet binary: `manager run | demo | emulator |
// health | version`. main.go dispatches subcommands from a table that each
// subcommand's file fills in its init function (register), so a new
// subcommand is a new file. Exit codes: 0 success (also after a clean
// shutdown on SIGINT/SIGTERM), 1 runtime error, 2 usage error (unknown
// subcommand, bad flags). Logs go to stderr as JSON (log/slog); stdout is
// reserved for machine-readable output such as the emulator's first line.
package main
