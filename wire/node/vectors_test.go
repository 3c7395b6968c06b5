package node

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"testing"

	"github.com/wafleet/wafleet/wire/jid"
)

const vectorsPath = "../../testdata/protocol/vectors/binary_nodes.json"

type vectorFile struct {
	Compressed struct {
		Hex             string `json:"hex"`
		DecompressedHex string `json:"decompressed_hex"`
	} `json:"compressed_example"`
	Nodes []struct {
		Name string     `json:"name"`
		Hex  string     `json:"hex"`
		Node vectorNode `json:"node"`
	} `json:"nodes"`
}

type vectorNode struct {
	Tag     string            `json:"tag"`
	Attrs   []json.RawMessage `json:"attrs"`
	Content json.RawMessage   `json:"content"`
}

func loadVectors(t testing.TB) *vectorFile {
	t.Helper()
	raw, err := os.ReadFile(vectorsPath)
	if err != nil {
		t.Fatal(err)
	}
	var v vectorFile
	if err := json.Unmarshal(raw, &v); err != nil {
		t.Fatal(err)
	}
	if len(v.Nodes) != 22 {
		t.Fatalf("want 22 vectors, got %d", len(v.Nodes))
	}
	return &v
}

// build turns the order-preserving structure of a vector into a Node.
func (v *vectorNode) build() (Node, error) {
	n := New(v.Tag)
	for _, raw := range v.Attrs {
		var pair []json.RawMessage
		if err := json.Unmarshal(raw, &pair); err != nil || len(pair) != 2 {
			return Node{}, fmt.Errorf("attr %s: %v", raw, err)
		}
		var key string
		if err := json.Unmarshal(pair[0], &key); err != nil {
			return Node{}, err
		}
		var s string
		if err := json.Unmarshal(pair[1], &s); err == nil {
			n.Attrs = append(n.Attrs, StrAttr(key, s))
			continue
		}
		var j struct {
			JID string `json:"jid"`
		}
		if err := json.Unmarshal(pair[1], &j); err != nil {
			return Node{}, err
		}
		parsed, err := jid.Parse(j.JID)
		if err != nil {
			return Node{}, err
		}
		n.Attrs = append(n.Attrs, JIDAttr(key, parsed))
	}
	c := bytes.TrimSpace(v.Content)
	switch {
	case len(c) == 0 || string(c) == "null":
	case c[0] == '[':
		var kids []vectorNode
		if err := json.Unmarshal(c, &kids); err != nil {
			return Node{}, err
		}
		children := make([]Node, len(kids))
		for i := range kids {
			var err error
			if children[i], err = kids[i].build(); err != nil {
				return Node{}, err
			}
		}
		n = n.WithChildren(children...)
	default:
		var b struct {
			BytesHex *string `json:"bytes_hex"`
		}
		if err := json.Unmarshal(c, &b); err != nil || b.BytesHex == nil {
			return Node{}, fmt.Errorf("content %s: %v", c, err)
		}
		raw, err := hex.DecodeString(*b.BytesHex)
		if err != nil {
			return Node{}, err
		}
		n = n.WithBytes(raw)
	}
	return n, nil
}

func TestVectors(t *testing.T) {
	v := loadVectors(t)
	for _, tv := range v.Nodes {
		t.Run(tv.Name, func(t *testing.T) {
			payload, err := hex.DecodeString(tv.Hex)
			if err != nil {
				t.Fatal(err)
			}
			want, err := tv.Node.build()
			if err != nil {
				t.Fatal(err)
			}
			got, err := UnmarshalPayload(payload)
			if err != nil {
				t.Fatalf("decode: %v", err)
			}
			if !got.Equal(want) {
				t.Fatalf("decoded\n%v\nwant\n%v", got, want)
			}
			enc, err := MarshalPayload(want)
			if err != nil {
				t.Fatalf("encode: %v", err)
			}
			if !bytes.Equal(enc, payload) {
				t.Fatalf("encoded\n%x\nwant\n%x", enc, payload)
			}
			// The decoded node re-encodes to the same bytes too.
			enc2, err := MarshalPayload(got)
			if err != nil || !bytes.Equal(enc2, payload) {
				t.Fatalf("re-encoded decoded node: %x, %v", enc2, err)
			}
		})
	}
}

func TestCompressedVector(t *testing.T) {
	v := loadVectors(t)
	payload, _ := hex.DecodeString(v.Compressed.Hex)
	plain, _ := hex.DecodeString(v.Compressed.DecompressedHex)
	got, err := UnmarshalPayload(payload)
	if err != nil {
		t.Fatalf("decode compressed: %v", err)
	}
	want, err := Unmarshal(plain)
	if err != nil {
		t.Fatalf("decode plain: %v", err)
	}
	if !got.Equal(want) {
		t.Fatalf("compressed decodes to\n%v\nwant\n%v", got, want)
	}
	if from, ok := got.AttrJID("from"); !ok || from != jid.ServerJID {
		t.Fatalf("from = %v, %v", from, ok)
	}
	pd, ok := got.Child("pair-device")
	if !ok || len(pd.Children()) != 2 {
		t.Fatalf("pair-device child missing: %v", got)
	}
	ref, ok := pd.Children()[1].Bytes()
	if !ok || string(ref) != "2@BBBB" {
		t.Fatalf("ref = %q, %v", ref, ok)
	}

	t.Run("limit", func(t *testing.T) {
		_, err := Decoder{MaxInflatedSize: len(plain) - 1}.DecodePayload(payload)
		if !errors.Is(err, ErrInflatedTooLarge) {
			t.Fatalf("err = %v, want ErrInflatedTooLarge", err)
		}
		if _, err := (Decoder{MaxInflatedSize: len(plain)}).DecodePayload(payload); err != nil {
			t.Fatalf("exact limit: %v", err)
		}
	})
}
