package node

import (
	"encoding/json"
	"os"
	"testing"
)

// TestGeneratedTablesMatchJSON guards against a stale tokens_gen.go.
func TestGeneratedTablesMatchJSON(t *testing.T) {
	raw, err := os.ReadFile("../../testdata/protocol/tokens.json")
	if err != nil {
		t.Fatal(err)
	}
	var want struct {
		DictVersion int        `json:"dict_version"`
		SingleByte  []string   `json:"single_byte"`
		DoubleByte  [][]string `json:"double_byte"`
	}
	if err := json.Unmarshal(raw, &want); err != nil {
		t.Fatal(err)
	}
	if want.DictVersion != DictVersion || len(want.SingleByte) != len(singleByteTokens) || len(want.DoubleByte) != len(doubleByteTokens) {
		t.Fatal("tokens_gen.go is stale: run go generate ./...")
	}
	for i, s := range want.SingleByte {
		if singleByteTokens[i] != s {
			t.Fatalf("single_byte[%d] = %q, want %q", i, singleByteTokens[i], s)
		}
	}
	for d := range want.DoubleByte {
		if len(want.DoubleByte[d]) != len(doubleByteTokens[d]) {
			t.Fatalf("double_byte[%d] length differs", d)
		}
		for j, s := range want.DoubleByte[d] {
			if doubleByteTokens[d][j] != s {
				t.Fatalf("double_byte[%d][%d] = %q, want %q", d, j, doubleByteTokens[d][j], s)
			}
		}
	}
}

func TestLookupToken(t *testing.T) {
	for i, s := range singleByteTokens {
		if i == 0 {
			continue
		}
		if c, ok := lookupToken(s); !ok || c != (tokenCode{0, uint8(i)}) {
			t.Fatalf("lookupToken(%q) = %v, %v; want single %d", s, c, ok, i)
		}
	}
	for d, dict := range doubleByteTokens {
		for j, s := range dict {
			if c, ok := lookupToken(s); !ok || c != (tokenCode{uint8(d + 1), uint8(j)}) {
				t.Fatalf("lookupToken(%q) = %v, %v; want dict %d index %d", s, c, ok, d, j)
			}
		}
	}
	for _, s := range []string{"", "not-a-token", "1234567890", "IQ", "iqq", "passive2", string(make([]byte, 200))} {
		if c, ok := lookupToken(s); ok {
			t.Errorf("lookupToken(%q) = %v, true", s, c)
		}
	}
}

func BenchmarkLookupToken(b *testing.B) {
	words := []string{"iq", "type", "passive", "hello world", "1234567890", "s.whatsapp.net", "device-identity", "xmlns"}
	b.ReportAllocs()
	for b.Loop() {
		for _, w := range words {
			lookupToken(w)
		}
	}
}
