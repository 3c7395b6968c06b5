package node

//go:generate go run ./internal/gentokens -in ../../testdata/protocol/tokens.json -out tokens_gen.go

// Tag bytes (PROTOCOL.md 6.3).
const (
	tagListEmpty  = 0x00
	tagDict0      = 0xEC // 236; DICTIONARY_0..3 are 236..239
	tagDict3      = 0xEF
	tagInteropJID = 0xF5
	tagFBJID      = 0xF6
	tagADJID      = 0xF7
	tagList8      = 0xF8
	tagList16     = 0xF9
	tagJIDPair    = 0xFA
	tagHex8       = 0xFB
	tagBinary8    = 0xFC
	tagBinary20   = 0xFD
	tagBinary32   = 0xFE
	tagNibble8    = 0xFF
)

// tokenCode says how a string is written as a token: single byte b
// (dict == 0) or the two bytes 236+dict-1, b.
type tokenCode struct {
	dict uint8 // 0: single byte; 1..4: DICTIONARY_0..3
	b    uint8
}

// tokenIndex maps every token string to its code; built once at init from
// the generated tables.
var tokenIndex = buildTokenIndex()

func buildTokenIndex() map[string]tokenCode {
	m := make(map[string]tokenCode, len(singleByteTokens)+4*256)
	for i, s := range singleByteTokens {
		if i == 0 || s == "" {
			continue
		}
		m[s] = tokenCode{0, uint8(i)}
	}
	for d, dict := range doubleByteTokens {
		for j, s := range dict {
			m[s] = tokenCode{uint8(d + 1), uint8(j)}
		}
	}
	return m
}

// lookupToken returns the token code of s, if s is a token.
func lookupToken(s string) (tokenCode, bool) {
	if len(s) == 0 || len(s) > maxTokenLen {
		return tokenCode{}, false
	}
	c, ok := tokenIndex[s]
	return c, ok
}
