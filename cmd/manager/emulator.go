package main

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"

	"github.com/wafleet/wafleet/crypto"
	"github.com/wafleet/wafleet/emulator"
	"github.com/wafleet/wafleet/wire/qr"
)

func init() {
	register("emulator", "run a local WhatsApp-like server and phone (offline testing)", runEmulator)
}

// emulatorInfo is the first stdout line of `manager emulator`. Its keys are
// a contract with tools outside this repository; keys are only ever added.
type emulatorInfo struct {
	URL           string `json:"url"`
	RootPublicKey string `json:"root_public_key"`
	ControlURL    string `json:"control_url"`
	// VersionURL serves WhatsApp Web's sw.js look-alike carrying the latest
	// version's "client_revision" (control_url + "/sw.js").
	VersionURL string `json:"version_url"`
}

func runEmulator(ctx context.Context, e *env, args []string) error {
	fs := newFlagSet(e, "emulator", "[--listen ADDR] [--fault NAME[=VALUE]]... [--day-one [--push-rate R] [--push-burst N] [--ack-deadline D] [--ping-interval D]] [--min-version V] [--latest-version V] [--provisioning] [--receipt-deadline D]")
	var (
		faults emulator.Faults
		opts   emulator.Options
	)
	listen := fs.String("listen", emulator.DefaultAddr, "TCP address to listen on (port 0: a free port)")
	fs.Var(&faults, "fault", "inject a fault (repeatable); one of:\n"+faultList())
	rootKeyFile := fs.String("root-key-file", "", "file holding the test root's private key as 64 hex characters (default: a fresh key per start)")
	fs.DurationVar(&opts.FirstRefTTL, "ref-ttl-first", qr.FirstTTL, "lifetime of the first QR ref")
	fs.DurationVar(&opts.NextRefTTL, "ref-ttl-next", qr.NextTTL, "lifetime of each later QR ref")
	fs.DurationVar(&opts.ScanTimeout, "scan-timeout", emulator.DefaultScanTimeout, "how long a scan waits for the companion's pair-device-sign")
	fs.StringVar(&opts.Platform, "platform", emulator.DefaultPlatform, "the phone's platform name sent in pair-success")
	fs.StringVar(&opts.BusinessName, "business-name", "", "send <biz name> in pair-success (a business account)")
	dayOne := fs.Bool("day-one", false, "behave like the real server from the first login: push ackable stanzas, require acks, redeliver, ping, consume prekeys (POST /dayone changes it at runtime)")
	fs.Float64Var(&opts.DayOne.PushRate, "push-rate", emulator.DefaultPushRate, "day-one: ackable stanzas per second per logged-in connection (Poisson); negative: none")
	fs.IntVar(&opts.DayOne.PushBurst, "push-burst", emulator.DefaultPushBurst, "day-one: stanzas pushed right after <success> (the offline queue); negative: none")
	fs.DurationVar(&opts.DayOne.AckDeadline, "ack-deadline", emulator.DefaultAckDeadline, "day-one: a stanza unacked this long ends the stream with <stream:error><ack/>; negative: never")
	fs.DurationVar(&opts.DayOne.PingInterval, "ping-interval", emulator.DefaultPingInterval, "day-one: period of server pings (urn:xmpp:ping); negative: none")
	fs.Float64Var(&opts.DayOne.GarbageShare, "garbage-share", 0, "day-one: share of pushed messages (0..1) whose <enc> is random bytes no client can decrypt (a fault; default none)")
	fs.StringVar(&opts.MinVersion, "min-version", "", "oldest client version accepted, e.g. 2.3000.1040000000; older ones get <failure reason=\"405\"> (default: accept all)")
	fs.StringVar(&opts.LatestVersion, "latest-version", "", "the version /sw.js advertises (default: --min-version, or the built-in version)")
	fs.BoolVar(&opts.Provisioning, "provisioning", false, "load runs only: accept POST /provision, which records devices as paired without a scan")
	fs.DurationVar(&opts.ReceiptDeadline, "receipt-deadline", emulator.DefaultReceiptDeadline, "how long a contact's message waits for each device's delivery receipt before it counts in receipts_overdue; negative: never")
	logLevel := fs.String("log-level", "info", "log level on stderr: debug, info, warn, error")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	log, err := newLogger(e.stderr, *logLevel)
	if err != nil {
		return err
	}
	if opts.FirstRefTTL <= 0 || opts.NextRefTTL <= 0 || opts.ScanTimeout <= 0 {
		return usageError{errors.New("--ref-ttl-first, --ref-ttl-next and --scan-timeout must be positive")}
	}
	if *rootKeyFile != "" {
		if opts.RootKey, err = readKeyFile(*rootKeyFile); err != nil {
			return err
		}
	}
	opts.Addr, opts.Faults, opts.Logger = *listen, faults, log
	opts.DayOne.Enabled = *dayOne

	srv, err := emulator.New(opts)
	if errors.Is(err, emulator.ErrBadOptions) {
		return usageError{err}
	}
	if err != nil {
		return err
	}
	if err := srv.Start(ctx); err != nil {
		return err
	}
	defer srv.Close()
	line, err := json.Marshal(emulatorInfo{URL: srv.URL(), RootPublicKey: srv.RootPublicKeyHex(), ControlURL: srv.ControlURL(),
		VersionURL: srv.ControlURL() + "/sw.js"})
	if err != nil {
		return err
	}
	if _, err := fmt.Fprintf(e.stdout, "%s\n", line); err != nil {
		return fmt.Errorf("write first line: %w", err)
	}
	<-ctx.Done()
	log.Info("shutting down", "cause", context.Cause(ctx).Error())
	return nil
}

func faultList() string {
	var b bytes.Buffer
	for _, n := range emulator.FaultNames() {
		fmt.Fprintf(&b, "  %s\n", n)
	}
	return b.String()
}

// readKeyFile reads a 32-byte private key written as hex. Its content never
// appears in an error.
func readKeyFile(path string) (*crypto.KeyPair, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("root key file: %w", err)
	}
	priv, err := hex.DecodeString(string(bytes.TrimSpace(b)))
	if err != nil || len(priv) != 32 {
		return nil, usageError{fmt.Errorf("root key file %s: want 64 hex characters (a 32-byte private key)", path)}
	}
	kp, err := crypto.KeyPairFromPrivate(priv)
	if err != nil {
		return nil, fmt.Errorf("root key file %s: %w", path, err)
	}
	return kp, nil
}
