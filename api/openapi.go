package api

import (
	_ "embed"
	"net/http"
)

// openAPI is the OpenAPI 3.1 document of every route, served at
// GET /api/openapi.json. openapi_test.go holds it to the routes the server
// registers and the JSON the handlers write, and every answer the API
// tests provoke must conform to it (conform_test.go): a route added to
// routes(), a status a handler may answer, or a field of a handler's
// JSON goes into the document too.
//
//go:embed openapi.json
var openAPI []byte

func (s *Server) handleOpenAPI(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(http.StatusOK)
	w.Write(openAPI)
}
