package wire

import (
	"bytes"
	"errors"
	"io"
	"runtime"
	"slices"
	"testing"

	"pgregory.net/rapid"
)

// newChunkReader returns the frame reader of a client Conn whose socket
// delivers each chunk as one binary WebSocket message, one per read.
func newChunkReader(limit int, chunks ...[]byte) (*frameReader, *fakeSocket) {
	c, sock := socketConn(false, limit, binaryMessages(chunks, false)...)
	return &c.r, sock
}

// splitAt cuts data at the given sorted offsets (duplicates give empty chunks).
func splitAt(data []byte, cuts []int) [][]byte {
	var out [][]byte
	prev := 0
	for _, c := range cuts {
		out = append(out, data[prev:c])
		prev = c
	}
	return append(out, data[prev:])
}

func TestFrameReaderReassemblesProperty(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		bodies := rapid.SliceOfN(rapid.SliceOfN(rapid.Byte(), 0, 300), 0, 12).Draw(t, "bodies")
		var stream []byte
		for _, b := range bodies {
			var err error
			if stream, err = AppendFrame(stream, b); err != nil {
				t.Fatal(err)
			}
		}
		cuts := rapid.SliceOfN(rapid.IntRange(0, len(stream)), 0, 20).Draw(t, "cuts")
		slices.Sort(cuts)
		r, _ := newChunkReader(0, splitAt(stream, cuts)...)
		for i, want := range bodies {
			got, err := r.ReadFrame()
			if err != nil {
				t.Fatalf("frame %d: %v", i, err)
			}
			if !bytes.Equal(got, want) {
				t.Fatalf("frame %d: got %x, want %x", i, got, want)
			}
		}
		if _, err := r.ReadFrame(); err != io.EOF {
			t.Fatalf("after last frame: got %v, want io.EOF", err)
		}
	})
}

func TestFrameReaderTruncatedStreamProperty(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		body := rapid.SliceOfN(rapid.Byte(), 1, 200).Draw(t, "body")
		stream, _ := AppendFrame(nil, body)
		cut := rapid.IntRange(1, len(stream)-1).Draw(t, "cut")
		r, _ := newChunkReader(0, stream[:cut])
		if _, err := r.ReadFrame(); !errors.Is(err, io.ErrUnexpectedEOF) {
			t.Fatalf("truncated at %d of %d: got %v, want io.ErrUnexpectedEOF", cut, len(stream), err)
		}
	})
}

// bytesAllocated reports how many heap bytes fn allocated (GC-independent).
// bytesAllocated returns the bytes fn allocates per call, averaged over
// many calls with one P (as testing.AllocsPerRun does), so that allocations
// of other goroutines in the process do not count against fn.
func bytesAllocated(fn func()) uint64 {
	const runs = 64
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	fn() // warm up
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for range runs {
		fn()
	}
	runtime.ReadMemStats(&after)
	return (after.TotalAlloc - before.TotalAlloc) / runs
}

func TestFrameReaderTooLarge(t *testing.T) {
	tests := []struct {
		name  string
		limit int
		pre   []byte
	}{
		{"above small limit", 100, []byte{0, 0, 101}},
		{"max length above 1 MiB limit", 1 << 20, []byte{0xff, 0xff, 0xff}},
		{"just above 1 MiB limit", 1 << 20, []byte{0x10, 0x00, 0x01}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// A good frame first, then the forged prefix split across messages.
			good, _ := AppendFrame(nil, []byte("ok"))
			r, _ := newChunkReader(tt.limit, good, tt.pre[:1], tt.pre[1:], []byte("tail"))
			if got, err := r.ReadFrame(); err != nil || string(got) != "ok" {
				t.Fatalf("first frame: %q, %v", got, err)
			}
			if _, err := r.ReadFrame(); !errors.Is(err, ErrFrameTooLarge) {
				t.Fatalf("got %v, want ErrFrameTooLarge", err)
			}
			if r.in.buf != nil {
				t.Fatalf("a %d-byte buffer is kept after the error", len(r.in.buf))
			}
			msgs := binaryMessages([][]byte{tt.pre, []byte("tail")}, false)
			if n := bytesAllocated(func() {
				c, _ := socketConn(false, tt.limit, msgs...)
				_, _ = c.ReadFrame()
			}); n > 4096 {
				t.Fatalf("a Conn refusing the length allocated %d bytes", n)
			}
			if _, err := r.ReadFrame(); !errors.Is(err, ErrFrameTooLarge) {
				t.Fatalf("error is not sticky: %v", err)
			}
		})
	}
}

func TestFrameReaderForgedLengthDoesNotAllocate(t *testing.T) {
	// A length within the limit but with only part of the body behind it:
	// memory follows the bytes that arrived, not the announced 16 MiB.
	for _, arrived := range []int{16, 100 << 10} {
		chunks := [][]byte{{0xff, 0xff, 0xff}}
		for sent := 0; sent < arrived; sent += 1000 {
			chunks = append(chunks, make([]byte, min(1000, arrived-sent)))
		}
		msgs := binaryMessages(chunks, false)
		got := bytesAllocated(func() {
			c, _ := socketConn(false, 0, msgs...)
			if _, err := c.r.ReadFrame(); !errors.Is(err, io.ErrUnexpectedEOF) {
				t.Fatalf("got %v, want io.ErrUnexpectedEOF", err)
			}
		})
		// Buffers grown while full, each at most twice the last: their sum
		// stays within four times the bytes that arrived (or one growStep).
		if limit := uint64(max(4*arrived, 2*growStep)); got > limit {
			t.Fatalf("%d bytes arrived of 16 MiB announced: %d bytes allocated", arrived, got)
		}
	}
}

func TestFrameReaderGrowsInSteps(t *testing.T) {
	body := bytes.Repeat([]byte{7}, 5*growStep+3)
	stream, _ := AppendFrame(nil, body)
	// Deliver in many small messages to exercise growth across boundaries.
	var chunks [][]byte
	for len(stream) > 0 {
		n := min(len(stream), 10007)
		chunks = append(chunks, stream[:n])
		stream = stream[n:]
	}
	r, _ := newChunkReader(0, chunks...)
	got, err := r.ReadFrame()
	if err != nil || !bytes.Equal(got, body) {
		t.Fatalf("large frame: len %d, err %v", len(got), err)
	}
}

func TestAppendFrameTooLarge(t *testing.T) {
	tests := []struct {
		name    string
		size    int
		wantErr bool
	}{
		{"empty", 0, false},
		{"three prefix bytes", 0x012345, false},
		{"2^24", 1 << 24, true},
	}
	big := make([]byte, 1<<24)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dst := make([]byte, 0, 8)
			out, err := AppendFrame(dst, big[:tt.size])
			if tt.wantErr {
				if !errors.Is(err, ErrFrameTooLarge) {
					t.Fatalf("got %v, want ErrFrameTooLarge", err)
				}
				if len(out) != 0 || cap(out) != 8 {
					t.Fatalf("dst changed on error: len %d cap %d", len(out), cap(out))
				}
				if n := bytesAllocated(func() { _, _ = AppendFrame(dst, big[:tt.size]) }); n > 4096 {
					t.Fatalf("rejecting a too-large frame allocated %d bytes", n)
				}
				return
			}
			if err != nil || len(out) != tt.size+FramePrefixLen {
				t.Fatalf("len %d, err %v", len(out), err)
			}
			if n := int(out[0])<<16 | int(out[1])<<8 | int(out[2]); n != tt.size {
				t.Fatalf("prefix says %d, want %d", n, tt.size)
			}
		})
	}
}

func TestIdleReaderKeepsOnlyItsSmallBuffer(t *testing.T) {
	// A large frame borrows a buffer (or grows one of its own past
	// growStep); once it is consumed, the reader is back to its small
	// buffer before the next frame, and nothing is kept borrowed.
	small, _ := AppendFrame(nil, []byte("small"))
	for _, size := range []int{5000, 3 * growStep} {
		big, _ := AppendFrame(nil, bytes.Repeat([]byte{9}, size))
		r, _ := newChunkReader(0, small, big, small, big)
		for i := range 4 {
			b, err := r.ReadFrame()
			if err != nil || len(b) != len(small)-FramePrefixLen && i%2 == 0 || len(b) != size && i%2 == 1 {
				t.Fatalf("size %d, frame %d: %d bytes, %v", size, i, len(b), err)
			}
			if i%2 == 1 && len(r.in.buf) <= readBufferSize {
				t.Fatalf("size %d: a %d-byte frame read in a %d-byte buffer", size, len(b), len(r.in.buf))
			}
			if i%2 == 0 && (len(r.in.buf) != readBufferSize || r.in.lent != nil) {
				t.Fatalf("size %d, frame %d: the idle reader holds %d bytes (lent %v), want its %d", size, i, len(r.in.buf), r.in.lent != nil, readBufferSize)
			}
		}
	}
}

func TestFrameReaderSteadyStateAllocs(t *testing.T) {
	// Two frames in two messages: the second frame's start rides in the
	// first message, so its bytes are moved over the header between.
	f1, _ := AppendFrame(nil, bytes.Repeat([]byte{1}, 1024))
	msg := append(append([]byte{}, f1...), f1[:500]...)
	for _, server := range []bool{false, true} {
		c, sock := socketConn(server, 0, binaryMessages([][]byte{msg, f1[500:]}, server)...)
		if server {
			sock.chunks = append([][]byte{wsFrame(0x2, true, []byte(ConnHeader), true)}, sock.chunks...)
			if err := c.r.readConnHeader(); err != nil {
				t.Fatal(err)
			}
			c.headerRead = true
			sock.chunks = sock.chunks[1:]
		}
		round := func() {
			sock.rewind()
			for range 2 {
				if b, err := c.ReadFrame(); err != nil || !bytes.Equal(b, f1[3:]) {
					t.Fatalf("server %v: %d bytes, %v", server, len(b), err)
				}
			}
		}
		round() // warm up the buffer
		if allocs := testing.AllocsPerRun(100, round); allocs != 0 {
			t.Fatalf("server %v: steady state: %v allocs per two frames, want 0", server, allocs)
		}
	}
}

func TestReadConnHeader(t *testing.T) {
	frame, _ := AppendFrame(nil, []byte("hello"))
	edge := append([]byte(edgeRoutingMagic), 0, 0, 3, 'a', 'b', 'c')
	tests := []struct {
		name    string
		chunks  [][]byte
		wantErr error
	}{
		{"header then frame", [][]byte{append([]byte(ConnHeader), frame...)}, nil},
		{"header split", [][]byte{[]byte("WA"), []byte("\x06\x03"), frame}, nil},
		{"edge routing prefix", [][]byte{append(append(edge, ConnHeader...), frame...)}, nil},
		{"wrong magic", [][]byte{append([]byte("WA\x05\x03"), frame...)}, ErrBadHeader},
		{"wrong dict version", [][]byte{append([]byte("WA\x06\x02"), frame...)}, ErrBadHeader},
		{"no header", [][]byte{frame}, ErrBadHeader},
		{"short", [][]byte{[]byte("WA")}, ErrBadHeader},
		{"nothing", nil, io.EOF},
		{"edge routing too long", [][]byte{append([]byte(edgeRoutingMagic), 0xff, 0xff, 0xff)}, ErrBadHeader},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, _ := socketConn(true, 0, binaryMessages(tt.chunks, true)...)
			r := &c.r
			err := r.readConnHeader()
			if !errors.Is(err, tt.wantErr) || (tt.wantErr == nil && err != nil) {
				t.Fatalf("got %v, want %v", err, tt.wantErr)
			}
			if tt.wantErr != nil {
				return
			}
			got, err := r.ReadFrame()
			if err != nil || string(got) != "hello" {
				t.Fatalf("frame after header: %q, %v", got, err)
			}
		})
	}
}

func FuzzFrameReader(f *testing.F) {
	f1, _ := AppendFrame(nil, []byte("hello"))
	f.Add(f1, uint8(1), uint16(64))
	f.Add(append(f1, f1...), uint8(4), uint16(5))
	f.Add([]byte{0xff, 0xff, 0xff, 1, 2}, uint8(2), uint16(100))
	f.Add([]byte{0, 0, 0}, uint8(0), uint16(0))
	f.Fuzz(func(t *testing.T, data []byte, cut uint8, limit uint16) {
		// Split data into chunks of (cut+1) bytes, read frames until an error.
		step := int(cut) + 1
		var chunks [][]byte
		for len(data) > 0 {
			n := min(step, len(data))
			chunks = append(chunks, data[:n])
			data = data[n:]
		}
		total := 0
		for _, c := range chunks {
			total += len(c)
		}
		r, _ := newChunkReader(int(limit), chunks...)
		for {
			body, err := r.ReadFrame()
			if err != nil {
				if len(body) != 0 {
					t.Fatal("body returned with an error")
				}
				break
			}
			if limit > 0 && len(body) > int(limit) {
				t.Fatalf("frame of %d bytes above limit %d", len(body), limit)
			}
			if len(r.in.buf) > max(growStep, 2*total) {
				t.Fatalf("buffer %d bytes for %d bytes of input", len(r.in.buf), total)
			}
		}
	})
}
