package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"
	"time"

	"github.com/wafleet/wafleet/app"
	"github.com/wafleet/wafleet/config"
	"github.com/wafleet/wafleet/internal/buildinfo"
)

// configPollInterval is how often run checks the config file for changes.
const configPollInterval = 2 * time.Second

func init() {
	register("run", "keep the configured accounts connected", runManager)
}

// gcPercent is the garbage collector's target (GOGC) of `manager run`
// when its environment sets no GOGC. A fleet's heap is mostly the
// long-lived state of its connections, and Go lets the heap grow by
// GOGC percent of that state (and of the goroutine stacks) between two
// collections: at Go's default of 100, every KiB an account holds costs
// about two of memory. 50 gives up some CPU (collections twice as often)
// for a smaller heap; BENCHMARKS.md ("Memory per account") has the
// figures.
const gcPercent = 50

// setGCPercent sets the GC target to gcPercent unless the environment
// (lookup) sets GOGC, which the runtime has applied already.
func setGCPercent(lookup func(string) (string, bool)) {
	if _, set := lookup("GOGC"); !set {
		debug.SetGCPercent(gcPercent)
	}
}

func runManager(ctx context.Context, e *env, args []string) error {
	fs := newFlagSet(e, "run", "[--config FILE]")
	path := fs.String("config", "config.yaml", "configuration file (YAML); WAFLEET_* variables override it")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	setGCPercent(os.LookupEnv)
	stopProfile, err := startCPUProfile(ctx)
	if err != nil {
		return err
	}
	defer stopProfile() // on an early return; the profile's error is reported below
	cfg, err := config.Load(*path)
	if err != nil {
		return err
	}
	logger, err := newLogger(e.stderr, cfg.Log.Level)
	if err != nil {
		return err
	}
	a, err := app.New(cfg, app.Options{Logger: logger, Terminal: terminalOf(e.stdout), Build: buildinfo.Read(buildVersion, buildRevision)})
	if err != nil {
		return err
	}
	reloadCtx, stopReloading := context.WithCancel(ctx)
	defer stopReloading()
	go watchConfig(reloadCtx, *path, a, logger)
	return errors.Join(a.Run(ctx), stopProfile())
}

// watchConfig re-reads the account list on SIGHUP and whenever the config
// file's content changes. A file that no longer loads is logged and
// ignored: the running accounts stay as they are.
func watchConfig(ctx context.Context, path string, a *app.App, logger *slog.Logger) {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	ticker := time.NewTicker(configPollInterval)
	defer ticker.Stop()
	last := fileDigest(path)
	for {
		var reason string
		select {
		case <-ctx.Done():
			return
		case <-hup:
			reason = "SIGHUP"
		case <-ticker.C:
			digest := fileDigest(path)
			if bytes.Equal(digest, last) {
				continue
			}
			last, reason = digest, "file changed"
		}
		cfg, err := config.Load(path)
		if err != nil {
			logger.Error("config reload failed; keeping the running accounts", "reason", reason, "error", err)
			a.ConfigRejected(err) // GET /readyz says so until a reload succeeds
			continue
		}
		if err := a.Reload(cfg.Accounts); err != nil {
			logger.Error("config reload failed", "reason", reason, "error", err)
			continue
		}
		logger.Info("config reloaded: account list applied (other keys take effect at restart)", "reason", reason, "accounts", len(cfg.Accounts))
	}
}

func fileDigest(path string) []byte {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil
	}
	sum := sha256.Sum256(data)
	return sum[:]
}

// terminalOf returns w when it is a terminal (a character device), else
// nil: QR codes are drawn only for a person watching.
func terminalOf(w io.Writer) io.Writer {
	f, ok := w.(*os.File)
	if !ok {
		return nil
	}
	info, err := f.Stat()
	if err != nil || info.Mode()&os.ModeCharDevice == 0 {
		return nil
	}
	return w
}

func init() {
	register("demo", "an offline fleet of 3 accounts against the built-in emulator", runDemo)
}

func runDemo(ctx context.Context, e *env, args []string) error {
	fs := newFlagSet(e, "demo", "[flags]")
	accounts := fs.Int("accounts", 3, "number of demo accounts")
	scanAfter := fs.Duration("scan-after", 5*time.Second, "how long each QR code shows before the emulator's phone scans it")
	listen := fs.String("http", "127.0.0.1:8080", "address of the dashboard and API (a free port if taken)")
	level := fs.String("log-level", "warn", "JSON log level on stderr: debug, info, warn, error")
	linkCode := fs.Bool("link-code", false, "pair by phone number: each account shows a link code that the emulator's phone types")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *accounts < 1 || *accounts > 1000 {
		return usageError{fmt.Errorf("--accounts must be between 1 and 1000")}
	}
	logger, err := newLogger(e.stderr, *level)
	if err != nil {
		return err
	}
	term := terminalOf(e.stdout)
	if term == nil {
		term = e.stdout // the demo always shows its QR codes
	}
	return app.RunDemo(ctx, app.DemoOptions{
		Accounts:   *accounts,
		ScanAfter:  *scanAfter,
		HTTPListen: *listen,
		Out:        e.stdout,
		Terminal:   term,
		Logger:     logger,
		LinkCode:   *linkCode,
	})
}
