package app

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/wafleet/wafleet/config"
	"github.com/wafleet/wafleet/emulator"
	"github.com/wafleet/wafleet/events"
	"github.com/wafleet/wafleet/status"
	"github.com/wafleet/wafleet/wire/jid"
)

// DemoOptions configure RunDemo. Every field documents its default.
type DemoOptions struct {
	// Accounts is the number of demo accounts. Default 3.
	Accounts int
	// ScanAfter is how long each QR code shows before the emulator's phone
	// scans it. Default 5 s.
	ScanAfter time.Duration
	// HTTPListen is where the API and dashboard listen; when the address is
	// taken a free port is used instead. Default "127.0.0.1:8080".
	HTTPListen string
	// Out receives the demo's narration. Default os.Stdout.
	Out io.Writer
	// Terminal, when not nil, is where QR codes are drawn.
	Terminal io.Writer
	// Logger receives the JSON logs. Required.
	Logger *slog.Logger
	// HealthInterval is the period of the health line. Default 10 s.
	HealthInterval time.Duration
	// LinkCode pairs every account by phone number instead of QR code:
	// account demo-N gets the number +1555010000N, shows a link code, and
	// the emulator's phone types it after ScanAfter. Default false.
	LinkCode bool
	// DayOne is how strictly the emulated server behaves after login.
	// Default: day-one mode with its defaults (stanzas pushed from the
	// first login, acks enforced, server pings), as the real server does.
	DayOne *emulator.DayOne
}

// RunDemo runs a self-contained offline fleet until ctx ends: an emulator
// in-process, DemoOptions.Accounts accounts on a fresh embedded store in a
// temporary folder, QR codes (or link codes, with LinkCode) on the
// terminal and over HTTP, the emulator's phone scanning each (typing it)
// after ScanAfter, then the accounts kept connected: an emulated contact
// greets each one, and each echoes the greeting back and says hello in a
// group of the contact and the accounts (demoEcho).
func RunDemo(ctx context.Context, opts DemoOptions) error {
	if opts.Logger == nil {
		return errors.New("app: demo: no logger")
	}
	if opts.Accounts <= 0 {
		opts.Accounts = 3
	}
	if opts.ScanAfter <= 0 {
		opts.ScanAfter = 5 * time.Second
	}
	if opts.HTTPListen == "" {
		opts.HTTPListen = "127.0.0.1:8080"
	}
	if opts.Out == nil {
		opts.Out = os.Stdout
	}
	if opts.HealthInterval <= 0 {
		opts.HealthInterval = 10 * time.Second
	}

	if opts.DayOne == nil {
		opts.DayOne = &emulator.DayOne{Enabled: true}
	}

	emu, err := emulator.New(emulator.Options{Logger: opts.Logger.With("component", "emulator"), DayOne: *opts.DayOne})
	if err != nil {
		return fmt.Errorf("app: demo: emulator: %w", err)
	}
	if err := emu.Start(ctx); err != nil {
		return fmt.Errorf("app: demo: start emulator: %w", err)
	}
	defer emu.Close()

	dir, err := os.MkdirTemp("", "wafleet-demo-")
	if err != nil {
		return fmt.Errorf("app: demo: temporary folder: %w", err)
	}
	defer os.RemoveAll(dir)

	ln, err := net.Listen("tcp", opts.HTTPListen)
	if err != nil {
		ln, err = net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return fmt.Errorf("app: demo: listen: %w", err)
		}
	}
	cfg, err := demoConfig(emu, filepath.Join(dir, "wafleet.db"), ln.Addr().String(), opts)
	if err != nil {
		_ = ln.Close()
		return err
	}
	a, err := New(cfg, Options{Logger: opts.Logger, Terminal: opts.Terminal, HTTPListener: ln})
	if err != nil {
		_ = ln.Close()
		return err
	}

	fmt.Fprintf(opts.Out, "wafleet demo: %d accounts against an emulated WhatsApp server at %s\n", opts.Accounts, emu.URL())
	if opts.LinkCode {
		fmt.Fprintf(opts.Out, "dashboard and API: http://%s/  (link codes: /api/accounts/ID)\n", ln.Addr())
	} else {
		fmt.Fprintf(opts.Out, "dashboard and API: http://%s/  (QR codes: /api/accounts/ID/qr.png)\n", ln.Addr())
	}
	if opts.LinkCode {
		fmt.Fprintf(opts.Out, "pairing by phone number: the emulator's phone types each link code after %s; Ctrl-C stops the demo\n", opts.ScanAfter)
	} else {
		fmt.Fprintf(opts.Out, "the emulator's phone scans each QR code after %s; Ctrl-C stops the demo\n", opts.ScanAfter)
	}
	if opts.DayOne.Enabled {
		fmt.Fprintln(opts.Out, "the server pushes messages, receipts, notifications and calls from the first login and ends the stream of any account that does not ack them")
	}

	// The other side of the conversations: a contact greets each account
	// once it is connected, through the real Signal path, and the account
	// echoes the greeting back through its real send path.
	contact, err := emu.AddContact("")
	if err != nil {
		return fmt.Errorf("app: demo: contact: %w", err)
	}
	// and a group of the contact and the accounts (each joins once paired),
	// where each account says hello through its group send path.
	group, err := emu.AddGroup(contact.JID())
	if err != nil {
		return fmt.Errorf("app: demo: group: %w", err)
	}
	sub := a.Events().Subscribe(1024)
	narrateCtx, stopNarrating := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		narrate(narrateCtx, sub, emu, contact, newDemoEcho(emu, controller{a}, group, opts.Out), a.Board(), opts)
	}()
	runErr := a.Run(ctx)
	stopNarrating()
	sub.Close()
	wg.Wait()
	return runErr
}

// demoPhone is the number of demo account i when pairing by phone number.
func demoPhone(i int) string { return fmt.Sprintf("+1555%07d", 100000+i) }

func demoConfig(emu *emulator.Server, storePath, listen string, opts DemoOptions) (*config.Config, error) {
	cfg, err := config.Load("")
	if err != nil {
		return nil, err
	}
	cfg.Server.URL = emu.URL()
	cfg.Server.RootPublicKey = emu.RootPublicKeyHex()
	cfg.Client.VersionURL = emu.ControlURL() + "/sw.js" // offline: the emulator publishes the version
	cfg.Store.Path = storePath
	cfg.HTTP.Listen = listen
	cfg.Log.QRTerminal = opts.Terminal != nil
	cfg.Log.HealthInterval = opts.HealthInterval
	cfg.Accounts = nil
	for i := 1; i <= opts.Accounts; i++ {
		acct := config.Account{ID: fmt.Sprintf("demo-%d", i)}
		if opts.LinkCode {
			acct.Phone = demoPhone(i)
		}
		cfg.Accounts = append(cfg.Accounts, acct)
	}
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("app: demo config: %w", err)
	}
	return cfg, nil
}

// printHealth writes the health summary as one line, with what the server
// saw of the accounts' acks and of the contact's messages.
func printHealth(out io.Writer, s status.Summary, st emulator.Stats) {
	fmt.Fprintf(out, "health: %d accounts: %d connected, %d connecting, %d pairing, %d backoff, %d unpaired; %d reconnects, %d restarts; server: %d stanzas pushed, %d acked, %d malformed acks, %d ack kills, %d prekey uploads; contacts: %d messages routed, %d receipts, %d retry receipts\n",
		s.Total, s.ByState[events.StateConnected], s.ByState[events.StateConnecting], s.ByState[events.StatePairing],
		s.ByState[events.StateBackoff], s.ByState[events.StateUnpaired], s.Reconnects, s.Restarts,
		st.StanzasPushed+st.Redeliveries, st.AcksOK, st.AcksMalformed, st.AckDeadlineKills, st.PrekeyUploads,
		st.MessagesRouted, st.Receipts, st.RetryReceipts)
}

// narrate tells the story on Out and plays the phone: every account's
// first QR code is scanned, or its first link code typed, after ScanAfter.
// It also plays the contact, who sends each account a text once it is first
// connected, shows the messages the accounts receive, and has each account
// echo a contact's text (demoEcho).
func narrate(ctx context.Context, sub *events.Subscription, emu *emulator.Server, contact *emulator.Contact, echo *demoEcho, board *status.Board, opts DemoOptions) {
	scanned := map[string]bool{}
	paired := map[string]jid.JID{} // account → its device JID
	greeted := map[string]bool{}
	var acts sync.WaitGroup // the phone's scans and the accounts' echoes
	defer acts.Wait()
	// later plays the phone's act after ScanAfter, as a person would
	// (unless ctx ends first), and tells when it failed.
	later := func(account, what string, act func() error) {
		acts.Go(func() {
			select {
			case <-ctx.Done():
				return
			case <-time.After(opts.ScanAfter):
			}
			if err := act(); err != nil && ctx.Err() == nil {
				fmt.Fprintf(opts.Out, "%s: %s failed: %v\n", account, what, err)
			}
		})
	}
	health := time.NewTicker(opts.HealthInterval)
	defer health.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-health.C:
			printHealth(opts.Out, board.Summarize(now), emu.Stats())
		case s := <-echo.sent:
			echo.queued(s)
		case e, ok := <-sub.C():
			if !ok {
				return
			}
			switch e.Kind {
			case events.KindQR, events.KindLinkCode:
				if scanned[e.Account] {
					continue
				}
				scanned[e.Account] = true
				account := e.Account
				if e.Kind == events.KindQR {
					fmt.Fprintf(opts.Out, "%s: showing a QR code; the phone scans it in %s\n", account, opts.ScanAfter)
					code := e.QR
					later(account, "scan", func() error {
						_, err := emu.Phone().Scan(ctx, code)
						return err
					})
					continue
				}
				fmt.Fprintf(opts.Out, "%s: showing link code %s; the phone types it in %s\n", account, e.LinkCode, opts.ScanAfter)
				code := e.LinkCode
				later(account, "typing the link code", func() error {
					var phone int
					fmt.Sscanf(account, "demo-%d", &phone)
					_, err := emu.Phone().EnterLinkCode(ctx, demoPhone(phone)[1:], code)
					return err
				})
			case events.KindPaired:
				fmt.Fprintf(opts.Out, "%s: paired as %s\n", e.Account, e.JID)
				if j, err := jid.Parse(e.JID); err == nil {
					paired[e.Account] = j
					if err := emu.AddGroupMember(echo.group, j.ToNonAD()); err != nil {
						fmt.Fprintf(opts.Out, "%s: could not join the demo group: %v\n", e.Account, err)
					}
				}
			case events.KindConnected:
				fmt.Fprintf(opts.Out, "%s: connected\n", e.Account)
				if j, ok := paired[e.Account]; ok && !greeted[e.Account] {
					greeted[e.Account] = true
					text := "Hello " + e.Account + ", this is " + contact.Name()
					if _, err := emu.SendText(contact.Devices()[0], j, text); err != nil {
						fmt.Fprintf(opts.Out, "%s: the contact could not send: %v\n", e.Account, err)
					}
				}
			case events.KindMessage:
				if dayOneTraffic(emu, e.Message) {
					continue // the day-one server's own pushes: too many to show
				}
				if m := e.Message; m != nil && m.Text != "" && m.Chat != m.Sender {
					fmt.Fprintf(opts.Out, "%s: message from %s in %s: %q\n", e.Account, m.Sender, m.Chat, m.Text)
				} else if m != nil && m.Text != "" {
					fmt.Fprintf(opts.Out, "%s: message from %s (%s): %q\n", e.Account, m.Sender, m.PushName, m.Text)
				}
				if c, ok := echo.contactOf(e.Message); ok {
					account, m := e.Account, e.Message
					acts.Go(func() { echo.reply(ctx, account, c, m) })
				}
			case events.KindMessageSent:
				echo.show(e.MessageID)
			case events.KindMessageFailed:
				echo.failed(e.MessageID, e.Error)
			case events.KindDisconnected, events.KindAlarm:
				fmt.Fprintf(opts.Out, "%s: %s: %s\n", e.Account, e.Kind, e.Error)
			}
		}
	}
}

// dayOneTraffic reports whether m is one of the messages day-one mode
// pushes (from its contacts, or from the account's phone to a made-up
// peer).
func dayOneTraffic(emu *emulator.Server, m *events.Message) bool {
	if m == nil {
		return false
	}
	for _, s := range []string{m.Sender, m.Chat} {
		if j, err := jid.Parse(s); err == nil && emu.DayOneParty(j) {
			return true
		}
	}
	return false
}
