package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"

	"github.com/wafleet/wafleet/app"
	"github.com/wafleet/wafleet/internal/buildinfo"
)

// command is one subcommand.
type command struct {
	// summary is the one-line description shown by usage.
	summary string
	// run executes the subcommand with its arguments (after the name). It
	// returns nil on success, a usageError for bad arguments, and any other
	// error for a failure. ctx ends on SIGINT/SIGTERM.
	run func(ctx context.Context, env *env, args []string) error
}

// env is what a subcommand may use instead of globals, so tests can run it
// in-process.
type env struct {
	stdout, stderr io.Writer
}

// commands maps subcommand names to their implementations. Each subcommand
// file adds itself with register in an init function.
var commands = map[string]command{}

func register(name, summary string, run func(ctx context.Context, env *env, args []string) error) {
	if _, dup := commands[name]; dup {
		panic("manager: subcommand registered twice: " + name)
	}
	commands[name] = command{summary: summary, run: run}
}

// usageError marks an error caused by the command line (exit code 2).
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

// newFlagSet returns a flag set for a subcommand that reports errors instead
// of exiting, writing its usage to env.stderr.
func newFlagSet(env *env, name, synopsis string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	// Parse errors are reported once, by run; usage goes to stderr.
	fs.SetOutput(io.Discard)
	fs.Usage = func() {
		fmt.Fprintf(env.stderr, "usage: manager %s %s\n\nflags:\n", name, synopsis)
		fs.SetOutput(env.stderr)
		fs.PrintDefaults()
		fs.SetOutput(io.Discard)
	}
	return fs
}

// parseFlags parses args and turns parse errors into usage errors. It
// reports flag.ErrHelp as is (exit 0 after -h).
func parseFlags(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return usageError{err}
	}
	if fs.NArg() > 0 {
		fs.Usage()
		return usageError{fmt.Errorf("unexpected arguments: %s", strings.Join(fs.Args(), " "))}
	}
	return nil
}

func usage(w io.Writer) {
	fmt.Fprintf(w, "usage: manager <command> [flags]\n\ncommands:\n")
	names := make([]string, 0, len(commands))
	for name := range commands {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		fmt.Fprintf(w, "  %-10s %s\n", name, commands[name].summary)
	}
	fmt.Fprintf(w, "\nRun 'manager <command> -h' for the flags of a command.\n")
}

// run executes the command line args (without the program name) and
// returns the exit code.
func run(ctx context.Context, e *env, args []string) int {
	if len(args) == 0 {
		usage(e.stderr)
		return 2
	}
	name := args[0]
	if name == "-h" || name == "-help" || name == "--help" || name == "help" {
		usage(e.stdout)
		return 0
	}
	cmd, ok := commands[name]
	if !ok {
		fmt.Fprintf(e.stderr, "manager: unknown command %q\n\n", name)
		usage(e.stderr)
		return 2
	}
	err := cmd.run(ctx, e, args[1:])
	var ue usageError
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
		return 0
	case errors.As(err, &ue):
		fmt.Fprintf(e.stderr, "manager %s: %v\n", name, err)
		return 2
	default:
		fmt.Fprintf(e.stderr, "manager %s: %v\n", name, err)
		return 1
	}
}

// newLogger returns the JSON logger on stderr at the given level name.
func newLogger(w io.Writer, level string) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return nil, usageError{fmt.Errorf("bad log level %q (debug, info, warn, error)", level)}
	}
	return app.NewLogger(w, l), nil
}

func init() {
	register("version", "print the version and exit", runVersion)
}

func runVersion(ctx context.Context, e *env, args []string) error {
	fs := newFlagSet(e, "version", "")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	fmt.Fprintln(e.stdout, "wafleet "+version())
	return nil
}

// Set at link time by builds without the repository's .git (the Docker
// image): go build -ldflags "-X main.buildVersion=v1.2.3 -X
// main.buildRevision=<commit>". They take precedence over the build info.
var (
	buildVersion  string
	buildRevision string
)

// version returns the module version and VCS revision the binary was built
// from, and the Go version that built it.
func version() string {
	return buildinfo.Read(buildVersion, buildRevision).String()
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, &env{stdout: os.Stdout, stderr: os.Stderr}, os.Args[1:])
	stop()
	os.Exit(code)
}
