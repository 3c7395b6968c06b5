package node

import (
	"bytes"
	"encoding/hex"
	"runtime"
	"slices"
	"testing"
	"unsafe"
)

// TestDecodeAllocs pins the allocation goals: a <message> with a 1 KiB
// <enc> child in 2 allocations (the copy of its input and one block of
// nodes, attributes and JIDs), pair-success in at most 4, a 200-child node
// in the copy and one allocation each for its nodes, attributes and JIDs.
func TestDecodeAllocs(t *testing.T) {
	v := loadVectors(t)
	var pair []byte
	for _, tv := range v.Nodes {
		if tv.Name == "pair-success IQ (server to client), business account" {
			pair, _ = hex.DecodeString(tv.Hex)
		}
	}
	if pair == nil {
		t.Fatal("pair-success vector not found")
	}
	wide, err := Marshal(wideIQ())
	if err != nil {
		t.Fatal(err)
	}
	msg, err := Marshal(encMessage())
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		data []byte
		max  float64
	}{
		{"message with enc", msg, 2},
		{"pair-success", pair[1:], 4},
		{"200 children", wide, 4},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			allocs := testing.AllocsPerRun(50, func() {
				if _, err := Unmarshal(tt.data); err != nil {
					t.Fatal(err)
				}
			})
			if allocs > tt.max {
				t.Fatalf("%v allocs per decode, want at most %v", allocs, tt.max)
			}
		})
	}
}

// TestForgedLengthsDoNotAllocate checks that lengths and counts read from
// the input never size an allocation beyond what the input can hold.
func TestForgedLengthsDoNotAllocate(t *testing.T) {
	inputs := []string{
		"f80219fe7fffffff00",      // BINARY_32 of 2 GiB
		"f80219fd0fffff00",        // BINARY_20 of 1 MiB
		"f80219f9ffff" + "f80119", // 65535 children
		"f9ffff19",                // 32767 attributes
		"f80219ff7f00",            // 127-byte packed string
	}
	// One P, so other goroutines of the process hardly allocate meanwhile.
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	for _, h := range inputs {
		data, _ := hex.DecodeString(h)
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		for range 10 {
			if _, err := Unmarshal(data); err == nil {
				t.Fatalf("%s: decoded", h)
			}
		}
		runtime.ReadMemStats(&after)
		if perRun := (after.TotalAlloc - before.TotalAlloc) / 10; perRun > 16<<10 {
			t.Errorf("%s: %d bytes allocated per decode", h, perRun)
		}
	}
}

// TestDecodeDoesNotAliasInput overwrites the decoded buffer, as a caller
// reusing its frame buffer does: the nodes decoded from it do not change.
func TestDecodeDoesNotAliasInput(t *testing.T) {
	for _, want := range []Node{encMessage(), wideIQ()} {
		payload, err := AppendPayload(nil, &want)
		if err != nil {
			t.Fatal(err)
		}
		decode := map[string]func([]byte) (Node, error){
			"Unmarshal":              func(b []byte) (Node, error) { return Unmarshal(b[1:]) },
			"UnmarshalPayload":       UnmarshalPayload,
			"UnmarshalPayloadHeader": UnmarshalPayloadHeader,
		}
		for name, dec := range decode {
			buf := bytes.Clone(payload)
			got, err := dec(buf)
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			for i := range buf {
				buf[i] = 0xFF
			}
			exp := want
			if name == "UnmarshalPayloadHeader" {
				exp = want.WithoutContent()
			}
			if !got.Equal(exp) {
				t.Errorf("%s: node changed with its input buffer\n got %v\nwant %v", name, got, exp)
			}
		}
	}
}

// DecodeOwnedPayload decodes in the caller's buffer: the message's node
// equals what UnmarshalPayload gives, its <enc> content is the payload's
// own bytes, and the kilobyte copy is gone from what a decode allocates.
func TestDecodeOwnedPayload(t *testing.T) {
	body, err := Marshal(encMessage())
	if err != nil {
		t.Fatal(err)
	}
	payload := append([]byte{0}, body...)
	want, err := UnmarshalPayload(payload)
	if err != nil {
		t.Fatal(err)
	}
	owned := slices.Clone(payload)
	got, err := UnmarshalOwnedPayload(owned)
	if err != nil {
		t.Fatal(err)
	}
	if !got.Equal(want) {
		t.Fatalf("owned decode %v, want %v", got, want)
	}
	enc, _ := got.Child("enc")
	ct, _ := enc.Bytes()
	start := uintptr(unsafe.Pointer(&owned[0]))
	if p := uintptr(unsafe.Pointer(&ct[0])); p < start || p >= start+uintptr(len(owned)) {
		t.Error("the <enc> content is a copy, not the payload's bytes")
	}
	// One P, so other goroutines of the process hardly allocate meanwhile.
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	allocated := func(decode func([]byte) (Node, error)) uint64 {
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		for range 100 {
			if _, err := decode(owned); err != nil {
				t.Fatal(err)
			}
		}
		runtime.ReadMemStats(&after)
		return (after.TotalAlloc - before.TotalAlloc) / 100
	}
	copying, inPlace := allocated(UnmarshalPayload), allocated(UnmarshalOwnedPayload)
	if inPlace+uint64(len(body)) > copying+64 {
		t.Fatalf("an owned decode allocates %d bytes, a copying one %d: want the %d-byte copy gone", inPlace, copying, len(body))
	}
}
