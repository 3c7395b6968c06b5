package node

// ErrorText describes the <error code="…" text="…"/> child of an error IQ
// as "CODE TEXT", or says it has none. It holds only those two attributes,
// never the stanza's content, so it is safe to log.
func (n Node) ErrorText() string {
	e, ok := n.Child("error")
	if !ok {
		return "no error child"
	}
	code, _ := e.Attr("code")
	text, _ := e.Attr("text")
	return code + " " + text
}
