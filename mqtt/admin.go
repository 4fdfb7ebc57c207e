package mqtt

import "net/http"

// registerAdminAPI serves /api/v1/... Stub: filled in by the operations
// work.
func (s *Server) registerAdminAPI(mux *http.ServeMux) {}

// adminOnly wraps an admin API handler with the access check (bearer
// token, or loopback only without one). Stub: filled in by the operations
// work.
func (s *Server) adminOnly(h http.Handler) http.Handler { return h }
