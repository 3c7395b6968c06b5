package app

import (
	"fmt"
	"io"
	"log/slog"
	"sync"

	qrcode "github.com/skip2/go-qrcode"

	"github.com/wafleet/wafleet/events"
)

// terminalQR draws each new QR code on the operator's terminal. Drawing
// takes a lock and a few hundred microseconds; it runs off the publisher's
// goroutine through a small buffer so publishing never blocks.
type terminalQR struct {
	out     io.Writer
	logger  *slog.Logger
	queue   chan events.Event
	done    chan struct{}
	stopped chan struct{}
	once    sync.Once
}

func newTerminalQR(out io.Writer, logger *slog.Logger) *terminalQR {
	t := &terminalQR{
		out:     out,
		logger:  logger,
		queue:   make(chan events.Event, 64),
		done:    make(chan struct{}),
		stopped: make(chan struct{}),
	}
	go t.draw()
	return t
}

// Publish queues QR and link-code events for drawing and ignores the
// rest.
func (t *terminalQR) Publish(e events.Event) {
	if (e.Kind != events.KindQR || e.QR == "") && (e.Kind != events.KindLinkCode || e.LinkCode == "") {
		return
	}
	select {
	case t.queue <- e:
	default:
	}
}

// Close stops drawing and waits for the drawing goroutine to end.
func (t *terminalQR) Close() {
	t.once.Do(func() { close(t.done) })
	<-t.stopped
}

func (t *terminalQR) draw() {
	defer close(t.stopped)
	for {
		select {
		case <-t.done:
			return
		case e := <-t.queue:
			if e.Kind == events.KindLinkCode {
				fmt.Fprintf(t.out, "\nOn the phone of account %q: WhatsApp → Linked devices → Link a device → Link with phone number instead, then type:\n\n    %s\n\n(valid until %s)\n",
					e.Account, e.LinkCode, e.LinkCodeExpires.Format("15:04:05"))
				continue
			}
			code, err := qrcode.New(e.QR, qrcode.Low)
			if err != nil {
				t.logger.Warn("cannot draw QR code", "account", e.Account, "error", err)
				continue
			}
			fmt.Fprintf(t.out, "\nScan with WhatsApp (Linked devices) to link account %q:\n%s\n", e.Account, code.ToSmallString(false))
		}
	}
}
