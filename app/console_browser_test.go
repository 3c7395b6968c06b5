package app

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/skip2/go-qrcode"

	"github.com/wafleet/wafleet/emulator"
	"github.com/wafleet/wafleet/emulator/emutest"
	"github.com/wafleet/wafleet/events"
	"github.com/wafleet/wafleet/wire/jid"
)

// browserTestsEnv, set to 1 (as .ci/run does), makes a missing browser a
// failure of TestConsoleInBrowser instead of a skip.
const browserTestsEnv = "WAFLEET_BROWSER_TESTS"

// findBrowser returns the path of a Chromium or Chrome binary, or "".
func findBrowser() string {
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "google-chrome-stable"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	return ""
}

// browser drives one headless Chromium tab.
type browser struct {
	t   *testing.T
	ctx context.Context
}

func newBrowser(t *testing.T) *browser {
	t.Helper()
	path := findBrowser()
	if path == "" {
		if os.Getenv(browserTestsEnv) == "1" {
			t.Fatalf("%s=1 but no chromium, chromium-browser or google-chrome binary is on PATH (apt-get install chromium)", browserTestsEnv)
		}
		t.Skipf("no chromium binary on PATH: install Debian's chromium (or set %s=1 to make this a failure)", browserTestsEnv)
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(path),
		chromedp.NoSandbox, // CI containers run as root
		chromedp.UserDataDir(t.TempDir()),
	)
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx)
	t.Cleanup(func() { cancel(); cancelAlloc() })
	// The first Do starts the browser, which lives as long as ctx.
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("start %s: %v", path, err)
	}
	return &browser{t: t, ctx: ctx}
}

func (b *browser) do(what string, steps ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 30*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, steps...); err != nil {
		b.t.Fatalf("browser: %s: %v", what, err)
	}
}

// waitJS waits until the JavaScript expression is true in the page; when
// it does not, the failure quotes the console's message line.
func (b *browser) waitJS(what, expr string) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 30*time.Second)
	defer cancel()
	if _, err := chromedp.Run(ctx, chromedp.Poll[chromedp.Void](expr, chromedp.WithPollingTimeout(25*time.Second))); err != nil {
		msg := eval[string](b, "read the message line", `document.getElementById("msg").textContent`)
		b.t.Fatalf("browser: wait for %s: %v (the console says %q)", what, err, msg)
	}
}

// eval evaluates expr (awaiting a promise) and returns its value.
func eval[T any](b *browser, what, expr string) T {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 30*time.Second)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](expr, chromedp.EvalAwaitPromise))
	if err != nil {
		b.t.Fatalf("browser: %s: %v", what, err)
	}
	return v
}

func (b *browser) click(what, sel string) {
	b.t.Helper()
	b.do("click "+what, chromedp.Click(chromedp.CSS(sel)))
}

func rowSel(id string) string { return `tr[data-id="` + id + `"]` }

// waitState waits until the row of id shows state.
func (b *browser) waitState(id string, state events.State) {
	b.t.Helper()
	b.waitJS(id+" "+string(state), fmt.Sprintf(`(document.querySelector('%s .badge') || {}).textContent === %q`, rowSel(id), state))
}

// qrTexts records the QR codes each account showed, from the app's events.
type qrTexts struct {
	mu   sync.Mutex
	byID map[string][]string
}

func (q *qrTexts) follow(sub *events.Subscription) {
	for e := range sub.C() {
		if e.Kind == events.KindQR {
			q.mu.Lock()
			q.byID[e.Account] = append(q.byID[e.Account], e.QR)
			q.mu.Unlock()
		}
	}
}

// matching returns the QR code of id whose module matrix is bitmap.
func (q *qrTexts) matching(t *testing.T, id, bitmap string) (string, bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	for _, text := range q.byID[id] {
		code, err := qrcode.New(text, qrcode.Medium)
		if err != nil {
			t.Fatal(err)
		}
		var rows []string
		for _, row := range code.Bitmap() {
			var sb strings.Builder
			for _, dark := range row {
				sb.WriteByte("01"[btoi(dark)])
			}
			rows = append(rows, sb.String())
		}
		if strings.Join(rows, "\n") == bitmap {
			return text, true
		}
	}
	return "", false
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

// readQRImage reads the module matrix of the QR <img> the row of id shows,
// from the pixels the browser decoded (8 px per module, as api renders).
const readQRImage = `(() => {
  const img = document.querySelector('%s img.qr');
  if (!img || !img.complete || img.naturalWidth === 0) return "";
  const c = document.createElement("canvas");
  c.width = img.naturalWidth; c.height = img.naturalHeight;
  const g = c.getContext("2d");
  g.drawImage(img, 0, 0);
  const d = g.getImageData(0, 0, c.width, c.height).data;
  const n = c.width / 8, rows = [];
  for (let y = 0; y < n; y++) {
    let row = "";
    for (let x = 0; x < n; x++) row += d[((y * 8 + 4) * c.width + x * 8 + 4) * 4] < 128 ? "1" : "0";
    rows.push(row);
  }
  return rows.join("\n");
})()`

// TestConsoleInBrowser drives the console in a real headless Chromium
// against an app on the emulator, with a token: the login form, the QR
// <img> (its pixels are the account's QR code, which the emulator's phone
// then scans), live updates over the event stream without a reload (state
// changes the emulator causes appear in the rows), every row action (with
// its confirmation step where it has one) and the add form, and the
// console's logout.
func TestConsoleInBrowser(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a browser: runs without -short")
	}
	b := newBrowser(t)
	emu := emutest.Start(t, emulator.Options{})
	cfg := testConfig(t, emu, filepath.Join(t.TempDir(), "wafleet.db"), 2)
	const token = "console-browser-test-token-0123456789"
	cfg.HTTP.Token = token
	a, other := cfg.Accounts[0].ID, cfg.Accounts[1].ID
	r := start(t, cfg)
	defer r.stop(t)
	qrs := &qrTexts{byID: map[string][]string{}}
	sub := r.app.Events().Subscribe(4096)
	followed := make(chan struct{})
	go func() { qrs.follow(sub); close(followed) }()
	defer func() { sub.Close(); <-followed }()

	// The login form, then the console.
	b.do("open the console", chromedp.Navigate(r.url+"/"), chromedp.WaitVisible(chromedp.ID("token")))
	b.do("log in with a wrong token",
		chromedp.SendKeys(chromedp.ID("token"), "not-the-token"),
		chromedp.Click(chromedp.ID("login")),
		chromedp.WaitVisible(chromedp.CSS("p.failed")),
	)
	b.do("log in",
		chromedp.SendKeys(chromedp.ID("token"), token),
		chromedp.Click(chromedp.ID("login")),
		chromedp.WaitVisible(chromedp.ID("rows")),
	)
	b.waitJS("the live event stream", `document.getElementById("live").textContent === "live"`)
	b.waitState(a, events.StatePairing)
	b.waitState(other, events.StatePairing)
	// Search and filter: the server answers the page that matches.
	b.do("search for "+other,
		chromedp.SendKeys(chromedp.ID("q"), other),
		chromedp.Click(chromedp.CSS(`#filter button[type="submit"]`)),
	)
	b.waitJS("only "+other, fmt.Sprintf(`document.querySelectorAll("#rows tr").length === 1 && !!document.querySelector('%s')`, rowSel(other)))
	filter := func(q, state string) {
		t.Helper()
		eval[bool](b, "fill the filter", fmt.Sprintf(`(document.getElementById("q").value = %q, document.getElementById("state").value = %q, true)`, q, state))
		b.click("apply the filter", `#filter button[type="submit"]`)
	}
	filter("", "connected")
	b.waitJS("no connected account", `document.querySelectorAll("#rows tr").length === 0 && !document.getElementById("none").hidden`)
	filter("", "")
	b.waitJS("both rows", `document.querySelectorAll("#rows tr").length === 2`)
	// From here on, a reload would drop this mark: the updates must be live.
	eval[bool](b, "mark the page", `window.stillTheSamePage = true`)
	b.waitJS("the counts", `document.getElementById("summary").textContent.includes("pairing: 2")`)

	// The QR code: "code 1 of 6" with a countdown, and an image whose
	// pixels are a code the account showed.
	b.waitJS("the QR caption", fmt.Sprintf(`/^code \d of 6, expires in \d+ s$/.test((document.querySelector('%s .qrinfo') || {}).textContent || "")`, rowSel(a)))
	scanShown := func() {
		t.Helper()
		deadline := time.Now().Add(20 * time.Second)
		for {
			bitmap := eval[string](b, "read the QR image", fmt.Sprintf(readQRImage, rowSel(a)))
			if text, ok := qrs.matching(t, a, bitmap); ok {
				ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
				defer cancel()
				if _, err := emu.Phone().Scan(ctx, text); err != nil {
					t.Fatalf("the phone scans the code the <img> shows: %v", err)
				}
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("the QR <img> of %s is no code it showed (modules:\n%s)", a, bitmap)
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	scanShown()
	b.waitState(a, events.StateConnected)
	b.waitJS("the counts patched", `(t => t.includes("pairing: 1") && t.includes("connected: 1"))(document.getElementById("summary").textContent)`)
	b.waitJS("the QR gone", fmt.Sprintf(`!document.querySelector('%s img.qr')`, rowSel(a)))
	device := func() jid.JID {
		t.Helper()
		v, _ := r.app.Board().Get(a)
		j, err := jid.Parse(v.JID)
		if err != nil {
			t.Fatalf("JID of %s %q: %v", a, v.JID, err)
		}
		return j
	}

	// Stopped (the session replaced elsewhere): Restart brings it back.
	if err := emu.Phone().Kick(device(), "replaced"); err != nil {
		t.Fatal(err)
	}
	b.waitState(a, events.StateStopped)
	b.click("restart", rowSel(a)+` button[data-action="restart"]`)
	b.waitState(a, events.StateConnected)

	// Unlinked on the phone: the account pairs again by itself.
	if err := emu.Phone().Unlink(device()); err != nil {
		t.Fatal(err)
	}
	b.waitState(a, events.StatePairing)
	scanShown()
	b.waitState(a, events.StateConnected)

	// Locked (failure 403 at login): logged_out until Pair re-arms it.
	if err := emu.SetFaults(emulator.Faults{LoginFailure403: true}); err != nil {
		t.Fatal(err)
	}
	if err := emu.Phone().Kick(device(), "503"); err != nil {
		t.Fatal(err)
	}
	b.waitState(a, events.StateLoggedOut)
	b.waitJS("the pair button", fmt.Sprintf(`!document.querySelector('%s button[data-action="pair"]').hidden`, rowSel(a)))
	if err := emu.SetFaults(emulator.Faults{}); err != nil {
		t.Fatal(err)
	}
	b.click("pair", rowSel(a)+` button[data-action="pair"]`)
	b.waitState(a, events.StatePairing)
	scanShown()

	// Log out a connected account, through its confirmation step.
	b.waitState(a, events.StateConnected)
	b.click("log out", rowSel(a)+` button[data-action="logout"]`)
	b.click("confirm the logout", rowSel(a)+` button[data-confirm="logout"]`)
	b.waitState(a, events.StatePairing)

	// Add an account through the form.
	b.do("add an account",
		chromedp.Click(chromedp.CSS("#adder summary")),
		chromedp.SendKeys(chromedp.ID("add-id"), "acct-new"),
		chromedp.SendKeys(chromedp.ID("add-device"), "Console test"),
		chromedp.Click(chromedp.ID("add-submit")),
	)
	b.waitState("acct-new", events.StatePairing)

	// Remove, through its confirmation step: an account of the YAML file
	// is refused with the API's reason; the added one goes.
	b.click("remove", rowSel(other)+` button[data-action="remove"]`)
	b.click("confirm the removal", rowSel(other)+` button[data-confirm="remove"]`)
	b.waitJS("the refusal", `document.getElementById("msg").textContent.includes("configured in the YAML file")`)
	b.click("remove", rowSel("acct-new")+` button[data-action="remove"]`)
	b.click("confirm the removal", rowSel("acct-new")+` button[data-confirm="remove"]`)
	b.waitJS("the removed row gone", fmt.Sprintf(`!document.querySelector('%s')`, rowSel("acct-new")))
	if _, ok := r.app.Board().Get("acct-new"); ok {
		t.Fatal("acct-new still on the board after its removal")
	}
	if !eval[bool](b, "check no reload happened", `window.stillTheSamePage === true`) {
		t.Fatal("the page reloaded: the updates were not live")
	}

	// Log out of the console: the page reloads into the login form, so GET
	// / no longer finds a session for the browser's cookie. (The login
	// page's CSP allows no fetch to ask the API directly.)
	b.click("log out of the console", "#signout")
	b.do("the login form", chromedp.WaitVisible(chromedp.ID("token")))
	if eval[bool](b, "the console gone", `!!document.getElementById("rows")`) {
		t.Fatal("the console still shows after its logout")
	}
}

// TestConsoleShowsLinkCode: an account pairing by phone number shows its
// link code, with its countdown, in its row until the phone takes it.
func TestConsoleShowsLinkCode(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a browser: runs without -short")
	}
	b := newBrowser(t)
	emu := emutest.Start(t, emulator.Options{})
	cfg := testConfig(t, emu, filepath.Join(t.TempDir(), "wafleet.db"), 1)
	cfg.Accounts[0].Phone = "+15557654321"
	a := cfg.Accounts[0].ID
	r := start(t, cfg)
	defer r.stop(t)

	b.do("open the console", chromedp.Navigate(r.url+"/"), chromedp.WaitVisible(chromedp.ID("rows")))
	b.waitState(a, events.StatePairing)
	var code string
	for deadline := time.Now().Add(20 * time.Second); code == ""; {
		if v, _ := r.app.Board().Get(a); v.LinkCode != nil {
			code = *v.LinkCode
		} else if time.Now().After(deadline) {
			t.Fatal("no link code on the board")
		} else {
			time.Sleep(20 * time.Millisecond)
		}
	}
	b.waitJS("the link code in the row", fmt.Sprintf(`(document.querySelector('%s .linkcode') || {}).textContent === %q`, rowSel(a), code))
	b.waitJS("its countdown", fmt.Sprintf(`/^expires in \d+ s$/.test((document.querySelector('%s .qrinfo') || {}).textContent || "")`, rowSel(a)))
	b.waitJS("no QR image", fmt.Sprintf(`!document.querySelector('%s img.qr')`, rowSel(a)))
	if _, err := emu.Phone().EnterLinkCode(context.Background(), "15557654321", code); err != nil {
		t.Fatalf("EnterLinkCode: %v", err)
	}
	b.waitState(a, events.StateConnected)
	b.waitJS("the code gone", fmt.Sprintf(`!document.querySelector('%s .linkcode')`, rowSel(a)))
}
