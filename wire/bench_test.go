package wire

import (
	"bufio"
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/wafleet/wafleet/crypto"
	"github.com/wafleet/wafleet/waproto"
)

// scriptConn answers every ClientHello with the next precomputed ServerHello
// and discards what the client writes.
type scriptConn struct {
	hello []byte
}

func (s *scriptConn) ReadFrame() ([]byte, error) { return s.hello, nil }
func (s *scriptConn) WriteFrame([]byte) error    { return nil }
func (s *scriptConn) Close() error               { return nil }

// handshakePrims holds the inputs of the primitives a client handshake is
// built from, so each can be measured alone and all together.
type handshakePrims struct {
	peer, noise *crypto.KeyPair
	rootPub     []byte
	details     []byte
	sig         []byte
	chainLen    int
	payloadLen  int
	out, data   []byte
}

func newHandshakePrims(b *testing.B, p *testPKI, chain []byte, payloadLen int, noise *crypto.KeyPair) *handshakePrims {
	var cc waproto.CertChain
	if err := proto.Unmarshal(chain, &cc); err != nil {
		b.Fatal(err)
	}
	peer, err := crypto.GenerateKeyPair()
	if err != nil {
		b.Fatal(err)
	}
	return &handshakePrims{
		peer: peer, noise: noise, rootPub: p.root.Pub[:],
		details: cc.GetIntermediate().GetDetails(), sig: cc.GetIntermediate().GetSignature(),
		chainLen: len(chain), payloadLen: payloadLen,
		out: make([]byte, 0, 2048), data: make([]byte, 2048),
	}
}

func (h *handshakePrims) keygen(b *testing.B) {
	if _, err := crypto.KeyPairFromPrivate(h.peer.Priv[:]); err != nil {
		b.Fatal(err)
	}
}

func (h *handshakePrims) dh(b *testing.B) {
	if _, err := h.noise.DH(h.peer.Pub[:]); err != nil {
		b.Fatal(err)
	}
}

func (h *handshakePrims) verify(b *testing.B) {
	if !crypto.Verify(h.rootPub, h.details, h.sig) {
		b.Fatal("signature does not verify")
	}
}

// aead: 5 AES-256-GCM key setups (3 MixKey, 2 Split) and 4 AEAD operations
// of the handshake's sizes (sealing and opening cost the same).
func (h *handshakePrims) aead(b *testing.B) {
	var key [32]byte
	var nonce [12]byte
	var aead cipher.AEAD
	for range 5 {
		block, _ := aes.NewCipher(key[:])
		aead, _ = cipher.NewGCM(block)
	}
	for _, n := range []int{32, h.chainLen, 32, h.payloadLen} {
		h.out = aead.Seal(h.out[:0], nonce[:], h.data[:n], key[:])
	}
}

// hash: 7 MixHash (prologue, e_c, e_s, 4 ciphertexts) and 4 HKDF (3 MixKey,
// Split) derivations.
func (h *handshakePrims) hash(b *testing.B) {
	var sum [32]byte
	for _, n := range []int{4, 32, 32, 48, h.chainLen + 16, 48, h.payloadLen + 16} {
		d := sha256.New()
		d.Write(sum[:])
		d.Write(h.data[:n])
		d.Sum(sum[:0])
	}
	for range 4 {
		if _, err := hkdf.Key(sha256.New, sum[:], sum[:], "", 64); err != nil {
			b.Fatal(err)
		}
	}
}

// all runs the primitives of one client handshake.
func (h *handshakePrims) all(b *testing.B) {
	h.keygen(b)
	for range 3 {
		h.dh(b)
	}
	for range 2 {
		h.verify(b)
	}
	h.aead(b)
	h.hash(b)
}

// BenchmarkClientHandshake measures the client's side of a handshake (key
// generation, ClientHello, ServerHello decryption, certificate verification,
// ClientFinish, split) against server answers precomputed with the timer
// stopped, and each primitive it is built from. The "client" sub-benchmark
// also times, with its own timer stopped, one run of all its primitives after
// every handshake (1 key generation, 3 DH, 2 signature verifications, 5
// AES-GCM key setups and 4 AEAD operations, 7 SHA-256 mixes and 4 HKDF
// derivations) and reports x-primitives: client time / primitives time.
// Interleaving keeps the ratio honest on a machine whose load changes.
func BenchmarkClientHandshake(b *testing.B) {
	p := newTestPKI(b)
	chain := p.chain(b)
	noise, err := crypto.GenerateKeyPair()
	if err != nil {
		b.Fatal(err)
	}
	payload := make([]byte, 200) // about a login ClientPayload
	prims := newHandshakePrims(b, p, chain, len(payload), noise)
	for _, pb := range []struct {
		name string
		fn   func(*testing.B)
	}{{"keygen", prims.keygen}, {"dh", prims.dh}, {"verify", prims.verify}, {"aead", prims.aead}, {"hash", prims.hash}, {"primitives", prims.all}} {
		b.Run(pb.name, func(b *testing.B) {
			b.ReportAllocs()
			for range b.N {
				pb.fn(b)
			}
		})
	}
	b.Run("client", func(b *testing.B) {
		const batch = 64
		serverEph, _ := crypto.GenerateKeyPair()
		privs := make([][32]byte, batch)
		hellos := make([][]byte, batch)
		prepare := func() {
			for i := range batch {
				eph, err := crypto.GenerateKeyPair()
				if err != nil {
					b.Fatal(err)
				}
				privs[i] = eph.Priv
				r := crypto.NewResponder(p.static, serverEph, []byte(ConnHeader))
				if err := r.ReadClientHello(eph.Pub[:]); err != nil {
					b.Fatal(err)
				}
				e, s, pl, err := r.WriteServerHello(chain)
				if err != nil {
					b.Fatal(err)
				}
				hellos[i] = marshalHS(b, &waproto.HandshakeMessage{ServerHello: &waproto.HandshakeMessage_ServerHello{Ephemeral: e, Static: s, Payload: pl}})
			}
		}
		conn := &scriptConn{}
		var cur int
		cfg := ClientHandshakeConfig{
			NoiseKey: noise,
			Payload:  payload,
			RootKey:  p.root.Pub[:],
			Now:      func() time.Time { return p.now },
			// The client derives its ephemeral key inside the timer, with
			// the same scalar multiplication GenerateKeyPair does.
			newEphemeral: func() (*crypto.KeyPair, error) { return crypto.KeyPairFromPrivate(privs[cur][:]) },
		}
		var clientT, primT time.Duration
		b.ReportAllocs()
		b.ResetTimer()
		for i := range b.N {
			cur = i % batch
			if cur == 0 {
				b.StopTimer()
				prepare()
				b.StartTimer()
			}
			conn.hello = hellos[cur]
			t0 := time.Now()
			if _, err := ClientHandshake(b.Context(), conn, cfg); err != nil {
				b.Fatal(err)
			}
			t1 := time.Now()
			b.StopTimer()
			t2 := time.Now()
			prims.all(b)
			t3 := time.Now()
			b.StartTimer()
			clientT += t1.Sub(t0)
			primT += t3.Sub(t2)
		}
		b.StopTimer()
		b.ReportMetric(float64(clientT)/float64(primT), "x-primitives")
		b.ReportMetric(float64(primT.Nanoseconds())/float64(b.N), "primitives-ns/op")
	})
}

// BenchmarkTransport measures sealing and opening a 1 KiB frame through the
// Transport, framing included (length prefix written into the sealing buffer,
// the message read by a client Conn from a socket whose read copies it into
// the Conn's buffer, decoded and cut there, opened in place; see loopConn),
// against raw crypto/cipher
// AES-256-GCM seal+open of the same size. "aesgcm" is the raw baseline alone;
// "transport" times the Transport and, with its timer stopped, the same
// number of raw operations interleaved in blocks, and reports x-aesgcm, the
// ratio of the two (goal <= 1.1, 0 allocs/op).
func BenchmarkTransport(b *testing.B) {
	const size = 1024
	msg := make([]byte, size)
	var key [32]byte
	block, _ := aes.NewCipher(key[:])
	seal, _ := cipher.NewGCM(block)
	open, _ := cipher.NewGCM(block)
	var nonce [12]byte
	rawBuf := make([]byte, 0, size+16)
	var ctr uint64
	raw := func(b *testing.B) {
		binary.BigEndian.PutUint64(nonce[4:], ctr)
		ctr++
		rawBuf = seal.Seal(rawBuf[:0], nonce[:], msg, nil)
		if _, err := open.Open(rawBuf[:0], nonce[:], rawBuf, nil); err != nil {
			b.Fatal(err)
		}
	}
	b.Run("aesgcm", func(b *testing.B) {
		b.SetBytes(size)
		b.ReportAllocs()
		for range b.N {
			raw(b)
		}
	})
	b.Run("transport", func(b *testing.B) {
		send, recv := loopTransports(b)
		const block = 512
		var trT, rawT time.Duration
		b.SetBytes(size)
		b.ReportAllocs()
		b.ResetTimer()
		for done := 0; done < b.N; {
			n := min(block, b.N-done)
			t0 := time.Now()
			for range n {
				if err := send.Send(msg); err != nil {
					b.Fatal(err)
				}
				if _, err := recv.Receive(); err != nil {
					b.Fatal(err)
				}
			}
			t1 := time.Now()
			b.StopTimer()
			t2 := time.Now()
			for range n {
				raw(b)
			}
			t3 := time.Now()
			b.StartTimer()
			trT += t1.Sub(t0)
			rawT += t3.Sub(t2)
			done += n
		}
		b.StopTimer()
		b.ReportMetric(float64(trT)/float64(rawT), "x-aesgcm")
	})
}

// BenchmarkTransportWebSocket is one 1 KiB round trip through real
// WebSockets on 127.0.0.1: client Send, server Receive and Send back, client
// Receive. Its allocs/op include gorilla/websocket's per-message allocations
// on both sides (ours are 0, see BenchmarkTransport).
func BenchmarkTransportWebSocket(b *testing.B) {
	p := newTestPKI(b)
	chain := p.chain(b)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := Accept(w, r, AcceptOptions{})
		if err != nil {
			return
		}
		defer c.Close()
		res, err := serveHandshake(context.Background(), c, chain, p.static)
		if err != nil {
			return
		}
		for {
			pt, err := res.Transport.Receive()
			if err != nil || res.Transport.Send(pt) != nil {
				return
			}
		}
	}))
	defer srv.Close()
	c, err := Dial(context.Background(), wsURL(srv), DialOptions{})
	if err != nil {
		b.Fatal(err)
	}
	tr, err := ClientHandshake(context.Background(), c, p.clientConfig(b))
	if err != nil {
		b.Fatal(err)
	}
	defer tr.Close()
	msg := make([]byte, 1024)
	b.SetBytes(int64(len(msg)))
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		if err := tr.Send(msg); err != nil {
			b.Fatal(err)
		}
		if _, err := tr.Receive(); err != nil {
			b.Fatal(err)
		}
	}
}

// filledSocket stands for a socket that has put its bytes in the reader's
// buffer itself, as the kernel's read does: its Read returns the n bytes
// the benchmark wrote at the start of p (it checks that p is where it wrote
// them), copying nothing.
type filledSocket struct {
	fakeSocket
	at *byte
	n  int
}

func (s *filledSocket) Read(p []byte) (int, error) {
	if s.n == 0 {
		return 0, io.EOF
	}
	if len(p) < s.n || &p[0] != s.at {
		return 0, errors.New("filledSocket: read into another buffer than the one filled")
	}
	n := s.n
	s.n = 0
	return n, nil
}

// BenchmarkReceive measures the receive path alone: Transport.Receive of
// 1 KiB frames, each a binary WebSocket message, that a client Conn decodes
// and opens in place in its read buffer, against raw crypto/cipher
// AES-256-GCM open of the same size ("open"). Frames are sealed ahead in
// blocks of 512 with the timer stopped; each sub-benchmark times raw open
// of the same number of frames (brought into the cache first, as the
// received ones are) interleaved in the same blocks, with its timer
// stopped, and reports x-open, the ratio (goal <= 1.1, 0 allocs/op).
//
// "receive": the socket has put the block's messages in the Conn's buffer
// (filledSocket), as the kernel's read does: what is timed is all the
// receiving side does with bytes the socket read. "receive-copy": a socket
// whose read copies one message at a time into the Conn's buffer
// (fakeSocket), standing for the kernel's copy, which every reader pays:
// the frames come from 512 KiB of memory, so the copy moves them into the
// cache, work that raw open does in its own loads.
func BenchmarkReceive(b *testing.B) {
	const size, block = 1024, 512
	msg := make([]byte, size)
	var key [32]byte
	blk, _ := aes.NewCipher(key[:])
	gcm, _ := cipher.NewGCM(blk)
	var nonce [12]byte
	rawCT := make([][]byte, block)
	for i := range rawCT {
		binary.BigEndian.PutUint64(nonce[4:], uint64(i))
		rawCT[i] = gcm.Seal(nil, nonce[:], msg, nil)
	}
	dst := make([]byte, 0, size)
	rawOpen := func(b *testing.B, i int) {
		binary.BigEndian.PutUint64(nonce[4:], uint64(i))
		if _, err := gcm.Open(dst[:0], nonce[:], rawCT[i], nil); err != nil {
			b.Fatal(err)
		}
	}
	b.Run("open", func(b *testing.B) {
		b.SetBytes(size)
		b.ReportAllocs()
		for i := range b.N {
			rawOpen(b, i%block)
		}
	})
	// message seals the next frame as a server's binary message.
	message := func(b *testing.B, client *Transport, dst []byte) []byte {
		f, err := AppendFrame(nil, client.send.Seal(nil, msg))
		if err != nil {
			b.Fatal(err)
		}
		return append(append(dst, 0x82, 126, byte(len(f)>>8), byte(len(f))), f...)
	}
	// run times receive (after prepare, with the timer stopped) and raw open
	// in blocks.
	var warm byte
	run := func(b *testing.B, prepare func(n int), receive func()) {
		var recvT, rawT time.Duration
		b.SetBytes(size)
		b.ReportAllocs()
		b.ResetTimer()
		for done := 0; done < b.N; {
			n := min(block, b.N-done)
			b.StopTimer()
			prepare(n)
			b.StartTimer()
			t0 := time.Now()
			for range n {
				receive()
			}
			t1 := time.Now()
			b.StopTimer()
			for j := range n { // into the cache, as the frames received are
				for k := 0; k < len(rawCT[j]); k += 64 {
					warm += rawCT[j][k]
				}
			}
			t2 := time.Now()
			for j := range n {
				rawOpen(b, j)
			}
			t3 := time.Now()
			b.StartTimer()
			recvT += t1.Sub(t0)
			rawT += t3.Sub(t2)
			done += n
		}
		b.StopTimer()
		b.ReportMetric(float64(recvT)/float64(rawT), "x-open")
		_ = warm
	}
	b.Run("receive", func(b *testing.B) {
		client, server, _, _ := handshakePair(b)
		sock := &filledSocket{}
		c := newConn(sock, false, 0, 0)
		recv := NewTransport(c, nil, server.recv)
		c.r.in.buf = make([]byte, block*(size+64))
		run(b, func(n int) {
			filled := c.r.in.buf[:0]
			for range n {
				filled = message(b, client, filled)
			}
			sock.at, sock.n = &c.r.in.buf[0], len(filled)
		}, func() {
			if _, err := recv.Receive(); err != nil {
				b.Fatal(err)
			}
		})
	})
	b.Run("receive-copy", func(b *testing.B) {
		client, server, _, _ := handshakePair(b)
		sock := &fakeSocket{chunks: make([][]byte, block)}
		recv := NewTransport(newConn(sock, false, 0, 0), nil, server.recv)
		run(b, func(n int) {
			for j := range n {
				sock.chunks[j] = message(b, client, sock.chunks[j][:0])
			}
			sock.chunks = sock.chunks[:n]
			sock.rewind()
		}, func() {
			if _, err := recv.Receive(); err != nil {
				b.Fatal(err)
			}
		})
	})
}

// rawUpgradeServer accepts WebSocket upgrades with a few lines of its own
// (no WebSocket library, so the heap it keeps is the same whatever this
// package uses), sends each client one binary message carrying hello, and
// then keeps only the net.Conn: no buffer, no goroutine.
type rawUpgradeServer struct {
	ln    net.Listener
	mu    sync.Mutex
	conns []net.Conn
	done  chan struct{}
}

func startRawUpgradeServer(b testing.TB, hello []byte) *rawUpgradeServer {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	s := &rawUpgradeServer{ln: ln, done: make(chan struct{})}
	msg := append([]byte{0x82, 126, byte(len(hello) >> 8), byte(len(hello))}, hello...)
	go func() {
		defer close(s.done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			req, err := http.ReadRequest(bufio.NewReader(c))
			if err != nil {
				c.Close()
				continue
			}
			sum := sha1.Sum([]byte(req.Header.Get("Sec-WebSocket-Key") + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"))
			resp := "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: " +
				base64.StdEncoding.EncodeToString(sum[:]) + "\r\n\r\n"
			if _, err := c.Write(append([]byte(resp), msg...)); err != nil {
				c.Close()
				continue
			}
			s.mu.Lock()
			s.conns = append(s.conns, c)
			s.mu.Unlock()
		}
	}()
	return s
}

func (s *rawUpgradeServer) close() {
	s.ln.Close()
	<-s.done
	for _, c := range s.conns {
		c.Close()
	}
}

// BenchmarkIdleConnMemory measures what an idle connected client Conn
// keeps: 1,000 Conns dial a loopback server, each receives one 200-byte
// frame and sends one, then waits in ReadFrame. heap-B/conn is the growth
// of HeapInuse (after a GC) per Conn, stack-B/conn that of StackInuse (the
// reading goroutine); the server side keeps only its net.Conn. Run it with
// -benchtime=1x.
func BenchmarkIdleConnMemory(b *testing.B) {
	const conns = 1000
	hello, _ := AppendFrame(nil, make([]byte, 200))
	for b.Loop() {
		srv := startRawUpgradeServer(b, hello)
		url := "ws://" + srv.ln.Addr().String() + "/ws/chat"
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		cs := make([]*Conn, conns)
		var wg sync.WaitGroup
		for i := range cs {
			c, err := Dial(context.Background(), url, DialOptions{})
			if err != nil {
				b.Fatal(err)
			}
			if _, err := c.ReadFrame(); err != nil {
				b.Fatal(err)
			}
			if err := c.WriteFrame(make([]byte, 200)); err != nil {
				b.Fatal(err)
			}
			cs[i] = c
			wg.Go(func() { c.ReadFrame() })
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		b.ReportMetric(float64(after.HeapInuse-before.HeapInuse)/conns, "heap-B/conn")
		b.ReportMetric(float64(after.StackInuse-before.StackInuse)/conns, "stack-B/conn")
		for _, c := range cs {
			c.Close()
		}
		wg.Wait()
		srv.close()
	}
}
