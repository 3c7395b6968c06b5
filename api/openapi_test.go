package api

import (
	"bytes"
	"encoding/json"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"net/http"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/wafleet/wafleet/events"
	"github.com/wafleet/wafleet/status"
	"github.com/wafleet/wafleet/store"
	"github.com/wafleet/wafleet/webhook"
)

// openAPIMethods are the operation keys of an OpenAPI path item.
var openAPIMethods = []string{"get", "put", "post", "delete", "options", "head", "patch", "trace"}

// loadOpenAPI parses the embedded document.
func loadOpenAPI(t *testing.T) map[string]any {
	t.Helper()
	var doc map[string]any
	dec := json.NewDecoder(bytes.NewReader(openAPI))
	dec.UseNumber()
	if err := dec.Decode(&doc); err != nil {
		t.Fatalf("openapi.json is not JSON: %v", err)
	}
	return doc
}

// object returns v[key] as a JSON object, or fails the test.
func object(t *testing.T, v any, where string) map[string]any {
	t.Helper()
	m, ok := v.(map[string]any)
	if !ok {
		t.Fatalf("%s: want a JSON object, have %T", where, v)
	}
	return m
}

// resolveRef follows a local $ref ("#/a/b") to what it names.
func resolveRef(doc map[string]any, ref string) (any, error) {
	pointer, ok := strings.CutPrefix(ref, "#/")
	if !ok {
		return nil, fmt.Errorf("$ref %q is not local to the document", ref)
	}
	var cur any = doc
	for _, tok := range strings.Split(pointer, "/") {
		tok = strings.ReplaceAll(strings.ReplaceAll(tok, "~1", "/"), "~0", "~")
		m, ok := cur.(map[string]any)
		if !ok {
			return nil, fmt.Errorf("$ref %q: %q is inside a non-object", ref, tok)
		}
		if cur, ok = m[tok]; !ok {
			return nil, fmt.Errorf("$ref %q: no %q", ref, tok)
		}
	}
	return cur, nil
}

// deref returns v, or what its $ref names (following chains).
func deref(t *testing.T, doc map[string]any, v any) map[string]any {
	t.Helper()
	m := object(t, v, "deref")
	for seen := 0; ; seen++ {
		ref, ok := m["$ref"].(string)
		if !ok {
			return m
		}
		if seen > 8 {
			t.Fatalf("$ref chain too long at %q", ref)
		}
		target, err := resolveRef(doc, ref)
		if err != nil {
			t.Fatal(err)
		}
		m = object(t, target, ref)
	}
}

// operation is one documented method of one path.
type operation struct {
	method, path string
	op           map[string]any
	pathItem     map[string]any
}

func operations(t *testing.T, doc map[string]any) []operation {
	t.Helper()
	var ops []operation
	for path, item := range object(t, doc["paths"], "paths") {
		pi := object(t, item, path)
		for _, m := range openAPIMethods {
			if op, ok := pi[m]; ok {
				ops = append(ops, operation{strings.ToUpper(m), path, object(t, op, m+" "+path), pi})
			}
		}
	}
	sort.Slice(ops, func(i, j int) bool {
		return ops[i].path+" "+ops[i].method < ops[j].path+" "+ops[j].method
	})
	return ops
}

// TestOpenAPIDocument checks the document on its own: the required
// top-level fields, that every $ref resolves, unique operation ids, a
// summary and declared tags on each operation, path parameters that match
// the path templates, errors as {"error": "..."}, and security as the
// guard applies it.
func TestOpenAPIDocument(t *testing.T) {
	doc := loadOpenAPI(t)
	if v, _ := doc["openapi"].(string); !regexp.MustCompile(`^3\.[01]\.\d+$`).MatchString(v) {
		t.Errorf("openapi = %q, want 3.0.x or 3.1.x", v)
	}
	info := object(t, doc["info"], "info")
	for _, key := range []string{"title", "version"} {
		if v, _ := info[key].(string); v == "" {
			t.Errorf("info.%s missing", key)
		}
	}
	schemes := object(t, object(t, doc["components"], "components")["securitySchemes"], "securitySchemes")

	// Every $ref anywhere resolves.
	var walk func(v any, where string)
	walk = func(v any, where string) {
		switch v := v.(type) {
		case map[string]any:
			if ref, ok := v["$ref"]; ok {
				s, _ := ref.(string)
				if _, err := resolveRef(doc, s); err != nil {
					t.Errorf("%s: %v", where, err)
				}
			}
			for k, e := range v {
				walk(e, where+"/"+k)
			}
		case []any:
			for i, e := range v {
				walk(e, fmt.Sprintf("%s/%d", where, i))
			}
		}
	}
	walk(doc, "#")

	security := func(op operation) []any {
		if s, ok := op.op["security"]; ok {
			return s.([]any)
		}
		return doc["security"].([]any)
	}
	ids := make(map[string]string)
	tags := make(map[string]bool)
	for _, tag := range doc["tags"].([]any) {
		tags[object(t, tag, "tags")["name"].(string)] = true
	}
	template := regexp.MustCompile(`\{([^}]+)\}`)
	for _, op := range operations(t, doc) {
		name := op.method + " " + op.path
		id, _ := op.op["operationId"].(string)
		if id == "" {
			t.Errorf("%s: no operationId", name)
		} else if other, dup := ids[id]; dup {
			t.Errorf("%s: operationId %q already names %s", name, id, other)
		}
		ids[id] = name
		if v, _ := op.op["summary"].(string); v == "" {
			t.Errorf("%s: no summary", name)
		}
		opTags, _ := op.op["tags"].([]any)
		if len(opTags) == 0 {
			t.Errorf("%s: no tag", name)
		}
		for _, tag := range opTags {
			if !tags[tag.(string)] {
				t.Errorf("%s: tag %q is not declared in tags", name, tag)
			}
		}

		// Path parameters: exactly the template's, each required.
		var want, have []string
		for _, m := range template.FindAllStringSubmatch(op.path, -1) {
			want = append(want, m[1])
		}
		for _, list := range []any{op.pathItem["parameters"], op.op["parameters"]} {
			params, _ := list.([]any)
			for _, p := range params {
				p := deref(t, doc, p)
				if p["in"] == "path" {
					have = append(have, p["name"].(string))
					if p["required"] != true {
						t.Errorf("%s: path parameter %v is not required", name, p["name"])
					}
				}
			}
		}
		sort.Strings(want)
		sort.Strings(have)
		if !slices.Equal(want, have) {
			t.Errorf("%s: path parameters %v, the template has %v", name, have, want)
		}

		// Responses: some, and every error is {"error": "..."}.
		responses := object(t, op.op["responses"], name+" responses")
		if len(responses) == 0 {
			t.Errorf("%s: no responses", name)
		}
		for code, r := range responses {
			if !regexp.MustCompile(`^[1-5][0-9][0-9]$`).MatchString(code) {
				t.Errorf("%s: response %q is not a status code", name, code)
				continue
			}
			if code[0] < '4' {
				continue
			}
			if op.path == routeConsoleLogin && code == "401" {
				continue // the login form again, for the browser that posted it
			}
			content, _ := deref(t, doc, r)["content"].(map[string]any)
			media, ok := content["application/json"]
			if !ok || len(content) != 1 {
				t.Errorf("%s: error %s is not only application/json", name, code)
				continue
			}
			want := "#/components/schemas/Error"
			if op.path == routeReadyz {
				want = "#/components/schemas/Readiness" // the Error's "error", with ready and reasons
			}
			if ref, _ := object(t, media, name)["schema"].(map[string]any)["$ref"].(string); ref != want {
				t.Errorf("%s: error %s has schema %q, want %q", name, code, ref, want)
			}
		}

		// Security: the guard exempts the probes only; every other route
		// may answer 401 and 403.
		sec := security(op)
		for _, req := range sec {
			for scheme := range object(t, req, name+" security") {
				if _, ok := schemes[scheme]; !ok {
					t.Errorf("%s: security scheme %q is not defined", name, scheme)
				}
			}
		}
		// The login takes the token in its form instead.
		probe := op.path == routeHealthz || op.path == routeReadyz || op.path == routeConsoleLogin
		switch {
		case probe && len(sec) != 0:
			t.Errorf("%s: a probe or the login needs no token, the document asks for %v", name, sec)
		case !probe && len(sec) == 0:
			t.Errorf("%s: the document asks for no token, the guard does", name)
		case !probe && (responses["401"] == nil || responses["403"] == nil):
			t.Errorf("%s: 401 and 403 (the guard's answers) are not documented", name)
		}
	}
}

// documentedPath is a mux pattern as an OpenAPI path: "/{$}" is "/", and
// a trailing wildcard "{name...}" is "{name}".
func documentedPath(pattern string) string {
	if pattern == routeDashboard {
		return "/"
	}
	return strings.ReplaceAll(pattern, "...}", "}")
}

// TestOpenAPICoversEveryRoute checks that every route the server registers
// is documented with its method, and that every documented operation is
// registered. HEAD is implied by GET and not documented.
func TestOpenAPICoversEveryRoute(t *testing.T) {
	srv, err := New(Config{Accounts: status.NewBoard()})
	if err != nil {
		t.Fatal(err)
	}
	registered := make(map[string]bool)
	for _, r := range srv.routeTable {
		registered[r.Method+" "+documentedPath(r.Pattern)] = true
	}
	if !registered["GET /api/accounts"] || !registered["GET /"] {
		t.Fatalf("the route table misses routes: %v", srv.routeTable)
	}
	documented := make(map[string]bool)
	for _, op := range operations(t, loadOpenAPI(t)) {
		if op.method == http.MethodHead {
			t.Errorf("HEAD %s: HEAD is implied by GET, do not document it", op.path)
		}
		documented[op.method+" "+op.path] = true
	}
	for _, r := range sortedKeys(registered) {
		if !documented[r] {
			t.Errorf("%s is registered but not in api/openapi.json", r)
		}
	}
	for _, d := range sortedKeys(documented) {
		if !registered[d] {
			t.Errorf("%s is in api/openapi.json but not registered", d)
		}
	}
}

func sortedKeys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// TestOpenAPISchemasMatchJSON holds each documented object schema to the
// Go type its handler encodes or decodes (every one with properties must
// be in the table): the same property names, a JSON type that fits each
// field, and (for responses) required exactly when the field is always
// present.
func TestOpenAPISchemasMatchJSON(t *testing.T) {
	doc := loadOpenAPI(t)
	schemas := object(t, object(t, doc["components"], "components")["schemas"], "schemas")
	tests := []struct {
		schema   string
		value    any
		response bool // required must list every field without omitempty
	}{
		{"Error", errorBody{}, true},
		{"Account", status.Account{}, true},
		{"ActionResult", actionResult{}, true},
		{"PairRequest", pairRequest{}, false},
		{"MessageRequest", messageRequest{}, false},
		{"MessageResult", messageResult{}, true},
		{"LinkCode", linkCodeResult{}, true},
		{"Event", events.Wire{}, true},
		{"MessageEvent", events.WireMessage{}, true},
		{"ReceiptEvent", events.WireReceipt{}, true},
		{"MissedEvent", missedEvent{}, true},
		{"ArchiveEntry", store.ArchiveEntry{}, true},
		{"RestoreRequest", restoreRequest{}, false},
		{"HeldWipes", wipesView{}, true},
		{"ConfirmedWipes", confirmedView{}, true},
		{"WebhookEndpoint", webhook.Status{}, true},
		{"DeadLetter", deadLetterView{}, true},
		{"Redriven", redriven{}, true},
		{"AccountWebhook", accountWebhookView{}, true},
		{"AccountWebhooks", accountWebhooksView{}, true},
		{"AccountWebhookRequest", accountWebhookRequest{}, false},
		{"AccountWebhooksRequest", accountWebhooksRequest{}, false},
		{"WebhookDelivery", webhook.Delivery{}, true},
		{"Instance", Instance{}, true},
		{"AccountSpec", AccountSpec{}, false},
		{"AccountPatch", AccountPatch{}, false},
		{"Readiness", readiness{}, true},
		{"AccountPage", accountPage{}, true},
	}
	held := make(map[string]bool)
	for _, tt := range tests {
		held[tt.schema] = true
	}
	for name, schema := range schemas {
		if _, ok := object(t, schema, name)["properties"]; ok && !held[name] {
			t.Errorf("schema %s is held to no Go type: add it to this test's table", name)
		}
	}
	for _, tt := range tests {
		t.Run(tt.schema, func(t *testing.T) {
			schema := object(t, schemas[tt.schema], tt.schema)
			props := object(t, schema["properties"], tt.schema+" properties")
			required := make(map[string]bool)
			if list, ok := schema["required"].([]any); ok {
				for _, r := range list {
					required[r.(string)] = true
				}
			}
			typ := reflect.TypeOf(tt.value)
			fields := make(map[string]bool)
			for i := range typ.NumField() {
				f := typ.Field(i)
				name, opts, _ := strings.Cut(f.Tag.Get("json"), ",")
				if name == "-" || !f.IsExported() {
					continue
				}
				if name == "" {
					name = f.Name
				}
				fields[name] = true
				omitempty := strings.Contains(opts, "omitempty")
				prop, ok := props[name]
				if !ok {
					t.Errorf("field %q is not a property", name)
					continue
				}
				if tt.response && required[name] == omitempty {
					t.Errorf("property %q: required %v, but the field has omitempty %v", name, required[name], omitempty)
				}
				if err := fits(deref(t, doc, prop), f.Type, omitempty || !tt.response); err != nil {
					t.Errorf("property %q: %v", name, err)
				}
			}
			for name := range props {
				if !fields[name] {
					t.Errorf("property %q is not a field of %v", name, typ)
				}
			}
			for name := range required {
				if !fields[name] {
					t.Errorf("required %q is not a field of %v", name, typ)
				}
			}
		})
	}
}

var (
	timeType = reflect.TypeFor[time.Time]()
	rawType  = reflect.TypeFor[json.RawMessage]() // any JSON; documented as what it holds
)

// fits reports whether a schema's type describes how encoding/json writes
// a field of Go type typ: a pointer written without omitempty may be null
// (mayOmit is set for those, and for every field of a request).
func fits(schema map[string]any, typ reflect.Type, mayOmit bool) error {
	var types []string
	switch v := schema["type"].(type) {
	case string:
		types = []string{v}
	case []any:
		for _, e := range v {
			types = append(types, e.(string))
		}
	default:
		return fmt.Errorf("no type")
	}
	nullable := slices.Contains(types, "null")
	if typ.Kind() == reflect.Pointer {
		if !mayOmit && !nullable {
			return fmt.Errorf("a %v can be null, the schema says %v", typ, types)
		}
		typ = typ.Elem()
	} else if nullable {
		return fmt.Errorf("a %v is never null, the schema says %v", typ, types)
	}
	var want string
	switch {
	case typ == rawType:
		return nil
	case typ == timeType:
		want = "string"
		if schema["format"] != "date-time" {
			return fmt.Errorf("a time has format date-time, the schema says %v", schema["format"])
		}
	case typ.Kind() == reflect.String:
		want = "string"
	case typ.Kind() == reflect.Bool:
		want = "boolean"
	case typ.Kind() >= reflect.Int && typ.Kind() <= reflect.Uint64:
		want = "integer"
	case typ.Kind() == reflect.Float32 || typ.Kind() == reflect.Float64:
		want = "number"
	case typ.Kind() == reflect.Slice && typ.Elem().Kind() == reflect.Uint8:
		want = "string"
	case typ.Kind() == reflect.Slice || typ.Kind() == reflect.Array:
		want = "array"
	case typ.Kind() == reflect.Struct || typ.Kind() == reflect.Map:
		want = "object"
	default:
		return fmt.Errorf("cannot check a %v", typ)
	}
	if !slices.Contains(types, want) {
		return fmt.Errorf("a %v is a JSON %s, the schema says %v", typ, want, types)
	}
	return nil
}

// TestOpenAPIServed fetches the document like a client: the embedded
// bytes as JSON, behind the same token and Host checks as the other
// routes.
func TestOpenAPIServed(t *testing.T) {
	const token = "s3cret-token"
	f := newFixture(t, func(c *Config) { c.Token = token })
	resp, body := f.do(t, http.MethodGet, routeOpenAPI)
	wantError(t, resp, body, http.StatusUnauthorized)

	resp, body = f.do(t, http.MethodGet, routeOpenAPI, "Authorization", "Bearer "+token)
	if resp.StatusCode != http.StatusOK || !bytes.Equal(body, openAPI) {
		t.Fatalf("status %d, %d bytes; want 200 and the %d bytes of openapi.json", resp.StatusCode, len(body), len(openAPI))
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Fatalf("Content-Type %q, want JSON", ct)
	}
	rec := call(f.srv, http.MethodGet, routeOpenAPI, "attacker.example", "Authorization", "Bearer "+token)
	wantRecorded(t, rec, http.StatusForbidden, "foreign Host")
}

// TestOpenAPIEnums holds the documented states, event kinds, alarms,
// reasons and message types to the constants of package events (read from its source, as
// Go cannot list a type's constants).
func TestOpenAPIEnums(t *testing.T) {
	doc := loadOpenAPI(t)
	schemas := object(t, object(t, doc["components"], "components")["schemas"], "schemas")
	enum := func(name string) []string {
		var out []string
		for _, v := range object(t, schemas[name], name)["enum"].([]any) {
			out = append(out, v.(string))
		}
		return out
	}
	consts := constantsOf(t, "../events")
	var states []string
	for _, s := range events.States {
		states = append(states, string(s))
	}
	if !slices.Equal(consts["State"], states) {
		t.Errorf("events.States %v, the State constants %v", states, consts["State"])
	}
	for _, name := range []string{"State", "Kind", "Alarm", "Reason"} {
		if got, want := enum(name), consts[name]; !slices.Equal(got, want) {
			t.Errorf("schema %s has enum %v, package events has %v", name, got, want)
		}
	}
	props := object(t, object(t, schemas["MessageEvent"], "MessageEvent")["properties"], "MessageEvent properties")
	var types []string
	for _, v := range object(t, props["type"], "MessageEvent type")["enum"].([]any) {
		types = append(types, v.(string))
	}
	if !slices.Equal(types, events.MessageTypes) {
		t.Errorf("MessageEvent type enum %v, events.MessageTypes %v", types, events.MessageTypes)
	}
}

// constantsOf returns the string constants of the non-test files of the
// package in dir, by the name of their declared type, in source order.
func constantsOf(t *testing.T, dir string) map[string][]string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(dir, "*.go"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no Go files in %s: %v", dir, err)
	}
	out := make(map[string][]string)
	for _, file := range files {
		if strings.HasSuffix(file, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(token.NewFileSet(), file, nil, parser.SkipObjectResolution)
		if err != nil {
			t.Fatal(err)
		}
		for _, decl := range f.Decls {
			gen, ok := decl.(*ast.GenDecl)
			if !ok || gen.Tok != token.CONST {
				continue
			}
			for _, spec := range gen.Specs {
				vs := spec.(*ast.ValueSpec)
				typ, ok := vs.Type.(*ast.Ident)
				if !ok {
					continue
				}
				for _, v := range vs.Values {
					if lit, ok := v.(*ast.BasicLit); ok && lit.Kind == token.STRING {
						s, err := strconv.Unquote(lit.Value)
						if err != nil {
							t.Fatal(err)
						}
						out[typ.Name] = append(out[typ.Name], s)
					}
				}
			}
		}
	}
	return out
}

// TestOpenAPIWebhookHeaders holds the documented delivery request to the
// headers package webhook signs it with.
func TestOpenAPIWebhookHeaders(t *testing.T) {
	doc := loadOpenAPI(t)
	post := object(t, object(t, object(t, doc["webhooks"], "webhooks")["accountEvent"], "accountEvent")["post"], "post")
	var documented []string
	for _, p := range post["parameters"].([]any) {
		p := deref(t, doc, p)
		if p["in"] == "header" {
			documented = append(documented, p["name"].(string))
		}
	}
	want := []string{webhook.HeaderDelivery, webhook.HeaderEvent, webhook.HeaderTimestamp, webhook.HeaderSignature}
	sort.Strings(documented)
	sort.Strings(want)
	if !slices.Equal(documented, want) {
		t.Fatalf("documented delivery headers %v, package webhook sends %v", documented, want)
	}
}
