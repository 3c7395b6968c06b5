package api

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"mime"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

// maxConformBody bounds the body conform keeps of one answer; a longer
// one is not checked against its schema.
const maxConformBody = 1 << 20

// conform wraps the API's handler in the tests (newFixture): every answer
// a test provokes on a documented operation must have a status the
// document lists for it, one of its content types, and, for JSON, a body
// its schema accepts; a JSON request body the API accepted must be one
// the documented request schema accepts. Answers that match no operation
// (unknown routes, 405) are left to the tests that provoke them.
func conform(t *testing.T, h http.Handler) http.Handler {
	var doc map[string]any
	if err := json.Unmarshal(openAPI, &doc); err != nil {
		t.Fatalf("openapi.json: %v", err)
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var sent bytes.Buffer
		r.Body = struct {
			io.Reader
			io.Closer
		}{io.TeeReader(io.LimitReader(r.Body, maxConformBody), &sent), r.Body}
		rec := &answer{ResponseWriter: w}
		h.ServeHTTP(rec, r)
		if err := checkAnswer(doc, r, rec); err != nil {
			t.Errorf("the answer disagrees with api/openapi.json: %v", err)
		}
		if err := checkRequest(doc, r, rec.code, sent.Bytes()); err != nil {
			t.Errorf("the request disagrees with api/openapi.json: %v", err)
		}
	})
}

// checkRequest checks the JSON body of a request the API accepted (2xx)
// against the documented request body: a schema that refuses what the
// handler takes is wrong.
func checkRequest(doc map[string]any, r *http.Request, code int, body []byte) error {
	op, tmpl := findOperation(doc, r.Method, r.URL.Path)
	if op == nil || code >= 300 || len(body) == 0 {
		return nil
	}
	where := fmt.Sprintf("%s %s (%s), answered %d", r.Method, r.URL.Path, tmpl, code)
	rb, ok := op["requestBody"]
	if !ok {
		return fmt.Errorf("%s: took a body, and the document has none", where)
	}
	reqBody, err := derefAny(doc, rb)
	if err != nil {
		return err
	}
	media, ok := reqBody["content"].(map[string]any)["application/json"].(map[string]any)
	if !ok {
		return nil
	}
	var v any
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	if err := dec.Decode(&v); err != nil {
		return fmt.Errorf("%s: took a body that is not JSON: %v", where, err)
	}
	if err := validate(doc, media["schema"], v, "request"); err != nil {
		return fmt.Errorf("%s: %v (body %.300s)", where, err, body)
	}
	return nil
}

// answer records what a handler wrote, passing it through.
type answer struct {
	http.ResponseWriter
	code     int
	body     bytes.Buffer
	overflow bool
}

func (a *answer) WriteHeader(code int) {
	if a.code == 0 {
		a.code = code
	}
	a.ResponseWriter.WriteHeader(code)
}

func (a *answer) Write(b []byte) (int, error) {
	if a.code == 0 {
		a.code = http.StatusOK
	}
	if a.body.Len()+len(b) <= maxConformBody {
		a.body.Write(b)
	} else {
		a.overflow = true
	}
	return a.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the connection (flushes and
// write deadlines of event streams).
func (a *answer) Unwrap() http.ResponseWriter { return a.ResponseWriter }

// findOperation returns the operation of doc that serves method and path,
// and its path template; nil when none does.
func findOperation(doc map[string]any, method, path string) (map[string]any, string) {
	if method == http.MethodHead {
		method = http.MethodGet
	}
	segs := strings.Split(path, "/")
	best, bestLiterals := "", -1
	for tmpl := range doc["paths"].(map[string]any) {
		tsegs := strings.Split(tmpl, "/")
		if len(tsegs) != len(segs) {
			continue
		}
		literals := 0
		for i, ts := range tsegs {
			if strings.HasPrefix(ts, "{") && strings.HasSuffix(ts, "}") {
				if segs[i] == "" {
					literals = -1
					break
				}
				continue
			}
			if ts != segs[i] {
				literals = -1
				break
			}
			literals++
		}
		if literals > bestLiterals {
			best, bestLiterals = tmpl, literals
		}
	}
	if best == "" {
		return nil, ""
	}
	op, _ := doc["paths"].(map[string]any)[best].(map[string]any)[strings.ToLower(method)].(map[string]any)
	return op, best
}

func checkAnswer(doc map[string]any, r *http.Request, a *answer) error {
	op, tmpl := findOperation(doc, r.Method, r.URL.Path)
	if op == nil {
		return nil
	}
	code := a.code
	if code == 0 {
		code = http.StatusOK
	}
	where := fmt.Sprintf("%s %s (%s) answered %d", r.Method, r.URL.Path, tmpl, code)
	responses := op["responses"].(map[string]any)
	resp, ok := responses[strconv.Itoa(code)]
	if !ok {
		if resp, ok = responses["default"]; !ok {
			return fmt.Errorf("%s: the status is not documented (body %.200s)", where, a.body.String())
		}
	}
	respObj, err := derefAny(doc, resp)
	if err != nil {
		return err
	}
	content, _ := respObj["content"].(map[string]any)
	if len(content) == 0 {
		if a.body.Len() > 0 {
			return fmt.Errorf("%s: documented without a body, has %.200s", where, a.body.String())
		}
		return nil
	}
	ct, _, _ := mime.ParseMediaType(a.Header().Get("Content-Type"))
	media, ok := content[ct].(map[string]any)
	if !ok {
		return fmt.Errorf("%s: Content-Type %q is not documented", where, ct)
	}
	if ct != "application/json" || r.Method == http.MethodHead || a.overflow {
		return nil
	}
	var body any
	dec := json.NewDecoder(bytes.NewReader(a.body.Bytes()))
	dec.UseNumber()
	if err := dec.Decode(&body); err != nil {
		return fmt.Errorf("%s: the body is not JSON: %v", where, err)
	}
	if err := validate(doc, media["schema"], body, "body"); err != nil {
		return fmt.Errorf("%s: %v (body %.300s)", where, err, a.body.String())
	}
	return nil
}

func derefAny(doc map[string]any, v any) (map[string]any, error) {
	m, ok := v.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("not an object: %v", v)
	}
	for range 8 {
		ref, ok := m["$ref"].(string)
		if !ok {
			return m, nil
		}
		target, err := resolveRef(doc, ref)
		if err != nil {
			return nil, err
		}
		if m, ok = target.(map[string]any); !ok {
			return nil, fmt.Errorf("$ref %q names a non-object", ref)
		}
	}
	return nil, fmt.Errorf("$ref chain too long")
}

// schemaWords are the JSON Schema keywords validate knows (or that
// annotate only); a schema using another fails, so that nothing the
// document says goes unchecked.
var schemaWords = map[string]bool{
	"$ref": true, "type": true, "properties": true, "required": true, "items": true,
	"additionalProperties": true, "enum": true, "const": true, "not": true,
	"pattern": true, "minLength": true, "maxLength": true, "format": true,
	"minimum": true, "maximum": true, "maxItems": true, "oneOf": true,
	"description": true, "contentMediaType": true,
}

// validate checks v against schema, a subset of JSON Schema (schemaWords).
// An object schema with properties is closed, as if additionalProperties
// were false: a property it does not name is an error, as the handlers'
// JSON is the contract.
func validate(doc map[string]any, schema, v any, at string) error {
	s, err := derefAny(doc, schema)
	if err != nil {
		return fmt.Errorf("%s: %v", at, err)
	}
	for k := range s {
		if !schemaWords[k] {
			return fmt.Errorf("%s: the test's validator does not know the keyword %q", at, k)
		}
	}
	if t, ok := s["type"]; ok {
		var types []string
		switch t := t.(type) {
		case string:
			types = []string{t}
		case []any:
			for _, e := range t {
				types = append(types, e.(string))
			}
		}
		if !slices.ContainsFunc(types, func(typ string) bool { return isType(v, typ) }) {
			return fmt.Errorf("%s: %v is not of type %v", at, v, types)
		}
	}
	if enum, ok := s["enum"].([]any); ok && !slices.ContainsFunc(enum, func(e any) bool { return fmt.Sprint(e) == fmt.Sprint(v) }) {
		return fmt.Errorf("%s: %v is not one of %v", at, v, enum)
	}
	if c, ok := s["const"]; ok && fmt.Sprint(c) != fmt.Sprint(v) {
		return fmt.Errorf("%s: %v is not %v", at, v, c)
	}
	if one, ok := s["oneOf"].([]any); ok {
		matched := 0
		for _, alt := range one {
			if validate(doc, alt, v, at) == nil {
				matched++
			}
		}
		if matched != 1 {
			return fmt.Errorf("%s: %v matches %d of the oneOf schemas, want exactly 1", at, v, matched)
		}
	}
	if not, ok := s["not"]; ok && validate(doc, not, v, at) == nil {
		return fmt.Errorf("%s: %v matches what the schema excludes", at, v)
	}
	switch v := v.(type) {
	case string:
		if p, ok := s["pattern"].(string); ok && !regexp.MustCompile(p).MatchString(v) {
			return fmt.Errorf("%s: %q does not match %s", at, v, p)
		}
		if n, ok := s["minLength"].(float64); ok && float64(utf8.RuneCountInString(v)) < n {
			return fmt.Errorf("%s: %q is shorter than %v", at, v, n)
		}
		if n, ok := s["maxLength"].(float64); ok && float64(utf8.RuneCountInString(v)) > n {
			return fmt.Errorf("%s: %q is longer than %v", at, v, n)
		}
		if s["format"] == "date-time" {
			if _, err := time.Parse(time.RFC3339Nano, v); err != nil {
				return fmt.Errorf("%s: %q is not a date-time", at, v)
			}
		}
	case json.Number:
		f, _ := v.Float64()
		if m, ok := s["minimum"].(float64); ok && f < m {
			return fmt.Errorf("%s: %v is below %v", at, v, m)
		}
		if m, ok := s["maximum"].(float64); ok && f > m {
			return fmt.Errorf("%s: %v is above %v", at, v, m)
		}
	case []any:
		if n, ok := s["maxItems"].(float64); ok && float64(len(v)) > n {
			return fmt.Errorf("%s: %d items, at most %v", at, len(v), n)
		}
		if items, ok := s["items"]; ok {
			for i, e := range v {
				if err := validate(doc, items, e, fmt.Sprintf("%s[%d]", at, i)); err != nil {
					return err
				}
			}
		}
	case map[string]any:
		props, _ := s["properties"].(map[string]any)
		for _, r := range asList(s["required"]) {
			if _, ok := v[r]; !ok {
				return fmt.Errorf("%s: the required %q is missing", at, r)
			}
		}
		for k, e := range v {
			p, ok := props[k]
			if !ok {
				if props != nil || s["additionalProperties"] == false {
					return fmt.Errorf("%s: %q is not a documented property", at, k)
				}
				continue
			}
			if err := validate(doc, p, e, at+"."+k); err != nil {
				return err
			}
		}
	}
	return nil
}

func asList(v any) []string {
	var out []string
	list, _ := v.([]any)
	for _, e := range list {
		out = append(out, e.(string))
	}
	return out
}

func isType(v any, typ string) bool {
	switch v := v.(type) {
	case nil:
		return typ == "null"
	case bool:
		return typ == "boolean"
	case string:
		return typ == "string"
	case json.Number:
		if typ == "number" {
			return true
		}
		f, err := v.Float64()
		return typ == "integer" && err == nil && f == math.Trunc(f)
	case []any:
		return typ == "array"
	case map[string]any:
		return typ == "object"
	}
	return false
}
