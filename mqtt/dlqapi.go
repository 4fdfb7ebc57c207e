package mqtt

import "net/http"

// registerDLQAPI serves /api/v1/dlq... Stub: filled in by the dead-letter
// work.
func (s *Server) registerDLQAPI(mux *http.ServeMux) {}
